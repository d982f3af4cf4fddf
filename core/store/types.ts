import type { ErrorInfo } from '../errors.js'
import type { RunEvent } from '../events.js'
import type { JsonObject } from '../json.js'

export type RunStatus = 'queued' | 'started' | 'paused' | 'success' | 'failure' | 'canceled'
export type StepStatus = 'pending' | 'running' | 'retrying' | 'succeeded' | 'failed' | 'skipped' | 'canceled'
export type AttemptStatus = 'running' | 'succeeded' | 'failed' | 'canceled'

export const FINISHED_RUN_STATUSES: readonly RunStatus[] = ['success', 'failure', 'canceled']

export interface RunRecord {
  id: string
  status: RunStatus
  /** The selection as requested (for a re-execution: the parent's). */
  selection: string
  /** Step keys in plan order (the steps this run executes). */
  plan: string[]
  /** Steps taken from the parent's lineage instead of executing: key -> run that produced it. */
  reused: Record<string, string>
  /** Validated run config per asset key. */
  config: Record<string, unknown>
  tags: Record<string, string>
  origin: string
  runKey: string | null
  parentRunId: string | null
  rootRunId: string | null
  partitionKey: string | null
  createdAt: number
  startedAt: number | null
  endedAt: number | null
  ownerPid: number | null
  ownerHost: string | null
  heartbeatAt: number | null
  cancelRequestedAt: number | null
  error: ErrorInfo | null
  /** The guard this run counts against, and its limit (see `RunGuard`). */
  guard: string | null
  guardLimit: number | null
  /** The daemon that claimed this queued run to launch it (`claimLaunches`), if any. */
  launchedBy: string | null
}

export interface StepRecord {
  runId: string
  key: string
  index: number
  status: StepStatus
  attempts: number
  startedAt: number | null
  endedAt: number | null
  error: ErrorInfo | null
  /** For skipped steps, the failed upstream step. */
  reason: string | null
}

export interface AttemptRecord {
  runId: string
  step: string
  attempt: number
  status: AttemptStatus
  startedAt: number
  endedAt: number | null
  error: ErrorInfo | null
}

export interface MaterializationRecord {
  id: number
  asset: string
  runId: string
  attempt: number
  ts: number
  metadata: JsonObject
  partitionKey: string | null
}

/** One evaluation of an asset check: kept with its run and partition; the latest per check is queryable. */
export interface CheckResultRecord {
  id: number
  runId: string
  asset: string
  check: string
  /** The partition of the materialization checked (null: the asset is not partitioned). */
  partitionKey: string | null
  passed: boolean
  severity: 'warn' | 'error'
  blocking: boolean
  ts: number
  metadata: JsonObject
  /** What the check threw (it then counts as failed). */
  error: ErrorInfo | null
}

/** An event as read back from the store: what was emitted, plus its sequence number. */
export type StoredEvent = RunEvent & { id: number }

/**
 * What every entry point asks a run for (a command, `materialize()`, a sensor, a schedule, a
 * request parked during maintenance): declared once, extended by each way a run is recorded.
 */
export interface RunRequestSpec {
  /** The selection as requested (for a re-execution: the parent's). */
  selection: string
  /** Validated run config per asset key. */
  config: Record<string, unknown>
  tags?: Record<string, string>
  /** `sensor:NAME`, `schedule:NAME`, `manual`...: run keys are unique per origin. */
  origin: string
  runKey?: string
  /** Re-execute this run from failure. */
  parentRunId?: string
  /** The sensor's or schedule's guard the run counts against. */
  guard?: RunGuard
  /** The partition the run builds (checked by whoever builds the request, against the plan's definition). */
  partitionKey?: string
}

/** A run recorded directly by the process that executes it (or queued): `createRun`. */
export interface NewRun extends Omit<RunRequestSpec, 'origin' | 'guard'> {
  id: string
  origin?: string
  /** Step keys in plan order. */
  plan: string[]
  reused?: Record<string, string>
  rootRunId?: string
  status: 'queued' | 'started'
  now: number
  owner?: RunOwner
  /** Create the run even in maintenance mode (recorded in its tags). */
  force?: boolean
  /** Run guards of the config this run falls under; it is created only if each has a free slot. */
  holds?: RunHold[]
}

