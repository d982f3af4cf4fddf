import { toParked } from '../rows.js'
import { resumeRequest } from '../rules.js'
import type { MaintenanceState, ParkedRequest, RunRecord, RunRequestSpec } from '../types.js'
import { type Conn, type Db, statements } from './db.js'

const S = statements('maintenance', {
  gate: 'SELECT state FROM maintenance_gate WHERE id = 1',
  gateShared: 'SELECT state FROM maintenance_gate WHERE id = 1 FOR SHARE',
  gateLocked: 'SELECT state FROM maintenance_gate WHERE id = 1 FOR UPDATE',
  setGate: 'UPDATE maintenance_gate SET state = $1 WHERE id = 1',
  insertParked: `INSERT INTO parked_requests (origin, selection, config, tags, run_key, guard, parent_run_id, created_at, partition_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (origin, run_key) WHERE replayed_at IS NULL DO NOTHING
     RETURNING id`,
  findParkedKey: 'SELECT id FROM parked_requests WHERE origin = $1 AND run_key = $2 AND replayed_at IS NULL',
  trimParked: `DELETE FROM parked_requests WHERE origin = $1 AND replayed_at IS NULL AND id NOT IN (
       SELECT id FROM parked_requests WHERE origin = $1 AND replayed_at IS NULL ORDER BY id DESC LIMIT $2)`,
  pendingParked: 'SELECT * FROM parked_requests WHERE replayed_at IS NULL ORDER BY id LIMIT $1',
  allParked: 'SELECT * FROM parked_requests ORDER BY id LIMIT $1',
  markReplayed:
    'UPDATE parked_requests SET replayed_at = $1, replay_run_id = $2, replay_outcome = $3 WHERE id = $4 AND replayed_at IS NULL',
  lockParked: 'SELECT * FROM parked_requests WHERE id = $1 FOR UPDATE',
  countParked: 'SELECT count(*)::int AS n FROM parked_requests WHERE replayed_at IS NULL',
})

/**
 * The maintenance gate and the requests parked while it is on. The gate is one row: every
 * transaction that would create or start a run reads it under a share lock, and turning it on
 * takes the row's update lock, which waits for those transactions; so once `setOn` returns, no
 * run is created past it.
 */
export class MaintenanceSql {
  private readonly db: Db

  constructor(db: Db) {
    this.db = db
  }

  async gate(c: Conn = this.db): Promise<MaintenanceState | null> {
    return parseGate(await c.row<{ state: string | null }>(S.gate))
  }

  /** The gate, read under a share lock held to the end of the caller's transaction. */
  async gateShared(c: Conn): Promise<MaintenanceState | null> {
    return parseGate(await c.row<{ state: string | null }>(S.gateShared))
  }

  setOn(state: MaintenanceState): Promise<boolean> {
    return this.db.tx(async (c) => {
      if (parseGate(await c.row<{ state: string | null }>(S.gateLocked))) return false
      await c.run(S.setGate, [JSON.stringify(state)])
      return true
    })
  }

  setOff(): Promise<MaintenanceState | null> {
    return this.db.tx(async (c) => {
      const state = parseGate(await c.row<{ state: string | null }>(S.gateLocked))
      if (state) await c.run(S.setGate, [null])
      return state
    })
  }

  /**
   * Keeps a request to replay when maintenance ends (inside the caller's transaction); a request
   * whose key is parked already is that one (a sensor re-evaluating is one request).
   */
  async park(c: Conn, r: Omit<RunRequestSpec, 'origin'> & { origin: string; now: number }): Promise<number> {
    const inserted = await c.row<{ id: number }>(S.insertParked, [
      r.origin,
      r.selection,
      JSON.stringify(r.config),
      JSON.stringify(r.tags ?? {}),
      r.runKey ?? null,
      r.guard ? JSON.stringify(r.guard) : null,
      r.parentRunId ?? null,
      r.now,
      r.partitionKey ?? null,
    ])
    if (inserted) return inserted.id
    return (await c.row<{ id: number }>(S.findParkedKey, [r.origin, r.runKey]))!.id
  }

  /** Parks a request; `keep` trims the origin's pending requests to the most recent ones (a schedule's missed policy). */
  async parkRequest(c: Conn, r: Parameters<MaintenanceSql['park']>[1], keep?: number): Promise<number> {
    const id = await this.park(c, r)
    if (keep !== undefined) await c.run(S.trimParked, [r.origin, keep])
    return id
  }

  parkForResume(run: RunRecord, now: number): Promise<number> {
    return this.db.tx((c) => this.park(c, resumeRequest(run, now)))
  }

  async list(options: { pending?: boolean; limit?: number } = {}): Promise<ParkedRequest[]> {
    const rows = await this.db.rows(options.pending ? S.pendingParked : S.allParked, [options.limit ?? null])
    return rows.map(toParked)
  }

  /** A parked request, locked until the caller's transaction ends (one replayer at a time). */
  async lockParked(c: Conn, id: number): Promise<ParkedRequest | undefined> {
    const row = await c.row(S.lockParked, [id])
    return row ? toParked(row) : undefined
  }

  async markReplayed(c: Conn, id: number, now: number, runId: string | null, outcome: string): Promise<void> {
    await c.run(S.markReplayed, [now, runId, outcome, id])
  }

  async count(): Promise<number> {
    return (await this.db.row<{ n: number }>(S.countParked))?.n ?? 0
  }
}

function parseGate(row: { state: string | null } | undefined): MaintenanceState | null {
  return row?.state ? (JSON.parse(row.state) as MaintenanceState) : null
}
