import type Database from 'better-sqlite3'
import { type Row, toRun } from '../rows.js'
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
import type { MaintenanceSql } from './maintenance.js'
import { statements } from './rows.js'
import type { RunsSql } from './runs.js'

/** Run requests (from sensors, schedules, commands, replays): run keys, guards, claiming queued runs. */
export class RequestsSql {
  private readonly s

  private readonly db: Database.Database
  private readonly runs: RunsSql
  private readonly maintenance: MaintenanceSql

  constructor(db: Database.Database, runs: RunsSql, maintenance: MaintenanceSql) {
    this.db = db
    this.runs = runs
    this.maintenance = maintenance
    this.s = statements(db, {
      // queued runs go in the order they were requested: insertion order, across processes too
      guardInFlight: `SELECT id FROM runs WHERE guard = ? AND status IN ('started', 'paused') ORDER BY rowid`,
      guardQueued: `SELECT id FROM runs WHERE guard = ? AND status = 'queued' ORDER BY rowid LIMIT ?`,
      guardQueuedPartition: `SELECT id FROM runs WHERE guard = ? AND status = 'queued' AND partition_key IS ?
         ORDER BY rowid LIMIT 1`,
      queuedRuns: `SELECT * FROM runs WHERE status = 'queued' ORDER BY rowid LIMIT ?`,
    })
  }

  /**
   * Records a run request as a queued run, or says why not, in one IMMEDIATE transaction: the run
   * key is checked and claimed and the guard is counted in the transaction that inserts the run, so
   * processes requesting at once still get exactly one run per key and one follow-up per guard.
   */
  requestRun(request: RunRequest): RequestOutcome {
    return this.db.transaction(() => this.requestInTx(request)).immediate()
  }

  /** `requestRun` inside the caller's transaction (a tick's, a replay's). */
  requestInTx(r: RunRequest): RequestOutcome {
    const existing = this.runs.runForKey(r.origin, r.runKey)
    if (existing) return { outcome: 'duplicate', runId: existing }
    if (this.maintenance.gate()) {
      return { outcome: 'parked', requestId: this.maintenance.parkRequest(r, r.parkKeep) }
    }
    const guard = r.guard
    if (guard) {
      const inFlight = (this.s.guardInFlight.all(guard.key) as Array<{ id: string }>).map((x) => x.id)
      // only the oldest queued runs matter (the follow-up, or enough to fill the guard): bounded reads
      const queued = (this.s.guardQueued.all(guard.key, guard.concurrency) as Array<{ id: string }>).map(
        (x) => x.id,
      )
      const samePartition =
        guard.onConflict === 'coalesce'
          ? (this.s.guardQueuedPartition.all(guard.key, r.partitionKey ?? null) as Array<{ id: string }>).map(
              (x) => x.id,
            )
          : queued
      const decision = guardDecision(guard, inFlight, queued, samePartition)
      if (decision.kind === 'coalesce') {
        this.runs.claimKey(r.origin, r.runKey, decision.runId, r.now)
        return { outcome: 'coalesced', runId: decision.runId }
      }
      if (decision.kind === 'skip') {
        return { outcome: 'skipped', reason: decision.reason, blockingRunId: decision.blockingRunId }
      }
    }
    this.runs.claimKey(r.origin, r.runKey, r.id, r.now)
    const parent = r.parentRunId === undefined ? undefined : this.runs.getRun(r.parentRunId)
    this.runs.insertRunRow(queuedRun(r, parent))
    return { outcome: 'created', runId: r.id }
  }

  /**
   * Moves a queued run to started, owned by the caller, if its guard has a free slot (started and
   * paused runs count), it is the oldest queued run of its guard, its holds have room and
   * maintenance is off. Returns false when it is not queued any more or must wait.
   */
  claimQueuedRun(runId: string, owner: RunOwner, now: number): boolean {
    return this.db
      .transaction(() => {
        const run = this.runs.getRun(runId)
        if (run?.status !== 'queued') return false
        // queued before maintenance went on: held until it goes off
        if (this.maintenance.gate()) return false
        if (run.guard !== null && run.guardLimit !== null) {
          if (this.s.guardInFlight.all(run.guard).length >= run.guardLimit) return false
          // launch in request order: an older queued run of the same guard goes first
          const first = (this.s.guardQueued.all(run.guard, 1) as Array<{ id: string }>)[0]
          if (first && first.id !== runId) return false
        }
        if (this.runs.firstFullHold(this.runs.runHolds(runId), runId)) return false
        this.runs.start(runId, owner, now)
        return true
      })
      .immediate()
  }

  /** Queued runs, oldest first, with whether their guard and holds have a free slot now. */
  queuedRuns(limit = 500): Array<RunRecord & { launchable: boolean }> {
    const rows = (this.s.queuedRuns.all(limit) as Row[]).map(toRun)
    // maintenance mode holds every queued run until it goes off
    if (this.maintenance.gate()) return rows.map((run) => ({ ...run, launchable: false }))
    const inFlight = new Map<string, number>()
    const seenQueued = new Set<string>()
    return rows.map((run) => {
      if (this.runs.firstFullHold(this.runs.runHolds(run.id), run.id)) return { ...run, launchable: false }
      if (run.guard === null || run.guardLimit === null) return { ...run, launchable: true }
      if (!inFlight.has(run.guard)) inFlight.set(run.guard, this.s.guardInFlight.all(run.guard).length)
      const first = !seenQueued.has(run.guard)
      seenQueued.add(run.guard)
      return { ...run, launchable: first && inFlight.get(run.guard)! < run.guardLimit }
    })
  }

  /**
   * Replays parked requests in one transaction: each still pending is requested (in a savepoint,
   * so one that fails leaves nothing half-written) and marked replayed together.
   */
  replayParked(
    replays: readonly ParkedReplay[],
    now: number,
  ): Array<{ parked: ParkedRequest; outcome: ReplayOutcome }> {
    const requestOne = this.db.transaction((request: RunRequest) => this.requestInTx(request))
    return this.db
      .transaction(() => {
        if (this.maintenance.gate()) return []
        const out: Array<{ parked: ParkedRequest; outcome: ReplayOutcome }> = []
        for (const replay of replays) {
          const parked = this.maintenance.get(replay.parkedId)
          if (!parked || parked.replayedAt !== null) continue
          let outcome: ReplayOutcome
          if ('failed' in replay) outcome = { outcome: 'failed', reason: replay.failed }
          else {
            try {
              outcome = requestOne(replay.request)
            } catch (error) {
              outcome = { outcome: 'failed', reason: (error as Error).message }
            }
          }
          const { runId, text } = replayRecord(outcome)
          this.maintenance.markReplayed(parked.id, now, runId, text)
          out.push({
            parked: { ...parked, replayedAt: now, replayRunId: runId, replayOutcome: text },
            outcome,
          })
        }
        return out
      })
      .immediate()
  }
}
