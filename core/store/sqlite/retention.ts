import type Database from 'better-sqlite3'
import { StoreError } from '../../errors.js'
import {
  PRUNE_KINDS,
  type PruneCount,
  type PruneDeleted,
  type PruneKind,
  type PrunePlan,
  type PrunePolicy,
} from '../types.js'
import { statements } from './rows.js'

/**
 * What keeps an old finished run `r`, lineage aside (see `RunStore.pruneCandidates`): named by the
 * caller, holding the newest event, replayed from by a pending parked request, or holding the
 * latest materialization of an asset and partition or the latest result of a check (one seek in
 * `materializations_latest` or `check_results_latest` each).
 */
const NOT_KEPT = `
  r.id NOT IN (SELECT value FROM json_each(@keep))
  AND r.id IS NOT @newest_run
  AND NOT EXISTS (
    SELECT 1 FROM parked_requests p WHERE p.replayed_at IS NULL AND p.parent_run_id = r.id)
  AND NOT EXISTS (
    SELECT 1 FROM materializations m WHERE m.run_id = r.id AND NOT EXISTS (
      SELECT 1 FROM materializations n
      WHERE n.asset_key = m.asset_key AND n.partition_key IS m.partition_key AND n.id > m.id))
  AND NOT EXISTS (
    SELECT 1 FROM check_results k WHERE k.run_id = r.id AND NOT EXISTS (
      SELECT 1 FROM check_results l
      WHERE l.asset_key = k.asset_key AND l.check_name = k.check_name
        AND l.partition_key IS k.partition_key AND l.id > k.id))`

const OLD_ENOUGH = `(
  (r.status IN ('success', 'canceled') AND r.ended_at < @before)
  OR (r.status = 'failure' AND r.ended_at < @failed_before))`

/** One status's oldest prunable runs that no run was re-executed from, in end order (index `runs_status_ended`). */
const oldestOf = (status: string, cutoff: string) => `
  SELECT id, ended_at FROM (
    SELECT r.id, r.ended_at FROM runs r
    WHERE r.status = '${status}' AND r.ended_at < ${cutoff} AND ${NOT_KEPT}
      AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.parent_run_id = r.id)
    ORDER BY r.ended_at LIMIT @limit)`

// an instigator's latest tick is kept: it folds repeated skips, and it is the newest tick of all
// (tick ids are never handed out twice)
const TICK_PRUNABLE = `
  t.ended_at < @before
  AND t.id NOT IN (SELECT last_tick_id FROM instigators WHERE last_tick_id IS NOT NULL)`

const IN_IDS = 'IN (SELECT value FROM json_each(@ids))'

/**
 * Retention: what a prune would delete, and deleting it in short batches. The rules are those of
 * `RunStore.pruneCandidates`; each batch is one IMMEDIATE transaction bounded by its limit, so
 * other writers (a run, the daemon) wait for one batch at most, never for the whole prune.
 */
export class RetentionSql {
  private readonly s

  private readonly db: Database.Database