/** The process that owns (executes) a started run. */
export interface RunOwner {
  pid: number
  host: string
}

/**
 * A run guard of the config as applied to one run: at most `limit` started or paused runs may
 * hold `key` at once, whatever started them (a CLI, `materialize()`, the daemon).
 */
export interface RunHold {
  key: string
  limit: number
}

export type CreateRunResult =
  | { created: true; run: RunRecord }
  | { created: false; existingRunId: string }
  /** Maintenance mode is on: the request was parked instead. */
  | { created: false; parkedRequestId: number }
  /** A run guard of the config is full: `blockedBy` holds the slot (wait, or give up). */
  | { created: false; blockedBy: { runId: string; hold: string } }

/** Writes accumulated by a running executor, committed together in one transaction. */
export interface WriteBatch {
  events: RunEvent[]
  steps: Array<
    Pick<StepRecord, 'runId' | 'key' | 'status' | 'attempts' | 'startedAt' | 'endedAt' | 'error' | 'reason'>
  >
  attempts: AttemptRecord[]
  materializations: Array<Omit<MaterializationRecord, 'id'>>
  /** Asset check results, written with the events that announce them. */
  checks?: Array<Omit<CheckResultRecord, 'id'>>
}

export interface RunFilter {
  status?: RunStatus | readonly RunStatus[]
  limit?: number
  /** Only runs created before this run id (pagination, newest first). */
  before?: string
}

export interface EventFilter {
  afterId?: number
  step?: string
  types?: readonly string[]
  limit?: number
}

/**
 * A concurrency rule over runs that carry the same guard key, checked atomically when a run is
 * requested and when it is launched. `concurrency` counts started and paused runs.
 * - coalesce: extra requests while runs are in flight become exactly one pending follow-up run;
 * - skip: extra requests are dropped and recorded with the reason;
 * - queue: every request is kept and launched in order as slots free.
 */
export interface RunGuard {
  key: string
  concurrency: number
  onConflict: 'coalesce' | 'skip' | 'queue'
}

/** A request for a run from a sensor, a schedule or a command: created queued, launched later. */
export interface RunRequest extends RunRequestSpec {
  id: string
  plan: string[]
  /** With `parentRunId`: steps not run again, and the run whose materialization each reuses. */
  reused?: Record<string, string>
  /** In maintenance mode, keep only this many parked requests of the same origin (a schedule's missed policy). */
  parkKeep?: number
  /** Run guards of the config this run falls under, checked when it is launched. */
  holds?: RunHold[]
  now: number
}

export type RequestOutcome =
  | { outcome: 'created'; runId: string }
  /** The run key was already used; `runId` is the run it created. */
  | { outcome: 'duplicate'; runId: string }
  /** Merged into the guard's pending follow-up run. */
  | { outcome: 'coalesced'; runId: string }
  | { outcome: 'skipped'; reason: string; blockingRunId: string | null }
  /** Maintenance mode is on: kept to be replayed when it goes off. */
  | { outcome: 'parked'; requestId: number }

export type InstigatorKind = 'sensor' | 'schedule'
/** `default` = never switched at run time: the definition's default status applies. */
export type InstigatorStatus = 'on' | 'off' | 'default'

export interface InstigatorState {
  name: string
  kind: InstigatorKind
  status: InstigatorStatus
  cursor: string | null
  /** When it was last turned on (schedules never fire for times before this). */
  enabledAt: number | null
  updatedAt: number
  lastTickAt: number | null
  lastTickId: number | null
}

export type TickStatus = 'success' | 'skipped' | 'failure'

export interface TickRecord {
  id: number
  instigator: string
  kind: InstigatorKind
  /** The tick's own time: the evaluation time of a sensor, the cron time of a schedule. */
  tickTime: number
  startedAt: number
  endedAt: number | null
  status: TickStatus
  runIds: string[]
  skipReason: string | null
  error: ErrorInfo | null
  cursor: string | null
  /** Identical skipped ticks in a row are kept as one row: how many it stands for. */
  repeats: number
}

