import { sleep } from '../core/async.js'
import { RefreshError } from '../core/errors.js'
import type { JsonObject } from '../core/json.js'
import type { Runner, WorkHandle, WorkProgress, WorkResult, WorkUnit } from './types.js'

export interface RunUnitsOptions {
  /** Attempts per unit, the first included: a failed unit is retried alone, the others go on. */
  maxAttempts: number
  /** Wait before a unit's retry (doubles with each retry). */
  retryDelayMs: number
  /** Aborting it stops every unit still running and rejects. */
  signal?: AbortSignal
  /** Each unit's latest progress, by unit id, whenever one changes. */
  onProgress?(unitId: string, progress: WorkProgress): void
  /** A unit attempt ended (succeeded, failed and retried, failed for good). */
  onAttempt?(unit: WorkUnit, result: WorkResult): void
  /** The input of a unit's attempt (for example to tell a worker which attempt it is). */
  inputFor?(unit: Omit<WorkUnit, 'input'> & { input: JsonObject }): JsonObject
}

export interface UnitOutcome {
  unit: WorkUnit
  output: JsonObject
  attempts: number
  /** Wall time of the successful attempt. */
  durationMs: number
}

/** A unit failed on its last attempt; the others were stopped. */
export class UnitsFailedError extends RefreshError {
  readonly unitId: string
  readonly attempts: number
  constructor(unitId: string, attempts: number, detail: string) {
    super('units-failed', `${unitId} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${detail}`)
    this.name = 'UnitsFailedError'
    this.unitId = unitId
    this.attempts = attempts
  }
}

/**
 * Runs every unit on the runner at once (the runner queues what it cannot start yet), retrying a
 * failed unit alone up to `maxAttempts`. Resolves with each unit's output in the order given.
 * On a unit's final failure or on abort, every unit still running is stopped before it rejects:
 * no work is left running behind a failed or canceled step.
 */
export async function runUnits(
  runner: Runner,
  units: readonly Omit<WorkUnit, 'attempt'>[],
  options: RunUnitsOptions,
): Promise<UnitOutcome[]> {
  const live = new Set<WorkHandle>()
  let failure: Error | undefined
  const stopAll = async (reason: string) => {
    await Promise.all([...live].map((h) => h.stop(reason)))
  }
  const onAbort = () => {
    failure ??= abortError(options.signal)
    void stopAll(failure.message)
  }
  if (options.signal?.aborted) throw abortError(options.signal)
  options.signal?.addEventListener('abort', onAbort, { once: true })

  const runOne = async (base: Omit<WorkUnit, 'attempt'>): Promise<UnitOutcome> => {
    for (let attempt = 1; ; attempt++) {
      if (failure) throw failure
      const unit: WorkUnit = { ...base, attempt }
      if (options.inputFor) unit.input = options.inputFor(unit)
      const handle = runner.start(unit, {
        onProgress: (p) => options.onProgress?.(unit.id, p),
      })
      live.add(handle)
      const result = await handle.result
      live.delete(handle)
      options.onAttempt?.(unit, result)
      if (result.status === 'succeeded') {
        return { unit, output: result.output, attempts: attempt, durationMs: result.durationMs }
      }
      if (failure) throw failure
      const final = result.status === 'stopped' || (result.status === 'failed' && result.retriable === false)
      if (final || attempt >= options.maxAttempts) {
        const detail = result.status === 'stopped' ? `stopped: ${result.reason}` : result.error
        failure = new UnitsFailedError(unit.id, attempt, detail)
        await stopAll(`${unit.id} failed`)
        throw failure
      }
      await sleep(options.retryDelayMs * 2 ** (attempt - 1), options.signal)
    }
  }

  try {
    const settled = await Promise.allSettled(units.map(runOne))
    if (failure) throw failure
    return settled.map((s) => {
      if (s.status === 'rejected') throw s.reason
      return s.value
    })
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    await stopAll('the step ended')
  }
}

function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason
  return reason instanceof Error ? reason : new Error(typeof reason === 'string' ? reason : 'aborted')
}
