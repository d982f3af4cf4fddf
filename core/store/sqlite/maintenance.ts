import type Database from 'better-sqlite3'
import { type Row, toParked } from '../rows.js'
import { resumeRequest } from '../rules.js'
import type { MaintenanceState, ParkedRequest, RunRecord, RunRequestSpec } from '../types.js'
import { statements } from './rows.js'

/**
 * The maintenance gate and the requests parked while it is on. The gate is a settings row read
 * inside every transaction that would create a run: never a cached flag.
 */
export class MaintenanceSql {
  private readonly s

  private readonly db: Database.Database

  constructor(db: Database.Database) {
    this.db = db
    this.s = statements(db, {
      getSetting: 'SELECT value FROM settings WHERE key = ?',
      putSetting: `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
      deleteSetting: 'DELETE FROM settings WHERE key = ?',
      insertParked: `INSERT INTO parked_requests (origin, selection, config, tags, run_key, guard, parent_run_id, partition_key, created_at)
         VALUES (@origin, @selection, @config, @tags, @run_key, @guard, @parent_run_id, @partition_key, @created_at)`,
      findParkedKey:
        'SELECT id FROM parked_requests WHERE origin = ? AND run_key = ? AND replayed_at IS NULL',
      // a schedule's missed policy while parked: only its N most recent pending requests stay
      trimParked: `DELETE FROM parked_requests WHERE origin = ? AND replayed_at IS NULL AND id NOT IN (
           SELECT id FROM parked_requests WHERE origin = ? AND replayed_at IS NULL ORDER BY id DESC LIMIT ?)`,
      pendingParked: 'SELECT * FROM parked_requests WHERE replayed_at IS NULL ORDER BY id LIMIT ?',
      allParked: 'SELECT * FROM parked_requests ORDER BY id LIMIT ?',
      markReplayed:
        'UPDATE parked_requests SET replayed_at = ?, replay_run_id = ?, replay_outcome = ? WHERE id = ? AND replayed_at IS NULL',
      getParked: 'SELECT * FROM parked_requests WHERE id = ?',
      countParked: 'SELECT count(*) AS n FROM parked_requests WHERE replayed_at IS NULL',
    })
  }

  /** The gate, or null when it is off (inside the caller's transaction). */
  gate(): MaintenanceState | null {
    const row = this.s.getSetting.get('maintenance') as { value: string } | undefined
    return row ? (JSON.parse(row.value) as MaintenanceState) : null
  }

  setOn(state: MaintenanceState): boolean {
    return this.db
      .transaction(() => {
        if (this.gate()) return false
        this.s.putSetting.run('maintenance', JSON.stringify(state), state.since)
        return true
      })
      .immediate()
  }

  setOff(): MaintenanceState | null {
    return this.db
      .transaction(() => {
        const state = this.gate()
        if (state) this.s.deleteSetting.run('maintenance')
        return state
      })
      .immediate()
  }

  /** Keeps a request to replay when maintenance ends (inside the caller's transaction). */
  park(r: Omit<RunRequestSpec, 'origin'> & { origin: string; now: number }): number {
    const info = this.s.insertParked.run({
      origin: r.origin,
      selection: r.selection,
      config: JSON.stringify(r.config),
      tags: JSON.stringify(r.tags ?? {}),
      run_key: r.runKey ?? null,
      guard: r.guard ? JSON.stringify(r.guard) : null,
      parent_run_id: r.parentRunId ?? null,
      partition_key: r.partitionKey ?? null,
      created_at: r.now,
    })
    return Number(info.lastInsertRowid)
  }

  /**
   * Parks a request unless the same key is parked already (a sensor re-evaluating is one request);
   * `keep` trims the origin's pending requests to the most recent ones (a schedule's missed policy).
   */
  parkRequest(r: Parameters<MaintenanceSql['park']>[0], keep?: number): number {
    if (r.runKey !== undefined) {
      const parked = this.s.findParkedKey.get(r.origin, r.runKey) as { id: number } | undefined
      if (parked) return parked.id
    }
    const id = this.park(r)
    if (keep !== undefined) this.s.trimParked.run(r.origin, r.origin, keep)
    return id
  }

  parkForResume(run: RunRecord, now: number): number {
    return this.park(resumeRequest(run, now))
  }

  list(options: { pending?: boolean; limit?: number } = {}): ParkedRequest[] {
    const rows = (options.pending ? this.s.pendingParked : this.s.allParked).all(options.limit ?? -1) as Row[]
    return rows.map(toParked)
  }

  get(id: number): ParkedRequest | undefined {
    const row = this.s.getParked.get(id) as Row | undefined
    return row ? toParked(row) : undefined
  }

  markReplayed(id: number, now: number, runId: string | null, outcome: string): void {
    this.s.markReplayed.run(now, runId, outcome, id)
  }

  count(): number {
    return (this.s.countParked.get() as { n: number }).n
  }
}
