import type { LogLevel } from '../core/definitions.js'
import type { PruneDeleted, ReplayOutcome, RequestOutcome, TickStatus } from '../core/store/types.js'

/**
 * Everything the daemon does, as typed events (as `RunEventMap` is for runs): the daemon, its
 * sensors and schedules, maintenance replays and alerts emit these; the CLI formats them as text
 * or JSON lines. The daemon never formats text.
 */
export interface DaemonEventMap {
  /** The daemon starts on a store (its display name, never a secret) with its sensors and schedules. */
  starting: { store: string; instigators: number; config: string }
  /** The HTTP endpoint (`--http`) listens. */
  http: { address: string }
  /** Another daemon holds the store's lease; this one waits to take over (`expiresInMs`). */
  'lease:waiting': { holder: string; expiresInMs: number }
  'lease:acquired': { holder: string }
  /** Another daemon took the lease (this one's renewals stopped long enough). */
  'lease:lost': { holder: string }
  /**
   * The daemons alive on a shared (Postgres) store changed: sensors and schedules are spread over
   * `daemons` (their holders), and this one now evaluates `instigators` of them.
   */
  'daemons:changed': { daemons: string[]; instigators: number }
  /** A sensor or schedule ticked; a skip is reported once per change of reason. */
  tick: {
    kind: 'sensor' | 'schedule'
    name: string
    status: TickStatus
    outcomes: RequestOutcome[]
    skipReason: string | null
    error: string | null
  }
  /** A line a sensor logged with `ctx.log`. */
  'sensor:log': { name: string; message: string }
  /** A request parked during maintenance was replayed. */
  'parked:replayed': { requestId: number; origin: string; selection: string; outcome: ReplayOutcome }
  /** A queued run was started: as a local process (`pid`) or an ECS task (`task`, its ARN). */
  'run:launched': {
    runId: string
    selection: string
    /** The partition the run builds (null: not a partitioned run). */
    partition: string | null
    origin: string
    pid: number | undefined
    task: string | null
  }
  /** `--max-runs` is reached: `queued` launchable runs wait for one of the `running` to end (said once per wait). */
  'runs:held': { queued: number; running: number; maxRuns: number }
  /** Automation requested runs (one event per tick that requested some). */
  'automation:requested': {
    tick: number
    runs: Array<{ assets: string[]; partitionKey: string | null; outcome: RequestOutcome }>
  }
  /** A backfill's runs were created (queued; launched like any other). */
  'backfill:submitted': { backfillId: string; runs: number; done: number; failed: number; total: number }
  /** A backfill ended. */
  'backfill:ended': {
    backfillId: string
    status: string
    succeeded: number
    failed: number
    skipped: number
    total: number
  }
  /** A launched run's process ended; `status` is the run's, as the store has it. */
  'run:exited': {
    runId: string
    status: string
    code: number | null
    signal: string | null
    stderrTail: string
  }
  /** A started run whose owner is gone was closed: failed as interrupted, or canceled when that was asked. */
  'run:recovered': { runId: string; reason: string; status: 'failure' | 'canceled' }
  /** The run launcher stopped the tasks still running of runs recovered as interrupted (`error` when it could not). */
  'launcher:recovered': { runIds: string[]; stopped: string[]; error: string | null }
  /** An asset's `recover` hook ran for runs found interrupted (`error` when it failed). */
  'recovery:hook': { asset: string; runIds: string[]; error: string | null }
  /** SIGTERM: ticking stopped; runs in flight may finish within the grace period. */
  stopping: { running: number; graceMs: number }
  /** A run in flight is canceled: the grace period is over, or a cancel was requested. */
  'run:canceling': { runId: string; reason: string }
  /** A launched run's process is stopped for `reason`: `how` is the signal, or StopTask for an ECS task. */
  'run:stopping': { runId: string; reason: string; how: string }
  stopped: { holder: string }
  /** Something failed that the daemon goes on after (a busy store, a bug in an iteration). */
  error: { message: string; stack: string | null }
  /** The daily prune (`retention` in the config) starts; `keptForAlias`: runs the promoted alias refers to. */
  'prune:start': { olderThan: string; keepFailed: string; keptForAlias: number }
  /**
   * The prune is over: what it deleted, in how many short transactions, and the longest of them.
   * `complete` is false when the daemon stopped (or lost its lease) first; the rest goes next time.
   */
  'prune:done': {
    olderThan: string
    keepFailed: string
    deleted: PruneDeleted
    batches: number
    durationMs: number
    longestBatchMs: number
    complete: boolean
  }
  /** An alert was delivered, or could not be delivered to a target (`failures`). */
  alert: {
    alert: string
    runId: string | null
    /** The asset, for `asset_stale` and `asset_fresh`. */
    asset?: string | null
    failures: Array<{ target: string; attempts: number; error: string }>
  }
}

export type DaemonEventType = keyof DaemonEventMap

/** One daemon event: its type, when, how important, and its fields. */
export type DaemonEvent = {
  [K in DaemonEventType]: { type: K; ts: number; level: LogLevel } & DaemonEventMap[K]
}[DaemonEventType]

export type DaemonEventListener = (event: DaemonEvent) => void
