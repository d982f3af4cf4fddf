import type { Metadata } from '../../core/definitions.js'
import type { RunEvent, RunEventOf } from '../../core/events.js'
import { firstLine } from '../format.js'

/**
 * What the terminal view shows, as a pure reducer over run events: `reduce(state, event)` never
 * reads the clock or the terminal, so the view's logic is tested with plain event lists, and the
 * ink component on top only draws a state at a given `now`.
 */

/** Where a step is; the fields each status needs and no others. */
export type StepPhase =
  | { status: 'pending' }
  | { status: 'waiting'; pool: string; limit: number }
  | { status: 'running'; attempt: number; maxAttempts: number; attemptStartedAt: number }
  | {
      status: 'retrying'
      /** The attempt that failed. */
      attempt: number
      maxAttempts: number
      error: string
      /** When the next attempt is due. */
      retryAt: number
    }
  | { status: 'succeeded'; attempts: number; durationMs: number; metadata: Metadata }
  | { status: 'failed'; attempts: number; durationMs: number; error: string }
  | { status: 'skipped'; upstream: string; check?: string }
  | { status: 'canceled'; attempts: number }

export type StepStatusText = StepPhase['status']

export interface StepProgress {
  done: number
  total: number | null
  /** Units per second since the attempt started, when it can be told. */
  rate: number | null
}

/** One asset check evaluated on a step's materialization. */
export interface CheckView {
  name: string
  passed: boolean
  severity: 'warn' | 'error'
  /** It failed, blocking with severity error: what is downstream was skipped. */
  stops: boolean
  /** The error it threw, first line. */
  error: string | null
}

export interface StepView {
  key: string
  phase: StepPhase
  /** The asset checks evaluated on this step's materialization, in order. */
  checks?: CheckView[]
  /** Start of the first attempt. */
  startedAt: number | null
  endedAt: number | null
  progress: StepProgress | null
  /** The latest log line of the step (shown while it runs). */
  lastLog: string | null
}

export interface RunEnd {
  status: RunEventOf<'run:end'>['status'] | 'paused'
  durationMs: number
  succeeded: number
  failed: number
  skipped: number
  canceled: number
  /** Blocking checks that failed. */
  checksFailed?: number
}

export interface ViewState {
  runId: string | null
  selection: string
  /** The partition the run builds (null: an unpartitioned run). */
  partition: string | null
  parentRunId: string | null
  /** Steps taken from the parent run's lineage instead of executing. */
  reused: string[]
  startedAt: number | null
  /** Every step of the plan, in plan order. */
  steps: StepView[]
  /** Keys of finished steps in the order they finished: the rows written once. */
  finished: string[]
  /** Set once cancellation was requested (Ctrl-C or `refresh cancel`). */
  canceling: string | null
  /** The latest run-level warning or error log. */
  note: string | null
  end: RunEnd | null
}

export const initialViewState: ViewState = {
  runId: null,
  selection: '',
  partition: null,
  parentRunId: null,
  reused: [],
  startedAt: null,
  steps: [],
  finished: [],
  canceling: null,
  note: null,
  end: null,
}

const FINISHED: ReadonlySet<StepStatusText> = new Set(['succeeded', 'failed', 'skipped', 'canceled'])

export function isFinished(step: StepView): boolean {
  return FINISHED.has(step.phase.status)
}