  constructor(db: Database.Database) {
    this.db = db
    this.s = statements(db, {
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
         SELECT json_group_array(id) AS ids FROM eligible WHERE id NOT IN (SELECT id FROM blocked)`,
      countRuns: `SELECT count(*) AS n, min(ended_at) AS oldest, max(ended_at) AS newest FROM runs WHERE id ${IN_IDS}`,
      countSteps: `SELECT count(*) AS n, min(started_at) AS oldest, max(started_at) AS newest FROM steps WHERE run_id ${IN_IDS}`,
      countAttempts: `SELECT count(*) AS n, min(started_at) AS oldest, max(started_at) AS newest FROM attempts WHERE run_id ${IN_IDS}`,
      countEvents: `SELECT count(*) AS n, min(ts) AS oldest, max(ts) AS newest FROM events WHERE run_id ${IN_IDS}`,
      countMaterializations: `SELECT count(*) AS n, min(ts) AS oldest, max(ts) AS newest FROM materializations WHERE run_id ${IN_IDS}`,
      countTicks: `SELECT count(*) AS n, min(ended_at) AS oldest, max(ended_at) AS newest FROM ticks t WHERE ${TICK_PRUNABLE}`,
      batchRuns: `${oldestOf('success', '@before')}
         UNION ALL ${oldestOf('canceled', '@before')}
         UNION ALL ${oldestOf('failure', '@failed_before')}
         ORDER BY ended_at, id LIMIT @limit`,
      deleteEvents:
        'DELETE FROM events WHERE id IN (SELECT id FROM events WHERE run_id = ? ORDER BY id LIMIT ?)',
      hasEvents: 'SELECT 1 FROM events WHERE run_id = ? LIMIT 1',
      deleteAttempts: 'DELETE FROM attempts WHERE run_id = ?',
      deleteSteps: 'DELETE FROM steps WHERE run_id = ?',
      deleteHolds: 'DELETE FROM run_holds WHERE run_id = ?',
      deleteSlots: 'DELETE FROM pool_slots WHERE run_id = ?',
      deleteMaterializations: 'DELETE FROM materializations WHERE run_id = ?',
      deleteCheckResults: 'DELETE FROM check_results WHERE run_id = ?',
      deleteRun: 'DELETE FROM runs WHERE id = ?',
      deleteTicks: `DELETE FROM ticks WHERE id IN (
           SELECT t.id FROM ticks t WHERE ${TICK_PRUNABLE} ORDER BY t.ended_at, t.id LIMIT @limit)`,
    })
  }

  /** Counts what a prune would delete, in one read transaction (a consistent snapshot). */
  candidates(policy: PrunePolicy): PrunePlan {
    return this.db.transaction(() => {
      const params = this.params(policy)
      const { ids } = this.s.prunableRuns.get(params) as { ids: string }
      const count = (statement: Database.Statement, args: object): PruneCount => {
        const row = statement.get(args) as { n: number; oldest: number | null; newest: number | null }
        return { count: row.n, oldest: row.oldest, newest: row.newest }
      }
      return {
        runs: count(this.s.countRuns, { ids }),
        steps: count(this.s.countSteps, { ids }),
        attempts: count(this.s.countAttempts, { ids }),
        events: count(this.s.countEvents, { ids }),
        materializations: count(this.s.countMaterializations, { ids }),
        ticks: count(this.s.countTicks, { before: policy.endedBefore }),
      }
    })()
  }

  /**
   * One batch, in one IMMEDIATE transaction: the events of the oldest prunable runs (at most
   * `limit`), each run whose events are all gone with its other rows; once no run is left, ticks.
   * Runs are read a few at a time (16, then 4 times more each time): a batch of 2,000 events needs
   * the first few dozen runs, and reading `limit` of them would cost more than deleting.
   */
  batch(policy: PrunePolicy, limit: number): PruneDeleted {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new StoreError(`a prune batch deletes at least 1 record at a time, not ${limit}.`)
    }
    return this.db
      .transaction(() => {
        const deleted = Object.fromEntries(PRUNE_KINDS.map((k) => [k, 0])) as Record<PruneKind, number>
        const params = this.params(policy)
        let budget = limit
        let chunk = Math.min(16, limit)
        for (;;) {
          const wanted = Math.min(chunk, limit - deleted.runs)
          const runs = this.s.batchRuns.all({ ...params, limit: wanted }) as Array<{ id: string }>
          if (runs.length === 0 && deleted.runs === 0 && deleted.events === 0) {
            deleted.ticks = this.s.deleteTicks.run({ before: policy.endedBefore, limit }).changes
            return deleted
          }
          for (const { id } of runs) {
            const n = budget > 0 ? this.s.deleteEvents.run(id, budget).changes : 0
            deleted.events += n
            // fewer than asked for: none are left; as many: look
            const left = n === budget && this.s.hasEvents.get(id) !== undefined
            budget -= n
            // a run with events left waits for the next batch, and so do the runs after it
            if (left) return deleted
            deleted.attempts += this.s.deleteAttempts.run(id).changes
            deleted.steps += this.s.deleteSteps.run(id).changes
            deleted.materializations += this.s.deleteMaterializations.run(id).changes
            this.s.deleteCheckResults.run(id)
            this.s.deleteHolds.run(id)
            this.s.deleteSlots.run(id)
            deleted.runs += this.s.deleteRun.run(id).changes
          }
          if (runs.length < wanted || deleted.runs >= limit) return deleted
          chunk *= 4
        }
      })
      .immediate()
  }

  private params(policy: PrunePolicy) {
    const newest = this.s.newestEventRun.get() as { run_id: string } | undefined
    return {
      before: policy.endedBefore,
      failed_before: policy.failedEndedBefore,
      keep: JSON.stringify(policy.keepRunIds),
      newest_run: newest?.run_id ?? null,
    }
  }
}
