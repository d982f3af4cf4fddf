import { type ErrorInfo, StoreError } from '../errors.js'
import type {
  AttemptRecord,
  AutomationCommit,
  AutomationEvaluationRecord,
  AutomationStateRecord,
  AutomationStatus,
  AutomationTick,
  BackfillRecord,
  BackfillSubmitOutcome,
  BackupRecord,
  CheckResultRecord,
  CommittedTick,
  CreateRunResult,
  EventFilter,
  HistoryChunk,
  HistoryTable,
  InFlightStep,
  InstigatorKind,
  InstigatorState,
  InstigatorStatus,
  InterruptedRun,
  Lease,
  MaintenanceState,
  MaterializationRecord,
  NewRun,
  NewTick,
  ParkedReplay,
  ParkedRequest,
  PartitionEvent,
  PoolSlot,
  PruneDeleted,
  PrunePlan,
  PrunePolicy,
  RecoveredRun,
  RecoverOptions,
  ReplayOutcome,
  RequestOutcome,
  RunFilter,
  RunHold,
  RunOwner,
  RunRecord,
  RunRequest,
  RunStatus,
  StepRecord,
  StoredEvent,
  StoredPartitionStatus,
  TickClaim,
  TickRecord,
  WriteBatch,
} from './types.js'

/**
 * The run store: every run, step, attempt, event, materialization, sensor tick, cursor, lease and
 * maintenance state. The engine, the daemon, the CLI and the operations code talk to this and to
 * nothing below it; `openStore(location)` picks the implementation.
 *
 * Every method returns a Promise. Every guarantee is one method, atomic by contract: an
 * implementation keeps it with a single writer (SQLite's IMMEDIATE transactions) or with row locks
 * and unique constraints (Postgres). Contention that outlasts the store's own waiting surfaces as
 * a `StoreBusyError`, never as a driver's error code; a store that cannot be used (closed, newer
 * schema, unknown run) throws a `StoreError`.
 */
export interface RunStore extends AsyncDisposable {
  /** Which implementation this is. */
  readonly kind: 'sqlite' | 'postgres'
  /**
   * What `openStore` opens this store from again (another thread, a child process). It may hold a
   * secret (a password in a URL): never print it; print `displayName`.
   */
  readonly location: string
  /** The location with any secret removed, for messages. */
  readonly displayName: string
  /** Opened for reading only: every writing method fails with a `StoreError`. */
  readonly readonly: boolean
  readonly isOpen: boolean
  /** Closes the store (idempotent). */
  close(): Promise<void>
  /** The schema version of the open store. */
  schemaVersion(): Promise<number>

  // ---- runs ------------------------------------------------------------------------------------

