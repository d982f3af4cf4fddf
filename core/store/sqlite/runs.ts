import type Database from 'better-sqlite3'
import { type ErrorInfo, StoreError } from '../../errors.js'
import { abandonedError, closingEvents, interruptedError, interruptedReason } from '../recovery.js'
import { escapeLike, type Row, toRun } from '../rows.js'
import type {
  CreateRunResult,
  InterruptedRun,
  NewRun,
  PoolSlot,
  RecoveredRun,
  RecoverOptions,
  RunFilter,
  RunHold,
  RunOwner,
  RunRecord,
  RunStatus,
} from '../types.js'
import type { EventsSql } from './events.js'
import type { MaintenanceSql } from './maintenance.js'
import { statements } from './rows.js'

/** Runs and their lifecycle: creation, owner heartbeats, cancel and pause requests, recovery, pool slots. */
export class RunsSql {
  private readonly s

  private readonly db: Database.Database
  private readonly displayName: string
  private readonly maintenance: MaintenanceSql
  private readonly events: EventsSql

  constructor(db: Database.Database, displayName: string, maintenance: MaintenanceSql, events: EventsSql) {
    this.db = db
    this.displayName = displayName
    this.maintenance = maintenance
    this.events = events
    this.s = statements(db, {
      getRunKey: 'SELECT run_id FROM run_keys WHERE origin = ? AND run_key = ?',
      insertRunKey: 'INSERT INTO run_keys (origin, run_key, run_id, created_at) VALUES (?, ?, ?, ?)',
      insertRun: `INSERT INTO runs (id, status, selection, plan, reused, config, tags, origin, run_key, parent_run_id,
           root_run_id, partition_key, created_at, started_at, owner_pid, owner_host, heartbeat_at, guard, guard_limit)
         VALUES (@id, @status, @selection, @plan, @reused, @config, @tags, @origin, @run_key, @parent_run_id,
           @root_run_id, @partition_key, @created_at, @started_at, @owner_pid, @owner_host, @heartbeat_at, @guard,
           @guard_limit)`,
      insertStep: `INSERT INTO steps (run_id, key, plan_index, status, partition_key) VALUES (?, ?, ?, 'pending', ?)`,
      getRun: 'SELECT * FROM runs WHERE id = ?',
      findRunPrefix: `SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT ?`,
      listRuns: `SELECT * FROM runs
         WHERE (@statuses IS NULL OR status IN (SELECT value FROM json_each(@statuses)))
           AND (@before IS NULL OR id < @before)
         ORDER BY id DESC LIMIT @limit`,
      countRuns: 'SELECT status, count(*) AS n FROM runs GROUP BY status',
      failedSteps: `SELECT run_id, failed FROM (
           SELECT r.value AS run_id,
             (SELECT s.key FROM steps s WHERE s.run_id = r.value AND s.status = 'failed'
              ORDER BY s.plan_index LIMIT 1) AS failed
           FROM json_each(?) r)
         WHERE failed IS NOT NULL`,
      finishRun: `UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ? AND status IN ('started', 'queued', 'paused')`,
      heartbeat: `UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'started' AND owner_pid = ? AND owner_host = ?
         RETURNING cancel_requested_at, pause_requested_at`,
      requestCancel: 'UPDATE runs SET cancel_requested_at = ? WHERE id = ? AND cancel_requested_at IS NULL',
      cancelQueued: `UPDATE runs SET status = 'canceled', cancel_requested_at = coalesce(cancel_requested_at, ?), ended_at = ? WHERE id = ?`,
      cancelPendingSteps: `UPDATE steps SET status = 'canceled', ended_at = ? WHERE run_id = ? AND status = 'pending'`,
      closeRunningSteps: `UPDATE steps SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND status IN ('running', 'retrying')`,
      closeRunningAttempts: `UPDATE attempts SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND status = 'running'`,
      startedRuns: `SELECT * FROM runs WHERE status = 'started'`,
      lastEventTs: 'SELECT max(ts) AS ts FROM events WHERE run_id = ?',
      requestPause: 'UPDATE runs SET pause_requested_at = ? WHERE id = ? AND pause_requested_at IS NULL',
      requeuePaused: `UPDATE runs SET status = 'queued', pause_requested_at = NULL, owner_pid = NULL, owner_host = NULL
         WHERE id = ? AND status = 'paused'`,
      pendingRequests: 'SELECT cancel_requested_at, pause_requested_at FROM runs WHERE id = ?',
      markPaused: `UPDATE runs SET status = 'paused', heartbeat_at = ? WHERE id = ? AND status = 'started'`,
      resumeRun: `UPDATE runs SET status = 'started', pause_requested_at = NULL, started_at = coalesce(started_at, ?),
           owner_pid = ?, owner_host = ?, heartbeat_at = ? WHERE id = ? AND status = 'paused'`,
      startRun: `UPDATE runs SET status = 'started', started_at = ?, owner_pid = ?, owner_host = ?, heartbeat_at = ?
         WHERE id = ? AND status = 'queued'`,
      holdInFlight: `SELECT h.run_id FROM run_holds h JOIN runs r ON r.id = h.run_id
         WHERE h.hold = ? AND r.status IN ('started', 'paused') ORDER BY r.rowid`,
      getHolds: 'SELECT hold, hold_limit FROM run_holds WHERE run_id = ? ORDER BY hold',
      insertHold: 'INSERT INTO run_holds (run_id, hold, hold_limit) VALUES (?, ?, ?)',
      freeDeadSlots: `DELETE FROM pool_slots WHERE pool = ? AND run_id NOT IN (SELECT id FROM runs WHERE status = 'started')`,
      countSlots: 'SELECT count(*) AS n FROM pool_slots WHERE pool = ?',
      insertSlot: 'INSERT INTO pool_slots (pool, run_id, step_key, acquired_at) VALUES (?, ?, ?, ?)',
      releaseSlot: 'DELETE FROM pool_slots WHERE pool = ? AND run_id = ? AND step_key = ?',
      releaseRunSlots: 'DELETE FROM pool_slots WHERE run_id = ?',
      poolUsage: 'SELECT * FROM pool_slots ORDER BY pool, acquired_at',
    })
  }