export interface NewTick {
  instigator: string
  kind: InstigatorKind
  tickTime: number
  startedAt: number
  endedAt: number
  status: TickStatus
  skipReason?: string
  error?: ErrorInfo
  /** The new cursor; `undefined` leaves the stored cursor as it is (a failed tick never moves it). */
  cursor?: string | null
  /** Keys added to dynamic partitions definitions (by name) with the tick, before its requests. */
  addDynamicPartitions?: Record<string, readonly string[]>
  requests?: RunRequest[]
}

export interface CommittedTick {
  tick: TickRecord
  outcomes: RequestOutcome[]
}

export interface Lease {
  name: string
  holder: string
  acquiredAt: number
  expiresAt: number
}

/** A daemon's claim on a sensor's or schedule's tick (`claimTicks`): the last slot claimed, by whom, when. */
export interface TickClaim {
  name: string
  slot: number
  holder: string
  claimedAt: number
  /** When its tick was committed (or the claim given back); null while it is being evaluated. */
  doneAt: number | null
}

/** Automation on or off, for one asset or for all (`default`: the asset's definition decides, which is on). */
export type AutomationStatus = 'on' | 'off' | 'default'

/**
 * Where the automation evaluator stands: the number of its last committed tick, and the last event
 * and check result it folded. Ticks are committed compare-and-set on `tick`: of two evaluators
 * (a daemon that lost its lease and the one that took it), one commits each tick.
 */
export interface AutomationCursor {
  tick: number
  /** The last event (materialization, failed step) folded. */
  eventId: number
  /** The last check result folded. */
  checkId: number
  /** When the tick was evaluated. */
  evaluatedAt: number
}

/** An automated asset's row: its on/off switch and the evaluator's state for it. */
export interface AutomationAssetRecord {
  asset: string
  status: AutomationStatus
  /** The evaluator's state for the asset (JSON text, opaque to the store); null before its first tick. */
  state: string | null
  /** The tick that wrote `state` (0 before any). */
  tick: number
  updatedAt: number
}

/** Everything the evaluator reads back when it starts (or finds that another one committed). */
export interface AutomationStateRecord {
  /** null: no tick committed yet. */
  cursor: AutomationCursor | null
  /** The global switch (`refresh automation off` with no asset). */
  status: AutomationStatus
  assets: AutomationAssetRecord[]
}

/**
 * One evaluation of an asset's automation condition, kept when its result or its operands' values
 * changed since the asset's previous one (the latest 50 per asset are kept).
 */
export interface AutomationEvaluationRecord {
  id: number
  tick: number
  asset: string
  evaluatedAt: number
  /** How many partitions were true (0 or 1 for an unpartitioned asset), of `total`. */
  trueCount: number
  total: number
  /** The condition tree with each node's value (JSON text written by the evaluator). */
  tree: string
  /** The runs the evaluation requested (created, or found by run key, or coalesced into). */
  runIds: string[]
}

/** A tick of the automation evaluator, committed atomically (`RunStore.commitAutomationTick`). */
export interface AutomationTick {
  /** The tick the stored cursor must be at (null: none committed yet). */
  expectedTick: number | null
  cursor: AutomationCursor
  requests: RunRequest[]
  /** Evaluations to keep; `requests` are indexes into the tick's `requests`. */
  evaluations: Array<Omit<AutomationEvaluationRecord, 'id' | 'runIds'> & { requests: number[] }>
  /**
   * The assets' new states, computed from the requests' outcomes (a request a guard skipped is
   * not marked requested): called inside the transaction, after the requests, before it commits.
   */
  states(outcomes: readonly RequestOutcome[]): Array<{ asset: string; state: string }>
  now: number
}

export type AutomationCommit =
  | { committed: true; outcomes: RequestOutcome[]; evaluationIds: number[] }
  /** The stored cursor was not at `expectedTick`: another evaluator committed; nothing was written. */
  | { committed: false; cursor: AutomationCursor | null }

/** A step of a queued or started run that has yet to finish: its asset (and partition) is in progress. */
export interface InFlightStep {
  runId: string
  asset: string
  /** The run's partition key or range (null: unpartitioned). */
  partitionKey: string | null
}