/** The next view state after one event. Pure: the same inputs always give the same state. */
export function reduce(state: ViewState, event: RunEvent): ViewState {
  switch (event.type) {
    case 'run:start':
      return {
        ...initialViewState,
        runId: event.runId,
        selection: event.selection,
        partition: event.partition ?? null,
        parentRunId: event.parentRunId,
        reused: Object.keys(event.reused),
        startedAt: event.ts,
        steps: event.steps.map((key) => ({
          key,
          phase: { status: 'pending' },
          startedAt: null,
          endedAt: null,
          progress: null,
          lastLog: null,
        })),
      }
    case 'step:waiting':
      return update(state, event.step, () => ({
        phase: { status: 'waiting', pool: event.pool, limit: event.limit },
      }))
    case 'step:start':
      return update(state, event.step, (s) => ({
        phase: {
          status: 'running',
          attempt: event.attempt,
          maxAttempts: event.maxAttempts,
          attemptStartedAt: event.ts,
        },
        startedAt: s.startedAt ?? event.ts,
        progress: null,
      }))
    case 'step:progress':
      return update(state, event.step, (s) => {
        const since = s.phase.status === 'running' ? s.phase.attemptStartedAt : (s.startedAt ?? event.ts)
        const seconds = (event.ts - since) / 1000
        return {
          progress: {
            done: event.done,
            total: event.total,
            rate: seconds >= 0.2 && event.done > 0 ? event.done / seconds : null,
          },
        }
      })
    case 'step:retry':
      return update(state, event.step, () => ({
        phase: {
          status: 'retrying',
          attempt: event.attempt,
          maxAttempts: event.maxAttempts,
          error: firstLine(event.error.message),
          retryAt: event.ts + event.delayMs,
        },
      }))
    case 'step:success':
      return finish(state, event.step, event.ts, {
        status: 'succeeded',
        attempts: event.attempt,
        durationMs: event.durationMs,
        metadata: event.metadata,
      })
    case 'step:failure':
      return finish(state, event.step, event.ts, {
        status: 'failed',
        attempts: event.attempt,
        durationMs: event.durationMs,
        error: `${event.error.name}: ${firstLine(event.error.message)}`,
      })
    case 'step:skipped':
      return finish(
        state,
        event.step,
        event.ts,
        event.check === undefined
          ? { status: 'skipped', upstream: event.upstream }
          : { status: 'skipped', upstream: event.upstream, check: event.check },
      )
    case 'check:evaluated':
      return update(state, event.step, (s) => ({
        checks: [
          ...(s.checks ?? []),
          {
            name: event.check,
            passed: event.passed,
            severity: event.severity,
            stops: event.stops,
            error: event.error ? firstLine(event.error.message) : null,
          },
        ],
      }))
    case 'step:canceled':
      return finish(state, event.step, event.ts, { status: 'canceled', attempts: event.attempt })
    case 'log':
      if (event.step === null) {
        return event.level === 'warn' || event.level === 'error' ? { ...state, note: event.message } : state
      }
      return update(state, event.step, () => ({ lastLog: firstLine(event.message) }))
    case 'run:canceling':
      return { ...state, canceling: event.reason }
    case 'run:pausing':
      return { ...state, note: `pausing (${event.reason}): running steps finish, no new step starts` }
    case 'run:paused':
      return {
        ...state,
        note: `paused with ${event.pending} step(s) pending; continue with: refresh resume ${event.runId}`,
        end: {
          status: 'paused',
          durationMs: event.ts - (state.startedAt ?? event.ts),
          succeeded: event.succeeded,
          failed: event.failed,
          skipped: event.skipped,
          canceled: event.canceled,
        },
      }
    case 'run:resumed':
      return { ...state, note: null }
    case 'run:end':
      return {
        ...state,
        end: {
          status: event.status,
          durationMs: event.durationMs,
          succeeded: event.succeeded,
          failed: event.failed,
          skipped: event.skipped,
          canceled: event.canceled,
          ...(event.checksFailed ? { checksFailed: event.checksFailed } : {}),
        },
      }
    case 'asset:materialized':
      return state
  }
}

function update(state: ViewState, key: string, change: (step: StepView) => Partial<StepView>): ViewState {
  const i = state.steps.findIndex((s) => s.key === key)
  if (i === -1) return state
  const steps = state.steps.slice()
  steps[i] = { ...steps[i]!, ...change(steps[i]!) }
  return { ...state, steps }
}

function finish(state: ViewState, key: string, ts: number, phase: StepPhase): ViewState {
  const next = update(state, key, () => ({ phase, endedAt: ts }))
  if (next === state || state.finished.includes(key)) return next
  return { ...next, finished: [...next.finished, key] }
}