  /**
   * Inserts a run and its pending steps. Atomic: the run key is checked and claimed, the
   * maintenance gate is read (the run is parked instead while it is on, unless `force`), and the
   * run's holds are counted, in the one operation that inserts the run.
   */
  createRun(run: NewRun): Promise<CreateRunResult>
  getRun(id: string): Promise<RunRecord | undefined>
  /** A run by id or unique prefix (4 characters or more); a prefix of several runs is a `StoreError` listing them. */
  findRun(idOrPrefix: string): Promise<RunRecord | undefined>
  /** Runs, newest first. */
  listRuns(filter?: RunFilter): Promise<RunRecord[]>
  /** The first failed step (plan order) of each given run that has one, in one query. */
  failedSteps(runIds: readonly string[]): Promise<Map<string, string>>
  countRuns(): Promise<Record<RunStatus, number>>
  /** The run guards of the config a run holds. */
  runHolds(runId: string): Promise<RunHold[]>
  /** Ends a run still started, queued or paused (frees its pool slots); returns whether it changed. */
  finishRun(
    runId: string,
    status: 'success' | 'failure' | 'canceled',
    now: number,
    error?: ErrorInfo,
  ): Promise<boolean>
  /**
   * Writes the owner's heartbeat and reads back what the owner is asked to do; `lost` when the run
   * is no longer started by this owner (recovery took it).
   */
  heartbeat(runId: string, owner: RunOwner, now: number): Promise<'ok' | 'cancel' | 'pause' | 'lost'>
  /** Asks the owner of a run to cancel it; a queued or paused run is canceled at once. Returns its status after. */
  requestCancel(runId: string, now: number): Promise<RunStatus>
  /** Asks the owner of a started run to pause it (a `StoreError` for any other status). */
  requestPause(runId: string, now: number): Promise<RunStatus>
  /** What the owner of a run is asked to do, in one read (polled a few times a second). */
  pendingRequests(runId: string): Promise<{ cancel: boolean; pause: boolean }>
  /** The executor stopped a run at a pause: it keeps its pending steps and its guard slot. */
  markPaused(runId: string, now: number): Promise<boolean>
  /** paused -> queued, for a daemon to launch like any queued run; false if it is not paused. */
  requeuePausedRun(runId: string): Promise<boolean>
  /** paused -> started, owned by the caller (`refresh resume`); false if not paused or maintenance is on. */
  claimPausedRun(runId: string, owner: RunOwner, now: number): Promise<boolean>
  /**
   * Marks started runs whose owner is gone (pid gone on this host, heartbeat stale elsewhere) as
   * failed (interrupted), closing their steps and slots and writing their closing events.
   */
  recoverInterruptedRuns(options?: RecoverOptions): Promise<RecoveredRun[]>
  /**
   * The started runs whose owner is gone, by the same rule as `recoverInterruptedRuns`, without
   * changing anything: what readers (`runs`, `status`, `show`) show as interrupted.
   */
  interruptedRuns(options?: RecoverOptions): Promise<InterruptedRun[]>
  /** Closes a started or queued run that no executor will finish, with its closing events. */
  abandonRun(runId: string, status: 'failure' | 'canceled', reason: string, now: number): Promise<boolean>
  /**
   * `abandonRun` for many runs in one transaction (a canceled backfill's queued runs): returns
   * those it closed; the others (ended meanwhile, paused) are left as they are.
   */
  abandonRuns(
    runIds: readonly string[],
    status: 'failure' | 'canceled',
    reason: string,
    now: number,
  ): Promise<string[]>

  // ---- steps, attempts, events, materializations ------------------------------------------------

  /** Commits an executor's accumulated writes atomically (all of the batch or none of it). */
  write(batch: WriteBatch): Promise<void>
  getSteps(runId: string): Promise<StepRecord[]>
  getAttempts(runId: string, step?: string): Promise<AttemptRecord[]>
  /** A run's events in order. */
  getEvents(runId: string, filter?: EventFilter): Promise<StoredEvent[]>
  countEvents(runId?: string): Promise<number>
  /** The newest event id (0 when there is none): where an incremental reader starts. */
  maxEventId(): Promise<number>
  /** Runs that ended (a `run:end` event) after event `afterId`, oldest first. */
  runEndsAfter(afterId: number, limit?: number): Promise<Array<{ eventId: number; runId: string }>>
  /** An asset's latest materialization; with `partitionKey`, the latest of that partition. */
  latestMaterialization(asset: string, partitionKey?: string): Promise<MaterializationRecord | undefined>
  /** The latest materialization of every asset that has one, keyed by asset. */
  latestMaterializations(): Promise<Map<string, MaterializationRecord>>
  /** The materialization an asset got in a given run, if any. */
  runMaterialization(runId: string, asset: string): Promise<MaterializationRecord | undefined>
  materializationsForRun(runId: string): Promise<MaterializationRecord[]>
  /**
   * The latest result of each asset check (per partition), by asset, check and partition; only
   * `asset`'s checks when given. Results are written with a run's events (`write`'s `checks`).
   */
  latestCheckResults(asset?: string): Promise<CheckResultRecord[]>
  /** Every check result a run recorded, in the order they were evaluated. */
  checkResultsOfRun(runId: string): Promise<CheckResultRecord[]>

  // ---- partitions --------------------------------------------------------------------------------