/**
 * The tables a store's history is copied with (`refresh store copy`), in the order they are
 * written: runs before what refers to them. Leases, pool slots and tick claims belong to running
 * processes and are not copied.
 */
export const HISTORY_TABLES = [
  'runs',
  'steps',
  'attempts',
  'events',
  'materializations',
  'check_results',
  'instigators',
  'ticks',
  'run_keys',
  'run_holds',
  'parked_requests',
  'settings',
  'dynamic_partitions',
  'dynamic_partition_removals',
  'backfills',
  'automation',
  'automation_evaluations',
] as const

export type HistoryTable = (typeof HISTORY_TABLES)[number]

/**
 * The order each history table is copied in (its key; the SQL is the same in both stores), runs
 * in the order they were requested: `runsOrder` names that column (SQLite's rowid, Postgres' seq).
 */
export function historyOrder(runsOrder: string): Record<HistoryTable, string> {
  return {
    runs: runsOrder,
    steps: 'run_id, plan_index',
    attempts: 'run_id, step_key, attempt',
    events: 'id',
    materializations: 'id',
    check_results: 'id',
    instigators: 'name',
    ticks: 'id',
    run_keys: 'origin, run_key',
    run_holds: 'run_id, hold',
    parked_requests: 'id',
    settings: 'key',
    dynamic_partitions: 'seq',
    dynamic_partition_removals: 'removed_seq',
    backfills: 'created_at, id',
    automation: 'asset',
    automation_evaluations: 'id',
  }
}

/** Rows of one history table as the stores keep them (the same column names in every store). */
export interface HistoryChunk {
  table: HistoryTable
  rows: Array<Record<string, unknown>>
}

/** The lease a running daemon renews to say it is alive: `daemon/<holder>` (see `claimLaunches`). */
export const DAEMON_PRESENCE_PREFIX = 'daemon/'

/** The maintenance gate, persisted in the store and read in the transaction that creates a run. */
export interface MaintenanceState {
  reason: string
  /** Who turned it on (user@host). */
  by: string
  since: number
  drainTimeoutMs: number
}

export interface BackupRecord {
  at: number
  ok: boolean
  /** Where the store backup and the manifest were written. */
  location: string | null
  detail: string
}

/** A stored shape: optional fields of `T` come back as null. */
type Stored<T> = { [K in keyof T]-?: undefined extends T[K] ? Exclude<T[K], undefined> | null : T[K] }

/** A run request kept while maintenance mode was on, self-contained so it can be replayed later. */
export type ParkedRequest = Stored<Omit<RunRequestSpec, 'tags'>> & {
  id: number
  tags: Record<string, string>
  createdAt: number
  replayedAt: number | null
  replayRunId: string | null
  replayOutcome: string | null
}

/** A parked request as its replayer built it: the run request to make, or why none can be made. */
export type ParkedReplay = { parkedId: number; request: RunRequest } | { parkedId: number; failed: string }

/** What replaying a parked request gave: a request's outcome, or why it could not be built. */
export type ReplayOutcome = RequestOutcome | { outcome: 'failed'; reason: string }

/** A pool slot held by a running step. */
export interface PoolSlot {
  pool: string
  runId: string
  step: string
  acquiredAt: number
}

export interface RecoverOptions {
  now?: number
  /** A run owned by another host is interrupted when its heartbeat is older than this (default 60 s). */
  staleAfterMs?: number
  /** Only consider these runs. */
  runIds?: readonly string[]
}

export interface RecoveredRun {
  runId: string
  reason: string
}

/** A started run whose owner is gone, as readers show it before recovery marks it failed. */
export interface InterruptedRun extends RecoveredRun {
  /** The owner's last sign of life (its heartbeat or its latest event): when the run really stopped. */
  lastSeenAt: number
}

/**
 * How often a running run writes its heartbeat: often enough that a run killed at any point is
 * seen to have lasted as long as it did (one short write a second per run).
 */
export const HEARTBEAT_INTERVAL_MS = 1_000

/**
 * What a prune removes (`RunStore.pruneCandidates`, `pruneBatch`): finished runs and ticks older
 * than a cutoff, minus everything still needed (see `pruneCandidates` for the rules).
 */
