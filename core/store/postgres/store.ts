import type pg from 'pg'
import { type ErrorInfo, StoreError } from '../../errors.js'
import { importPeer } from '../../peers.js'
import type { OpenStoreOptions } from '../open.js'
import { redactLocation } from '../open.js'
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
import { Db, type DbOptions, translate } from './db.js'
import { EventsSql } from './events.js'
import { HistorySql } from './history.js'
import { LeasesSql } from './leases.js'
import { MaintenanceSql } from './maintenance.js'
import { checkAndMigrate, quoteIdent, SCHEMA_VERSION } from './migrations.js'
import { PartitionsSql } from './partitions.js'
import { RequestsSql } from './requests.js'
import { RetentionSql } from './retention.js'
import { RunsSql } from './runs.js'
import { TicksSql } from './ticks.js'

export interface PostgresStoreOptions extends OpenStoreOptions {
  /** Connections this process may open at most (default 4; `?pool_size=N` in the URL). */
  poolSize?: number
  /** Statement timeout in ms (default 30000; `?statement_timeout=MS` in the URL). */
  statementTimeoutMs?: number
  /** How long the store keeps retrying while the server is unreachable (default 30000 ms). */
  reconnectMs?: number
}

/** What a store URL says beyond what the driver reads: the schema, the pool size, the timeout. */
export interface PostgresLocation {
  /** The URL for the driver, without refresh's own parameters. */
  connectionString: string
  schema: string
  poolSize?: number
  statementTimeoutMs?: number
}

const DEFAULT_SCHEMA = 'refresh'
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/** Reads a `postgres://` store URL: refresh's own parameters (`schema`, `pool_size`, `statement_timeout`) taken out. */
export function parsePostgresLocation(location: string): PostgresLocation {
  const display = redactLocation(location)
  let url: URL
  try {
    url = new URL(location)
  } catch {
    throw new StoreError(
      `the store URL ${display} cannot be read; write it as postgres://USER:PASSWORD@HOST:5432/DATABASE (percent-encode special characters in the password).`,
    )
  }
  const schema = url.searchParams.get('schema') ?? DEFAULT_SCHEMA
  if (!IDENTIFIER.test(schema)) {
    throw new StoreError(
      `schema=${schema} in the store URL is not a plain name; use letters, digits and underscores (e.g. ?schema=refresh).`,
    )
  }
  const positive = (name: string, max: number): number | undefined => {
    const raw = url.searchParams.get(name)
    if (raw === null) return undefined
    const n = Number(raw)
    if (!Number.isInteger(n) || n < 1 || n > max) {
      throw new StoreError(`${name}=${raw} in the store URL: expected a whole number from 1 to ${max}.`)
    }
    return n
  }
  const poolSize = positive('pool_size', 1_000)
  const statementTimeoutMs = positive('statement_timeout', 86_400_000)
  for (const own of ['schema', 'pool_size', 'statement_timeout']) url.searchParams.delete(own)
  return { connectionString: url.toString(), schema, poolSize, statementTimeoutMs }
}

/**
 * The Postgres store (node-postgres): for daemons and runs on several hosts. One bounded pool of
 * connections per process, all in one schema (`?schema=`, default `refresh`). Atomicity comes
 * from row locks, advisory locks held to COMMIT, unique constraints and SKIP LOCKED claims (see
 * the SQL modules); a deadlock or serialization failure is retried inside the store, and so is a
 * server restart, up to `reconnectMs`.
 */
export class PostgresStore implements RunStore {
  readonly kind = 'postgres'
  readonly location: string
  readonly displayName: string
  readonly readonly: boolean
  readonly schema: string
  private readonly db: Db
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

  private constructor(db: Db, location: string, displayName: string, schema: string, readonly: boolean) {
    this.db = db
    this.location = location
    this.displayName = displayName
    this.schema = schema
    this.readonly = readonly
    this.maintenance = new MaintenanceSql(db)
    this.events = new EventsSql(db)
    this.runs = new RunsSql(db, displayName, this.maintenance, this.events)
    this.requests = new RequestsSql(db, this.runs, this.maintenance)
    this.partitions = new PartitionsSql(db)
    this.backfills = new BackfillsSql(db, this.runs, this.maintenance)
    this.automation = new AutomationSql(db, this.requests)
    this.ticks = new TicksSql(db, this.requests, this.partitions)
    this.leases = new LeasesSql(db)
    this.claims = new ClaimsSql(db, this.maintenance)
    this.history = new HistorySql(db, displayName)
    this.retention = new RetentionSql(db)
  }