  // ---- creation --------------------------------------------------------------------------------

  /**
   * Inserts a run and its pending steps in one IMMEDIATE transaction, with its run key checked and
   * claimed, the maintenance gate read and its holds counted in that same transaction: two
   * processes asking for the same (origin, key) at once still create one run.
   */
  createRun(runInput: NewRun): CreateRunResult {
    let input = runInput
    const origin = input.origin ?? 'manual'
    return this.db
      .transaction((): CreateRunResult => {
        const existing = this.runForKey(origin, input.runKey)
        if (existing) return { created: false, existingRunId: existing }
        const gate = this.maintenance.gate()
        if (gate && !input.force) {
          const parkedRequestId = this.maintenance.park({ ...input, origin, now: input.now })
          return { created: false, parkedRequestId }
        }
        const blockedBy = this.firstFullHold(input.holds ?? [], input.id)
        if (blockedBy) return { created: false, blockedBy }
        this.claimKey(origin, input.runKey, input.id, input.now)
        if (gate) input = { ...input, tags: { ...input.tags, 'refresh/forced': 'maintenance' } }
        this.insertRunRow(input)
        return { created: true, run: this.getRun(input.id)! }
      })
      .immediate()
  }

  /** The run a key already created, if any (inside the caller's transaction). */
  runForKey(origin: string, runKey: string | undefined): string | undefined {
    if (runKey === undefined) return undefined
    return (this.s.getRunKey.get(origin, runKey) as { run_id: string } | undefined)?.run_id
  }

  /** Claims a run key for a run (inside the caller's transaction, after `runForKey` found none). */
  claimKey(origin: string, runKey: string | undefined, runId: string, now: number): void {
    if (runKey !== undefined) this.s.insertRunKey.run(origin, runKey, runId, now)
  }

