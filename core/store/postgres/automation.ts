import {
  AUTOMATION_GLOBAL,
  automationCursorOf,
  automationSwitchesOf,
  evaluationRunIds,
  type Row,
  toAutomationAsset,
  toAutomationEvaluation,
  toCheckResult,
} from '../rows.js'
import type {
  AutomationCommit,
  AutomationCursor,
  AutomationEvaluationRecord,
  AutomationStateRecord,
  AutomationStatus,
  AutomationTick,
  CheckResultRecord,
  InFlightStep,
  RequestOutcome,
} from '../types.js'
import { type Db, statements } from './db.js'
import type { RequestsSql } from './requests.js'

/** Evaluations kept per asset: older ones are deleted as new ones are written. */
export const EVALUATIONS_KEPT = 50

const S = statements('automation', {
  all: 'SELECT asset, status, state, tick, updated_at FROM automation ORDER BY asset',
  switches: `SELECT asset, status FROM automation WHERE status <> 'default'`,
  setStatus: `INSERT INTO automation (asset, status, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (asset) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at`,
  // the global row, created if missing and locked to the end of the tick's transaction: of two
  // evaluators committing at once, the second reads the cursor the first wrote
  ensureGlobal: `INSERT INTO automation (asset, updated_at) VALUES ('${AUTOMATION_GLOBAL}', $1)
     ON CONFLICT (asset) DO NOTHING`,
  lockGlobal: `SELECT state, tick FROM automation WHERE asset = '${AUTOMATION_GLOBAL}' FOR UPDATE`,
  putGlobal: `UPDATE automation SET state = $1, tick = $2, updated_at = $3 WHERE asset = '${AUTOMATION_GLOBAL}'`,
  putStates: `INSERT INTO automation (asset, state, tick, updated_at)
     SELECT asset, state, $3, $4 FROM unnest($1::text[], $2::text[]) AS u(asset, state)
     ON CONFLICT (asset) DO UPDATE SET state = excluded.state, tick = excluded.tick,
       updated_at = excluded.updated_at`,
  insertEvaluations: `INSERT INTO automation_evaluations (tick, asset, evaluated_at, true_count, total, tree, run_ids)
     SELECT tick, asset, evaluated_at, true_count, total, tree, run_ids
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::int[], $6::text[], $7::text[])
       WITH ORDINALITY AS e(tick, asset, evaluated_at, true_count, total, tree, run_ids, ord)
     ORDER BY ord
     RETURNING id`,
  // each asset's rows older than its 50th newest: one range of automation_evaluations_asset each
  trimEvaluations: `DELETE FROM automation_evaluations e USING unnest($1::text[]) AS u(asset)
     WHERE e.asset = u.asset AND e.id < (
       SELECT id FROM automation_evaluations WHERE asset = u.asset ORDER BY id DESC OFFSET $2 LIMIT 1)`,
  evaluations: 'SELECT * FROM automation_evaluations WHERE asset = $1 ORDER BY id DESC LIMIT $2',
  latestEvaluations: `SELECT DISTINCT ON (asset) * FROM automation_evaluations ORDER BY asset, id DESC`,
  checkResultsAfter: 'SELECT * FROM check_results WHERE id > $1 ORDER BY id LIMIT $2',
  inFlightSteps: `SELECT s.run_id, s.key, s.partition_key FROM steps s JOIN runs r ON r.id = s.run_id
    WHERE r.status IN ('queued', 'started') AND s.status IN ('pending', 'running', 'retrying')
    ORDER BY s.run_id, s.plan_index`,
})

/** Thrown inside a tick's transaction when the cursor moved: rolls back the global row it created. */
class StaleCursor extends Error {
  readonly cursor: AutomationCursor | null
  constructor(cursor: AutomationCursor | null) {
    super('the automation cursor moved')
    this.cursor = cursor
  }
}

/**
 * Automation in the store (see the SQLite twin): the tick's transaction locks the global row
 * first, compares its tick, then requests, evaluations and states go in a statement per kind.
 */
