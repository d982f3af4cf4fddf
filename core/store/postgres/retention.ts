import { StoreError } from '../../errors.js'
import {
  PRUNE_KINDS,
  type PruneCount,
  type PruneDeleted,
  type PruneKind,
  type PrunePlan,
  type PrunePolicy,
} from '../types.js'
import { type Conn, type Db, statements } from './db.js'

/**
 * What keeps an old finished run `r`, lineage aside (see `RunStore.pruneCandidates`): named by the
 * caller ($3), holding the newest event ($4), replayed from by a pending parked request, or holding
 * the latest materialization of an asset and partition or the latest result of a check (one index
 * seek each).
 */
const NOT_KEPT = `
  NOT (r.id = ANY($3::text[]))
  AND r.id IS DISTINCT FROM $4::text
  AND NOT EXISTS (
    SELECT 1 FROM parked_requests p WHERE p.replayed_at IS NULL AND p.parent_run_id = r.id)
  AND NOT EXISTS (
    SELECT 1 FROM materializations m WHERE m.run_id = r.id AND NOT EXISTS (
      SELECT 1 FROM materializations n
      WHERE n.asset_key = m.asset_key AND n.partition_key IS NOT DISTINCT FROM m.partition_key AND n.id > m.id))
  AND NOT EXISTS (
    SELECT 1 FROM check_results k WHERE k.run_id = r.id AND NOT EXISTS (
      SELECT 1 FROM check_results l
      WHERE l.asset_key = k.asset_key AND l.check_name = k.check_name
        AND l.partition_key IS NOT DISTINCT FROM k.partition_key AND l.id > k.id))`

const OLD_ENOUGH = `(
  (r.status IN ('success', 'canceled') AND r.ended_at < $1)
  OR (r.status = 'failure' AND r.ended_at < $2))`

/** One status's oldest prunable runs that no run was re-executed from, in end order. */
const oldestOf = (status: string, cutoff: string) => `
  (SELECT r.id, r.ended_at FROM runs r
    WHERE r.status = '${status}' AND r.ended_at < ${cutoff} AND ${NOT_KEPT}
      AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = r.id)
    ORDER BY r.ended_at LIMIT $5)`

// an instigator's latest tick is kept: it folds repeated skips, and it is the newest tick of all
const TICK_PRUNABLE = `
  t.ended_at < $1
  AND t.id NOT IN (SELECT last_tick_id FROM instigators WHERE last_tick_id IS NOT NULL)`

const S = statements('retention', {
  newestEventRun: 'SELECT run_id FROM events ORDER BY id DESC LIMIT 1',
  // a run is prunable when it is, and so is every run re-executed from it (its lineage)
  prunableRuns: `WITH RECURSIVE
       eligible(id) AS (SELECT r.id FROM runs r WHERE ${OLD_ENOUGH} AND ${NOT_KEPT}),
       blocked(id) AS (
         SELECT c.parent_run_id FROM runs c
           WHERE c.parent_run_id IS NOT NULL AND c.id NOT IN (SELECT id FROM eligible)
         UNION
         SELECT c.parent_run_id FROM runs c JOIN blocked b ON c.id = b.id
           WHERE c.parent_run_id IS NOT NULL)
     SELECT coalesce(array_agg(id), '{}') AS ids FROM eligible WHERE id NOT IN (SELECT id FROM blocked)`,
  countRuns: `SELECT count(*)::int AS n, min(ended_at) AS oldest, max(ended_at) AS newest FROM runs WHERE id = ANY($1::text[])`,
  countSteps: `SELECT count(*)::int AS n, min(started_at) AS oldest, max(started_at) AS newest FROM steps WHERE run_id = ANY($1::text[])`,
  countAttempts: `SELECT count(*)::int AS n, min(started_at) AS oldest, max(started_at) AS newest FROM attempts WHERE run_id = ANY($1::text[])`,
  countEvents: `SELECT count(*)::int AS n, min(ts) AS oldest, max(ts) AS newest FROM events WHERE run_id = ANY($1::text[])`,
  countMaterializations: `SELECT count(*)::int AS n, min(ts) AS oldest, max(ts) AS newest FROM materializations WHERE run_id = ANY($1::text[])`,
  countTicks: `SELECT count(*)::int AS n, min(ended_at) AS oldest, max(ended_at) AS newest FROM ticks t WHERE ${TICK_PRUNABLE}`,
  batchRuns: `SELECT id, ended_at FROM (${oldestOf('success', '$1')}
       UNION ALL ${oldestOf('canceled', '$1')}
       UNION ALL ${oldestOf('failure', '$2')}) o
     ORDER BY ended_at, id LIMIT $5`,
  deleteEvents:
    'DELETE FROM events WHERE id IN (SELECT id FROM events WHERE run_id = $1 ORDER BY id LIMIT $2)',
  hasEvents: 'SELECT 1 FROM events WHERE run_id = $1 LIMIT 1',
  deleteAttempts: 'DELETE FROM attempts WHERE run_id = $1',
  deleteSteps: 'DELETE FROM steps WHERE run_id = $1',
  deleteHolds: 'DELETE FROM run_holds WHERE run_id = $1',
  deleteSlots: 'DELETE FROM pool_slots WHERE run_id = $1',
  deleteMaterializations: 'DELETE FROM materializations WHERE run_id = $1',
  deleteCheckResults: 'DELETE FROM check_results WHERE run_id = $1',
  deleteRun: 'DELETE FROM runs WHERE id = $1',
  deleteTicks: `DELETE FROM ticks WHERE id IN (
       SELECT t.id FROM ticks t WHERE ${TICK_PRUNABLE} ORDER BY t.ended_at, t.id LIMIT $2)`,
})