  /** Inserts a run row, its pending steps and its holds (inside the caller's transaction). */
  insertRunRow(input: NewRun & { guard?: string; guardLimit?: number }): void {
    const started = input.status === 'started'
    this.s.insertRun.run({
      id: input.id,
      status: input.status,
      selection: input.selection,
      plan: JSON.stringify(input.plan),
      reused: JSON.stringify(input.reused ?? {}),
      config: JSON.stringify(input.config),
      tags: JSON.stringify(input.tags ?? {}),
      origin: input.origin ?? 'manual',
      run_key: input.runKey ?? null,
      parent_run_id: input.parentRunId ?? null,
      root_run_id: input.rootRunId ?? input.parentRunId ?? null,
      partition_key: input.partitionKey ?? null,
      created_at: input.now,
      started_at: started ? input.now : null,
      owner_pid: input.owner?.pid ?? null,
      owner_host: input.owner?.host ?? null,
      heartbeat_at: started ? input.now : null,
      guard: input.guard ?? null,
      guard_limit: input.guardLimit ?? null,
    })
    input.plan.forEach((key, index) => {
      this.s.insertStep.run(input.id, key, index, input.partitionKey ?? null)
    })
    for (const h of input.holds ?? []) this.s.insertHold.run(input.id, h.key, h.limit)
  }

  /** The first of a run's holds that is full, and the run that fills it (inside a transaction). */
  firstFullHold(holds: readonly RunHold[], self: string): { runId: string; hold: string } | undefined {
    for (const h of holds) {
      const holders = (this.s.holdInFlight.all(h.key) as Array<{ run_id: string }>).filter(
        (r) => r.run_id !== self,
      )
      if (holders.length >= h.limit) return { runId: holders[0]!.run_id, hold: h.key }
    }
    return undefined
  }

  runHolds(runId: string): RunHold[] {
    return (this.s.getHolds.all(runId) as Array<{ hold: string; hold_limit: number }>).map((r) => ({
      key: r.hold,
      limit: r.hold_limit,
    }))
  }

  /** queued -> started for its owner (inside the caller's transaction, once the checks passed). */
  start(runId: string, owner: RunOwner, now: number): void {
    this.s.startRun.run(now, owner.pid, owner.host, now, runId)
  }

  // ---- reads -----------------------------------------------------------------------------------

  getRun(id: string): RunRecord | undefined {
    const row = this.s.getRun.get(id) as Row | undefined
    return row ? toRun(row) : undefined
  }

  /** Most matches an ambiguous prefix lists. */
  private static readonly MATCHES_SHOWN = 10

  findRun(idOrPrefix: string): RunRecord | undefined {
    const exact = this.getRun(idOrPrefix)
    if (exact) return exact
    if (idOrPrefix.length === 0) return undefined
    const shownMax = RunsSql.MATCHES_SHOWN
    const rows = (this.s.findRunPrefix.all(`${escapeLike(idOrPrefix)}%`, shownMax + 1) as Row[]).map(toRun)
    if (rows.length > 1) {
      const count = rows.length > shownMax ? `more than ${shownMax}` : String(rows.length)
      const lines = rows.slice(0, shownMax).map((r) => `  ${r.id}  ${r.status.padEnd(8)}  ${r.selection}`)
      throw new StoreError(
        `run id prefix \`${idOrPrefix}\` is ambiguous: it matches ${count} runs; type more of the id.${rows.length > shownMax ? ` The newest ${shownMax} of them:` : ''}\n${lines.join('\n')}`,
      )
    }
    return rows[0]
  }

  listRuns(filter: RunFilter = {}): RunRecord[] {
    const statuses =
      filter.status === undefined
        ? null
        : JSON.stringify(Array.isArray(filter.status) ? filter.status : [filter.status])
    const rows = this.s.listRuns.all({
      statuses,
      before: filter.before ?? null,
      limit: filter.limit ?? -1,
    }) as Row[]
    return rows.map(toRun)
  }

