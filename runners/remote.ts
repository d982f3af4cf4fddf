/**
 * What the ECS and EC2 runners share: one remote unit of work (a task, an instance) per unit,
 * what a step uses pinned once per (run, asset), and one poll loop that describes the running
 * units in batches of 100 (so at most ceil(running/100) calls a poll). A backend supplies how a
 * unit is launched, described and stopped; the shell here keeps the handles, the pins, the poll
 * loop and the stats.
 */
import { createHash } from 'node:crypto'
import { AwsCallError } from '../aws/service.js'
import type { Runner, WorkHandle, WorkListener, WorkResult, WorkUnit } from './types.js'

export const DESCRIBE_BATCH = 100

/** Poll counters every remote runner reports (benchmarks, `refresh show`). */
export interface PollStats {
  polls: number
  /** The most describe calls one poll made, and the units it was polling then. */
  maxCallsPerPoll: { calls: number; running: number }
}

/** The options every remote runner (ECS, EC2) takes for its polling and launching. */
export interface RemoteRunnerOptions {
  /** How often running units are described and their workers' statuses read (default 5000 ms). */
  pollIntervalMs?: number
  /** Launch calls (RunTask, RunInstances) in flight at once, so that 1,000 ranges do not start with 1,000 throttled calls (default 10). */
  launchConcurrency?: number
  /** Called after each poll: the units it covered and the describe calls it made. */
  onPoll?(poll: { running: number; calls: number }): void
}

/** What a remote runner did, for benchmarks and `refresh show`. */
export interface RemoteRunnerStats extends PollStats {
  /** AWS calls by action, retries included. */
  calls: Record<string, number>
}

/** What a handle may ask of the runner that made it. */
export interface RemoteShell<P> {
  /** What the step uses (a task definition revision, a launch template version), resolved once per (run, asset). */
  pin(unit: WorkUnit): Promise<P>
  /** The unit is running remotely as `id` (a task ARN, an instance id): poll it from now on. */
  onRunning(handle: RemoteHandle<P>): void
  onSettled(handle: RemoteHandle<P>): void
}

/**
 * One unit on a remote backend. Subclasses launch it (`launch`), stop it (`stopRemote`) and
 * settle it from what a poll saw; this base keeps the result, the progress and the stop reason.
 */
export abstract class RemoteHandle<P> implements WorkHandle {
  readonly unit: WorkUnit
  readonly result: Promise<WorkResult>
  /** The task ARN or instance id, once launched. */
  remoteId: string | undefined
  protected stopReason: string | undefined
  protected settled = false
  protected readonly shell: RemoteShell<P>
  private resolveResult!: (result: WorkResult) => void
  private readonly listener: WorkListener
  private readonly started = performance.now()
  private lastDone = -1

  constructor(unit: WorkUnit, listener: WorkListener, shell: RemoteShell<P>) {
    this.unit = unit
    this.listener = listener
    this.shell = shell
    this.result = new Promise((resolve) => {
      this.resolveResult = resolve
    })
  }

  get where(): string | undefined {
    return this.remoteId
  }

  /** Starts the unit remotely; settles it when that fails. Never throws. */
  abstract launch(): Promise<void>
  /** Stops the remote unit (StopTask, TerminateInstances) and settles it. */
  protected abstract stopRemote(reason: string): Promise<void>
  /** Its status cannot be known: stop the remote unit (so that a retry does not run beside it) and fail. */
  abstract abandon(message: string, retriable: boolean): Promise<void>

  settle(result: WorkResult): void {
    if (this.settled) return
    this.settled = true
    this.shell.onSettled(this)
    this.resolveResult(result)
  }

  protected get ms(): number {
    return performance.now() - this.started
  }

  fail(error: string, retriable: boolean): void {
    this.settle({ status: 'failed', error, exitCode: null, signal: null, durationMs: this.ms, retriable })
  }

  protected report(done: number, total: number | null): void {
    if (done === this.lastDone) return
    this.lastDone = done
    this.listener.onProgress?.({ done, total })
  }

  async stop(reason = 'stopped'): Promise<void> {
    if (this.settled) return
    const first = this.stopReason === undefined
    this.stopReason ??= reason
    this.onStopRequested()
    // not launched yet: the launch path sees the reason and settles (or stops what it got)
    if (first && this.remoteId !== undefined) await this.stopRemote(this.stopReason)
    await this.result
  }

