import { toRun } from '../rows.js'
import { guardDecision, queuedRun, replayRecord } from '../rules.js'
import type {
  ParkedReplay,
  ParkedRequest,
  ReplayOutcome,
  RequestOutcome,
  RunOwner,
  RunRecord,
  RunRequest,
} from '../types.js'
import { type Conn, type Db, mustRetryWhole, statements } from './db.js'
import { Lock, lock } from './locks.js'
import type { MaintenanceSql } from './maintenance.js'
import type { RunsSql } from './runs.js'

const S = statements('requests', {
  // queued runs go in the order they were requested (runs.seq), across processes too
  guardInFlight: `SELECT id FROM runs WHERE guard = $1 AND status IN ('started', 'paused') ORDER BY seq`,
  guardQueued: `SELECT id FROM runs WHERE guard = $1 AND status = 'queued' ORDER BY seq LIMIT $2`,
  guardQueuedPartition: `SELECT id FROM runs WHERE guard = $1 AND status = 'queued'
     AND partition_key IS NOT DISTINCT FROM $2 ORDER BY seq LIMIT 1`,
  holdsOf: 'SELECT run_id, hold, hold_limit FROM run_holds WHERE run_id = ANY($1::text[])',
  holdCounts: `SELECT h.hold AS key, count(*)::int AS n FROM run_holds h JOIN runs r ON r.id = h.run_id
     WHERE h.hold = ANY($1::text[]) AND r.status IN ('started', 'paused') GROUP BY h.hold`,
  guardCounts: `SELECT guard AS key, count(*)::int AS n FROM runs
     WHERE guard = ANY($1::text[]) AND status IN ('started', 'paused') GROUP BY guard`,
  queuedRuns: `SELECT * FROM runs WHERE status = 'queued' ORDER BY seq LIMIT $1`,
  // the run's row, locked: a claim of it by another process is waited for (a moment: a launch
  // claim or a start), then the status is read again
  lockQueued: `SELECT * FROM runs WHERE id = $1 AND status = 'queued' FOR NO KEY UPDATE`,
  savepoint: 'SAVEPOINT replay_one',
  release: 'RELEASE SAVEPOINT replay_one',
  rollbackTo: 'ROLLBACK TO SAVEPOINT replay_one',
})

/** Run requests (from sensors, schedules, commands, replays): run keys, guards, claiming queued runs. */
export class RequestsSql {
  private readonly db: Db
  private readonly runs: RunsSql
  private readonly maintenance: MaintenanceSql

  constructor(db: Db, runs: RunsSql, maintenance: MaintenanceSql) {
    this.db = db
    this.runs = runs
    this.maintenance = maintenance
  }

  requestRun(request: RunRequest): Promise<RequestOutcome> {
    return this.db.tx((c) => this.requestInTx(c, request))
  }

  /**
   * `requestRun` inside the caller's transaction (a tick's, a replay's): the gate under its share
   * lock, then the guard under its advisory lock, then the run key by its unique constraint.
   */
  async requestInTx(c: Conn, r: RunRequest): Promise<RequestOutcome> {
    const gate = await this.maintenance.gateShared(c)
    const existing = await this.runs.runForKey(c, r.origin, r.runKey)
    if (existing) return { outcome: 'duplicate', runId: existing }
    if (gate) {
      return { outcome: 'parked', requestId: await this.maintenance.parkRequest(c, r, r.parkKeep) }
    }
    const guard = r.guard
    if (guard) {
      await lock(c, Lock.guard, guard.key)
      const inFlight = (await c.rows<{ id: string }>(S.guardInFlight, [guard.key])).map((x) => x.id)
      const queued = (await c.rows<{ id: string }>(S.guardQueued, [guard.key, guard.concurrency])).map(
        (x) => x.id,
      )
      const samePartition =
        guard.onConflict === 'coalesce'
          ? (await c.rows<{ id: string }>(S.guardQueuedPartition, [guard.key, r.partitionKey ?? null])).map(
              (x) => x.id,
            )
          : queued
      const decision = guardDecision(guard, inFlight, queued, samePartition)
      if (decision.kind === 'coalesce') {
        const taken = await this.runs.claimKey(c, r.origin, r.runKey, decision.runId, r.now)
        if (taken) return { outcome: 'duplicate', runId: taken }
        return { outcome: 'coalesced', runId: decision.runId }
      }
      if (decision.kind === 'skip') {
        return { outcome: 'skipped', reason: decision.reason, blockingRunId: decision.blockingRunId }
      }
    }
    const taken = await this.runs.claimKey(c, r.origin, r.runKey, r.id, r.now)
    if (taken) return { outcome: 'duplicate', runId: taken }
    const parent = r.parentRunId === undefined ? undefined : await this.runs.getRun(r.parentRunId, c)
    await this.runs.insertRunRow(c, queuedRun(r, parent))
    return { outcome: 'created', runId: r.id }
  }

