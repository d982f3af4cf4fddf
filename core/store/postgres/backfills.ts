import { escapeLike } from '../rows.js'
import type { BackfillRecord, BackfillStatus, BackfillSubmitOutcome, NewRun } from '../types.js'
import { type Conn, type Db, statements } from './db.js'
import type { MaintenanceSql } from './maintenance.js'
import type { RunsSql } from './runs.js'

const S = statements('backfills', {
  insert: `INSERT INTO backfills (id, status, spec, state, version, created_at, updated_at, ended_at)
    VALUES ($1, $2, $3, $4, 1, $5, $5, NULL)`,
  get: 'SELECT * FROM backfills WHERE id = $1',
  lockRow: 'SELECT version FROM backfills WHERE id = $1 FOR UPDATE',
  find: `SELECT * FROM backfills WHERE id LIKE $1 ORDER BY created_at DESC, id DESC LIMIT 2`,
  list: 'SELECT * FROM backfills ORDER BY created_at DESC, id DESC LIMIT $1',
  listActive: `SELECT * FROM backfills WHERE status IN ('requested', 'canceling') ORDER BY created_at, id`,
  save: `UPDATE backfills SET status = $2, state = $3, version = version + 1, updated_at = $4, ended_at = $5
    WHERE id = $1 AND version = $6`,
})

interface BackfillRow {
  id: string
  status: BackfillStatus
  spec: string
  state: string
  version: number | string
  created_at: number | string
  updated_at: number | string
  ended_at: number | string | null
}

function toBackfill(row: BackfillRow): BackfillRecord {
  return {
    id: row.id,
    status: row.status,
    spec: JSON.parse(row.spec) as BackfillRecord['spec'],
    state: JSON.parse(row.state) as BackfillRecord['state'],
    version: Number(row.version),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    endedAt: row.ended_at === null ? null : Number(row.ended_at),
  }
}

/** Backfills (see the SQLite twin): the row locked FOR UPDATE while a run is created for it. */
export class BackfillsSql {
  private readonly db: Db
  private readonly runs: RunsSql
  private readonly maintenance: MaintenanceSql

  constructor(db: Db, runs: RunsSql, maintenance: MaintenanceSql) {
    this.db = db
    this.runs = runs
    this.maintenance = maintenance
  }

  async createBackfill(record: BackfillRecord): Promise<BackfillRecord> {
    await this.db.run(S.insert, [
      record.id,
      record.status,
      JSON.stringify(record.spec),
      JSON.stringify(record.state),
      record.createdAt,
    ])
    return (await this.getBackfill(record.id))!
  }

  async getBackfill(id: string, c: Pick<Conn, 'row'> = this.db): Promise<BackfillRecord | undefined> {
    const row = await c.row<BackfillRow>(S.get, [id])
    return row ? toBackfill(row) : undefined
  }

  async findBackfill(idOrPrefix: string): Promise<BackfillRecord | undefined> {
    const exact = await this.getBackfill(idOrPrefix)
    if (exact) return exact
    const rows = await this.db.rows<BackfillRow>(S.find, [`${escapeLike(idOrPrefix)}%`])
    return rows.length === 1 ? toBackfill(rows[0]!) : undefined
  }

  async listBackfills(options: { active?: boolean; limit?: number }): Promise<BackfillRecord[]> {
    const rows = options.active
      ? await this.db.rows<BackfillRow>(S.listActive)
      : await this.db.rows<BackfillRow>(S.list, [options.limit ?? 100])
    return rows.map(toBackfill)
  }

  async saveBackfill(
    next: BackfillRecord,
    expectedVersion: number,
    now: number,
    c: Pick<Conn, 'run'> = this.db,
  ): Promise<boolean> {
    return (
      (await c.run(S.save, [
        next.id,
        next.status,
        JSON.stringify(next.state),
        now,
        next.endedAt,
        expectedVersion,
      ])) > 0
    )
  }

  submitBackfillRun(
    next: BackfillRecord,
    expectedVersion: number,
    run: NewRun,
    now: number,
  ): Promise<BackfillSubmitOutcome> {
    return this.db.tx(async (c): Promise<BackfillSubmitOutcome> => {
      const current = await c.row<{ version: number | string }>(S.lockRow, [next.id])
      if (!current || Number(current.version) !== expectedVersion) return { outcome: 'stale' }
      if (await this.maintenance.gateShared(c))
        return { outcome: 'blocked', reason: 'maintenance mode is on' }
      const blockedBy = await this.runs.firstFullHold(c, run.holds ?? [], run.id)
      if (blockedBy) {
        return {
          outcome: 'blocked',
          reason: `run guard \`${blockedBy.hold}\` is full (run ${blockedBy.runId})`,
        }
      }
      await this.runs.insertRunRow(c, { ...run, status: 'queued' })
      await this.saveBackfill(next, expectedVersion, now, c)
      return { outcome: 'created', runId: run.id, version: expectedVersion + 1 }
    })
  }
}
