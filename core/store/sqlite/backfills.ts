import type Database from 'better-sqlite3'
import { escapeLike } from '../rows.js'
import type { BackfillRecord, BackfillStatus, BackfillSubmitOutcome, NewRun } from '../types.js'
import type { MaintenanceSql } from './maintenance.js'
import { statements } from './rows.js'
import type { RunsSql } from './runs.js'

interface BackfillRow {
  id: string
  status: BackfillStatus
  spec: string
  state: string
  version: number
  created_at: number
  updated_at: number
  ended_at: number | null
}

export function toBackfill(row: BackfillRow): BackfillRecord {
  return {
    id: row.id,
    status: row.status,
    spec: JSON.parse(row.spec) as BackfillRecord['spec'],
    state: JSON.parse(row.state) as BackfillRecord['state'],
    version: row.version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    endedAt: row.ended_at,
  }
}

/**
 * Backfills: created, read, saved compare-and-set on their version, and their runs created one
 * at a time in the transaction that records the partitions as launched, so that a crash between
 * the two never launches a partition twice nor loses one.
 */
export class BackfillsSql {
  private readonly s

  private readonly db: Database.Database
  private readonly runs: RunsSql
  private readonly maintenance: MaintenanceSql

  constructor(db: Database.Database, runs: RunsSql, maintenance: MaintenanceSql) {
    this.db = db
    this.runs = runs
    this.maintenance = maintenance
    this.s = statements(db, {
      insert: `INSERT INTO backfills (id, status, spec, state, version, created_at, updated_at, ended_at)
        VALUES (@id, @status, @spec, @state, 1, @created_at, @created_at, NULL)`,
      get: 'SELECT * FROM backfills WHERE id = ?',
      find: `SELECT * FROM backfills WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC, id DESC LIMIT 2`,
      list: 'SELECT * FROM backfills ORDER BY created_at DESC, id DESC LIMIT ?',
      listActive: `SELECT * FROM backfills WHERE status IN ('requested', 'canceling') ORDER BY created_at, id`,
      save: `UPDATE backfills SET status = @status, state = @state, version = version + 1, updated_at = @now,
          ended_at = @ended_at
        WHERE id = @id AND version = @version`,
    })
  }

  createBackfill(record: BackfillRecord): BackfillRecord {
    this.s.insert.run({
      id: record.id,
      status: record.status,
      spec: JSON.stringify(record.spec),
      state: JSON.stringify(record.state),
      created_at: record.createdAt,
    })
    return this.getBackfill(record.id)!
  }

  getBackfill(id: string): BackfillRecord | undefined {
    const row = this.s.get.get(id) as BackfillRow | undefined
    return row ? toBackfill(row) : undefined
  }

  /** A backfill by id or unique prefix. */
  findBackfill(idOrPrefix: string): BackfillRecord | undefined {
    const exact = this.getBackfill(idOrPrefix)
    if (exact) return exact
    const rows = this.s.find.all(`${escapeLike(idOrPrefix)}%`) as BackfillRow[]
    return rows.length === 1 ? toBackfill(rows[0]!) : undefined
  }

  listBackfills(options: { active?: boolean; limit?: number }): BackfillRecord[] {
    const rows = options.active
      ? (this.s.listActive.all() as BackfillRow[])
      : (this.s.list.all(options.limit ?? 100) as BackfillRow[])
    return rows.map(toBackfill)
  }

  saveBackfill(next: BackfillRecord, expectedVersion: number, now: number): boolean {
    return (
      this.s.save.run({
        id: next.id,
        status: next.status,
        state: JSON.stringify(next.state),
        now,
        ended_at: next.endedAt,
        version: expectedVersion,
      }).changes > 0
    )
  }

  submitBackfillRun(
    next: BackfillRecord,
    expectedVersion: number,
    run: NewRun,
    now: number,
  ): BackfillSubmitOutcome {
    return this.db
      .transaction((): BackfillSubmitOutcome => {
        const current = this.s.get.get(next.id) as BackfillRow | undefined
        if (!current || current.version !== expectedVersion) return { outcome: 'stale' }
        if (this.maintenance.gate()) return { outcome: 'blocked', reason: 'maintenance mode is on' }
        const blockedBy = this.runs.firstFullHold(run.holds ?? [], run.id)
        if (blockedBy) {
          return {
            outcome: 'blocked',
            reason: `run guard \`${blockedBy.hold}\` is full (run ${blockedBy.runId})`,
          }
        }
        this.runs.insertRunRow({ ...run, status: 'queued' })
        this.saveBackfill(next, expectedVersion, now)
        return { outcome: 'created', runId: run.id, version: expectedVersion + 1 }
      })
      .immediate()
  }
}
