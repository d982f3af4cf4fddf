import type { RunEvent } from '../../events.js'
import {
  eventOfRow,
  eventPayload,
  type Row,
  toAttempt,
  toCheckResult,
  toMaterialization,
  toStep,
} from '../rows.js'
import type {
  AttemptRecord,
  CheckResultRecord,
  EventFilter,
  MaterializationRecord,
  StepRecord,
  StoredEvent,
  WriteBatch,
} from '../types.js'
import { type Conn, type Db, statements } from './db.js'
import { Lock, lock } from './locks.js'

const S = statements('events', {
  // a batch's step and attempt rows in one statement each (arrays, not one round trip per row)
  updateSteps: `UPDATE steps s SET status = u.status, attempts = u.attempts, started_at = u.started_at,
       ended_at = u.ended_at, error = u.error, reason = u.reason
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::text[], $8::text[])
       AS u(run_id, key, status, attempts, started_at, ended_at, error, reason)
     WHERE s.run_id = u.run_id AND s.key = u.key`,
  upsertAttempts: `INSERT INTO attempts (run_id, step_key, attempt, status, started_at, ended_at, error)
     SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
     ON CONFLICT (run_id, step_key, attempt) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
       error = excluded.error`,
  insertMaterializations: `INSERT INTO materializations (asset_key, run_id, attempt, ts, metadata, partition_key)
     SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[])`,
  insertEvents: `INSERT INTO events (run_id, ts, type, step_key, payload)
     SELECT run_id, ts, type, step_key, payload
     FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS e(run_id, ts, type, step_key, payload, ord)
     ORDER BY ord`,
  getSteps: 'SELECT * FROM steps WHERE run_id = $1 ORDER BY plan_index',
  getAttempts: 'SELECT * FROM attempts WHERE run_id = $1 ORDER BY started_at, step_key, attempt',
  getStepAttempts: 'SELECT * FROM attempts WHERE run_id = $1 AND step_key = $2 ORDER BY attempt',
  getEvents: `SELECT id, run_id, ts, type, step_key, payload FROM events
     WHERE run_id = $1 AND id > $2 AND ($3::text IS NULL OR step_key = $3) AND ($4::text[] IS NULL OR type = ANY($4::text[]))
     ORDER BY id LIMIT $5`,
  countAllEvents: 'SELECT count(*)::bigint AS n FROM events',
  countRunEvents: 'SELECT count(*)::bigint AS n FROM events WHERE run_id = $1',
  maxEventId: 'SELECT max(id) AS id FROM events',
  runEndsAfter: `SELECT id, run_id FROM events WHERE id > $1 AND type = 'run:end' ORDER BY id LIMIT $2`,
  latestMaterialization: 'SELECT * FROM materializations WHERE asset_key = $1 ORDER BY id DESC LIMIT 1',
  latestPartitionMaterialization:
    'SELECT * FROM materializations WHERE asset_key = $1 AND partition_key = $2 ORDER BY id DESC LIMIT 1',
  latestMaterializations: `SELECT DISTINCT ON (asset_key) * FROM materializations ORDER BY asset_key, id DESC`,
  runMaterialization:
    'SELECT * FROM materializations WHERE run_id = $1 AND asset_key = $2 ORDER BY id DESC LIMIT 1',
  runMaterializations: 'SELECT * FROM materializations WHERE run_id = $1 ORDER BY id',
  insertCheckResults: `INSERT INTO check_results (run_id, asset_key, check_name, partition_key, passed, severity,
       blocking, ts, metadata, error)
     SELECT run_id, asset_key, check_name, partition_key, passed, severity, blocking, ts, metadata, error
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::text[], $7::smallint[],
       $8::bigint[], $9::text[], $10::text[]) WITH ORDINALITY
       AS c(run_id, asset_key, check_name, partition_key, passed, severity, blocking, ts, metadata, error, ord)
     ORDER BY ord`,
  // the newest row of each (asset, check, partition): one range of check_results_latest each
  latestCheckResults: `SELECT DISTINCT ON (asset_key, check_name, partition_key) * FROM check_results
     ORDER BY asset_key, check_name, partition_key NULLS FIRST, id DESC`,
  latestAssetCheckResults: `SELECT DISTINCT ON (check_name, partition_key) * FROM check_results
     WHERE asset_key = $1 ORDER BY check_name, partition_key NULLS FIRST, id DESC`,
  runCheckResults: 'SELECT * FROM check_results WHERE run_id = $1 ORDER BY id',
})