  /** Called when a stop is asked for (to wake a launch that waits, say). */
  protected onStopRequested(): void {}
}

export interface RemoteRunnerSpec<P, H extends RemoteHandle<P>> {
  name: string
  pollIntervalMs: number
  stats: PollStats
  /** Resolves what a step uses; called once per (run, asset), again after a failure. */
  pin(unit: WorkUnit): Promise<P>
  handle(unit: WorkUnit, listener: WorkListener, shell: RemoteShell<P>): H
  /** Describes up to 100 running handles in one call and lets each observe what it saw. */
  describe(batch: H[]): Promise<void>
  /** Called after each poll: the units it covered and the describe calls it made. */
  onPoll?(poll: { running: number; calls: number }): void
  /** Frees the runner's clients once every handle is stopped. */
  dispose(): void
  recover(runIds: readonly string[]): Promise<string[]>
}

/** A runner over a remote backend: handles, pins, the batched poll loop, close. */
export function remoteRunner<P, H extends RemoteHandle<P>>(
  spec: RemoteRunnerSpec<P, H>,
): Runner & { readonly running: ReadonlyMap<string, H> } {
  const pinned = new Map<string, Promise<P>>()
  const running = new Map<string, H>()
  const live = new Set<H>()
  let polling = false
  let closed = false

  const poll = async (): Promise<void> => {
    const handles = [...running.values()]
    const batches: H[][] = []
    for (let i = 0; i < handles.length; i += DESCRIBE_BATCH)
      batches.push(handles.slice(i, i + DESCRIBE_BATCH))
    await Promise.all(
      batches.map(async (batch) => {
        try {
          await spec.describe(batch)
        } catch (error) {
          // throttling was retried inside the call; what is left will not get better by polling
          const message = error instanceof Error ? error.message : String(error)
          const retriable = !(error instanceof AwsCallError) || error.retriable
          await Promise.all(batch.map((h) => h.abandon(message, retriable)))
        }
      }),
    )
    spec.stats.polls++
    if (batches.length > spec.stats.maxCallsPerPoll.calls)
      spec.stats.maxCallsPerPoll = { calls: batches.length, running: handles.length }
    spec.onPoll?.({ running: handles.length, calls: batches.length })
  }

  const ensurePolling = () => {
    if (polling) return
    polling = true
    void (async () => {
      while (running.size > 0) {
        await new Promise((r) => setTimeout(r, spec.pollIntervalMs))
        if (running.size > 0) await poll()
      }
      polling = false
    })()
  }

  const shell: RemoteShell<P> = {
    pin(unit) {
      const key = `${unit.runId ?? ''}\u0000${unit.asset ?? ''}`
      let p = pinned.get(key)
      if (!p) {
        p = spec.pin(unit)
        p.catch(() => pinned.delete(key))
        pinned.set(key, p)
      }
      return p
    },
    onRunning(h) {
      running.set(h.remoteId!, h as H)
      ensurePolling()
    },
    onSettled(h) {
      if (h.remoteId) running.delete(h.remoteId)
      live.delete(h as H)
    },
  }

  const close = async (): Promise<void> => {
    closed = true
    await Promise.all([...live].map((h) => h.stop('the runner is closed')))
    spec.dispose()
  }

  return {
    name: spec.name,
    running,
    close,
    [Symbol.asyncDispose]: close,
    recover: (runIds) => spec.recover(runIds),
    start(unit: WorkUnit, listener: WorkListener = {}): WorkHandle {
      const handle = spec.handle(unit, listener, shell)
      if (closed) {
        handle.settle({ status: 'stopped', reason: 'the runner is closed', durationMs: 0 })
        return handle
      }
      live.add(handle)
      void handle.launch()
      return handle
    },
  }
}

/** 64 hex characters (ECS accepts up to 64), the same for the same (run, unit, attempt, placement). */
export function clientToken(unit: Pick<WorkUnit, 'runId' | 'id' | 'attempt'>, placement = 1): string {
  return createHash('sha256')
    .update(`${unit.runId ?? ''}\n${unit.id}\n${unit.attempt}\n${placement}`)
    .digest('hex')
}