/**
 * Retention on Postgres, by the same rules as SQLite's (`RunStore.pruneCandidates`): the count
 * reads one REPEATABLE READ snapshot; each batch is one short transaction bounded by its limit,
 * so the rows it deletes are locked for one batch at most, and nothing else is locked at all.
 */
export class RetentionSql {
  private readonly db: Db

  constructor(db: Db) {
    this.db = db
  }

  candidates(policy: PrunePolicy): Promise<PrunePlan> {
    return this.db.session(async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      try {
        const c: Conn = {
          rows: async (sql, values = []) => (await client.query({ ...sql, values: [...values] })).rows,
          row: async (sql, values = []) => (await client.query({ ...sql, values: [...values] })).rows[0],
          run: async (sql, values = []) =>
            (await client.query({ ...sql, values: [...values] })).rowCount ?? 0,
        }
        const params = await this.params(c, policy)
        const { ids } = (await c.row<{ ids: string[] }>(S.prunableRuns, params.slice(0, 4)))!
        const count = async (sql: (typeof S)[keyof typeof S], args: unknown[]): Promise<PruneCount> => {
          const row = (await c.row<{ n: number; oldest: number | null; newest: number | null }>(sql, args))!
          return { count: row.n, oldest: row.oldest, newest: row.newest }
        }
        return {
          runs: await count(S.countRuns, [ids]),
          steps: await count(S.countSteps, [ids]),
          attempts: await count(S.countAttempts, [ids]),
          events: await count(S.countEvents, [ids]),
          materializations: await count(S.countMaterializations, [ids]),
          ticks: await count(S.countTicks, [policy.endedBefore]),
        }
      } finally {
        await client.query('COMMIT').catch(() => {})
      }
    })
  }

  /** One batch in one transaction; see `RunStore.pruneBatch` (runs read a few at a time). */
  batch(policy: PrunePolicy, limit: number): Promise<PruneDeleted> {
    if (!Number.isInteger(limit) || limit < 1) {
      return Promise.reject(
        new StoreError(`a prune batch deletes at least 1 record at a time, not ${limit}.`),
      )
    }
    return this.db.tx(async (c) => {
      const deleted = Object.fromEntries(PRUNE_KINDS.map((k) => [k, 0])) as Record<PruneKind, number>
      const params = await this.params(c, policy)
      let budget = limit
      let chunk = Math.min(16, limit)
      for (;;) {
        const wanted = Math.min(chunk, limit - deleted.runs)
        const runs = await c.rows<{ id: string }>(S.batchRuns, [...params, wanted])
        if (runs.length === 0 && deleted.runs === 0 && deleted.events === 0) {
          deleted.ticks = await c.run(S.deleteTicks, [policy.endedBefore, limit])
          return deleted
        }
        for (const { id } of runs) {
          const n = budget > 0 ? await c.run(S.deleteEvents, [id, budget]) : 0
          deleted.events += n
          const left = n === budget && (await c.row(S.hasEvents, [id])) !== undefined
          budget -= n
          // a run with events left waits for the next batch, and so do the runs after it
          if (left) return deleted
          deleted.attempts += await c.run(S.deleteAttempts, [id])
          deleted.steps += await c.run(S.deleteSteps, [id])
          deleted.materializations += await c.run(S.deleteMaterializations, [id])
          await c.run(S.deleteCheckResults, [id])
          await c.run(S.deleteHolds, [id])
          await c.run(S.deleteSlots, [id])
          deleted.runs += await c.run(S.deleteRun, [id])
        }
        if (runs.length < wanted || deleted.runs >= limit) return deleted
        chunk *= 4
      }
    })
  }

  private async params(c: Conn, policy: PrunePolicy): Promise<unknown[]> {
    const newest = await c.row<{ run_id: string }>(S.newestEventRun)
    return [policy.endedBefore, policy.failedEndedBefore, [...policy.keepRunIds], newest?.run_id ?? null]
  }
}