/** What a run writes as it goes: step and attempt states, events, materializations; and their reads. */
export class EventsSql {
  private readonly db: Db

  constructor(db: Db) {
    this.db = db
  }

  /** Commits an executor's accumulated writes in one transaction, a statement per kind of row. */
  async write(b: WriteBatch): Promise<void> {
    if (
      b.events.length === 0 &&
      b.steps.length === 0 &&
      b.attempts.length === 0 &&
      b.materializations.length === 0 &&
      (b.checks?.length ?? 0) === 0
    ) {
      return
    }
    await this.db.tx(async (c) => {
      if (b.steps.length > 0) {
        // one row per step in a statement: the last state of each wins, as row by row would
        const steps = [...new Map(b.steps.map((s) => [`${s.runId}\u0000${s.key}`, s])).values()]
        await c.run(S.updateSteps, [
          steps.map((s) => s.runId),
          steps.map((s) => s.key),
          steps.map((s) => s.status),
          steps.map((s) => s.attempts),
          steps.map((s) => s.startedAt),
          steps.map((s) => s.endedAt),
          steps.map((s) => (s.error ? JSON.stringify(s.error) : null)),
          steps.map((s) => s.reason),
        ])
      }
      if (b.attempts.length > 0) {
        // one row per (step, attempt) in a statement: the last state of each wins
        const attempts = [
          ...new Map(b.attempts.map((a) => [`${a.runId}\u0000${a.step}\u0000${a.attempt}`, a])).values(),
        ]
        await c.run(S.upsertAttempts, [
          attempts.map((a) => a.runId),
          attempts.map((a) => a.step),
          attempts.map((a) => a.attempt),
          attempts.map((a) => a.status),
          attempts.map((a) => a.startedAt),
          attempts.map((a) => a.endedAt),
          attempts.map((a) => (a.error ? JSON.stringify(a.error) : null)),
        ])
      }
      if (b.materializations.length > 0 || b.events.length > 0) await lock(c, Lock.eventIds)
      if (b.materializations.length > 0) {
        const m = b.materializations
        await c.run(S.insertMaterializations, [
          m.map((x) => x.asset),
          m.map((x) => x.runId),
          m.map((x) => x.attempt),
          m.map((x) => x.ts),
          m.map((x) => JSON.stringify(x.metadata)),
          m.map((x) => x.partitionKey),
        ])
      }
      const checks = b.checks ?? []
      if (checks.length > 0) {
        await c.run(S.insertCheckResults, [
          checks.map((x) => x.runId),
          checks.map((x) => x.asset),
          checks.map((x) => x.check),
          checks.map((x) => x.partitionKey),
          checks.map((x) => (x.passed ? 1 : 0)),
          checks.map((x) => x.severity),
          checks.map((x) => (x.blocking ? 1 : 0)),
          checks.map((x) => x.ts),
          checks.map((x) => JSON.stringify(x.metadata)),
          checks.map((x) => (x.error ? JSON.stringify(x.error) : null)),
        ])
      }
      await this.insertEventsLocked(c, b.events)
    })
  }