export interface PrunePolicy {
  /** Runs that ended `success` or `canceled` before this time (ms) are pruned; so are ticks that ended before it. */
  endedBefore: number
  /** Runs that ended `failure` are pruned only when they ended before this time (ms). */
  failedEndedBefore: number
  /**
   * Runs kept whatever their age, with their lineage: what the caller knows is still needed
   * outside the store (the runs the promoted alias and its rollback entries name).
   */
  keepRunIds: readonly string[]
}

/** The kinds of records a prune deletes. */
export const PRUNE_KINDS = ['runs', 'steps', 'attempts', 'events', 'materializations', 'ticks'] as const
export type PruneKind = (typeof PRUNE_KINDS)[number]

/** How many records of one kind, and the times (ms) of the oldest and the newest of them (null when none). */
export interface PruneCount {
  count: number
  oldest: number | null
  newest: number | null
}

/**
 * What a prune would delete now, per kind. The times: a run's end, a step's and an attempt's
 * start, an event's and a materialization's time, a tick's end.
 */
export type PrunePlan = Record<PruneKind, PruneCount>

/** What one prune batch deleted, per kind. */
export type PruneDeleted = Record<PruneKind, number>

/** A partitioned step's outcome, as partition statuses are folded from (see `RunStore.partitionEvents`). */
export interface PartitionEvent {
  /** The event's id: the cursor a status is folded up to. */
  id: number
  asset: string
  /** The run's partition key (null for an unpartitioned run: it stands for every partition). */
  partitionKey: string | null
  kind: 'materialized' | 'failed'
  runId: string
  ts: number
}

/** The range-compressed partition subsets of one asset, as `PartitionSubset.toJSON()` writes them. */
export interface PartitionStatusSubsets {
  materialized: number[]
  failed: number[]
  stale: number[]
}

/** An asset's partition status as folded so far: up to the event `cursor`, over the key space `version`. */
export interface StoredPartitionStatus {
  asset: string
  cursor: number
  /** What the indices are over (the definition and its dynamic keys); another version is rebuilt. */
  version: string
  status: PartitionStatusSubsets
  updatedAt: number
}

export type BackfillStatus = 'requested' | 'canceling' | 'canceled' | 'failed' | 'completed'

/** What a backfill asks for: fixed when it is created. */
export interface BackfillSpec {
  /** The selection as given (`daily_events+`). */
  selection: string
  /** The asset keys of each run, in plan order. */
  plan: string[]
  /** The partitions definition the subsets are over (its `signature`) and, for messages, `describe()`. */
  partitions: { signature: string; description: string }
  /** Partitions per run (a run then receives a range); 1 by default. */
  perRun: number
  /** Runs of this backfill in flight at once (queued or started); null: no limit of its own. */
  maxRuns: number | null
  /** Run config per asset key, as the runs get it. */
  config: Record<string, unknown>
  tags: Record<string, string>
}

/** Where a backfill is: range-compressed subsets of partition indices (`PartitionSubset.toJSON()`). */
export interface BackfillState {
  target: number[]
  /** Partitions a run was created for (in flight or ended). */
  launched: number[]
  succeeded: number[]
  failed: number[]
  /** Partitions not attempted because a partition they depend on failed (or the backfill was canceled). */
  skipped: number[]
  /** The last run-end event folded. */
  cursor: number
  /** Why the backfill ended failed without running out (its assets changed in the config). */
  error?: string
  /** Runs a crash interrupted, to re-execute from failure (their partitions stay in flight). */
  resume?: string[]
}

export interface BackfillRecord {
  id: string
  status: BackfillStatus
  spec: BackfillSpec
  state: BackfillState
  /** Bumped by every save: saves are compare-and-set on it. */
  version: number
  createdAt: number
  updatedAt: number
  endedAt: number | null
}

/** What `submitBackfillRun` did. */
export type BackfillSubmitOutcome =
  | { outcome: 'created'; runId: string; version: number }
  /** A run guard of the config is full, or maintenance mode is on: nothing was created. */
  | { outcome: 'blocked'; reason: string }
  /** The backfill was saved by someone else since it was read: read it again. */
  | { outcome: 'stale' }