  failedSteps(runIds: readonly string[]): Map<string, string> {
    const rows = this.s.failedSteps.all(JSON.stringify(runIds)) as Array<{ run_id: string; failed: string }>
    return new Map(rows.map((r) => [r.run_id, r.failed]))
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
    for (const row of this.s.countRuns.all() as Array<{ status: RunStatus; n: number }>)
      counts[row.status] = row.n
    return counts
  }

  private requireRun(runId: string): RunRecord {
    const run = this.getRun(runId)
    if (!run) throw new StoreError(`no run \`${runId}\` in ${this.displayName}; \`refresh runs\` lists them.`)
    return run
  }

  // ---- the owner's side ------------------------------------------------------------------------

  /**
   * Ends a run. Only a run still started, queued or paused changes: a run that recovery already
   * marked as interrupted keeps that verdict.
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
          this.s.finishRun.run(status, now, error ? JSON.stringify(error) : null, runId).changes > 0
        if (changed) this.s.releaseRunSlots.run(runId)
        return changed
      })
      .immediate()
  }

  heartbeat(runId: string, owner: RunOwner, now: number): 'ok' | 'cancel' | 'pause' | 'lost' {
    const row = this.s.heartbeat.get(now, runId, owner.pid, owner.host) as
      | { cancel_requested_at: number | null; pause_requested_at: number | null }
      | undefined
    if (!row) return 'lost'
    if (row.cancel_requested_at !== null) return 'cancel'
    return row.pause_requested_at === null ? 'ok' : 'pause'
  }

  pendingRequests(runId: string): { cancel: boolean; pause: boolean } {
    const row = this.s.pendingRequests.get(runId) as
      | { cancel_requested_at: number | null; pause_requested_at: number | null }
      | undefined
    return { cancel: row?.cancel_requested_at != null, pause: row?.pause_requested_at != null }
  }

  markPaused(runId: string, now: number): boolean {
    return this.s.markPaused.run(now, runId).changes > 0
  }

  // ---- requests from other processes -----------------------------------------------------------

  requestCancel(runId: string, now: number): RunStatus {
    return this.db
      .transaction(() => {
        const run = this.requireRun(runId)
        if (run.status === 'queued' || run.status === 'paused') {
          this.s.cancelQueued.run(now, now, runId)
          this.s.cancelPendingSteps.run(now, runId)
          return 'canceled'
        }
        if (run.status === 'started') this.s.requestCancel.run(now, runId)
        return run.status
      })
      .immediate()
  }

  requestPause(runId: string, now: number): RunStatus {
    return this.db
      .transaction(() => {
        const run = this.requireRun(runId)
        if (run.status !== 'started') {
          throw new StoreError(`run ${runId} is ${run.status}; only a started run can be paused.`)
        }
        this.s.requestPause.run(now, runId)
        return run.status
      })
      .immediate()
  }

  requeuePausedRun(runId: string): boolean {
    return this.s.requeuePaused.run(runId).changes > 0
  }

  claimPausedRun(runId: string, owner: RunOwner, now: number): boolean {
    return this.db
      .transaction(() => {
        if (this.getRun(runId)?.status !== 'paused') return false
        if (this.maintenance.gate()) return false
        this.s.resumeRun.run(now, owner.pid, owner.host, now, runId)
        return true
      })
      .immediate()
  }

  // ---- crash recovery --------------------------------------------------------------------------

  /**
   * Marks started runs whose owning process is gone as failed (interrupted). On this host a run is
   * gone when its pid no longer exists; on another host when its heartbeat is older than
   * `staleAfterMs`. (A live pid with a heartbeat ten times that old is taken as a reused pid.)
   */
  recoverInterruptedRuns(options: RecoverOptions = {}): RecoveredRun[] {
    const now = options.now ?? Date.now()
    const recovered: RecoveredRun[] = []
    for (const run of this.interruptedRuns(options)) {
      if (this.closeRun(run.runId, 'failure', interruptedError(run.runId, run.reason), now))
        recovered.push({ runId: run.runId, reason: run.reason })
    }
    return recovered
  }

