import type { LogLevel, Metadata } from './definitions.js'
import type { ErrorInfo } from './errors.js'
import type { RunStatus } from './store/types.js'

/**
 * Everything a run does, as events. The executor emits them, the store persists them, and every
 * view (terminal UI, plain and JSON reporters, `refresh logs`) reads them. The engine never prints.
 */
export interface RunEventMap {
  /** The run was created and its plan fixed. `reused` steps come from the parent run's lineage. */
  'run:start': {
    selection: string
    steps: string[]
    reused: Record<string, string>
    parentRunId: string | null
    concurrency: number
    /** The partition the run builds of its partitioned assets (absent: an unpartitioned run). */
    partition?: string
  }
  /** An attempt of a step began. */
  'step:start': { step: string; attempt: number; maxAttempts: number }
  /** A step is ready but waits for a slot in its pool. */
  'step:waiting': { step: string; pool: string; limit: number }
  /** Progress reported by the asset (throttled to about ten a second per step; the last one always kept). */
  'step:progress': { step: string; done: number; total: number | null }
  /** An attempt failed and another will follow after `delayMs`. */
  'step:retry': {
    step: string
    attempt: number
    nextAttempt: number
    maxAttempts: number
    delayMs: number
    error: ErrorInfo
  }
  'step:success': { step: string; attempt: number; durationMs: number; metadata: Metadata }
  /** The step failed for good (last attempt, or a `NonRetriableError`). */
  'step:failure': { step: string; attempt: number; durationMs: number; error: ErrorInfo; retriable: boolean }
  /**
   * The step did not run because `upstream` failed (or was skipped), or because `check`, a
   * blocking check of `upstream`, failed.
   */
  'step:skipped': { step: string; upstream: string; check?: string }
  'step:canceled': { step: string; attempt: number }
  'asset:materialized': { step: string; asset: string; attempt: number; metadata: Metadata }
  /**
   * An asset check was evaluated on the materialization `step` just made. A check that threw has
   * `passed: false` and its `error`. `stops`: it failed, blocking with severity `error`.
   */
  'check:evaluated': {
    step: string
    asset: string
    check: string
    partition: string | null
    passed: boolean
    severity: 'warn' | 'error'
    blocking: boolean
    stops: boolean
    durationMs: number
    metadata: Metadata
    error: ErrorInfo | null
  }
  /** Cancellation was requested (by a signal or by another process through the store). */
  'run:canceling': { reason: string }
  /** A pause was requested: no new step starts; running steps finish. */
  'run:pausing': { reason: string }
  /** The run stopped at a pause with `pending` steps left; `refresh resume` continues it. */
  'run:paused': { pending: number; succeeded: number; failed: number; skipped: number; canceled: number }
  /** A paused run continues (in this process), with the steps still pending. */
  'run:resumed': { steps: string[] }
  'run:end': {
    status: Extract<RunStatus, 'success' | 'failure' | 'canceled'>
    durationMs: number
    succeeded: number
    failed: number
    skipped: number
    canceled: number
    /** Blocking checks that failed (each fails the run); absent when none did. */
    checksFailed?: number
  }
  log: { step: string | null; level: LogLevel; message: string }
}

export type RunEventType = keyof RunEventMap

/** One event: `{ type, runId, ts }` and the fields its type declares. */
export type RunEvent = {
  [K in RunEventType]: { type: K; runId: string; ts: number } & RunEventMap[K]
}[RunEventType]

export type RunEventOf<K extends RunEventType> = Extract<RunEvent, { type: K }>

export type RunEventListener = (event: RunEvent) => void

export const RUN_EVENT_TYPES: readonly RunEventType[] = [
  'run:start',
  'step:start',
  'step:waiting',
  'step:progress',
  'step:retry',
  'step:success',
  'step:failure',
  'step:skipped',
  'step:canceled',
  'asset:materialized',
  'check:evaluated',
  'run:canceling',
  'run:pausing',
  'run:paused',
  'run:resumed',
  'run:end',
  'log',
]

/** The step an event is about, if any. */
export function eventStep(event: RunEvent): string | null {
  return 'step' in event ? event.step : null
}
