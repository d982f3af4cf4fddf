import {
  accessSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { type ErrorInfo, StoreBusyError, StoreError } from '../../errors.js'
import type { RunStore } from '../run-store.js'
import type {
  AutomationStatus,
  AutomationTick,
  BackfillRecord,
  BackupRecord,
  CommittedTick,
  CreateRunResult,
  EventFilter,
  HistoryChunk,
  InstigatorKind,
  InstigatorStatus,
  MaintenanceState,
  NewRun,
  NewTick,
  ParkedReplay,
  PrunePolicy,
  RecoverOptions,
  RunFilter,
  RunOwner,
  RunRecord,
  RunRequest,
  RunStatus,
  StoredPartitionStatus,
  WriteBatch,
} from '../types.js'
import { AutomationSql } from './automation.js'
import { BackfillsSql } from './backfills.js'
import { ClaimsSql } from './claims.js'
import { EventsSql } from './events.js'
import { HistorySql } from './history.js'
import { LeasesSql } from './leases.js'
import { MaintenanceSql } from './maintenance.js'
import { checkAndMigrate } from './migrations.js'
import { PartitionsSql } from './partitions.js'
import { RequestsSql } from './requests.js'
import { RetentionSql } from './retention.js'
import { RunsSql } from './runs.js'
import { TicksSql } from './ticks.js'

export interface SqliteStoreOptions {
  /**
   * Open for reading only (the file must exist); `if-unwritable`: for writing, unless this user
   * cannot write the file or its folder, then for reading only (the reading commands).
   */
  readonly?: boolean | 'if-unwritable'
  /** How long a write waits for another process's lock before a `StoreBusyError` (default 5000 ms). */
  busyTimeoutMs?: number
}

/**
 * The SQLite store (better-sqlite3): one file, WAL, short IMMEDIATE transactions, so several
 * processes (a daemon, a CLI run, `refresh runs`) share it; SQLite's single writer is what makes
 * each atomic method atomic. The SQL is split by concern (runs, events, requests, ticks, leases,
 * maintenance, retention, migrations); this class only turns their synchronous calls into the `RunStore`
 * contract: promises, and the driver's errors into the store's.
 */
export class SqliteStore implements RunStore {
  readonly kind = 'sqlite'
  readonly location: string
  readonly displayName: string
  readonly readonly: boolean
  private closed = false
  private readonly runs: RunsSql
  private readonly events: EventsSql
  private readonly requests: RequestsSql
  private readonly ticks: TicksSql
  private readonly leases: LeasesSql
  private readonly partitions: PartitionsSql
  private readonly backfills: BackfillsSql
  private readonly automation: AutomationSql
  private readonly maintenance: MaintenanceSql
  private readonly claims: ClaimsSql
  private readonly history: HistorySql
  private readonly retention: RetentionSql

  private readonly db: Database.Database
  /** A private copy this store reads (a folder this user cannot write), removed on close. */
  private readonly copyDir: string | undefined

  private constructor(db: Database.Database, location: string, readonly: boolean, copyDir?: string) {
    this.db = db
    this.copyDir = copyDir
    this.location = location
    this.displayName = location
    this.readonly = readonly
    this.maintenance = new MaintenanceSql(db)
    this.events = new EventsSql(db)
    this.runs = new RunsSql(db, location, this.maintenance, this.events)
    this.requests = new RequestsSql(db, this.runs, this.maintenance)
    this.partitions = new PartitionsSql(db)
    this.backfills = new BackfillsSql(db, this.runs, this.maintenance)
    this.automation = new AutomationSql(db, this.requests)
    this.ticks = new TicksSql(db, this.requests, this.partitions)
    this.leases = new LeasesSql(db)
    this.claims = new ClaimsSql(db, this.requests)
    this.history = new HistorySql(db, location)
    this.retention = new RetentionSql(db)
  }

  /** Opens (creating if needed) a store file, or `:memory:`. Refuses files it must not touch. */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
    const memory = path === ':memory:'
    const file = memory ? path : resolve(path)
    const unwritable = !memory && existsSync(file) ? whyUnwritable(file) : undefined
    if (unwritable && options.readonly !== true && options.readonly !== 'if-unwritable') {
      throw new StoreError(
        `the store ${file} cannot be written: ${unwritable} for this user. Reading commands (refresh runs, show, logs, status) still work; to run, make it writable or pass --store with a writable location.`,
      )
    }
    const readonly = options.readonly === true || unwritable !== undefined
    if (!memory) {
      if (existsSync(file)) {
        if (!statSync(file).isFile())
          throw new StoreError(`store path ${file} is not a file; pass a file path.`)
      } else if (readonly) {
        throw new StoreError(`no store at ${file}; run \`refresh run\` first or pass --store.`)
      } else {
        try {
          mkdirSync(dirname(file), { recursive: true })
        } catch (cause) {
          throw new StoreError(
            `cannot create the directory for the store ${file}: ${(cause as Error).message}`,
            {
              cause,
            },
          )
        }
      }
    }
    let db: Database.Database
    let copyDir: string | undefined
    try {
      db = new Database(file, { readonly, fileMustExist: readonly, timeout: options.busyTimeoutMs ?? 5_000 })
      if (readonly && !memory) db.pragma('user_version', { simple: true })
    } catch (cause) {
      // a WAL file in a folder this user cannot write: SQLite cannot make its shared-memory file
      // there, so read a private copy of the store (and its log) instead
      if ((cause as { code?: string }).code !== 'SQLITE_READONLY_DIRECTORY')
        throw new StoreError(`cannot open the store ${file}: ${(cause as Error).message}`, { cause })
      copyDir = mkdtempSync(join(tmpdir(), 'refresh-read-'))
      const copy = join(copyDir, 'refresh.db')
      copyFileSync(file, copy)
      if (existsSync(`${file}-wal`)) copyFileSync(`${file}-wal`, `${copy}-wal`)
      db = new Database(copy, {
        readonly: true,
        fileMustExist: true,
        timeout: options.busyTimeoutMs ?? 5_000,
      })
    }
    try {
      checkAndMigrate(db, file, readonly)
      if (!memory && !readonly) db.pragma('journal_mode = WAL')
      db.pragma('synchronous = NORMAL')
      db.pragma('foreign_keys = ON')
      return new SqliteStore(db, file, readonly, copyDir)
    } catch (error) {
      db.close()
      if (copyDir) rmSync(copyDir, { recursive: true, force: true })
      throw error
    }
  }

  get isOpen(): boolean {
    return !this.closed
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.db.close()
    if (this.copyDir) rmSync(this.copyDir, { recursive: true, force: true })
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /**
   * Runs one synchronous call of the SQL layer as the contract's promise: a busy database becomes
   * a `StoreBusyError`, a closed store a `StoreError`; anything else is a bug and goes up as is.
   */
  private call<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError(`the store ${this.displayName} is closed.`))
    try {
      return Promise.resolve(fn())
    } catch (error) {
      return Promise.reject(translate(error, this.displayName))
    }
  }

  schemaVersion(): Promise<number> {
    return this.call(() => this.db.pragma('user_version', { simple: true }) as number)
  }

  // ---- runs --------------------------------------------------------------------------------------

  createRun(run: NewRun): Promise<CreateRunResult> {
    return this.call(() => this.runs.createRun(run))
  }
  getRun(id: string): Promise<RunRecord | undefined> {
    return this.call(() => this.runs.getRun(id))
  }
  findRun(idOrPrefix: string): Promise<RunRecord | undefined> {
    return this.call(() => this.runs.findRun(idOrPrefix))
  }
  listRuns(filter?: RunFilter) {
    return this.call(() => this.runs.listRuns(filter))
  }
  failedSteps(runIds: readonly string[]) {
    return this.call(() => this.runs.failedSteps(runIds))
  }
  countRuns() {
    return this.call(() => this.runs.countRuns())
  }
  runHolds(runId: string) {
    return this.call(() => this.runs.runHolds(runId))
  }
  finishRun(runId: string, status: 'success' | 'failure' | 'canceled', now: number, error?: ErrorInfo) {
    return this.call(() => this.runs.finishRun(runId, status, now, error))
  }
  heartbeat(runId: string, owner: RunOwner, now: number) {
    return this.call(() => this.runs.heartbeat(runId, owner, now))
  }
  requestCancel(runId: string, now: number): Promise<RunStatus> {
    return this.call(() => this.runs.requestCancel(runId, now))
  }
  requestPause(runId: string, now: number): Promise<RunStatus> {
    return this.call(() => this.runs.requestPause(runId, now))
  }
  pendingRequests(runId: string) {
    return this.call(() => this.runs.pendingRequests(runId))
  }
  markPaused(runId: string, now: number) {
    return this.call(() => this.runs.markPaused(runId, now))
  }
  requeuePausedRun(runId: string) {
    return this.call(() => this.runs.requeuePausedRun(runId))
  }
  claimPausedRun(runId: string, owner: RunOwner, now: number) {
    return this.call(() => this.runs.claimPausedRun(runId, owner, now))
  }
  recoverInterruptedRuns(options?: RecoverOptions) {
    return this.call(() => this.runs.recoverInterruptedRuns(options))
  }
  interruptedRuns(options?: RecoverOptions) {
    return this.call(() => this.runs.interruptedRuns(options))
  }
  abandonRun(runId: string, status: 'failure' | 'canceled', reason: string, now: number) {
    return this.call(() => this.runs.abandonRun(runId, status, reason, now))
  }
  abandonRuns(runIds: readonly string[], status: 'failure' | 'canceled', reason: string, now: number) {
    return this.call(() => this.runs.abandonRuns(runIds, status, reason, now))
  }

  // ---- steps, attempts, events, materializations -------------------------------------------------

  write(batch: WriteBatch): Promise<void> {
    return this.call(() => this.events.write(batch))
  }
  getSteps(runId: string) {
    return this.call(() => this.events.getSteps(runId))
  }
  getAttempts(runId: string, step?: string) {
    return this.call(() => this.events.getAttempts(runId, step))
  }
  getEvents(runId: string, filter?: EventFilter) {
    return this.call(() => this.events.getEvents(runId, filter))
  }
  countEvents(runId?: string) {
    return this.call(() => this.events.countEvents(runId))
  }
  maxEventId() {
    return this.call(() => this.events.maxEventId())
  }
  runEndsAfter(afterId: number, limit?: number) {
    return this.call(() => this.events.runEndsAfter(afterId, limit))
  }
  latestMaterialization(asset: string, partitionKey?: string) {
    return this.call(() => this.events.latestMaterialization(asset, partitionKey))
  }
  latestMaterializations() {
    return this.call(() => this.events.latestMaterializations())
  }
  runMaterialization(runId: string, asset: string) {
    return this.call(() => this.events.runMaterialization(runId, asset))
  }
  materializationsForRun(runId: string) {
    return this.call(() => this.events.materializationsForRun(runId))
  }
  latestCheckResults(asset?: string) {
    return this.call(() => this.events.latestCheckResults(asset))
  }
  checkResultsOfRun(runId: string) {
    return this.call(() => this.events.checkResultsOfRun(runId))
  }

  // ---- partitions --------------------------------------------------------------------------------

  dynamicPartitionKeys(name: string) {
    return this.call(() => this.partitions.dynamicPartitionKeys(name))
  }
  dynamicPartitionsVersion(name: string) {
    return this.call(() => this.partitions.dynamicPartitionsVersion(name))
  }
  addDynamicPartitions(name: string, keys: readonly string[], now: number) {
    return this.call(() => this.partitions.addDynamicPartitions(name, keys, now))
  }
  removeDynamicPartitions(name: string, keys: readonly string[], now: number) {
    return this.call(() => this.partitions.removeDynamicPartitions(name, keys, now))
  }
  partitionEvents(after: number, assets: readonly string[] | null, limit: number) {
    return this.call(() => this.partitions.partitionEvents(after, assets, limit))
  }
  partitionsInFlight(asset: string) {
    return this.call(() => this.partitions.partitionsInFlight(asset))
  }
  materializedPartitions(asset: string) {
    return this.call(() => this.partitions.materializedPartitions(asset))
  }
  getPartitionStatus(asset: string) {
    return this.call(() => this.partitions.getPartitionStatus(asset))
  }
  savePartitionStatus(next: StoredPartitionStatus, expectedCursor: number | null) {
    return this.call(() => this.partitions.savePartitionStatus(next, expectedCursor))
  }

  // ---- backfills ---------------------------------------------------------------------------------

  createBackfill(record: BackfillRecord) {
    return this.call(() => this.backfills.createBackfill(record))
  }
  getBackfill(id: string) {
    return this.call(() => this.backfills.getBackfill(id))
  }
  findBackfill(idOrPrefix: string) {
    return this.call(() => this.backfills.findBackfill(idOrPrefix))
  }
  listBackfills(options: { active?: boolean; limit?: number } = {}) {
    return this.call(() => this.backfills.listBackfills(options))
  }
  saveBackfill(next: BackfillRecord, expectedVersion: number, now: number) {
    return this.call(() => this.backfills.saveBackfill(next, expectedVersion, now))
  }
  submitBackfillRun(next: BackfillRecord, expectedVersion: number, run: NewRun, now: number) {
    return this.call(() => this.backfills.submitBackfillRun(next, expectedVersion, run, now))
  }

  // ---- automation --------------------------------------------------------------------------------

  automationState() {
    return this.call(() => this.automation.automationState())
  }
  automationSwitches() {
    return this.call(() => this.automation.automationSwitches())
  }
  setAutomationStatus(asset: string | null, status: AutomationStatus, now: number) {
    return this.call(() => this.automation.setAutomationStatus(asset, status, now))
  }
  commitAutomationTick(tick: AutomationTick) {
    return this.call(() => this.automation.commitAutomationTick(tick))
  }
  automationEvaluations(asset: string, limit?: number) {
    return this.call(() => this.automation.automationEvaluations(asset, limit))
  }
  latestAutomationEvaluations() {
    return this.call(() => this.automation.latestAutomationEvaluations())
  }
  checkResultsAfter(afterId: number, limit: number) {
    return this.call(() => this.automation.checkResultsAfter(afterId, limit))
  }
  inFlightSteps() {
    return this.call(() => this.automation.inFlightSteps())
  }

  // ---- pools -------------------------------------------------------------------------------------

  tryAcquirePoolSlot(pool: string, limit: number, runId: string, step: string, now: number) {
    return this.call(() => this.runs.tryAcquirePoolSlot(pool, limit, runId, step, now))
  }
  releasePoolSlot(pool: string, runId: string, step: string) {
    return this.call(() => this.runs.releasePoolSlot(pool, runId, step))
  }
  poolUsage() {
    return this.call(() => this.runs.poolUsage())
  }

  // ---- run requests, guards and launching --------------------------------------------------------

  requestRun(request: RunRequest) {
    return this.call(() => this.requests.requestRun(request))
  }
  claimQueuedRun(runId: string, owner: RunOwner, now: number) {
    return this.call(() => this.requests.claimQueuedRun(runId, owner, now))
  }
  queuedRuns(limit?: number) {
    return this.call(() => this.requests.queuedRuns(limit))
  }
  claimLaunches(holder: string, limit: number, now: number, exclude?: readonly string[]) {
    return this.call(() => this.claims.claimLaunches(holder, limit, now, exclude))
  }

  // ---- sensors and schedules ---------------------------------------------------------------------

  getInstigator(name: string) {
    return this.call(() => this.ticks.getInstigator(name))
  }
  listInstigators() {
    return this.call(() => this.ticks.listInstigators())
  }
  setInstigatorStatus(name: string, kind: InstigatorKind, status: InstigatorStatus, now: number) {
    return this.call(() => this.ticks.setInstigatorStatus(name, kind, status, now))
  }
  ensureInstigator(name: string, kind: InstigatorKind, now: number) {
    return this.call(() => this.ticks.ensureInstigator(name, kind, now))
  }
  commitTicks(ticks: readonly NewTick[]): Promise<CommittedTick[]> {
    return this.call(() => this.ticks.commitTicks(ticks))
  }
  getTick(id: number) {
    return this.call(() => this.ticks.getTick(id))
  }
  listTicks(instigator: string, limit?: number) {
    return this.call(() => this.ticks.listTicks(instigator, limit))
  }
  maxTickId() {
    return this.call(() => this.ticks.maxTickId())
  }
  ticksAfter(afterId: number, limit?: number) {
    return this.call(() => this.ticks.ticksAfter(afterId, limit))
  }
  runsEndedAfter(statuses: readonly RunStatus[], endedAt: number, limit?: number) {
    return this.call(() => this.ticks.runsEndedAfter(statuses, endedAt, limit))
  }
  claimTicks(claims: ReadonlyArray<{ name: string; slot: number }>, holder: string, now: number) {
    return this.call(() => this.claims.claimTicks(claims, holder, now))
  }
  finishTickClaims(names: readonly string[], holder: string, now: number) {
    return this.call(() => this.claims.finishTickClaims(names, holder, now))
  }
  tickClaims() {
    return this.call(() => this.claims.tickClaims())
  }

  // ---- leases ------------------------------------------------------------------------------------

  acquireLease(name: string, holder: string, ttlMs: number, now: number) {
    return this.call(() => this.leases.acquireLease(name, holder, ttlMs, now))
  }
  releaseLease(name: string, holder: string) {
    return this.call(() => this.leases.releaseLease(name, holder))
  }
  getLease(name: string) {
    return this.call(() => this.leases.getLease(name))
  }
  listLeases(prefix: string) {
    return this.call(() => this.leases.listLeases(prefix))
  }

  // ---- maintenance mode and parked requests ------------------------------------------------------

  getMaintenance() {
    return this.call(() => this.maintenance.gate())
  }
  setMaintenanceOn(state: MaintenanceState) {
    return this.call(() => this.maintenance.setOn(state))
  }
  setMaintenanceOff() {
    return this.call(() => this.maintenance.setOff())
  }
  listParked(options?: { pending?: boolean; limit?: number }) {
    return this.call(() => this.maintenance.list(options))
  }
  countParked() {
    return this.call(() => this.maintenance.count())
  }
  replayParked(replays: readonly ParkedReplay[], now: number) {
    return this.call(() => this.requests.replayParked(replays, now))
  }
  parkForResume(run: RunRecord, now: number) {
    return this.call(() => this.maintenance.parkForResume(run, now))
  }

  // ---- settings, health and backups --------------------------------------------------------------

  getSetting(key: string) {
    return this.call(() => this.leases.getSetting(key))
  }
  putSetting(key: string, value: string, now: number) {
    return this.call(() => this.leases.putSetting(key, value, now))
  }
  probeWrite(now: number) {
    return this.call(() => this.leases.probeWrite(now))
  }
  async backupTo(dir: string): Promise<string | null> {
    if (this.closed) throw new StoreError(`the store ${this.displayName} is closed.`)
    if (this.location === ':memory:') return null
    const file = join(dir, 'refresh.db')
    try {
      mkdirSync(dir, { recursive: true })
      await this.db.backup(file)
    } catch (error) {
      throw translate(error, this.displayName)
    }
    return file
  }
  recordBackup(record: BackupRecord) {
    return this.call(() => this.leases.recordBackup(record))
  }
  lastBackup() {
    return this.call(() => this.leases.lastBackup())
  }

  // ---- moving history between stores -------------------------------------------------------------

  async *exportHistory(chunkRows?: number): AsyncGenerator<HistoryChunk> {
    if (this.closed) throw new StoreError(`the store ${this.displayName} is closed.`)
    try {
      yield* this.history.export(chunkRows)
    } catch (error) {
      throw translate(error, this.displayName)
    }
  }
  async importHistory(chunks: AsyncIterable<HistoryChunk>) {
    if (this.closed) throw new StoreError(`the store ${this.displayName} is closed.`)
    if (this.readonly) throw new StoreError(`the store ${this.displayName} is open for reading only.`)
    try {
      return await this.history.import(chunks)
    } catch (error) {
      throw translate(error, this.displayName)
    }
  }

  // ---- retention ---------------------------------------------------------------------------------

  pruneCandidates(policy: PrunePolicy) {
    return this.call(() => this.retention.candidates(policy))
  }
  pruneBatch(policy: PrunePolicy, limit: number) {
    return this.call(() => this.retention.batch(policy, limit))
  }
}

/** Why this user cannot write a store file (the file, or its folder, which holds its log), or undefined. */
function whyUnwritable(file: string): string | undefined {
  for (const [path, what] of [
    [file, 'the file is read-only'],
    [dirname(file), 'its folder is read-only'],
  ] as const) {
    try {
      accessSync(path, constants.W_OK)
    } catch {
      return what
    }
  }
  return undefined
}

/** The driver's errors as the store's: busy and locked become `StoreBusyError`, read-only a `StoreError`. */
function translate(error: unknown, store: string): unknown {
  const code = (error as { code?: unknown })?.code
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return error
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new StoreBusyError(`the store ${store} is busy: another process holds its write lock.`, {
      cause: error,
    })
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return new StoreError(
      `the store ${store} cannot be written (${(error as Error).message}); check its file and folder permissions, or pass --store.`,
      { cause: error },
    )
  }
  return error
}