  /**
   * Appends events (inside the caller's transaction). The id lock is held to COMMIT, so a reader
   * that follows ids (`afterId`) never sees a higher id commit before a lower one and skip it.
   */
  async insertEvents(c: Conn, events: readonly RunEvent[]): Promise<void> {
    if (events.length === 0) return
    await lock(c, Lock.eventIds)
    await this.insertEventsLocked(c, events)
  }

  private async insertEventsLocked(c: Conn, events: readonly RunEvent[]): Promise<void> {
    if (events.length === 0) return
    await c.run(S.insertEvents, [
      events.map((e) => e.runId),
      events.map((e) => e.ts),
      events.map((e) => e.type),
      events.map((e) => ('step' in e ? e.step : null)),
      events.map(eventPayload),
    ])
  }

  async getSteps(runId: string, c: Conn = this.db): Promise<StepRecord[]> {
    return (await c.rows(S.getSteps, [runId])).map(toStep)
  }

  async getAttempts(runId: string, step?: string): Promise<AttemptRecord[]> {
    const rows =
      step === undefined
        ? await this.db.rows(S.getAttempts, [runId])
        : await this.db.rows(S.getStepAttempts, [runId, step])
    return rows.map(toAttempt)
  }

  async getEvents(runId: string, filter: EventFilter = {}): Promise<StoredEvent[]> {
    const rows = await this.db.rows<Parameters<typeof eventOfRow>[0] & { id: number }>(S.getEvents, [
      runId,
      filter.afterId ?? 0,
      filter.step ?? null,
      filter.types ? [...filter.types] : null,
      filter.limit ?? null,
    ])
    return rows.map((row) => ({ ...eventOfRow(row), id: row.id }))
  }

  async countEvents(runId?: string): Promise<number> {
    const row =
      runId === undefined
        ? await this.db.row<{ n: number }>(S.countAllEvents)
        : await this.db.row<{ n: number }>(S.countRunEvents, [runId])
    return row?.n ?? 0
  }

  async maxEventId(): Promise<number> {
    return (await this.db.row<{ id: number | null }>(S.maxEventId))?.id ?? 0
  }

  async runEndsAfter(afterId: number, limit = 1000): Promise<Array<{ eventId: number; runId: string }>> {
    const rows = await this.db.rows<{ id: number; run_id: string }>(S.runEndsAfter, [afterId, limit])
    return rows.map((r) => ({ eventId: r.id, runId: r.run_id }))
  }

  async latestMaterialization(
    asset: string,
    partitionKey?: string,
  ): Promise<MaterializationRecord | undefined> {
    const row =
      partitionKey === undefined
        ? await this.db.row(S.latestMaterialization, [asset])
        : await this.db.row(S.latestPartitionMaterialization, [asset, partitionKey])
    return row ? toMaterialization(row) : undefined
  }

  async latestMaterializations(): Promise<Map<string, MaterializationRecord>> {
    const out = new Map<string, MaterializationRecord>()
    for (const row of await this.db.rows<Row>(S.latestMaterializations)) {
      const m = toMaterialization(row)
      out.set(m.asset, m)
    }
    return out
  }

  async runMaterialization(runId: string, asset: string): Promise<MaterializationRecord | undefined> {
    const row = await this.db.row(S.runMaterialization, [runId, asset])
    return row ? toMaterialization(row) : undefined
  }

  async materializationsForRun(runId: string): Promise<MaterializationRecord[]> {
    return (await this.db.rows(S.runMaterializations, [runId])).map(toMaterialization)
  }

  /** The latest result of every check (of one asset), per partition. */
  async latestCheckResults(asset?: string): Promise<CheckResultRecord[]> {
    const rows =
      asset === undefined
        ? await this.db.rows(S.latestCheckResults)
        : await this.db.rows(S.latestAssetCheckResults, [asset])
    return rows.map(toCheckResult)
  }

  async checkResultsOfRun(runId: string): Promise<CheckResultRecord[]> {
    return (await this.db.rows(S.runCheckResults, [runId])).map(toCheckResult)
  }
}