  /** The keys of the dynamic partitions definition `name`, in the order they were added. */
  dynamicPartitionKeys(name: string): Promise<string[]>
  /** How many keys were ever removed from `name`: a status folded over another count is rebuilt. */
  dynamicPartitionsVersion(name: string): Promise<number>
  /** Adds the keys `name` does not have yet, in order (one transaction); returns those added. */
  addDynamicPartitions(name: string, keys: readonly string[], now: number): Promise<string[]>
  /** Removes the keys `name` has (one transaction); returns those removed. */
  removeDynamicPartitions(name: string, keys: readonly string[], now: number): Promise<string[]>
  /**
   * The partition events of `assets` (of every asset when null) after event `after`, in id order,
   * at most `limit`: each materialization and each failed step, with its run's partition key
   * (null for an unpartitioned run).
   */
  partitionEvents(after: number, assets: readonly string[] | null, limit: number): Promise<PartitionEvent[]>
  /** The partition keys of `asset` that a queued or started run has yet to finish. */
  partitionsInFlight(asset: string): Promise<string[]>
  /** Every partition key `asset` has a materialization of (for a status rebuilt from scratch). */
  materializedPartitions(asset: string): Promise<string[]>
  /** The folded partition status of `asset`, if one was saved. */
  getPartitionStatus(asset: string): Promise<StoredPartitionStatus | undefined>
  /**
   * Saves a folded status if the saved one is still at `expectedCursor` (null: none saved yet);
   * false when another reader saved first (its status is as good: read it again).
   */
  savePartitionStatus(next: StoredPartitionStatus, expectedCursor: number | null): Promise<boolean>

  // ---- backfills ---------------------------------------------------------------------------------

  /** Records a new backfill (version 1). */
  createBackfill(record: BackfillRecord): Promise<BackfillRecord>
  getBackfill(id: string): Promise<BackfillRecord | undefined>
  /** A backfill by id or unique prefix. */
  findBackfill(idOrPrefix: string): Promise<BackfillRecord | undefined>
  /** Newest first (at most `limit`, default 100); with `active`, those still requested or canceling, oldest first. */
  listBackfills(options?: { active?: boolean; limit?: number }): Promise<BackfillRecord[]>
  /** Saves a backfill's status and state if it is still at `expectedVersion`; false when it is not. */
  saveBackfill(next: BackfillRecord, expectedVersion: number, now: number): Promise<boolean>
  /**
   * Creates one queued run of a backfill and saves the backfill (its state with the run's
   * partitions launched) in one transaction, if the backfill is still at `expectedVersion`, the
   * maintenance gate is off and the run's guards have room: a partition is never launched twice,
   * nor marked launched without its run.
   */
  submitBackfillRun(
    next: BackfillRecord,
    expectedVersion: number,
    run: NewRun,
    now: number,
  ): Promise<BackfillSubmitOutcome>

  // ---- automation --------------------------------------------------------------------------------

  /** The automation cursor, the global switch and every asset's row, in one read. */
  automationState(): Promise<AutomationStateRecord>
  /** The switches alone (the global one, and the assets' that are not `default`): read every tick. */
  automationSwitches(): Promise<{ status: AutomationStatus; assets: Record<string, AutomationStatus> }>
  /** Turns automation on, off or back to default for one asset, or for all (`asset` null). */
  setAutomationStatus(asset: string | null, status: AutomationStatus, now: number): Promise<void>
  /**
   * Commits an automation tick in one transaction, if the stored cursor is at `expectedTick`:
   * its run requests (each like `requestRun`: run key, maintenance gate, guard), its evaluations
   * (with the runs their requests got), the assets' states (`tick.states(outcomes)`) and the new
   * cursor. Nothing is written when the cursor moved.
   */
  commitAutomationTick(tick: AutomationTick): Promise<AutomationCommit>
  /** An asset's kept evaluations, newest first (at most `limit`, default 20). */
  automationEvaluations(asset: string, limit?: number): Promise<AutomationEvaluationRecord[]>
  /** The newest evaluation of every asset that has one, by asset. */
  latestAutomationEvaluations(): Promise<AutomationEvaluationRecord[]>
  /** Check results with an id above `afterId`, in id order, at most `limit`. */
  checkResultsAfter(afterId: number, limit: number): Promise<CheckResultRecord[]>
  /** The steps of queued and started runs that have yet to finish (pending, running, retrying). */
  inFlightSteps(): Promise<InFlightStep[]>

