import { hostname } from 'node:os'
import type { ErrorInfo } from '../errors.js'
import type { RunEvent } from '../events.js'
import { pidAlive } from '../processes.js'
import type { RecoverOptions, RunRecord, StepRecord } from './types.js'

/** How old a heartbeat of another host's run must be before the run counts as interrupted. */
export const DEFAULT_STALE_AFTER_MS = 60_000

/**
 * Why a started run's owner counts as gone, or undefined while it looks alive: on this host, when
 * its pid no longer exists; on another host, when its heartbeat is older than `staleAfterMs`. (A
 * live pid with a heartbeat ten times that old is taken as a reused pid.) The same rule for every
 * store.
 */
export function interruptedReason(run: RunRecord, options: RecoverOptions = {}): string | undefined {
  const now = options.now ?? Date.now()
  const staleAfter = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS
  const beat = run.heartbeatAt ?? run.startedAt ?? run.createdAt
  const age = now - beat
  if (run.ownerHost === hostname() && run.ownerPid !== null) {
    if (!pidAlive(run.ownerPid)) return `its process (pid ${run.ownerPid}) is gone`
    if (age > staleAfter * 10) return `its heartbeat stopped ${Math.round(age / 1000)} s ago`
    return undefined
  }
  if (age > staleAfter)
    return `its heartbeat stopped ${Math.round(age / 1000)} s ago (owner ${run.ownerHost ?? '?'}:${run.ownerPid ?? '?'})`
  return undefined
}

/** The error a recovered run is closed with. */
export function interruptedError(runId: string, reason: string): ErrorInfo {
  return {
    name: 'InterruptedError',
    message: `run interrupted: ${reason}. Re-execute it from failure with \`refresh retry ${runId}\`.`,
  }
}

/** The error an abandoned run is closed with. */
export function abandonedError(status: 'failure' | 'canceled', reason: string): ErrorInfo {
  return { name: status === 'canceled' ? 'CanceledError' : 'Error', message: reason }
}

/**
 * The events that close a run no executor will finish (its error as a log line, then `run:end`
 * with the step counts), so that followers of the run's events see it end.
 */
export function closingEvents(
  run: RunRecord,
  steps: readonly StepRecord[],
  status: 'failure' | 'canceled',
  error: ErrorInfo,
  now: number,
  endedAt: number,
): RunEvent[] {
  const count = (s: string) => steps.filter((step) => step.status === s).length
  return [
    { type: 'log', runId: run.id, ts: now, step: null, level: 'error', message: error.message },
    {
      type: 'run:end',
      runId: run.id,
      ts: now,
      status,
      durationMs: endedAt - (run.startedAt ?? run.createdAt),
      succeeded: count('succeeded'),
      failed: count('failed'),
      skipped: count('skipped'),
      canceled: count('canceled'),
    },
  ]
}
