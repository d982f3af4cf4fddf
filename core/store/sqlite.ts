import { existsSync, mkdirSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { type ErrorInfo, StoreError } from '../errors.js'
import type { RunEvent } from '../events.js'
import { type JsonObject, parseJson } from '../json.js'
import { APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION } from './schema.js'
import type {
  AttemptRecord,
  CreateRunResult,
  EventFilter,
  MaterializationRecord,
  NewRun,
  RunFilter,
  RunRecord,
  RunStatus,
  StepRecord,
  StoredEvent,
  WriteBatch,
} from './types.js'

export interface OpenStoreOptions {
  /** Open for reading only; the file must exist. */
  readonly?: boolean
  /** How long a write waits for another process's lock before failing (default 5000 ms). */
  busyTimeoutMs?: number
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

/** How often a running run writes its heartbeat; staleness thresholds are multiples of it. */
export const HEARTBEAT_INTERVAL_MS = 5_000
const DEFAULT_STALE_AFTER_MS = 60_000

type Row = Record<string, unknown>

/**
 * The SQLite store: every run, step, attempt, event and materialization. All SQL lives here,
 * behind methods, with prepared statements only. Writes are short IMMEDIATE transactions, so
 * several processes (a daemon, a CLI run, `refresh runs`) can share one file.
 */
export class SqliteStore implements Disposable, AsyncDisposable {
  readonly path: string
  readonly readonly: boolean
  private readonly db: Database.Database
  private readonly stmts: ReturnType<typeof prepare>
  private closed = false
  private readonly writeTx: (batch: WriteBatch) => void

  constructor(db: Database.Database, path: string, readonly: boolean) {
    this.db = db
    this.path = path
    this.readonly = readonly
    this.stmts = prepare(db)
    const writeTx = db.transaction((b: WriteBatch) => {
      const s = this.stmts
      for (const step of b.steps) {
        s.updateStep.run(
          step.status,
          step.attempts,
          step.startedAt,
          step.endedAt,
          step.error ? JSON.stringify(step.error) : null,
          step.reason,
          step.runId,
          step.key,
        )
      }
      for (const a of b.attempts) {
        s.upsertAttempt.run(
          a.runId,
          a.step,
          a.attempt,
          a.status,
          a.startedAt,
          a.endedAt,
          a.error ? JSON.stringify(a.error) : null,
        )
      }
      for (const m of b.materializations) {
        s.insertMaterialization.run(
          m.asset,
          m.runId,
          m.attempt,
          m.ts,
          JSON.stringify(m.metadata),
          m.partitionKey,
        )
      }
      for (const e of b.events) {
        s.insertEvent.run(e.runId, e.ts, e.type, 'step' in e ? e.step : null, JSON.stringify(e))
      }
    })
    this.writeTx = (batch) => writeTx.immediate(batch)
  }

  get isMemory(): boolean {
    return this.path === ':memory:'
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.db.close()
  }

  get isOpen(): boolean {
    return !this.closed
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** The schema version of the open file. */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number
  }

  // ---- runs --------------------------------------------------------------------------------

  /**
   * Inserts a run and its pending steps in one transaction. With a run key, the key is checked and
   * claimed in the same IMMEDIATE transaction: two processes asking for the same (origin, key) at
   * once still create one run; the other gets the existing run's id.
   */
  createRun(input: NewRun): CreateRunResult {
    const origin = input.origin ?? 'manual'
    return this.db
      .transaction((): CreateRunResult => {
        if (input.runKey !== undefined) {
          const existing = this.stmts.getRunKey.get(origin, input.runKey) as { run_id: string } | undefined
          if (existing) return { created: false, existingRunId: existing.run_id }
          this.stmts.insertRunKey.run(origin, input.runKey, input.id, input.now)
        }
        const started = input.status === 'started'
        this.stmts.insertRun.run({
          id: input.id,
          status: input.status,
          selection: input.selection,
          plan: JSON.stringify(input.plan),
          reused: JSON.stringify(input.reused ?? {}),
          config: JSON.stringify(input.config),
          tags: JSON.stringify(input.tags ?? {}),
          origin,
          run_key: input.runKey ?? null,
          parent_run_id: input.parentRunId ?? null,
          root_run_id: input.rootRunId ?? input.parentRunId ?? null,
          partition_key: input.partitionKey ?? null,
          created_at: input.now,
          started_at: started ? input.now : null,
          owner_pid: input.owner?.pid ?? null,
          owner_host: input.owner?.host ?? null,
          heartbeat_at: started ? input.now : null,
        })
        input.plan.forEach((key, index) => {
          this.stmts.insertStep.run(input.id, key, index, input.partitionKey ?? null)
        })
        return { created: true, run: this.getRun(input.id)! }
      })
      .immediate()
  }

  getRun(id: string): RunRecord | undefined {
    const row = this.stmts.getRun.get(id) as Row | undefined
    return row ? toRun(row) : undefined
  }

  /** Finds a run by id or by a unique prefix of its id (as typed by users). */
  findRun(idOrPrefix: string): RunRecord | undefined {
    const exact = this.getRun(idOrPrefix)
    if (exact) return exact
    if (idOrPrefix.length < 4) return undefined
    const rows = this.stmts.findRunPrefix.all(`${escapeLike(idOrPrefix)}%`) as Row[]
    if (rows.length > 1) {
      throw new StoreError(`run id prefix \`${idOrPrefix}\` matches several runs; type more of the id.`)
    }
    return rows[0] ? toRun(rows[0]) : undefined
  }

  listRuns(filter: RunFilter = {}): RunRecord[] {
    const statuses =
      filter.status === undefined
        ? null
        : JSON.stringify(Array.isArray(filter.status) ? filter.status : [filter.status])
    const rows = this.stmts.listRuns.all({
      statuses,
      before: filter.before ?? null,
      limit: filter.limit ?? -1,
    }) as Row[]
    return rows.map(toRun)
  }

  countRuns(): Record<RunStatus, number> {
    const counts: Record<RunStatus, number> = {
      queued: 0,
      started: 0,
      paused: 0,
      success: 0,
      failure: 0,
      canceled: 0,
    }
    for (const row of this.stmts.countRuns.all() as Array<{ status: RunStatus; n: number }>)
      counts[row.status] = row.n
    return counts
  }

  /** Marks a run started by this process (a queued run being launched). */
  startRun(runId: string, owner: { pid: number; host: string }, now: number): void {
    const changed = this.stmts.startRun.run(now, owner.pid, owner.host, now, runId).changes
    if (changed === 0) throw new StoreError(`run ${runId} is not queued; it cannot be started.`)
  }

  /**
   * Ends a run. Only a run still `started` (or `queued`) changes: a run that recovery already
   * marked as interrupted keeps that verdict. Returns whether the row changed.
   */
  finishRun(
    runId: string,
    status: 'success' | 'failure' | 'canceled',
    now: number,
    error?: ErrorInfo,
  ): boolean {
    return this.db
      .transaction(() => {
        const changed =
          this.stmts.finishRun.run(status, now, error ? JSON.stringify(error) : null, runId).changes > 0
        if (changed) this.stmts.releaseRunSlots.run(runId)
        return changed
      })
      .immediate()
  }

  /**
   * Writes the owner's heartbeat and reads back whether cancellation was requested. Returns
   * `lost` when the run is no longer started by this owner (recovery took it).
   */
  heartbeat(runId: string, owner: { pid: number; host: string }, now: number): 'ok' | 'cancel' | 'lost' {
    const row = this.stmts.heartbeat.get(now, runId, owner.pid, owner.host) as
      | { cancel_requested_at: number | null }
      | undefined
    if (!row) return 'lost'
    return row.cancel_requested_at === null ? 'ok' : 'cancel'
  }

  /** Reads whether cancellation of a run was requested (cheap; polled by the owner). */
  isCancelRequested(runId: string): boolean {
    const row = this.stmts.cancelRequested.get(runId) as { cancel_requested_at: number | null } | undefined
    return row?.cancel_requested_at != null
  }

  /**
   * Asks the process that owns a run to cancel it (it polls within a fraction of a second).
   * A queued run is canceled at once. Returns the run's status after the request.
   */
  requestCancel(runId: string, now: number): RunStatus {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (!run) throw new StoreError(`no run \`${runId}\` in ${this.path}; \`refresh runs\` lists them.`)
        if (run.status === 'queued' || run.status === 'paused') {
          this.stmts.cancelQueued.run(now, now, runId)
          this.stmts.cancelPendingSteps.run(now, runId)
          return 'canceled'
        }
        if (run.status === 'started') {
          this.stmts.requestCancel.run(now, runId)
        }
        return run.status
      })
      .immediate()
  }

  // ---- steps, attempts, events, materializations --------------------------------------------

  /** Commits an executor's accumulated writes in one transaction. */
  write(batch: WriteBatch): void {
    if (
      batch.events.length === 0 &&
      batch.steps.length === 0 &&
      batch.attempts.length === 0 &&
      batch.materializations.length === 0
    ) {
      return
    }
    this.writeTx(batch)
  }

  getSteps(runId: string): StepRecord[] {
    return (this.stmts.getSteps.all(runId) as Row[]).map(toStep)
  }

  getAttempts(runId: string, step?: string): AttemptRecord[] {
    const rows = (
      step === undefined ? this.stmts.getAttempts.all(runId) : this.stmts.getStepAttempts.all(runId, step)
    ) as Row[]
    return rows.map(toAttempt)
  }

  getEvents(runId: string, filter: EventFilter = {}): StoredEvent[] {
    const rows = this.stmts.getEvents.all({
      run_id: runId,
      after: filter.afterId ?? 0,
      step: filter.step ?? null,
      types: filter.types ? JSON.stringify(filter.types) : null,
      limit: filter.limit ?? -1,
    }) as Array<{ id: number; payload: string }>
    return rows.map((row) => ({ ...(JSON.parse(row.payload) as RunEvent), id: row.id }))
  }

  countEvents(runId?: string): number {
    const row = (
      runId === undefined ? this.stmts.countAllEvents.get() : this.stmts.countRunEvents.get(runId)
    ) as {
      n: number
    }
    return row.n
  }

  latestMaterialization(asset: string): MaterializationRecord | undefined {
    const row = this.stmts.latestMaterialization.get(asset) as Row | undefined
    return row ? toMaterialization(row) : undefined
  }

  /** The latest materialization of every asset that has one, keyed by asset. */
  latestMaterializations(): Map<string, MaterializationRecord> {
    const out = new Map<string, MaterializationRecord>()
    for (const row of this.stmts.latestMaterializations.all() as Row[]) {
      const m = toMaterialization(row)
      out.set(m.asset, m)
    }
    return out
  }

  /** The materialization an asset got in a given run, if any. */
  runMaterialization(runId: string, asset: string): MaterializationRecord | undefined {
    const row = this.stmts.runMaterialization.get(runId, asset) as Row | undefined
    return row ? toMaterialization(row) : undefined
  }

  materializationsForRun(runId: string): MaterializationRecord[] {
    return (this.stmts.runMaterializations.all(runId) as Row[]).map(toMaterialization)
  }

  // ---- pools ---------------------------------------------------------------------------------

  /**
   * Takes a slot in a named pool if fewer than `limit` are held by started runs. The count and
   * the insert happen in one IMMEDIATE transaction, so processes sharing the file never exceed
   * the limit together. Slots of runs that are no longer started are freed on the way.
   */
  tryAcquirePoolSlot(pool: string, limit: number, runId: string, step: string, now: number): boolean {
    return this.db
      .transaction(() => {
        this.stmts.freeDeadSlots.run(pool)
        const { n } = this.stmts.countSlots.get(pool) as { n: number }
        if (n >= limit) return false
        this.stmts.insertSlot.run(pool, runId, step, now)
        return true
      })
      .immediate()
  }

  releasePoolSlot(pool: string, runId: string, step: string): void {
    this.stmts.releaseSlot.run(pool, runId, step)
  }

  poolUsage(): Array<{ pool: string; runId: string; step: string; acquiredAt: number }> {
    return (this.stmts.poolUsage.all() as Row[]).map((r) => ({
      pool: r.pool as string,
      runId: r.run_id as string,
      step: r.step_key as string,
      acquiredAt: r.acquired_at as number,
    }))
  }

  // ---- crash recovery ------------------------------------------------------------------------

  /**
   * Marks `started` runs whose owning process is gone as failed (interrupted), with their running
   * steps failed, unstarted steps canceled, pool slots freed and a closing event, so that they can
   * be re-executed from failure. On this host a run is gone when its pid no longer exists; on
   * another host when its heartbeat is older than `staleAfterMs`. (A live pid with a heartbeat ten
   * times that old is taken as a reused pid.)
   */
  recoverInterruptedRuns(options: RecoverOptions = {}): RecoveredRun[] {
    const now = options.now ?? Date.now()
    const staleAfter = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS
    const host = hostname()
    const candidates = (this.stmts.startedRuns.all() as Row[])
      .map(toRun)
      .filter((r) => !options.runIds || options.runIds.includes(r.id))
    const recovered: RecoveredRun[] = []
    for (const run of candidates) {
      const beat = run.heartbeatAt ?? run.startedAt ?? run.createdAt
      const age = now - beat
      let reason: string | undefined
      if (run.ownerHost === host && run.ownerPid !== null) {
        if (!pidAlive(run.ownerPid)) reason = `its process (pid ${run.ownerPid}) is gone`
        else if (age > staleAfter * 10) reason = `its heartbeat stopped ${Math.round(age / 1000)} s ago`
      } else if (age > staleAfter) {
        reason = `its heartbeat stopped ${Math.round(age / 1000)} s ago (owner ${run.ownerHost ?? '?'}:${run.ownerPid ?? '?'})`
      }
      if (reason === undefined) continue
      if (this.markInterrupted(run.id, reason, now)) recovered.push({ runId: run.id, reason })
    }
    return recovered
  }

  private markInterrupted(runId: string, reason: string, now: number): boolean {
    return this.closeRun(
      runId,
      'failure',
      {
        name: 'InterruptedError',
        message: `run interrupted: ${reason}. Re-execute it from failure with \`refresh retry ${runId}\`.`,
      },
      now,
    )
  }

  /**
   * Closes a started run that its executor will not finish (the owner was told to stop at once):
   * running steps and attempts end `canceled`, unstarted steps too, slots are freed, and a closing
   * event is written so that followers of the run's events see its end.
   */
  abandonRun(runId: string, status: 'failure' | 'canceled', reason: string, now: number): boolean {
    return this.closeRun(
      runId,
      status,
      { name: status === 'canceled' ? 'CanceledError' : 'Error', message: reason },
      now,
    )
  }

  private closeRun(runId: string, status: 'failure' | 'canceled', error: ErrorInfo, now: number): boolean {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (run?.status !== 'started') return false
        const errorJson = JSON.stringify(error)
        const interrupted = error.name === 'InterruptedError'
        // an interrupted run ended when its owner last showed signs of life
        const endedAt = interrupted ? Math.max(run.heartbeatAt ?? now, run.startedAt ?? now) : now
        const stepStatus = status === 'canceled' ? 'canceled' : 'failed'
        this.stmts.finishRun.run(status, endedAt, errorJson, runId)
        this.stmts.closeRunningSteps.run(stepStatus, endedAt, errorJson, runId)
        this.stmts.closeRunningAttempts.run(stepStatus, endedAt, errorJson, runId)
        this.stmts.cancelPendingSteps.run(endedAt, runId)
        this.stmts.releaseRunSlots.run(runId)
        const steps = this.getSteps(runId)
        const count = (s: string) => steps.filter((step) => step.status === s).length
        const events: RunEvent[] = [
          { type: 'log', runId, ts: now, step: null, level: 'error', message: error.message },
          {
            type: 'run:end',
            runId,
            ts: now,
            status,
            durationMs: endedAt - (run.startedAt ?? run.createdAt),
            succeeded: count('succeeded'),
            failed: count('failed'),
            skipped: count('skipped'),
            canceled: count('canceled'),
          },
        ]
        for (const e of events) this.stmts.insertEvent.run(runId, e.ts, e.type, null, JSON.stringify(e))
        return true
      })
      .immediate()
  }
}