  // ---- pools -----------------------------------------------------------------------------------

  /** Takes a slot in a named pool if fewer than `limit` are held by started runs (atomic across processes). */
  tryAcquirePoolSlot(pool: string, limit: number, runId: string, step: string, now: number): Promise<boolean>
  releasePoolSlot(pool: string, runId: string, step: string): Promise<void>
  poolUsage(): Promise<PoolSlot[]>

  // ---- run requests, guards and launching ------------------------------------------------------

  /**
   * Records a run request as a queued run, or says why not. Atomic: the run key, the maintenance
   * gate and the request's guard are checked in the operation that inserts the run, so requests
   * from many processes still give one run per key and one follow-up per coalescing guard.
   */
  requestRun(request: RunRequest): Promise<RequestOutcome>
  /** queued -> started, owned by the caller, if its guard and holds have room and maintenance is off. */
  claimQueuedRun(runId: string, owner: RunOwner, now: number): Promise<boolean>
  /** Queued runs, oldest first, with whether each could be claimed now. */
  queuedRuns(limit?: number): Promise<Array<RunRecord & { launchable: boolean }>>
  /**
   * Claims up to `limit` launchable queued runs (oldest first) for the daemon `holder` to launch,
   * so that of several daemons exactly one launches each: a run is skipped while another daemon
   * that claimed it is alive (its presence lease `daemon/<holder>` unexpired). The holder's own
   * earlier claims come back too (a launch that did not start the run), except `exclude` (runs it
   * is launching now). Guards and holds count the runs claimed in the same call.
   */
  claimLaunches(holder: string, limit: number, now: number, exclude?: readonly string[]): Promise<RunRecord[]>

  // ---- sensors and schedules: state, ticks, cursors --------------------------------------------

  getInstigator(name: string): Promise<InstigatorState | undefined>
  listInstigators(): Promise<InstigatorState[]>
  /** Turns a sensor or schedule on or off; turning one on records when (schedules never fire before it). */
  setInstigatorStatus(
    name: string,
    kind: InstigatorKind,
    status: InstigatorStatus,
    now: number,
  ): Promise<InstigatorState>
  /** Makes sure a row exists (first sight by a daemon: enabled from now). */
  ensureInstigator(name: string, kind: InstigatorKind, now: number): Promise<InstigatorState>
  /**
   * Records ticks with their run requests and new cursors atomically: all of it is stored or none,
   * so a crash mid-tick never loses a request nor advances a cursor past it.
   */
  commitTicks(ticks: readonly NewTick[]): Promise<CommittedTick[]>
  getTick(id: number): Promise<TickRecord | undefined>
  /** An instigator's ticks, newest first. */
  listTicks(instigator: string, limit?: number): Promise<TickRecord[]>
  /** The newest tick id (0 when there is none). */
  maxTickId(): Promise<number>
  /** Ticks with an id above `afterId`, oldest first. */
  ticksAfter(afterId: number, limit?: number): Promise<TickRecord[]>
  /**
   * Claims ticks of sensors and schedules for the daemon `holder`: each `{ name, slot }` is granted
   * when `slot` is above the last slot anyone claimed for that instigator and that claim is done
   * (its tick committed by `commitTicks`, or given back by `finishTickClaims`), is the holder's own,
   * or belongs to a daemon no longer alive (its presence lease expired): atomically, so each tick is
   * evaluated by exactly one of several daemons, and each evaluation starts from the cursor the one
   * before committed. Returns the names granted.
   */
  claimTicks(
    claims: ReadonlyArray<{ name: string; slot: number }>,
    holder: string,
    now: number,
  ): Promise<string[]>
  /** Marks the holder's claims of these instigators done without a tick (nothing was due). */
  finishTickClaims(names: readonly string[], holder: string, now: number): Promise<void>
  /** Every instigator's last tick claim (which daemon evaluated it last, and when). */
  tickClaims(): Promise<TickClaim[]>
  /** Finished runs in the given statuses that ended at or after `endedAt`, in the order they ended. */
  runsEndedAfter(statuses: readonly RunStatus[], endedAt: number, limit?: number): Promise<RunRecord[]>

