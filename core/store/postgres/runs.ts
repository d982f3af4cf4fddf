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
import { type Conn, type Db, statements } from './db.js'
import type { EventsSql } from './events.js'
import { Lock, lock, lockAll } from './locks.js'
import type { MaintenanceSql } from './maintenance.js'

const S = statements('runs', {
  getRunKey: 'SELECT run_id FROM run_keys WHERE origin = $1 AND run_key = $2',
  insertRunKey: `INSERT INTO run_keys (origin, run_key, run_id, created_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (origin, run_key) DO NOTHING`,
  insertRun: `INSERT INTO runs (id, status, selection, plan, reused, config, tags, origin, run_key, parent_run_id,
       root_run_id, partition_key, created_at, started_at, owner_pid, owner_host, heartbeat_at, guard, guard_limit)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
  insertSteps: `INSERT INTO steps (run_id, key, plan_index, status, partition_key)
     SELECT $1, key, ord - 1, 'pending', $3 FROM unnest($2::text[]) WITH ORDINALITY AS p(key, ord)`,
  insertHolds: `INSERT INTO run_holds (run_id, hold, hold_limit)
     SELECT $1, hold, hold_limit FROM unnest($2::text[], $3::int[]) AS h(hold, hold_limit)`,
  getRun: 'SELECT * FROM runs WHERE id = $1',
  lockRun: 'SELECT * FROM runs WHERE id = $1 FOR NO KEY UPDATE',
  findRunPrefix: `SELECT * FROM runs WHERE id LIKE $1 ESCAPE '\\' ORDER BY id DESC LIMIT $2`,
  listRuns: `SELECT * FROM runs
     WHERE ($1::text[] IS NULL OR status = ANY($1::text[])) AND ($2::text IS NULL OR id < $2)
     ORDER BY id DESC LIMIT $3`,
  countRuns: 'SELECT status, count(*)::int AS n FROM runs GROUP BY status',
  failedSteps: `SELECT DISTINCT ON (run_id) run_id, key AS failed FROM steps
     WHERE run_id = ANY($1::text[]) AND status = 'failed' ORDER BY run_id, plan_index`,
  finishRun: `UPDATE runs SET status = $1, ended_at = $2, error = $3 WHERE id = $4 AND status IN ('started', 'queued', 'paused')`,
  heartbeat: `UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'started' AND owner_pid = $3 AND owner_host = $4
     RETURNING cancel_requested_at, pause_requested_at`,
  requestCancel: 'UPDATE runs SET cancel_requested_at = $1 WHERE id = $2 AND cancel_requested_at IS NULL',
  cancelQueued: `UPDATE runs SET status = 'canceled', cancel_requested_at = coalesce(cancel_requested_at, $1), ended_at = $2 WHERE id = $3`,
  cancelPendingSteps: `UPDATE steps SET status = 'canceled', ended_at = $1 WHERE run_id = $2 AND status = 'pending'`,
  closeRunningSteps: `UPDATE steps SET status = $1, ended_at = $2, error = $3 WHERE run_id = $4 AND status IN ('running', 'retrying')`,
  closeRunningAttempts: `UPDATE attempts SET status = $1, ended_at = $2, error = $3 WHERE run_id = $4 AND status = 'running'`,
  startedRuns: `SELECT * FROM runs WHERE status = 'started'`,
  lastEventTs: 'SELECT max(ts) AS ts FROM events WHERE run_id = $1',
  requestPause: 'UPDATE runs SET pause_requested_at = $1 WHERE id = $2 AND pause_requested_at IS NULL',
  requeuePaused: `UPDATE runs SET status = 'queued', pause_requested_at = NULL, owner_pid = NULL, owner_host = NULL
     WHERE id = $1 AND status = 'paused'`,
  pendingRequests: 'SELECT cancel_requested_at, pause_requested_at FROM runs WHERE id = $1',
  markPaused: `UPDATE runs SET status = 'paused', heartbeat_at = $1 WHERE id = $2 AND status = 'started'`,
  resumeRun: `UPDATE runs SET status = 'started', pause_requested_at = NULL, started_at = coalesce(started_at, $1),
       owner_pid = $2, owner_host = $3, heartbeat_at = $4 WHERE id = $5 AND status = 'paused'`,
  startRun: `UPDATE runs SET status = 'started', started_at = $1, owner_pid = $2, owner_host = $3, heartbeat_at = $4
     WHERE id = $5 AND status = 'queued'`,
  holdInFlight: `SELECT h.run_id FROM run_holds h JOIN runs r ON r.id = h.run_id
     WHERE h.hold = $1 AND r.status IN ('started', 'paused') ORDER BY r.seq`,
  getHolds: 'SELECT hold, hold_limit FROM run_holds WHERE run_id = $1 ORDER BY hold',
  freeDeadSlots: `DELETE FROM pool_slots WHERE pool = $1 AND run_id NOT IN (SELECT id FROM runs WHERE status = 'started')`,
  countSlots: 'SELECT count(*)::int AS n FROM pool_slots WHERE pool = $1',
  insertSlot: `INSERT INTO pool_slots (pool, run_id, step_key, acquired_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT DO NOTHING`,
  releaseSlot: 'DELETE FROM pool_slots WHERE pool = $1 AND run_id = $2 AND step_key = $3',
  releaseRunSlots: 'DELETE FROM pool_slots WHERE run_id = $1',
  poolUsage: 'SELECT * FROM pool_slots ORDER BY pool, acquired_at, run_id, step_key',
})

/** Runs and their lifecycle: creation, owner heartbeats, cancel and pause requests, recovery, pool slots. */
export class RunsSql {
  private readonly db: Db
  private readonly displayName: string
  private readonly maintenance: MaintenanceSql
  private readonly events: EventsSql

  constructor(db: Db, displayName: string, maintenance: MaintenanceSql, events: EventsSql) {
    this.db = db
    this.displayName = displayName
    this.maintenance = maintenance
    this.events = events
  }

  // ---- creation --------------------------------------------------------------------------------

  /**
   * Inserts a run and its pending steps in one transaction: the gate is read under a share lock
   * (turning maintenance on waits for this transaction), the holds are counted under their
   * advisory locks, and the run key is claimed by a unique constraint, so two processes asking
   * for the same (origin, key) at once still create one run.
   */
  createRun(runInput: NewRun): Promise<CreateRunResult> {
    return this.db.tx(async (c): Promise<CreateRunResult> => {
      let input = runInput
      const origin = input.origin ?? 'manual'
      const gate = await this.maintenance.gateShared(c)
      const existing = await this.runForKey(c, origin, input.runKey)
      if (existing) return { created: false, existingRunId: existing }
      if (gate && !input.force) {
        const parkedRequestId = await this.maintenance.park(c, { ...input, origin, now: input.now })
        return { created: false, parkedRequestId }
      }
      const blockedBy = await this.firstFullHold(c, input.holds ?? [], input.id)
      if (blockedBy) return { created: false, blockedBy }
      const taken = await this.claimKey(c, origin, input.runKey, input.id, input.now)
      if (taken) return { created: false, existingRunId: taken }
      if (gate) input = { ...input, tags: { ...input.tags, 'refresh/forced': 'maintenance' } }
      await this.insertRunRow(c, input)
      return { created: true, run: (await this.getRun(input.id, c))! }
    })
  }

  /** The run a key already created, if any. */
  async runForKey(c: Conn, origin: string, runKey: string | undefined): Promise<string | undefined> {
    if (runKey === undefined) return undefined
    return (await c.row<{ run_id: string }>(S.getRunKey, [origin, runKey]))?.run_id
  }

  /**
   * Claims a run key for a run; when another transaction claimed it first (the unique constraint
   * made this one wait for it), the run it points to.
   */
  async claimKey(
    c: Conn,
    origin: string,
    runKey: string | undefined,
    runId: string,
    now: number,
  ): Promise<string | undefined> {
    if (runKey === undefined) return undefined
    if ((await c.run(S.insertRunKey, [origin, runKey, runId, now])) > 0) return undefined
    return this.runForKey(c, origin, runKey)
  }

  /** Inserts a run row, its pending steps and its holds (inside the caller's transaction). */
  async insertRunRow(c: Conn, input: NewRun & { guard?: string; guardLimit?: number }): Promise<void> {
    const started = input.status === 'started'
    await c.run(S.insertRun, [
      input.id,
      input.status,
      input.selection,
      JSON.stringify(input.plan),
      JSON.stringify(input.reused ?? {}),
      JSON.stringify(input.config),
      JSON.stringify(input.tags ?? {}),
      input.origin ?? 'manual',
      input.runKey ?? null,
      input.parentRunId ?? null,
      input.rootRunId ?? input.parentRunId ?? null,
      input.partitionKey ?? null,
      input.now,
      started ? input.now : null,
      input.owner?.pid ?? null,
      input.owner?.host ?? null,
      started ? input.now : null,
      input.guard ?? null,
      input.guardLimit ?? null,
    ])
    if (input.plan.length > 0) await c.run(S.insertSteps, [input.id, input.plan, input.partitionKey ?? null])
    const holds = input.holds ?? []
    if (holds.length > 0) {
      await c.run(S.insertHolds, [input.id, holds.map((h) => h.key), holds.map((h) => h.limit)])
    }
  }

  /**
   * The first of a run's holds that is full, and the run that fills it. Takes each hold's lock
   * first (held to COMMIT), so the count stays true until the caller's run is in.
   */
  async firstFullHold(
    c: Conn,
    holds: readonly RunHold[],
    self: string,
  ): Promise<{ runId: string; hold: string } | undefined> {
    if (holds.length === 0) return undefined
    await lockAll(
      c,
      Lock.hold,
      holds.map((h) => h.key),
    )
    for (const h of holds) {
      const holders = (await c.rows<{ run_id: string }>(S.holdInFlight, [h.key])).filter(
        (r) => r.run_id !== self,
      )
      if (holders.length >= h.limit) return { runId: holders[0]!.run_id, hold: h.key }
    }
    return undefined
  }

  async runHolds(runId: string, c: Conn = this.db): Promise<RunHold[]> {
    return (await c.rows<{ hold: string; hold_limit: number }>(S.getHolds, [runId])).map((r) => ({
      key: r.hold,
      limit: r.hold_limit,
    }))
  }

  /** queued -> started for its owner (inside the caller's transaction, once the checks passed). */
  async start(c: Conn, runId: string, owner: RunOwner, now: number): Promise<void> {
    await c.run(S.startRun, [now, owner.pid, owner.host, now, runId])
  }

  // ---- reads -----------------------------------------------------------------------------------

  async getRun(id: string, c: Conn = this.db): Promise<RunRecord | undefined> {
    const row = await c.row(S.getRun, [id])
    return row ? toRun(row) : undefined
  }

  /** The run, locked for this transaction's update (other writers of the row wait). */
  async lockRun(c: Conn, id: string): Promise<RunRecord | undefined> {
    const row = await c.row(S.lockRun, [id])
    return row ? toRun(row) : undefined
  }

  private static readonly MATCHES_SHOWN = 10

  async findRun(idOrPrefix: string): Promise<RunRecord | undefined> {
    const exact = await this.getRun(idOrPrefix)
    if (exact) return exact
    if (idOrPrefix.length === 0) return undefined
    const shownMax = RunsSql.MATCHES_SHOWN
    const rows = (await this.db.rows(S.findRunPrefix, [`${escapeLike(idOrPrefix)}%`, shownMax + 1])).map(
      toRun,
    )
    if (rows.length > 1) {
      const count = rows.length > shownMax ? `more than ${shownMax}` : String(rows.length)
      const lines = rows.slice(0, shownMax).map((r) => `  ${r.id}  ${r.status.padEnd(8)}  ${r.selection}`)
      throw new StoreError(
        `run id prefix \`${idOrPrefix}\` is ambiguous: it matches ${count} runs; type more of the id.${rows.length > shownMax ? ` The newest ${shownMax} of them:` : ''}\n${lines.join('\n')}`,
      )
    }
    return rows[0]
  }

  async listRuns(filter: RunFilter = {}): Promise<RunRecord[]> {
    const statuses =
      filter.status === undefined ? null : Array.isArray(filter.status) ? filter.status : [filter.status]
    const rows = await this.db.rows(S.listRuns, [statuses, filter.before ?? null, filter.limit ?? null])
    return rows.map(toRun)
  }

  async failedSteps(runIds: readonly string[]): Promise<Map<string, string>> {
    const rows = await this.db.rows<{ run_id: string; failed: string }>(S.failedSteps, [runIds])
    return new Map(rows.map((r) => [r.run_id, r.failed]))
  }

  async countRuns(): Promise<Record<RunStatus, number>> {
    const counts: Record<RunStatus, number> = {
      queued: 0,
      started: 0,
      paused: 0,
      success: 0,
      failure: 0,
      canceled: 0,
    }
    for (const row of await this.db.rows<{ status: RunStatus; n: number }>(S.countRuns))
      counts[row.status] = row.n
    return counts
  }

  private requireRun(run: RunRecord | undefined, runId: string): RunRecord {
    if (!run) throw new StoreError(`no run \`${runId}\` in ${this.displayName}; \`refresh runs\` lists them.`)
    return run
  }

  // ---- the owner's side ------------------------------------------------------------------------

  finishRun(
    runId: string,
    status: 'success' | 'failure' | 'canceled',
    now: number,
    error?: ErrorInfo,
  ): Promise<boolean> {
    return this.db.tx(async (c) => {
      const changed =
        (await c.run(S.finishRun, [status, now, error ? JSON.stringify(error) : null, runId])) > 0
      if (changed) await c.run(S.releaseRunSlots, [runId])
      return changed
    })
  }

  async heartbeat(runId: string, owner: RunOwner, now: number): Promise<'ok' | 'cancel' | 'pause' | 'lost'> {
    const row = await this.db.row<{ cancel_requested_at: number | null; pause_requested_at: number | null }>(
      S.heartbeat,
      [now, runId, owner.pid, owner.host],
    )
    if (!row) return 'lost'
    if (row.cancel_requested_at !== null) return 'cancel'
    return row.pause_requested_at === null ? 'ok' : 'pause'
  }

  async pendingRequests(runId: string): Promise<{ cancel: boolean; pause: boolean }> {
    const row = await this.db.row<{ cancel_requested_at: number | null; pause_requested_at: number | null }>(
      S.pendingRequests,
      [runId],
    )
    return { cancel: row?.cancel_requested_at != null, pause: row?.pause_requested_at != null }
  }

  async markPaused(runId: string, now: number): Promise<boolean> {
    return (await this.db.run(S.markPaused, [now, runId])) > 0
  }

  // ---- requests from other processes -----------------------------------------------------------

  requestCancel(runId: string, now: number): Promise<RunStatus> {
    return this.db.tx(async (c) => {
      const run = this.requireRun(await this.lockRun(c, runId), runId)
      if (run.status === 'queued' || run.status === 'paused') {
        await c.run(S.cancelQueued, [now, now, runId])
        await c.run(S.cancelPendingSteps, [now, runId])
        return 'canceled'
      }
      if (run.status === 'started') await c.run(S.requestCancel, [now, runId])
      return run.status
    })
  }

  requestPause(runId: string, now: number): Promise<RunStatus> {
    return this.db.tx(async (c) => {
      const run = this.requireRun(await this.lockRun(c, runId), runId)
      if (run.status !== 'started') {
        throw new StoreError(`run ${runId} is ${run.status}; only a started run can be paused.`)
      }
      await c.run(S.requestPause, [now, runId])
      return run.status
    })
  }

  async requeuePausedRun(runId: string): Promise<boolean> {
    return (await this.db.run(S.requeuePaused, [runId])) > 0
  }

  claimPausedRun(runId: string, owner: RunOwner, now: number): Promise<boolean> {
    return this.db.tx(async (c) => {
      if (await this.maintenance.gateShared(c)) return false
      if ((await this.lockRun(c, runId))?.status !== 'paused') return false
      await c.run(S.resumeRun, [now, owner.pid, owner.host, now, runId])
      return true
    })
  }

  // ---- crash recovery --------------------------------------------------------------------------

  async recoverInterruptedRuns(options: RecoverOptions = {}): Promise<RecoveredRun[]> {
    const now = options.now ?? Date.now()
    const recovered: RecoveredRun[] = []
    for (const run of await this.interruptedRuns(options)) {
      const error = interruptedError(run.runId, run.reason)
      if (await this.closeRun(run.runId, 'failure', error, now, options))
        recovered.push({ runId: run.runId, reason: run.reason })
    }
    return recovered
  }

  async interruptedRuns(options: RecoverOptions = {}): Promise<InterruptedRun[]> {
    const out: InterruptedRun[] = []
    for (const row of await this.db.rows(S.startedRuns)) {
      const run = toRun(row)
      if (options.runIds && !options.runIds.includes(run.id)) continue
      const reason = interruptedReason(run, options)
      if (reason !== undefined)
        out.push({ runId: run.id, reason, lastSeenAt: await this.lastSeenAt(this.db, run) })
    }
    return out
  }

  private async lastSeenAt(c: Conn, run: RunRecord): Promise<number> {
    const row = await c.row<{ ts: number | null }>(S.lastEventTs, [run.id])
    return Math.max(run.heartbeatAt ?? 0, run.startedAt ?? run.createdAt, row?.ts ?? 0)
  }

  abandonRun(runId: string, status: 'failure' | 'canceled', reason: string, now: number): Promise<boolean> {
    return this.closeRun(runId, status, abandonedError(status, reason), now)
  }

  /**
   * Closes a started (or queued) run that no executor will finish, with the run's row locked: an
   * interrupted run is closed only if it still looks interrupted once locked (its owner may have
   * beaten meanwhile), so two daemons recovering at once close it once.
   */
  private closeRun(
    runId: string,
    status: 'failure' | 'canceled',
    error: ErrorInfo,
    now: number,
    recheck?: RecoverOptions,
  ): Promise<boolean> {
    return this.db.tx((c) => this.closeRunIn(c, runId, status, error, now, recheck))
  }

  abandonRuns(
    runIds: readonly string[],
    status: 'failure' | 'canceled',
    reason: string,
    now: number,
  ): Promise<string[]> {
    const error = abandonedError(status, reason)
    return this.db.tx(async (c) => {
      const closed: string[] = []
      for (const id of runIds) if (await this.closeRunIn(c, id, status, error, now)) closed.push(id)
      return closed
    })
  }

  /** `closeRun` inside the caller's transaction. */
  private async closeRunIn(
    c: Conn,
    runId: string,
    status: 'failure' | 'canceled',
    error: ErrorInfo,
    now: number,
    recheck?: RecoverOptions,
  ): Promise<boolean> {
    const run = await this.lockRun(c, runId)
    if (run?.status !== 'started' && run?.status !== 'queued') return false
    if (recheck && interruptedReason(run, recheck) === undefined) return false
    const errorJson = JSON.stringify(error)
    const endedAt = error.name === 'InterruptedError' ? Math.min(now, await this.lastSeenAt(c, run)) : now
    const stepStatus = status === 'canceled' ? 'canceled' : 'failed'
    await c.run(S.finishRun, [status, endedAt, errorJson, runId])
    await c.run(S.closeRunningSteps, [stepStatus, endedAt, errorJson, runId])
    await c.run(S.closeRunningAttempts, [stepStatus, endedAt, errorJson, runId])
    await c.run(S.cancelPendingSteps, [endedAt, runId])
    await c.run(S.releaseRunSlots, [runId])
    const steps = await this.events.getSteps(runId, c)
    await this.events.insertEvents(c, closingEvents(run, steps, status, error, now, endedAt))
    return true
  }

  // ---- pools -----------------------------------------------------------------------------------

  /**
   * Takes a slot in a named pool if fewer than `limit` are held by started runs: the count and the
   * insert run under the pool's advisory lock, so processes on any host never exceed the limit
   * together. Slots of runs that are no longer started are freed on the way.
   */
  tryAcquirePoolSlot(
    pool: string,
    limit: number,
    runId: string,
    step: string,
    now: number,
  ): Promise<boolean> {
    return this.db.tx(async (c) => {
      await lock(c, Lock.pool, pool)
      await c.run(S.freeDeadSlots, [pool])
      const row = await c.row<{ n: number }>(S.countSlots, [pool])
      if ((row?.n ?? 0) >= limit) return false
      await c.run(S.insertSlot, [pool, runId, step, now])
      return true
    })
  }

  async releasePoolSlot(pool: string, runId: string, step: string): Promise<void> {
    await this.db.run(S.releaseSlot, [pool, runId, step])
  }

  async poolUsage(): Promise<PoolSlot[]> {
    return (await this.db.rows<Row>(S.poolUsage)).map((r) => ({
      pool: r.pool as string,
      runId: r.run_id as string,
      step: r.step_key as string,
      acquiredAt: r.acquired_at as number,
    }))
  }
}
