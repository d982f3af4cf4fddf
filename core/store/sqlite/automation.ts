import type Database from 'better-sqlite3'
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
  AutomationEvaluationRecord,
  AutomationStateRecord,
  AutomationStatus,
  AutomationTick,
  CheckResultRecord,
  InFlightStep,
  RequestOutcome,
} from '../types.js'
import type { RequestsSql } from './requests.js'
import { statements } from './rows.js'

/** Evaluations kept per asset: older ones are deleted as new ones are written. */
export const EVALUATIONS_KEPT = 50

/**
 * Automation in the store: the evaluator's cursor and the global switch (the row '*'), each
 * asset's switch and state, the latest evaluations of each asset, and the tick that writes them
 * all with its run requests in one IMMEDIATE transaction, compare-and-set on the cursor's tick.
 */
export class AutomationSql {
  private readonly s

  private readonly db: Database.Database
  private readonly requests: RequestsSql

  constructor(db: Database.Database, requests: RequestsSql) {
    this.db = db
    this.requests = requests
    this.s = statements(db, {
      all: 'SELECT asset, status, state, tick, updated_at FROM automation ORDER BY asset',
      switches: `SELECT asset, status FROM automation WHERE status <> 'default'`,
      global: `SELECT state, tick FROM automation WHERE asset = '${AUTOMATION_GLOBAL}'`,
      setStatus: `INSERT INTO automation (asset, status, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (asset) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at`,
      putState: `INSERT INTO automation (asset, state, tick, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (asset) DO UPDATE SET state = excluded.state, tick = excluded.tick,
           updated_at = excluded.updated_at`,
      insertEvaluation: `INSERT INTO automation_evaluations (tick, asset, evaluated_at, true_count, total, tree, run_ids)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      // the asset's rows older than its 50th newest: one range of automation_evaluations_asset
      trimEvaluations: `DELETE FROM automation_evaluations WHERE asset = @asset AND id < (
           SELECT id FROM automation_evaluations WHERE asset = @asset ORDER BY id DESC LIMIT 1 OFFSET @keep)`,
      evaluations: 'SELECT * FROM automation_evaluations WHERE asset = ? ORDER BY id DESC LIMIT ?',
      latestEvaluations: `SELECT e.* FROM automation_evaluations e
         JOIN (SELECT max(id) AS id FROM automation_evaluations GROUP BY asset) latest ON latest.id = e.id
         ORDER BY e.asset`,
      checkResultsAfter: 'SELECT * FROM check_results WHERE id > ? ORDER BY id LIMIT ?',
      inFlightSteps: `SELECT s.run_id, s.key, s.partition_key FROM steps s JOIN runs r ON r.id = s.run_id
        WHERE r.status IN ('queued', 'started') AND s.status IN ('pending', 'running', 'retrying')
        ORDER BY s.run_id, s.plan_index`,
    })
  }

  automationState(): AutomationStateRecord {
    const rows = this.s.all.all() as Row[]
    const global = rows.find((r) => r.asset === AUTOMATION_GLOBAL)
    return {
      cursor: automationCursorOf(global),
      status: global ? toAutomationAsset(global).status : 'default',
      assets: rows.filter((r) => r.asset !== AUTOMATION_GLOBAL).map(toAutomationAsset),
    }
  }

  automationSwitches(): { status: AutomationStatus; assets: Record<string, AutomationStatus> } {
    const rows = this.s.switches.all() as Array<{ asset: string; status: AutomationStatus }>
    return automationSwitchesOf(rows)
  }

  setAutomationStatus(asset: string | null, status: AutomationStatus, now: number): void {
    this.s.setStatus.run(asset ?? AUTOMATION_GLOBAL, status, now)
  }

  commitAutomationTick(tick: AutomationTick): AutomationCommit {
    return this.db
      .transaction((): AutomationCommit => {
        const global = this.s.global.get() as Row | undefined
        const cursor = automationCursorOf(global)
        const stored = cursor === null ? null : Number(global!.tick)
        if (stored !== tick.expectedTick) return { committed: false, cursor }
        const outcomes: RequestOutcome[] = tick.requests.map((r) => this.requests.requestInTx(r))
        const evaluationIds = tick.evaluations.map((e) => {
          const id = Number(
            this.s.insertEvaluation.run(
              e.tick,
              e.asset,
              e.evaluatedAt,
              e.trueCount,
              e.total,
              e.tree,
              JSON.stringify(evaluationRunIds(outcomes, e.requests)),
            ).lastInsertRowid,
          )
          this.s.trimEvaluations.run({ asset: e.asset, keep: EVALUATIONS_KEPT - 1 })
          return id
        })
        for (const { asset, state } of tick.states(outcomes)) {
          this.s.putState.run(asset, state, tick.cursor.tick, tick.now)
        }
        this.s.putState.run(AUTOMATION_GLOBAL, JSON.stringify(tick.cursor), tick.cursor.tick, tick.now)
        return { committed: true, outcomes, evaluationIds }
      })
      .immediate()
  }

  automationEvaluations(asset: string, limit = 20): AutomationEvaluationRecord[] {
    return (this.s.evaluations.all(asset, limit) as Row[]).map(toAutomationEvaluation)
  }

  latestAutomationEvaluations(): AutomationEvaluationRecord[] {
    return (this.s.latestEvaluations.all() as Row[]).map(toAutomationEvaluation)
  }

  checkResultsAfter(afterId: number, limit: number): CheckResultRecord[] {
    return (this.s.checkResultsAfter.all(afterId, limit) as Row[]).map(toCheckResult)
  }

  inFlightSteps(): InFlightStep[] {
    const rows = this.s.inFlightSteps.all() as Array<{
      run_id: string
      key: string
      partition_key: string | null
    }>
    return rows.map((r) => ({ runId: r.run_id, asset: r.key, partitionKey: r.partition_key }))
  }
}