  // ---- leases ----------------------------------------------------------------------------------

  /** Takes or renews a named lease: granted when free, expired or already the holder's (atomic). */
  acquireLease(
    name: string,
    holder: string,
    ttlMs: number,
    now: number,
  ): Promise<{ acquired: boolean; lease: Lease }>
  releaseLease(name: string, holder: string): Promise<void>
  getLease(name: string): Promise<Lease | undefined>
  /** Leases whose name starts with `prefix` (expired ones too), by name. */
  listLeases(prefix: string): Promise<Lease[]>

  // ---- maintenance mode and parked requests -----------------------------------------------------

  /** The maintenance gate, or null when it is off. */
  getMaintenance(): Promise<MaintenanceState | null>
  /** Turns the gate on; false (and nothing changed) when it already is. */
  setMaintenanceOn(state: MaintenanceState): Promise<boolean>
  /** Turns the gate off; the state it had, or null when it was not on. */
  setMaintenanceOff(): Promise<MaintenanceState | null>
  /** Parked requests in arrival order; `pending`: only those not replayed yet. */
  listParked(options?: { pending?: boolean; limit?: number }): Promise<ParkedRequest[]>
  countParked(): Promise<number>
  /**
   * Replays parked requests, each turned into a run request (or found unbuildable) by the caller
   * against the config in force now: each is requested and its parked row marked replayed
   * atomically, so a crash mid-replay never replays one twice nor drops one. A request another
   * replayer handled meanwhile is left out; nothing is replayed while the gate is on.
   */
  replayParked(
    replays: readonly ParkedReplay[],
    now: number,
  ): Promise<Array<{ parked: ParkedRequest; outcome: ReplayOutcome }>>
  /** Parks a started run that maintenance drained: replayed later as a re-execution from failure. */
  parkForResume(run: RunRecord, now: number): Promise<number>

  // ---- settings, health and backups -------------------------------------------------------------

  /** A value of the settings table (JSON text by convention), or undefined. */
  getSetting(key: string): Promise<{ value: string; updatedAt: number } | undefined>
  putSetting(key: string, value: string, now: number): Promise<void>
  /** A real short write (the health check's probe): a `StoreBusyError` when another writer holds the store. */
  probeWrite(now: number): Promise<void>
  /**
   * Writes a consistent online copy of the whole store into the directory `dir` (created if
   * missing) while others go on writing; returns what it wrote, or null when the store has nothing
   * to back up (it lives in memory).
   */
  backupTo(dir: string): Promise<string | null>
  recordBackup(record: BackupRecord): Promise<void>
  lastBackup(): Promise<BackupRecord | null>

  // ---- moving history between stores ------------------------------------------------------------

  /**
   * The store's whole history (runs, steps, attempts, events, materializations, check results, sensor and
   * schedule states with their cursors, ticks, run keys, holds, parked requests, settings), table
   * by table in `HISTORY_TABLES` order, in chunks, ids kept. The maintenance gate comes as the
   * settings row `maintenance`.
   */
  exportHistory(chunkRows?: number): AsyncIterable<HistoryChunk>
  /**
   * Writes another store's exported history into this one, which must hold no run: all of it in
   * one transaction (nothing is left half-copied), ids kept, so cursors that name event or tick
   * ids stay true. Returns the rows written per table.
   */
  importHistory(chunks: AsyncIterable<HistoryChunk>): Promise<Record<HistoryTable, number>>

  // ---- retention --------------------------------------------------------------------------------