  /** The started runs whose owning process is gone (`interruptedReason`). Reads only. */
  interruptedRuns(options: RecoverOptions = {}): InterruptedRun[] {
    const out: InterruptedRun[] = []
    for (const row of this.s.startedRuns.all() as Row[]) {
      const run = toRun(row)
      if (options.runIds && !options.runIds.includes(run.id)) continue
      const reason = interruptedReason(run, options)
      if (reason !== undefined) out.push({ runId: run.id, reason, lastSeenAt: this.lastSeenAt(run) })
    }
    return out
  }

  /** A run's owner's last sign of life: its heartbeat (every few seconds) or its latest event. */
  private lastSeenAt(run: RunRecord): number {
    const { ts } = this.s.lastEventTs.get(run.id) as { ts: number | null }
    return Math.max(run.heartbeatAt ?? 0, run.startedAt ?? run.createdAt, ts ?? 0)
  }

  abandonRun(runId: string, status: 'failure' | 'canceled', reason: string, now: number): boolean {
    return this.closeRun(runId, status, abandonedError(status, reason), now)
  }

  abandonRuns(
    runIds: readonly string[],
    status: 'failure' | 'canceled',
    reason: string,
    now: number,
  ): string[] {
    const error = abandonedError(status, reason)
    // each close is a savepoint inside the one IMMEDIATE transaction
    return this.db.transaction(() => runIds.filter((id) => this.closeRun(id, status, error, now))).immediate()
  }

  /**
   * Closes a started (or queued) run that no executor will finish: running steps and attempts end
   * canceled (or failed), unstarted steps canceled, slots are freed, and closing events are written
   * so that followers of the run's events see its end.
   */
  private closeRun(runId: string, status: 'failure' | 'canceled', error: ErrorInfo, now: number): boolean {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (run?.status !== 'started' && run?.status !== 'queued') return false
        const errorJson = JSON.stringify(error)
        // an interrupted run ended when its owner last showed signs of life
        const endedAt = error.name === 'InterruptedError' ? Math.min(now, this.lastSeenAt(run)) : now
        const stepStatus = status === 'canceled' ? 'canceled' : 'failed'
        this.s.finishRun.run(status, endedAt, errorJson, runId)
        this.s.closeRunningSteps.run(stepStatus, endedAt, errorJson, runId)
        this.s.closeRunningAttempts.run(stepStatus, endedAt, errorJson, runId)
        this.s.cancelPendingSteps.run(endedAt, runId)
        this.s.releaseRunSlots.run(runId)
        const events = closingEvents(run, this.events.getSteps(runId), status, error, now, endedAt)
        this.events.insertEvents(events)
        return true
      })
      .immediate()
  }

  // ---- pools -----------------------------------------------------------------------------------

  /**
   * Takes a slot in a named pool if fewer than `limit` are held by started runs. The count and the
   * insert are one IMMEDIATE transaction, so processes sharing the file never exceed the limit
   * together. Slots of runs that are no longer started are freed on the way.
   */
  tryAcquirePoolSlot(pool: string, limit: number, runId: string, step: string, now: number): boolean {
    return this.db
      .transaction(() => {
        this.s.freeDeadSlots.run(pool)
        const { n } = this.s.countSlots.get(pool) as { n: number }
        if (n >= limit) return false
        this.s.insertSlot.run(pool, runId, step, now)
        return true
      })
      .immediate()
  }

  releasePoolSlot(pool: string, runId: string, step: string): void {
    this.s.releaseSlot.run(pool, runId, step)
  }

  poolUsage(): PoolSlot[] {
    return (this.s.poolUsage.all() as Row[]).map((r) => ({
      pool: r.pool as string,
      runId: r.run_id as string,
      step: r.step_key as string,
      acquiredAt: r.acquired_at as number,
    }))
  }
}