export class AutomationSql {
  private readonly db: Db
  private readonly requests: RequestsSql

  constructor(db: Db, requests: RequestsSql) {
    this.db = db
    this.requests = requests
  }

  async automationState(): Promise<AutomationStateRecord> {
    const rows = await this.db.rows(S.all)
    const global = rows.find((r) => r.asset === AUTOMATION_GLOBAL)
    return {
      cursor: automationCursorOf(global),
      status: global ? toAutomationAsset(global).status : 'default',
      assets: rows.filter((r) => r.asset !== AUTOMATION_GLOBAL).map(toAutomationAsset),
    }
  }

  async automationSwitches(): Promise<{
    status: AutomationStatus
    assets: Record<string, AutomationStatus>
  }> {
    const rows = await this.db.rows<{ asset: string; status: AutomationStatus }>(S.switches)
    return automationSwitchesOf(rows)
  }

  async setAutomationStatus(asset: string | null, status: AutomationStatus, now: number): Promise<void> {
    await this.db.run(S.setStatus, [asset ?? AUTOMATION_GLOBAL, status, now])
  }

  async commitAutomationTick(tick: AutomationTick): Promise<AutomationCommit> {
    try {
      return await this.db.tx(async (c): Promise<AutomationCommit> => {
        await c.run(S.ensureGlobal, [tick.now])
        const global = await c.row<Row>(S.lockGlobal)
        const cursor = automationCursorOf(global)
        const stored = cursor === null ? null : Number(global!.tick)
        if (stored !== tick.expectedTick) throw new StaleCursor(cursor)
        const outcomes: RequestOutcome[] = []
        for (const r of tick.requests) outcomes.push(await this.requests.requestInTx(c, r))
        let evaluationIds: number[] = []
        if (tick.evaluations.length > 0) {
          const e = tick.evaluations
          const returned = await c.rows<{ id: number }>(S.insertEvaluations, [
            e.map((x) => x.tick),
            e.map((x) => x.asset),
            e.map((x) => x.evaluatedAt),
            e.map((x) => x.trueCount),
            e.map((x) => x.total),
            e.map((x) => x.tree),
            e.map((x) => JSON.stringify(evaluationRunIds(outcomes, x.requests))),
          ])
          // ids are drawn as the rows are inserted, in the order given
          evaluationIds = returned.map((r) => Number(r.id)).sort((a, b) => a - b)
          await c.run(S.trimEvaluations, [[...new Set(e.map((x) => x.asset))], EVALUATIONS_KEPT - 1])
        }
        // an asset named twice: its last state, as written one after the other
        const states = new Map(tick.states(outcomes).map((s) => [s.asset, s.state] as const))
        if (states.size > 0) {
          await c.run(S.putStates, [[...states.keys()], [...states.values()], tick.cursor.tick, tick.now])
        }
        await c.run(S.putGlobal, [JSON.stringify(tick.cursor), tick.cursor.tick, tick.now])
        return { committed: true, outcomes, evaluationIds }
      })
    } catch (error) {
      if (error instanceof StaleCursor) return { committed: false, cursor: error.cursor }
      throw error
    }
  }

  async automationEvaluations(asset: string, limit = 20): Promise<AutomationEvaluationRecord[]> {
    return (await this.db.rows(S.evaluations, [asset, limit])).map(toAutomationEvaluation)
  }

  async latestAutomationEvaluations(): Promise<AutomationEvaluationRecord[]> {
    return (await this.db.rows(S.latestEvaluations)).map(toAutomationEvaluation)
  }

  async checkResultsAfter(afterId: number, limit: number): Promise<CheckResultRecord[]> {
    return (await this.db.rows(S.checkResultsAfter, [afterId, limit])).map(toCheckResult)
  }

  async inFlightSteps(): Promise<InFlightStep[]> {
    const rows = await this.db.rows<{ run_id: string; key: string; partition_key: string | null }>(
      S.inFlightSteps,
    )
    return rows.map((r) => ({ runId: r.run_id, asset: r.key, partitionKey: r.partition_key }))
  }
}