  /** Connects, creates the schema if needed and migrates it forward. */
  static async open(location: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const displayName = redactLocation(location)
    const parsed = parsePostgresLocation(location)
    const { default: driver } = await importPeer(
      'pg',
      `the Postgres store ${displayName}`,
      () => import('pg'),
    )
    const readonly = options.readonly === true
    const dbOptions: DbOptions = {
      poolSize: options.poolSize ?? parsed.poolSize ?? 4,
      statementTimeoutMs: options.statementTimeoutMs ?? parsed.statementTimeoutMs ?? 30_000,
      lockTimeoutMs: options.busyTimeoutMs ?? 5_000,
      reconnectMs: options.reconnectMs ?? 30_000,
      readonly,
    }
    const settings = [`-c search_path=${quoteIdent(parsed.schema)}`]
    if (readonly) settings.push('-c default_transaction_read_only=on')
    const pool = new driver.Pool({
      connectionString: parsed.connectionString,
      max: dbOptions.poolSize,
      idleTimeoutMillis: 10_000,
      connectionTimeoutMillis: 10_000,
      statement_timeout: dbOptions.statementTimeoutMs,
      lock_timeout: dbOptions.lockTimeoutMs,
      // a process that hangs inside a transaction does not hold its locks for ever
      idle_in_transaction_session_timeout: 60_000,
      application_name: new URL(parsed.connectionString).searchParams.get('application_name') ?? 'refresh',
      options: settings.join(' '),
      types: { getTypeParser: typeParser(driver) },
    })
    const db = new Db(pool, dbOptions, displayName)
    let client: pg.PoolClient | undefined
    try {
      client = await pool.connect()
      await checkAndMigrate(client, parsed.schema, displayName, readonly)
    } catch (error) {
      client?.release(true)
      client = undefined
      await db.close().catch(() => {})
      throw translate(error, displayName)
    } finally {
      client?.release()
    }
    return new PostgresStore(db, location, displayName, parsed.schema, readonly)
  }

  get isOpen(): boolean {
    return this.db.isOpen
  }

  /** Connections this process holds open now (never more than the pool size). */
  get connections(): number {
    return this.db.connections
  }