  /**
   * Moves a queued run to started, owned by the caller, if its guard has a free slot, it is the
   * oldest queued run of its guard, its holds have room and maintenance is off. The run's row is
   * locked first: of several processes starting it at once, one does and the others find it
   * started. (Daemons choose which queued runs to launch with `claimLaunches`, which skips locked
   * rows instead.)
   */
  claimQueuedRun(runId: string, owner: RunOwner, now: number): Promise<boolean> {
    return this.db.tx(async (c) => {
      const row = await c.row(S.lockQueued, [runId])
      if (!row) return false
      const run = toRun(row)
      // queued before maintenance went on: held until it goes off
      if (await this.maintenance.gateShared(c)) return false
      if (run.guard !== null && run.guardLimit !== null) {
        await lock(c, Lock.guard, run.guard)
        if ((await c.rows(S.guardInFlight, [run.guard])).length >= run.guardLimit) return false
        // launch in request order: an older queued run of the same guard goes first
        const first = (await c.rows<{ id: string }>(S.guardQueued, [run.guard, 1]))[0]
        if (first && first.id !== runId) return false
      }
      if (await this.runs.firstFullHold(c, await this.runs.runHolds(runId, c), runId)) return false
      await this.runs.start(c, runId, owner, now)
      return true
    })
  }

  /** Queued runs, oldest first, with whether their guard and holds have a free slot now. */
  async queuedRuns(limit = 500): Promise<Array<RunRecord & { launchable: boolean }>> {
    const rows = (await this.db.rows(S.queuedRuns, [limit])).map(toRun)
    if (rows.length === 0) return []
    if (await this.maintenance.gate()) return rows.map((run) => ({ ...run, launchable: false }))
    // a statement per kind of fact, whatever the number of queued runs (never one per run)
    const holds = new Map<string, Array<{ hold: string; limit: number }>>()
    for (const h of await this.db.rows<{ run_id: string; hold: string; hold_limit: number }>(S.holdsOf, [
      rows.map((r) => r.id),
    ])) {
      holds.set(h.run_id, [...(holds.get(h.run_id) ?? []), { hold: h.hold, limit: h.hold_limit }])
    }
    const holdKeys = [...new Set([...holds.values()].flat().map((h) => h.hold))]
    const holders = new Map(
      holdKeys.length === 0
        ? []
        : (await this.db.rows<{ key: string; n: number }>(S.holdCounts, [holdKeys])).map((r) => [r.key, r.n]),
    )
    const guards = [...new Set(rows.flatMap((r) => (r.guard === null ? [] : [r.guard])))]
    const inFlight = new Map(
      guards.length === 0
        ? []
        : (await this.db.rows<{ key: string; n: number }>(S.guardCounts, [guards])).map((r) => [r.key, r.n]),
    )
    const seenQueued = new Set<string>()
    return rows.map((run) => {
      if ((holds.get(run.id) ?? []).some((h) => (holders.get(h.hold) ?? 0) >= h.limit))
        return { ...run, launchable: false }
      if (run.guard === null || run.guardLimit === null) return { ...run, launchable: true }
      const first = !seenQueued.has(run.guard)
      seenQueued.add(run.guard)
      return { ...run, launchable: first && (inFlight.get(run.guard) ?? 0) < run.guardLimit }
    })
  }

  /**
   * Replays parked requests in one transaction: each still pending is locked, requested in a
   * savepoint (one that fails leaves nothing half-written) and marked replayed together.
   */
  replayParked(
    replays: readonly ParkedReplay[],
    now: number,
  ): Promise<Array<{ parked: ParkedRequest; outcome: ReplayOutcome }>> {
    return this.db.tx(async (c) => {
      if (await this.maintenance.gateShared(c)) return []
      const out: Array<{ parked: ParkedRequest; outcome: ReplayOutcome }> = []
      for (const replay of replays) {
        const parked = await this.maintenance.lockParked(c, replay.parkedId)
        if (!parked || parked.replayedAt !== null) continue
        let outcome: ReplayOutcome
        if ('failed' in replay) outcome = { outcome: 'failed', reason: replay.failed }
        else {
          await c.run(S.savepoint)
          try {
            outcome = await this.requestInTx(c, replay.request)
            await c.run(S.release)
          } catch (error) {
            // the transaction itself failed (a deadlock, a lost connection): it is retried whole
            if (mustRetryWhole(error)) throw error
            await c.run(S.rollbackTo)
            outcome = { outcome: 'failed', reason: (error as Error).message }
          }
        }
        const { runId, text } = replayRecord(outcome)
        await this.maintenance.markReplayed(c, parked.id, now, runId, text)
        out.push({ parked: { ...parked, replayedAt: now, replayRunId: runId, replayOutcome: text }, outcome })
      }
      return out
    })
  }
}