  /**
   * What pruning with `policy` would delete now, changing nothing (`refresh prune` without `--yes`).
   * A run is prunable when all of these hold:
   * - it ended `success` or `canceled` before `policy.endedBefore`, or `failure` before
   *   `policy.failedEndedBefore` (a queued, started or paused run never is);
   * - it holds no latest materialization: for no (asset, partition key) is its materialization
   *   the newest one; nor a latest check result: for no (asset, check, partition key) is its
   *   result the newest one;
   * - it is not one of `policy.keepRunIds`;
   * - no pending parked request replays from it (its `parentRunId`);
   * - it does not hold the store's newest event (event ids are never handed out twice: readers
   *   that follow `maxEventId` keep their place);
   * - every run re-executed from it (`parentRunId`) is prunable too: a kept run keeps its lineage,
   *   whose materializations it may reuse.
   * With a run go its steps, attempts, events, holds, materializations and check results; its run key stays
   * taken, so a repeated request is still skipped. A tick is prunable when it ended before
   * `policy.endedBefore` and is not an instigator's latest tick (the newest tick of all always is
   * one, so tick ids are never handed out twice either).
   * Parked requests, cursors, instigators, leases and settings are never pruned.
   */
  pruneCandidates(policy: PrunePolicy): Promise<PrunePlan>
  /**
   * Deletes the next part of what `pruneCandidates` counts in one short transaction and returns
   * what it deleted; the caller repeats it until it returns all zeros. Runs go first, in end
   * order among the prunable runs no other run was re-executed from: their events, at most
   * `limit` in all; each run whose events are all gone goes in the same transaction with its
   * steps, attempts, holds and materializations (at most `limit` runs), and the batch stops at
   * the first run with events left. Once no run is prunable, at most `limit` prunable ticks,
   * oldest end first. The rules are checked again in every batch: a run that became needed between two
   * batches (retried, or named by a parked request) stays, with whatever events it has left.
   */
  pruneBatch(policy: PrunePolicy, limit: number): Promise<PruneDeleted>
}

/**
 * What the executor of one run uses: its owner's heartbeat and requests, pool slots, batched
 * writes, and the materializations its steps read. Nothing else of the store reaches a run.
 */
export type ExecutorStore = Pick<
  RunStore,
  | 'heartbeat'
  | 'pendingRequests'
  | 'tryAcquirePoolSlot'
  | 'releasePoolSlot'
  | 'write'
  | 'latestMaterialization'
>

/** The reading methods a sensor's `ctx.store` exposes: nothing in it can write. */
export const READ_METHODS = [
  'getRun',
  'findRun',
  'listRuns',
  'countRuns',
  'getSteps',
  'getAttempts',
  'getEvents',
  'latestMaterialization',
  'latestMaterializations',
  'runMaterialization',
  'materializationsForRun',
  'latestCheckResults',
  'checkResultsOfRun',
  'automationEvaluations',
  'latestAutomationEvaluations',
  'dynamicPartitionKeys',
  'getPartitionStatus',
  'getBackfill',
  'listBackfills',
  'runsEndedAfter',
  'getInstigator',
  'listTicks',
  'getMaintenance',
  'interruptedRuns',
] as const satisfies ReadonlyArray<keyof RunStore>

/** A read-only view of the store (a sensor's `ctx.store`): its type and its object have no writing method. */
export type ReadOnlyStore = Pick<RunStore, (typeof READ_METHODS)[number]>

/**
 * Builds the read-only view of a store: a new object holding only the reading methods, so that a
 * sensor cannot reach a writing one, not even by a cast.
 */
export function readOnlyView(store: RunStore): ReadOnlyStore {
  const view: Record<string, unknown> = {}
  for (const method of READ_METHODS) {
    const fn = store[method] as (...args: unknown[]) => unknown
    view[method] = (...args: unknown[]) => fn.apply(store, args)
  }
  return Object.freeze(view) as unknown as ReadOnlyStore
}

/** A recorded run by id or unique prefix, or a `StoreError` that says how to list runs. */
export async function requireRun(
  store: Pick<RunStore, 'findRun' | 'displayName'>,
  idOrPrefix: string,
): Promise<RunRecord> {
  const run = await store.findRun(idOrPrefix)
  if (!run) {
    throw new StoreError(
      `no run \`${idOrPrefix}\` in ${store.displayName}; \`refresh runs\` lists the runs (a unique prefix of an id works too).`,
    )
  }
  return run
}