/** Opens (creating if needed) a store file, or `:memory:`. Refuses files it must not touch. */
export function openStore(path: string, options: OpenStoreOptions = {}): SqliteStore {
  const memory = path === ':memory:'
  const file = memory ? path : resolve(path)
  const readonly = options.readonly === true
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
  try {
    db = new Database(file, { readonly, fileMustExist: readonly, timeout: options.busyTimeoutMs ?? 5_000 })
  } catch (cause) {
    throw new StoreError(`cannot open the store ${file}: ${(cause as Error).message}`, { cause })
  }
  try {
    checkAndMigrate(db, file, readonly)
    if (!memory && !readonly) db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.pragma('foreign_keys = ON')
  } catch (error) {
    db.close()
    throw error
  }
  return new SqliteStore(db, file, readonly)
}

/**
 * Reads the file's identity before writing anything: a file that is not SQLite, an SQLite file
 * of another application, or a refresh store of a newer schema is refused untouched.
 */
function checkAndMigrate(db: Database.Database, file: string, readonly: boolean): void {
  let appId: number
  let version: number
  let objects: number
  try {
    appId = db.pragma('application_id', { simple: true }) as number
    version = db.pragma('user_version', { simple: true }) as number
    objects = (db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as { n: number }).n
  } catch (cause) {
    throw new StoreError(
      `${file} is not a refresh store (${(cause as Error).message}); point --store at a refresh store or at a new file.`,
      { cause },
    )
  }
  if (appId !== APPLICATION_ID && !(appId === 0 && objects === 0)) {
    throw new StoreError(
      `${file} is an SQLite database but not a refresh store; it was left untouched. Point --store at a refresh store or at a new file.`,
    )
  }
  if (version > SCHEMA_VERSION) {
    throw new StoreError(
      `${file} was written by a newer version of refresh (schema ${version}; this version knows up to ${SCHEMA_VERSION}); it was left untouched. Upgrade refresh to open it.`,
    )
  }
  if (version === SCHEMA_VERSION) return
  if (readonly) {
    throw new StoreError(
      `${file} has schema ${version} and needs migrating to ${SCHEMA_VERSION}; open it writable once.`,
    )
  }
  db.transaction(() => {
    // another process may have migrated between our read and this IMMEDIATE transaction
    let current = db.pragma('user_version', { simple: true }) as number
    for (; current < SCHEMA_VERSION; current++) db.exec(MIGRATIONS[current]!)
    db.pragma(`application_id = ${APPLICATION_ID}`)
    db.pragma(`user_version = ${SCHEMA_VERSION}`)
  }).immediate()
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`)
}

function toRun(row: Row): RunRecord {
  return {
    id: row.id as string,
    status: row.status as RunStatus,
    selection: row.selection as string,
    plan: parseJson<string[]>(row.plan as string, []),
    reused: parseJson<Record<string, string>>(row.reused as string, {}),
    config: parseJson<Record<string, unknown>>(row.config as string, {}),
    tags: parseJson<Record<string, string>>(row.tags as string, {}),
    origin: row.origin as string,
    runKey: (row.run_key as string | null) ?? null,
    parentRunId: (row.parent_run_id as string | null) ?? null,
    rootRunId: (row.root_run_id as string | null) ?? null,
    partitionKey: (row.partition_key as string | null) ?? null,
    createdAt: row.created_at as number,
    startedAt: (row.started_at as number | null) ?? null,
    endedAt: (row.ended_at as number | null) ?? null,
    ownerPid: (row.owner_pid as number | null) ?? null,
    ownerHost: (row.owner_host as string | null) ?? null,
    heartbeatAt: (row.heartbeat_at as number | null) ?? null,
    cancelRequestedAt: (row.cancel_requested_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
  }
}

function toStep(row: Row): StepRecord {
  return {
    runId: row.run_id as string,
    key: row.key as string,
    index: row.plan_index as number,
    status: row.status as StepRecord['status'],
    attempts: row.attempts as number,
    startedAt: (row.started_at as number | null) ?? null,
    endedAt: (row.ended_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
    reason: (row.reason as string | null) ?? null,
  }
}

function toAttempt(row: Row): AttemptRecord {
  return {
    runId: row.run_id as string,
    step: row.step_key as string,
    attempt: row.attempt as number,
    status: row.status as AttemptRecord['status'],
    startedAt: row.started_at as number,
    endedAt: (row.ended_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
  }
}

function toMaterialization(row: Row): MaterializationRecord {
  return {
    id: row.id as number,
    asset: row.asset_key as string,
    runId: row.run_id as string,
    attempt: row.attempt as number,
    ts: row.ts as number,
    metadata: parseJson<JsonObject>(row.metadata as string, {}),
    partitionKey: (row.partition_key as string | null) ?? null,
  }
}

function prepare(db: Database.Database) {
  return {
    getRunKey: db.prepare('SELECT run_id FROM run_keys WHERE origin = ? AND run_key = ?'),
    insertRunKey: db.prepare(
      'INSERT INTO run_keys (origin, run_key, run_id, created_at) VALUES (?, ?, ?, ?)',
    ),
    insertRun: db.prepare(
      `INSERT INTO runs (id, status, selection, plan, reused, config, tags, origin, run_key, parent_run_id,
         root_run_id, partition_key, created_at, started_at, owner_pid, owner_host, heartbeat_at)
       VALUES (@id, @status, @selection, @plan, @reused, @config, @tags, @origin, @run_key, @parent_run_id,
         @root_run_id, @partition_key, @created_at, @started_at, @owner_pid, @owner_host, @heartbeat_at)`,
    ),
    insertStep: db.prepare(
      `INSERT INTO steps (run_id, key, plan_index, status, partition_key) VALUES (?, ?, ?, 'pending', ?)`,
    ),
    getRun: db.prepare('SELECT * FROM runs WHERE id = ?'),
    findRunPrefix: db.prepare(`SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2`),
    listRuns: db.prepare(
      `SELECT * FROM runs
       WHERE (@statuses IS NULL OR status IN (SELECT value FROM json_each(@statuses)))
         AND (@before IS NULL OR id < @before)
       ORDER BY id DESC LIMIT @limit`,
    ),
    countRuns: db.prepare('SELECT status, count(*) AS n FROM runs GROUP BY status'),
    startRun: db.prepare(
      `UPDATE runs SET status = 'started', started_at = ?, owner_pid = ?, owner_host = ?, heartbeat_at = ?
       WHERE id = ? AND status = 'queued'`,
    ),
    finishRun: db.prepare(
      `UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ? AND status IN ('started', 'queued', 'paused')`,
    ),
    heartbeat: db.prepare(
      `UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'started' AND owner_pid = ? AND owner_host = ?
       RETURNING cancel_requested_at`,
    ),
    cancelRequested: db.prepare('SELECT cancel_requested_at FROM runs WHERE id = ?'),
    requestCancel: db.prepare(
      'UPDATE runs SET cancel_requested_at = ? WHERE id = ? AND cancel_requested_at IS NULL',
    ),
    cancelQueued: db.prepare(
      `UPDATE runs SET status = 'canceled', cancel_requested_at = coalesce(cancel_requested_at, ?), ended_at = ? WHERE id = ?`,
    ),
    cancelPendingSteps: db.prepare(
      `UPDATE steps SET status = 'canceled', ended_at = ? WHERE run_id = ? AND status = 'pending'`,
    ),
    closeRunningSteps: db.prepare(
      `UPDATE steps SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND status IN ('running', 'retrying')`,
    ),
    closeRunningAttempts: db.prepare(
      `UPDATE attempts SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND status = 'running'`,
    ),
    startedRuns: db.prepare(`SELECT * FROM runs WHERE status = 'started'`),
    updateStep: db.prepare(
      `UPDATE steps SET status = ?, attempts = ?, started_at = ?, ended_at = ?, error = ?, reason = ?
       WHERE run_id = ? AND key = ?`,
    ),
    upsertAttempt: db.prepare(
      `INSERT INTO attempts (run_id, step_key, attempt, status, started_at, ended_at, error) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (run_id, step_key, attempt) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
         error = excluded.error`,
    ),
    insertMaterialization: db.prepare(
      'INSERT INTO materializations (asset_key, run_id, attempt, ts, metadata, partition_key) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    insertEvent: db.prepare(
      'INSERT INTO events (run_id, ts, type, step_key, payload) VALUES (?, ?, ?, ?, ?)',
    ),
    getSteps: db.prepare('SELECT * FROM steps WHERE run_id = ? ORDER BY plan_index'),
    getAttempts: db.prepare('SELECT * FROM attempts WHERE run_id = ? ORDER BY started_at, step_key, attempt'),
    getStepAttempts: db.prepare('SELECT * FROM attempts WHERE run_id = ? AND step_key = ? ORDER BY attempt'),
    getEvents: db.prepare(
      `SELECT id, payload FROM events
       WHERE run_id = @run_id AND id > @after
         AND (@step IS NULL OR step_key = @step)
         AND (@types IS NULL OR type IN (SELECT value FROM json_each(@types)))
       ORDER BY id LIMIT @limit`,
    ),
    countAllEvents: db.prepare('SELECT count(*) AS n FROM events'),
    countRunEvents: db.prepare('SELECT count(*) AS n FROM events WHERE run_id = ?'),
    latestMaterialization: db.prepare(
      'SELECT * FROM materializations WHERE asset_key = ? ORDER BY id DESC LIMIT 1',
    ),
    latestMaterializations: db.prepare(
      `SELECT m.* FROM materializations m
       JOIN (SELECT max(id) AS id FROM materializations GROUP BY asset_key) latest ON latest.id = m.id`,
    ),
    runMaterialization: db.prepare(
      'SELECT * FROM materializations WHERE run_id = ? AND asset_key = ? ORDER BY id DESC LIMIT 1',
    ),
    runMaterializations: db.prepare('SELECT * FROM materializations WHERE run_id = ? ORDER BY id'),
    freeDeadSlots: db.prepare(
      `DELETE FROM pool_slots WHERE pool = ? AND run_id NOT IN (SELECT id FROM runs WHERE status = 'started')`,
    ),
    countSlots: db.prepare('SELECT count(*) AS n FROM pool_slots WHERE pool = ?'),
    insertSlot: db.prepare(
      'INSERT INTO pool_slots (pool, run_id, step_key, acquired_at) VALUES (?, ?, ?, ?)',
    ),
    releaseSlot: db.prepare('DELETE FROM pool_slots WHERE pool = ? AND run_id = ? AND step_key = ?'),
    releaseRunSlots: db.prepare('DELETE FROM pool_slots WHERE run_id = ?'),
    poolUsage: db.prepare('SELECT * FROM pool_slots ORDER BY pool, acquired_at'),
  }
}
