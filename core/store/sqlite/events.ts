import type Database from 'better-sqlite3'
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
import { statements } from './rows.js'

/** What a run writes as it goes: step and attempt states, events, materializations; and their reads. */
export class EventsSql {
  private readonly s
  private readonly writeTx: (batch: WriteBatch) => void

  constructor(db: Database.Database) {
    const s = statements(db, {
      updateStep: `UPDATE steps SET status = ?, attempts = ?, started_at = ?, ended_at = ?, error = ?, reason = ?
         WHERE run_id = ? AND key = ?`,
      upsertAttempt: `INSERT INTO attempts (run_id, step_key, attempt, status, started_at, ended_at, error) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (run_id, step_key, attempt) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
           error = excluded.error`,
      insertMaterialization:
        'INSERT INTO materializations (asset_key, run_id, attempt, ts, metadata, partition_key) VALUES (?, ?, ?, ?, ?, ?)',
      insertEvent: 'INSERT INTO events (run_id, ts, type, step_key, payload) VALUES (?, ?, ?, ?, ?)',
      getSteps: 'SELECT * FROM steps WHERE run_id = ? ORDER BY plan_index',
      getAttempts: 'SELECT * FROM attempts WHERE run_id = ? ORDER BY started_at, step_key, attempt',
      getStepAttempts: 'SELECT * FROM attempts WHERE run_id = ? AND step_key = ? ORDER BY attempt',
      getEvents: `SELECT id, run_id, ts, type, step_key, payload FROM events
         WHERE run_id = @run_id AND id > @after
           AND (@step IS NULL OR step_key = @step)
           AND (@types IS NULL OR type IN (SELECT value FROM json_each(@types)))
         ORDER BY id LIMIT @limit`,
      countAllEvents: 'SELECT count(*) AS n FROM events',
      countRunEvents: 'SELECT count(*) AS n FROM events WHERE run_id = ?',
      maxEventId: 'SELECT max(id) AS id FROM events',
      runEndsAfter: `SELECT id, run_id FROM events WHERE id > ? AND type = 'run:end' ORDER BY id LIMIT ?`,
      latestMaterialization: 'SELECT * FROM materializations WHERE asset_key = ? ORDER BY id DESC LIMIT 1',
      latestPartitionMaterialization:
        'SELECT * FROM materializations WHERE asset_key = ? AND partition_key = ? ORDER BY id DESC LIMIT 1',
      latestMaterializations: `SELECT m.* FROM materializations m
         JOIN (SELECT max(id) AS id FROM materializations GROUP BY asset_key) latest ON latest.id = m.id`,
      runMaterialization:
        'SELECT * FROM materializations WHERE run_id = ? AND asset_key = ? ORDER BY id DESC LIMIT 1',
      runMaterializations: 'SELECT * FROM materializations WHERE run_id = ? ORDER BY id',
      insertCheckResult: `INSERT INTO check_results (run_id, asset_key, check_name, partition_key, passed, severity,
           blocking, ts, metadata, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      // the newest row of each (asset, check, partition): one range of check_results_latest each
      latestCheckResults: `SELECT c.* FROM check_results c
         JOIN (SELECT max(id) AS id FROM check_results GROUP BY asset_key, check_name, partition_key) latest
           ON latest.id = c.id
         ORDER BY c.asset_key, c.check_name, c.partition_key NULLS FIRST`,
      latestAssetCheckResults: `SELECT c.* FROM check_results c
         JOIN (SELECT max(id) AS id FROM check_results WHERE asset_key = ?
               GROUP BY check_name, partition_key) latest ON latest.id = c.id
         ORDER BY c.check_name, c.partition_key NULLS FIRST`,
      runCheckResults: 'SELECT * FROM check_results WHERE run_id = ? ORDER BY id',
    })
    this.s = s
    const writeTx = db.transaction((b: WriteBatch) => {
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
      for (const c of b.checks ?? []) {
        s.insertCheckResult.run(
          c.runId,
          c.asset,
          c.check,
          c.partitionKey,
          c.passed ? 1 : 0,
          c.severity,
          c.blocking ? 1 : 0,
          c.ts,
          JSON.stringify(c.metadata),
          c.error ? JSON.stringify(c.error) : null,
        )
      }
      this.insertEvents(b.events)
    })
    this.writeTx = (batch) => writeTx.immediate(batch)
  }

  /** Commits an executor's accumulated writes in one transaction. */
  write(batch: WriteBatch): void {
    if (
      batch.events.length === 0 &&
      batch.steps.length === 0 &&
      batch.attempts.length === 0 &&
      batch.materializations.length === 0 &&
      (batch.checks?.length ?? 0) === 0
    ) {
      return
    }
    this.writeTx(batch)
  }

  /**
   * Appends events (inside the caller's transaction). The row's columns hold the event's run,
   * time, type and step; its payload holds the rest (a third of a small event's bytes saved).
   * A null step stays in the payload: it tells a log line of the run from an event without a step.
   */
  insertEvents(events: readonly RunEvent[]): void {
    for (const e of events) {
      this.s.insertEvent.run(e.runId, e.ts, e.type, 'step' in e ? e.step : null, eventPayload(e))
    }
  }

  getSteps(runId: string): StepRecord[] {
    return (this.s.getSteps.all(runId) as Row[]).map(toStep)
  }

  getAttempts(runId: string, step?: string): AttemptRecord[] {
    const rows = (
      step === undefined ? this.s.getAttempts.all(runId) : this.s.getStepAttempts.all(runId, step)
    ) as Row[]
    return rows.map(toAttempt)
  }

  getEvents(runId: string, filter: EventFilter = {}): StoredEvent[] {
    const rows = this.s.getEvents.all({
      run_id: runId,
      after: filter.afterId ?? 0,
      step: filter.step ?? null,
      types: filter.types ? JSON.stringify(filter.types) : null,
      limit: filter.limit ?? -1,
    }) as Array<{
      id: number
      run_id: string
      ts: number
      type: string
      step_key: string | null
      payload: string
    }>
    return rows.map((row) => ({ ...eventOfRow(row), id: row.id }))
  }

  countEvents(runId?: string): number {
    const row = (runId === undefined ? this.s.countAllEvents.get() : this.s.countRunEvents.get(runId)) as {
      n: number
    }
    return row.n
  }

  maxEventId(): number {
    return (this.s.maxEventId.get() as { id: number | null }).id ?? 0
  }

  runEndsAfter(afterId: number, limit = 1000): Array<{ eventId: number; runId: string }> {
    const rows = this.s.runEndsAfter.all(afterId, limit) as Array<{ id: number; run_id: string }>
    return rows.map((r) => ({ eventId: r.id, runId: r.run_id }))
  }

  latestMaterialization(asset: string, partitionKey?: string): MaterializationRecord | undefined {
    const row = (
      partitionKey === undefined
        ? this.s.latestMaterialization.get(asset)
        : this.s.latestPartitionMaterialization.get(asset, partitionKey)
    ) as Row | undefined
    return row ? toMaterialization(row) : undefined
  }

  latestMaterializations(): Map<string, MaterializationRecord> {
    const out = new Map<string, MaterializationRecord>()
    for (const row of this.s.latestMaterializations.all() as Row[]) {
      const m = toMaterialization(row)
      out.set(m.asset, m)
    }
    return out
  }

  runMaterialization(runId: string, asset: string): MaterializationRecord | undefined {
    const row = this.s.runMaterialization.get(runId, asset) as Row | undefined
    return row ? toMaterialization(row) : undefined
  }

  materializationsForRun(runId: string): MaterializationRecord[] {
    return (this.s.runMaterializations.all(runId) as Row[]).map(toMaterialization)
  }

  /** The latest result of every check (of one asset), per partition. */
  latestCheckResults(asset?: string): CheckResultRecord[] {
    const rows = (
      asset === undefined ? this.s.latestCheckResults.all() : this.s.latestAssetCheckResults.all(asset)
    ) as Row[]
    return rows.map(toCheckResult)
  }

  checkResultsOfRun(runId: string): CheckResultRecord[] {
    return (this.s.runCheckResults.all(runId) as Row[]).map(toCheckResult)
  }
}