  async close(): Promise<void> {
    await this.db.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async schemaVersion(): Promise<number> {
    const { rows } = await this.db.exec('SELECT version FROM refresh_schema')
    return (rows[0]?.version as number | undefined) ?? SCHEMA_VERSION
  }

  // ---- runs --------------------------------------------------------------------------------------

  createRun(run: NewRun): Promise<CreateRunResult> {
    return this.runs.createRun(run)
  }
  getRun(id: string): Promise<RunRecord | undefined> {
    return this.runs.getRun(id)
  }
  findRun(idOrPrefix: string): Promise<RunRecord | undefined> {
    return this.runs.findRun(idOrPrefix)
  }
  listRuns(filter?: RunFilter) {
    return this.runs.listRuns(filter)
  }
  failedSteps(runIds: readonly string[]) {
    return this.runs.failedSteps(runIds)
  }
  countRuns() {
    return this.runs.countRuns()
  }
  runHolds(runId: string) {
    return this.runs.runHolds(runId)
  }
  finishRun(runId: string, status: 'success' | 'failure' | 'canceled', now: number, error?: ErrorInfo) {
    return this.runs.finishRun(runId, status, now, error)
  }
  heartbeat(runId: string, owner: RunOwner, now: number) {
    return this.runs.heartbeat(runId, owner, now)
  }
  requestCancel(runId: string, now: number): Promise<RunStatus> {
    return this.runs.requestCancel(runId, now)
  }
  requestPause(runId: string, now: number): Promise<RunStatus> {
    return this.runs.requestPause(runId, now)
  }
  pendingRequests(runId: string) {
    return this.runs.pendingRequests(runId)
  }
  markPaused(runId: string, now: number) {
    return this.runs.markPaused(runId, now)
  }
  requeuePausedRun(runId: string) {
    return this.runs.requeuePausedRun(runId)
  }
  claimPausedRun(runId: string, owner: RunOwner, now: number) {
    return this.runs.claimPausedRun(runId, owner, now)
  }
  recoverInterruptedRuns(options?: RecoverOptions) {
    return this.runs.recoverInterruptedRuns(options)
  }
  interruptedRuns(options?: RecoverOptions) {
    return this.runs.interruptedRuns(options)
  }
  abandonRun(runId: string, status: 'failure' | 'canceled', reason: string, now: number) {
    return this.runs.abandonRun(runId, status, reason, now)
  }
  abandonRuns(runIds: readonly string[], status: 'failure' | 'canceled', reason: string, now: number) {
    return this.runs.abandonRuns(runIds, status, reason, now)
  }

  // ---- steps, attempts, events, materializations -------------------------------------------------

  write(batch: WriteBatch): Promise<void> {
    return this.events.write(batch)
  }
  getSteps(runId: string) {
    return this.events.getSteps(runId)
  }
  getAttempts(runId: string, step?: string) {
    return this.events.getAttempts(runId, step)
  }
  getEvents(runId: string, filter?: EventFilter) {
    return this.events.getEvents(runId, filter)
  }
  countEvents(runId?: string) {
    return this.events.countEvents(runId)
  }
  maxEventId() {
    return this.events.maxEventId()
  }
  runEndsAfter(afterId: number, limit?: number) {
    return this.events.runEndsAfter(afterId, limit)
  }
  latestMaterialization(asset: string, partitionKey?: string) {
    return this.events.latestMaterialization(asset, partitionKey)
  }
  latestMaterializations() {
    return this.events.latestMaterializations()
  }
  runMaterialization(runId: string, asset: string) {
    return this.events.runMaterialization(runId, asset)
  }
  materializationsForRun(runId: string) {
    return this.events.materializationsForRun(runId)
  }
  latestCheckResults(asset?: string) {
    return this.events.latestCheckResults(asset)
  }
  checkResultsOfRun(runId: string) {
    return this.events.checkResultsOfRun(runId)
  }

  // ---- partitions --------------------------------------------------------------------------------

  dynamicPartitionKeys(name: string) {
    return this.partitions.dynamicPartitionKeys(name)
  }
  dynamicPartitionsVersion(name: string) {
    return this.partitions.dynamicPartitionsVersion(name)
  }
  addDynamicPartitions(name: string, keys: readonly string[], now: number) {
    return this.partitions.addDynamicPartitions(name, keys, now)
  }
  removeDynamicPartitions(name: string, keys: readonly string[], now: number) {
    return this.partitions.removeDynamicPartitions(name, keys, now)
  }
  partitionEvents(after: number, assets: readonly string[] | null, limit: number) {
    return this.partitions.partitionEvents(after, assets, limit)
  }
  partitionsInFlight(asset: string) {
    return this.partitions.partitionsInFlight(asset)
  }
  materializedPartitions(asset: string) {
    return this.partitions.materializedPartitions(asset)
  }
  getPartitionStatus(asset: string) {
    return this.partitions.getPartitionStatus(asset)
  }
  savePartitionStatus(next: StoredPartitionStatus, expectedCursor: number | null) {
    return this.partitions.savePartitionStatus(next, expectedCursor)
  }

  // ---- backfills ---------------------------------------------------------------------------------

  createBackfill(record: BackfillRecord) {
    return this.backfills.createBackfill(record)
  }
  getBackfill(id: string) {
    return this.backfills.getBackfill(id)
  }
  findBackfill(idOrPrefix: string) {
    return this.backfills.findBackfill(idOrPrefix)
  }
  listBackfills(options: { active?: boolean; limit?: number } = {}) {
    return this.backfills.listBackfills(options)
  }
  saveBackfill(next: BackfillRecord, expectedVersion: number, now: number) {
    return this.backfills.saveBackfill(next, expectedVersion, now)
  }
  submitBackfillRun(next: BackfillRecord, expectedVersion: number, run: NewRun, now: number) {
    return this.backfills.submitBackfillRun(next, expectedVersion, run, now)
  }

  // ---- automation --------------------------------------------------------------------------------

  automationState() {
    return this.automation.automationState()
  }
  automationSwitches() {
    return this.automation.automationSwitches()
  }
  setAutomationStatus(asset: string | null, status: AutomationStatus, now: number) {
    return this.automation.setAutomationStatus(asset, status, now)
  }
  commitAutomationTick(tick: AutomationTick) {
    return this.automation.commitAutomationTick(tick)
  }
  automationEvaluations(asset: string, limit?: number) {
    return this.automation.automationEvaluations(asset, limit)
  }
  latestAutomationEvaluations() {
    return this.automation.latestAutomationEvaluations()
  }
  checkResultsAfter(afterId: number, limit: number) {
    return this.automation.checkResultsAfter(afterId, limit)
  }
  inFlightSteps() {
    return this.automation.inFlightSteps()
  }

  // ---- pools -------------------------------------------------------------------------------------

  tryAcquirePoolSlot(pool: string, limit: number, runId: string, step: string, now: number) {
    return this.runs.tryAcquirePoolSlot(pool, limit, runId, step, now)
  }
  releasePoolSlot(pool: string, runId: string, step: string) {
    return this.runs.releasePoolSlot(pool, runId, step)
  }
  poolUsage() {
    return this.runs.poolUsage()
  }

  // ---- run requests, guards and launching --------------------------------------------------------

  requestRun(request: RunRequest) {
    return this.requests.requestRun(request)
  }
  claimQueuedRun(runId: string, owner: RunOwner, now: number) {
    return this.requests.claimQueuedRun(runId, owner, now)
  }
  queuedRuns(limit?: number) {
    return this.requests.queuedRuns(limit)
  }
  claimLaunches(holder: string, limit: number, now: number, exclude?: readonly string[]) {
    return this.claims.claimLaunches(holder, limit, now, exclude)
  }

  // ---- sensors and schedules ---------------------------------------------------------------------

  getInstigator(name: string) {
    return this.ticks.getInstigator(name)
  }
  listInstigators() {
    return this.ticks.listInstigators()
  }
  setInstigatorStatus(name: string, kind: InstigatorKind, status: InstigatorStatus, now: number) {
    return this.ticks.setInstigatorStatus(name, kind, status, now)
  }
  ensureInstigator(name: string, kind: InstigatorKind, now: number) {
    return this.ticks.ensureInstigator(name, kind, now)
  }
  commitTicks(ticks: readonly NewTick[]): Promise<CommittedTick[]> {
    return this.ticks.commitTicks(ticks)
  }
  getTick(id: number) {
    return this.ticks.getTick(id)
  }
  listTicks(instigator: string, limit?: number) {
    return this.ticks.listTicks(instigator, limit)
  }
  maxTickId() {
    return this.ticks.maxTickId()
  }
  ticksAfter(afterId: number, limit?: number) {
    return this.ticks.ticksAfter(afterId, limit)
  }
  runsEndedAfter(statuses: readonly RunStatus[], endedAt: number, limit?: number) {
    return this.ticks.runsEndedAfter(statuses, endedAt, limit)
  }
  claimTicks(claims: ReadonlyArray<{ name: string; slot: number }>, holder: string, now: number) {
    return this.claims.claimTicks(claims, holder, now)
  }
  finishTickClaims(names: readonly string[], holder: string, now: number) {
    return this.claims.finishTickClaims(names, holder, now)
  }
  tickClaims() {
    return this.claims.tickClaims()
  }

  // ---- leases ------------------------------------------------------------------------------------

  acquireLease(name: string, holder: string, ttlMs: number, now: number) {
    return this.leases.acquireLease(name, holder, ttlMs, now)
  }
  releaseLease(name: string, holder: string) {
    return this.leases.releaseLease(name, holder)
  }
  getLease(name: string) {
    return this.leases.getLease(name)
  }
  listLeases(prefix: string) {
    return this.leases.listLeases(prefix)
  }

  // ---- maintenance mode and parked requests ------------------------------------------------------

  getMaintenance() {
    return this.maintenance.gate()
  }
  setMaintenanceOn(state: MaintenanceState) {
    return this.maintenance.setOn(state)
  }
  setMaintenanceOff() {
    return this.maintenance.setOff()
  }
  listParked(options?: { pending?: boolean; limit?: number }) {
    return this.maintenance.list(options)
  }
  countParked() {
    return this.maintenance.count()
  }
  replayParked(replays: readonly ParkedReplay[], now: number) {
    return this.requests.replayParked(replays, now)
  }
  parkForResume(run: RunRecord, now: number) {
    return this.maintenance.parkForResume(run, now)
  }

  // ---- settings, health and backups --------------------------------------------------------------

  getSetting(key: string) {
    return this.leases.getSetting(key)
  }
  putSetting(key: string, value: string, now: number) {
    return this.leases.putSetting(key, value, now)
  }
  probeWrite(now: number) {
    return this.leases.probeWrite(now)
  }
  /** A Postgres store is backed up by its server (pg_dump, RDS snapshots), not by refresh. */
  async backupTo(_dir: string): Promise<string | null> {
    if (!this.db.isOpen) throw new StoreError(`the store ${this.displayName} is closed.`)
    return null
  }
  recordBackup(record: BackupRecord) {
    return this.leases.recordBackup(record)
  }
  lastBackup() {
    return this.leases.lastBackup()
  }

  // ---- retention ---------------------------------------------------------------------------------

  pruneCandidates(policy: PrunePolicy) {
    return this.retention.candidates(policy)
  }
  pruneBatch(policy: PrunePolicy, limit: number) {
    return this.retention.batch(policy, limit)
  }

  // ---- moving history between stores -------------------------------------------------------------

  exportHistory(chunkRows?: number): AsyncGenerator<HistoryChunk> {
    return this.history.export(chunkRows)
  }
  async importHistory(chunks: AsyncIterable<HistoryChunk>) {
    if (this.readonly) throw new StoreError(`the store ${this.displayName} is open for reading only.`)
    return this.history.import(chunks)
  }
}

/** bigint columns (times in ms, ids, counts) as numbers: they stay far below 2^53. */
function typeParser(driver: typeof pg) {
  return ((oid: number, format?: 'text' | 'binary') => {
    if (oid === 20 && format !== 'binary') return (value: string) => Number(value)
    return driver.types.getTypeParser(oid, format as 'text')
  }) as pg.CustomTypesConfig['getTypeParser']
}
