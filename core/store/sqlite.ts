import { existsSync, mkdirSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { type ErrorInfo, StoreError } from '../errors.js'
import type { RunEvent } from '../events.js'
import { type JsonObject, parseJson } from '../json.js'
import { APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION } from './schema.js'
import type {
  AttemptRecord,
  BackupRecord,
  CommittedTick,
  CreateRunResult,
  EventFilter,
  InstigatorKind,
  InstigatorState,
  InstigatorStatus,
  Lease,
  MaintenanceState,
  MaterializationRecord,
  NewRun,
  NewTick,
  ParkedRequest,
  RequestOutcome,
  RunFilter,
  RunGuard,
  RunHold,
  RunRecord,
  RunRequest,
  RunStatus,
  StepRecord,
  StoredEvent,
  TickRecord,
  WriteBatch,
} from './types.js'

export interface OpenStoreOptions {
  /** Open for reading only; the file must exist. */
  readonly?: boolean
  /** How long a write waits for another process's lock before failing (default 5000 ms). */
  busyTimeoutMs?: number
}

export interface RecoverOptions {
  now?: number
  /** A run owned by another host is interrupted when its heartbeat is older than this (default 60 s). */
  staleAfterMs?: number
  /** Only consider these runs. */
  runIds?: readonly string[]
}

export interface RecoveredRun {
  runId: string
  reason: string
}

/** How often a running run writes its heartbeat; staleness thresholds are multiples of it. */
export const HEARTBEAT_INTERVAL_MS = 5_000
const DEFAULT_STALE_AFTER_MS = 60_000

type Row = Record<string, unknown>

/**
 * The SQLite store: every run, step, attempt, event and materialization. All SQL lives here,
 * behind methods, with prepared statements only. Writes are short IMMEDIATE transactions, so
 * several processes (a daemon, a CLI run, `refresh runs`) can share one file.
 */
export class SqliteStore implements Disposable, AsyncDisposable {
  readonly path: string
  readonly readonly: boolean
  private readonly db: Database.Database
  private readonly stmts: ReturnType<typeof prepare>
  private closed = false
  private readonly writeTx: (batch: WriteBatch) => void

  constructor(db: Database.Database, path: string, readonly: boolean) {
    this.db = db
    this.path = path
    this.readonly = readonly
    this.stmts = prepare(db)
    const writeTx = db.transaction((b: WriteBatch) => {
      const s = this.stmts
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
      for (const e of b.events) {
        s.insertEvent.run(e.runId, e.ts, e.type, 'step' in e ? e.step : null, JSON.stringify(e))
      }
    })
    this.writeTx = (batch) => writeTx.immediate(batch)
  }

  get isMemory(): boolean {
    return this.path === ':memory:'
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.db.close()
  }

  get isOpen(): boolean {
    return !this.closed
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }

  /** The schema version of the open file. */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number
  }

  // ---- runs --------------------------------------------------------------------------------

  /**
   * Inserts a run and its pending steps in one transaction. With a run key, the key is checked and
   * claimed in the same IMMEDIATE transaction: two processes asking for the same (origin, key) at
   * once still create one run; the other gets the existing run's id.
   */
  createRun(runInput: NewRun): CreateRunResult {
    let input = runInput
    const origin = input.origin ?? 'manual'
    return this.db
      .transaction((): CreateRunResult => {
        if (input.runKey !== undefined) {
          const existing = this.stmts.getRunKey.get(origin, input.runKey) as { run_id: string } | undefined
          if (existing) return { created: false, existingRunId: existing.run_id }
        }
        // the gate is read here, in the transaction that would create the run: never a cached flag
        if (!input.force && this.getMaintenance()) {
          const requestId = this.park({
            origin,
            selection: input.selection,
            config: input.config,
            tags: input.tags,
            runKey: input.runKey,
            parentRunId: input.parentRunId,
            now: input.now,
          })
          return { created: false, parkedRequestId: requestId }
        }
        const blockedBy = this.firstFullHold(input.holds ?? [], input.id)
        if (blockedBy) return { created: false, blockedBy }
        if (input.runKey !== undefined) this.stmts.insertRunKey.run(origin, input.runKey, input.id, input.now)
        if (input.force && this.getMaintenance())
          input = { ...input, tags: { ...input.tags, 'refresh/forced': 'maintenance' } }
        this.insertRunRow(input)
        return { created: true, run: this.getRun(input.id)! }
      })
      .immediate()
  }

  /** The first of a run's holds that is full, and the run that fills it (inside a transaction). */
  private firstFullHold(
    holds: readonly RunHold[],
    self: string,
  ): { runId: string; hold: string } | undefined {
    for (const h of holds) {
      const holders = (this.stmts.holdInFlight.all(h.key) as Array<{ run_id: string }>).filter(
        (r) => r.run_id !== self,
      )
      if (holders.length >= h.limit) return { runId: holders[0]!.run_id, hold: h.key }
    }
    return undefined
  }

  /** The run guards of the config a run holds. */
  runHolds(runId: string): RunHold[] {
    return (this.stmts.getHolds.all(runId) as Array<{ hold: string; hold_limit: number }>).map((r) => ({
      key: r.hold,
      limit: r.hold_limit,
    }))
  }

  /** Inserts a run row and its pending steps (inside the caller's transaction). */
  private insertRunRow(input: NewRun & { guard?: string; guardLimit?: number }): void {
    const started = input.status === 'started'
    this.stmts.insertRun.run({
      id: input.id,
      status: input.status,
      selection: input.selection,
      plan: JSON.stringify(input.plan),
      reused: JSON.stringify(input.reused ?? {}),
      config: JSON.stringify(input.config),
      tags: JSON.stringify(input.tags ?? {}),
      origin: input.origin ?? 'manual',
      run_key: input.runKey ?? null,
      parent_run_id: input.parentRunId ?? null,
      root_run_id: input.rootRunId ?? input.parentRunId ?? null,
      partition_key: input.partitionKey ?? null,
      created_at: input.now,
      started_at: started ? input.now : null,
      owner_pid: input.owner?.pid ?? null,
      owner_host: input.owner?.host ?? null,
      heartbeat_at: started ? input.now : null,
      guard: input.guard ?? null,
      guard_limit: input.guardLimit ?? null,
    })
    input.plan.forEach((key, index) => {
      this.stmts.insertStep.run(input.id, key, index, input.partitionKey ?? null)
    })
    for (const h of input.holds ?? []) this.stmts.insertHold.run(input.id, h.key, h.limit)
  }

  getRun(id: string): RunRecord | undefined {
    const row = this.stmts.getRun.get(id) as Row | undefined
    return row ? toRun(row) : undefined
  }

  /** Finds a run by id or by a unique prefix of its id (as typed by users). */
  findRun(idOrPrefix: string): RunRecord | undefined {
    const exact = this.getRun(idOrPrefix)
    if (exact) return exact
    if (idOrPrefix.length < 4) return undefined
    const rows = this.stmts.findRunPrefix.all(`${escapeLike(idOrPrefix)}%`) as Row[]
    if (rows.length > 1) {
      throw new StoreError(`run id prefix \`${idOrPrefix}\` matches several runs; type more of the id.`)
    }
    return rows[0] ? toRun(rows[0]) : undefined
  }

  listRuns(filter: RunFilter = {}): RunRecord[] {
    const statuses =
      filter.status === undefined
        ? null
        : JSON.stringify(Array.isArray(filter.status) ? filter.status : [filter.status])
    const rows = this.stmts.listRuns.all({
      statuses,
      before: filter.before ?? null,
      limit: filter.limit ?? -1,
    }) as Row[]
    return rows.map(toRun)
  }

  /**
   * The first failed step (in plan order) of each given run that has one, in one query: list
   * views show it beside each run without a query per row.
   */
  failedSteps(runIds: readonly string[]): Map<string, string> {
    const rows = this.stmts.failedSteps.all(JSON.stringify(runIds)) as Array<{
      run_id: string
      failed: string
    }>
    return new Map(rows.map((r) => [r.run_id, r.failed]))
  }

  countRuns(): Record<RunStatus, number> {
    const counts: Record<RunStatus, number> = {
      queued: 0,
      started: 0,
      paused: 0,
      success: 0,
      failure: 0,
      canceled: 0,
    }
    for (const row of this.stmts.countRuns.all() as Array<{ status: RunStatus; n: number }>)
      counts[row.status] = row.n
    return counts
  }

  /**
   * Ends a run. Only a run still `started` (or `queued`) changes: a run that recovery already
   * marked as interrupted keeps that verdict. Returns whether the row changed.
   */
  finishRun(
    runId: string,
    status: 'success' | 'failure' | 'canceled',
    now: number,
    error?: ErrorInfo,
  ): boolean {
    return this.db
      .transaction(() => {
        const changed =
          this.stmts.finishRun.run(status, now, error ? JSON.stringify(error) : null, runId).changes > 0
        if (changed) this.stmts.releaseRunSlots.run(runId)
        return changed
      })
      .immediate()
  }

  /**
   * Writes the owner's heartbeat and reads back whether cancellation was requested. Returns
   * `lost` when the run is no longer started by this owner (recovery took it).
   */
  heartbeat(
    runId: string,
    owner: { pid: number; host: string },
    now: number,
  ): 'ok' | 'cancel' | 'pause' | 'lost' {
    const row = this.stmts.heartbeat.get(now, runId, owner.pid, owner.host) as
      | { cancel_requested_at: number | null; pause_requested_at: number | null }
      | undefined
    if (!row) return 'lost'
    if (row.cancel_requested_at !== null) return 'cancel'
    return row.pause_requested_at === null ? 'ok' : 'pause'
  }

  /**
   * Asks the process that owns a run to cancel it (it polls within a fraction of a second).
   * A queued run is canceled at once. Returns the run's status after the request.
   */
  requestCancel(runId: string, now: number): RunStatus {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (!run) throw new StoreError(`no run \`${runId}\` in ${this.path}; \`refresh runs\` lists them.`)
        if (run.status === 'queued' || run.status === 'paused') {
          this.stmts.cancelQueued.run(now, now, runId)
          this.stmts.cancelPendingSteps.run(now, runId)
          return 'canceled'
        }
        if (run.status === 'started') {
          this.stmts.requestCancel.run(now, runId)
        }
        return run.status
      })
      .immediate()
  }

  // ---- steps, attempts, events, materializations --------------------------------------------

  /** Commits an executor's accumulated writes in one transaction. */
  write(batch: WriteBatch): void {
    if (
      batch.events.length === 0 &&
      batch.steps.length === 0 &&
      batch.attempts.length === 0 &&
      batch.materializations.length === 0
    ) {
      return
    }
    this.writeTx(batch)
  }

  getSteps(runId: string): StepRecord[] {
    return (this.stmts.getSteps.all(runId) as Row[]).map(toStep)
  }

  getAttempts(runId: string, step?: string): AttemptRecord[] {
    const rows = (
      step === undefined ? this.stmts.getAttempts.all(runId) : this.stmts.getStepAttempts.all(runId, step)
    ) as Row[]
    return rows.map(toAttempt)
  }

  getEvents(runId: string, filter: EventFilter = {}): StoredEvent[] {
    const rows = this.stmts.getEvents.all({
      run_id: runId,
      after: filter.afterId ?? 0,
      step: filter.step ?? null,
      types: filter.types ? JSON.stringify(filter.types) : null,
      limit: filter.limit ?? -1,
    }) as Array<{ id: number; payload: string }>
    return rows.map((row) => ({ ...(JSON.parse(row.payload) as RunEvent), id: row.id }))
  }

  countEvents(runId?: string): number {
    const row = (
      runId === undefined ? this.stmts.countAllEvents.get() : this.stmts.countRunEvents.get(runId)
    ) as {
      n: number
    }
    return row.n
  }

  latestMaterialization(asset: string): MaterializationRecord | undefined {
    const row = this.stmts.latestMaterialization.get(asset) as Row | undefined
    return row ? toMaterialization(row) : undefined
  }

  /** The latest materialization of every asset that has one, keyed by asset. */
  latestMaterializations(): Map<string, MaterializationRecord> {
    const out = new Map<string, MaterializationRecord>()
    for (const row of this.stmts.latestMaterializations.all() as Row[]) {
      const m = toMaterialization(row)
      out.set(m.asset, m)
    }
    return out
  }

  /** The materialization an asset got in a given run, if any. */
  runMaterialization(runId: string, asset: string): MaterializationRecord | undefined {
    const row = this.stmts.runMaterialization.get(runId, asset) as Row | undefined
    return row ? toMaterialization(row) : undefined
  }

  materializationsForRun(runId: string): MaterializationRecord[] {
    return (this.stmts.runMaterializations.all(runId) as Row[]).map(toMaterialization)
  }

  // ---- pools ---------------------------------------------------------------------------------

  /**
   * Takes a slot in a named pool if fewer than `limit` are held by started runs. The count and
   * the insert happen in one IMMEDIATE transaction, so processes sharing the file never exceed
   * the limit together. Slots of runs that are no longer started are freed on the way.
   */
  tryAcquirePoolSlot(pool: string, limit: number, runId: string, step: string, now: number): boolean {
    return this.db
      .transaction(() => {
        this.stmts.freeDeadSlots.run(pool)
        const { n } = this.stmts.countSlots.get(pool) as { n: number }
        if (n >= limit) return false
        this.stmts.insertSlot.run(pool, runId, step, now)
        return true
      })
      .immediate()
  }

  releasePoolSlot(pool: string, runId: string, step: string): void {
    this.stmts.releaseSlot.run(pool, runId, step)
  }

  poolUsage(): Array<{ pool: string; runId: string; step: string; acquiredAt: number }> {
    return (this.stmts.poolUsage.all() as Row[]).map((r) => ({
      pool: r.pool as string,
      runId: r.run_id as string,
      step: r.step_key as string,
      acquiredAt: r.acquired_at as number,
    }))
  }

  // ---- run requests, guards and launching ----------------------------------------------------

  /**
   * Records a run request as a queued run, or says why not, in one IMMEDIATE transaction: the run
   * key is checked and claimed and the guard is counted in the same transaction that inserts the
   * run, so processes requesting at once still get exactly one run per key and one follow-up per
   * coalescing guard.
   */
  requestRun(request: RunRequest): RequestOutcome {
    return this.db.transaction(() => this.requestRunInTx(request)).immediate()
  }

  private requestRunInTx(r: RunRequest): RequestOutcome {
    if (r.runKey !== undefined) {
      const existing = this.stmts.getRunKey.get(r.origin, r.runKey) as { run_id: string } | undefined
      if (existing) return { outcome: 'duplicate', runId: existing.run_id }
    }
    if (this.getMaintenance()) {
      if (r.runKey !== undefined) {
        // the same key parked twice (a sensor re-evaluating) is one request
        const parked = this.stmts.findParkedKey.get(r.origin, r.runKey) as { id: number } | undefined
        if (parked) return { outcome: 'parked', requestId: parked.id }
      }
      const requestId = this.park(r)
      if (r.parkKeep !== undefined) this.stmts.trimParked.run(r.origin, r.origin, r.parkKeep)
      return { outcome: 'parked', requestId }
    }
    const guard = r.guard
    if (guard) {
      const inFlight = this.stmts.guardInFlight.all(guard.key) as Array<{ id: string }>
      // only the oldest queued runs matter (the follow-up, or enough to fill the guard): bounded reads
      const queued = this.stmts.guardQueued.all(guard.key, guard.concurrency) as Array<{ id: string }>
      if (guard.onConflict === 'coalesce' && queued.length > 0) {
        // the pending follow-up has not started: it will see whatever this request was for
        const followUp = queued[0]!.id
        if (r.runKey !== undefined) this.stmts.insertRunKey.run(r.origin, r.runKey, followUp, r.now)
        return { outcome: 'coalesced', runId: followUp }
      }
      if (guard.onConflict === 'skip' && inFlight.length + queued.length >= guard.concurrency) {
        const blocking = inFlight[0]?.id ?? queued[0]?.id ?? null
        return {
          outcome: 'skipped',
          reason: `guard \`${guard.key}\` is full (${guard.concurrency} at a time; run ${blocking} is in flight)`,
          blockingRunId: blocking,
        }
      }
    }
    if (r.runKey !== undefined) this.stmts.insertRunKey.run(r.origin, r.runKey, r.id, r.now)
    const parent = r.parentRunId === undefined ? undefined : this.getRun(r.parentRunId)
    this.insertRunRow({
      id: r.id,
      status: 'queued',
      parentRunId: parent?.id,
      rootRunId: parent ? (parent.rootRunId ?? parent.id) : undefined,
      reused: r.reused,
      selection: r.selection,
      plan: r.plan,
      config: r.config,
      tags: r.tags,
      origin: r.origin,
      runKey: r.runKey,
      now: r.now,
      guard: guard?.key,
      guardLimit: guard?.concurrency,
      holds: r.holds,
    })
    return { outcome: 'created', runId: r.id }
  }

  /**
   * Moves a queued run to started, owned by the calling process, if its guard has a free slot
   * (started and paused runs count). Returns false when it is not queued any more or must wait.
   */
  claimQueuedRun(runId: string, owner: { pid: number; host: string }, now: number): boolean {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (run?.status !== 'queued') return false
        // queued before maintenance went on: held until it goes off
        if (this.getMaintenance()) return false
        if (run.guard !== null && run.guardLimit !== null) {
          const inFlight = (this.stmts.guardInFlight.all(run.guard) as unknown[]).length
          if (inFlight >= run.guardLimit) return false
          // launch in request order: an older queued run of the same guard goes first
          const first = (this.stmts.guardQueued.all(run.guard, 1) as Array<{ id: string }>)[0]
          if (first && first.id !== runId) return false
        }
        if (this.firstFullHold(this.runHolds(runId), runId)) return false
        this.stmts.startRun.run(now, owner.pid, owner.host, now, runId)
        return true
      })
      .immediate()
  }

  /** Queued runs, oldest first, with whether their guard has a free slot now. */
  queuedRuns(limit = 500): Array<RunRecord & { launchable: boolean }> {
    const rows = (this.stmts.queuedRuns.all(limit) as Row[]).map(toRun)
    // maintenance mode holds every queued run until it goes off
    if (this.getMaintenance()) return rows.map((run) => ({ ...run, launchable: false }))
    const inFlight = new Map<string, number>()
    const seenQueued = new Set<string>()
    return rows.map((run) => {
      if (this.firstFullHold(this.runHolds(run.id), run.id)) return { ...run, launchable: false }
      if (run.guard === null || run.guardLimit === null) return { ...run, launchable: true }
      if (!inFlight.has(run.guard))
        inFlight.set(run.guard, (this.stmts.guardInFlight.all(run.guard) as unknown[]).length)
      const first = !seenQueued.has(run.guard)
      seenQueued.add(run.guard)
      return { ...run, launchable: first && inFlight.get(run.guard)! < run.guardLimit }
    })
  }

  // ---- sensors and schedules: state, ticks, cursors -----------------------------------------

  getInstigator(name: string): InstigatorState | undefined {
    const row = this.stmts.getInstigator.get(name) as Row | undefined
    return row ? toInstigator(row) : undefined
  }

  listInstigators(): InstigatorState[] {
    return (this.stmts.listInstigators.all() as Row[]).map(toInstigator)
  }

  /**
   * Turns a sensor or schedule on or off (persisted). Turning one on records when, so that a
   * schedule never fires for times before it was on, however long it was off.
   */
  setInstigatorStatus(
    name: string,
    kind: InstigatorKind,
    status: InstigatorStatus,
    now: number,
  ): InstigatorState {
    return this.db
      .transaction(() => {
        this.stmts.upsertInstigator.run({ name, kind, now })
        const current = this.getInstigator(name)!
        const turningOn = status === 'on' && current.status !== 'on'
        this.stmts.setInstigatorStatus.run(status, turningOn ? now : current.enabledAt, now, name)
        return this.getInstigator(name)!
      })
      .immediate()
  }

  /** Makes sure a row exists for an instigator (first sight by a daemon: enabled from now). */
  ensureInstigator(name: string, kind: InstigatorKind, now: number): InstigatorState {
    return this.db
      .transaction(() => {
        this.stmts.upsertInstigator.run({ name, kind, now })
        return this.getInstigator(name)!
      })
      .immediate()
  }

  /**
   * Records a tick with its run requests and its new cursor in one transaction: either all of
   * it is stored or none, so a crash mid-tick never loses a request nor advances a cursor past it.
   */
  commitTick(tick: NewTick): CommittedTick {
    return this.commitTicks([tick])[0]!
  }

  /** Several ticks (a daemon iteration's worth) in one transaction, each as `commitTick` would. */
  commitTicks(ticks: readonly NewTick[]): CommittedTick[] {
    return this.db.transaction(() => ticks.map((t) => this.commitTickInTx(t))).immediate()
  }

  private commitTickInTx(tick: NewTick): CommittedTick {
    this.stmts.upsertInstigator.run({ name: tick.instigator, kind: tick.kind, now: tick.startedAt })
    const outcomes = (tick.requests ?? []).map((r) => this.requestRunInTx(r))
    const runIds = [...new Set(outcomes.flatMap((o) => ('runId' in o ? [o.runId] : [])))]
    // a tick whose every request was a repeated key or refused by a guard launched nothing
    let status = tick.status
    let skipReason = tick.skipReason ?? null
    if (outcomes.length > 0 && outcomes.every((o) => o.outcome === 'duplicate' || o.outcome === 'skipped')) {
      status = 'skipped'
      skipReason = outcomes
        .map((o, i) =>
          o.outcome === 'duplicate'
            ? `run key ${tick.requests![i]!.runKey} already used by run ${o.runId}`
            : o.reason,
        )
        .join('; ')
    }
    const current = this.getInstigator(tick.instigator)!
    const cursor = tick.cursor === undefined ? current.cursor : tick.cursor
    const previous = current.lastTickId === null ? undefined : this.getTick(current.lastTickId)
    let id: number
    if (
      status === 'skipped' &&
      previous?.status === 'skipped' &&
      previous.skipReason === skipReason &&
      previous.cursor === cursor &&
      previous.runIds.length === 0 &&
      runIds.length === 0
    ) {
      // the same skip again: fold it into the previous row instead of a row a second forever
      this.stmts.foldTick.run(tick.endedAt, previous.id)
      id = previous.id
    } else {
      const info = this.stmts.insertTick.run({
        instigator: tick.instigator,
        kind: tick.kind,
        tick_time: tick.tickTime,
        started_at: tick.startedAt,
        ended_at: tick.endedAt,
        status,
        run_ids: JSON.stringify(runIds),
        skip_reason: skipReason,
        error: tick.error ? JSON.stringify(tick.error) : null,
        cursor,
      })
      id = Number(info.lastInsertRowid)
    }
    this.stmts.updateInstigatorTick.run(cursor, tick.tickTime, id, tick.endedAt, tick.instigator)
    return { tick: this.getTick(id)!, outcomes }
  }

  getTick(id: number): TickRecord | undefined {
    const row = this.stmts.getTick.get(id) as Row | undefined
    return row ? toTick(row) : undefined
  }

  /** An instigator's ticks, newest first. */
  listTicks(instigator: string, limit = 50): TickRecord[] {
    return (this.stmts.listTicks.all(instigator, limit) as Row[]).map(toTick)
  }

  /** Finished runs in the given statuses that ended at or after `endedAt`, in the order they ended. */
  runsEndedAfter(statuses: readonly RunStatus[], endedAt: number, limit = 1000): RunRecord[] {
    return (this.stmts.runsEndedAfter.all(JSON.stringify(statuses), endedAt, limit) as Row[]).map(toRun)
  }

  // ---- leases ----------------------------------------------------------------------------------

  /**
   * Takes or renews a named lease. It is granted when free, expired, or already ours; the check
   * and the write are one IMMEDIATE transaction, so two daemons never both hold it.
   */
  acquireLease(
    name: string,
    holder: string,
    ttlMs: number,
    now: number,
  ): { acquired: boolean; lease: Lease } {
    return this.db
      .transaction(() => {
        const current = this.stmts.getLease.get(name) as Row | undefined
        if (current && current.holder !== holder && (current.expires_at as number) > now) {
          return { acquired: false, lease: toLease(current) }
        }
        const acquiredAt = current && current.holder === holder ? (current.acquired_at as number) : now
        this.stmts.upsertLease.run(name, holder, acquiredAt, now + ttlMs)
        return { acquired: true, lease: toLease(this.stmts.getLease.get(name) as Row) }
      })
      .immediate()
  }

  releaseLease(name: string, holder: string): void {
    this.stmts.releaseLease.run(name, holder)
  }

  getLease(name: string): Lease | undefined {
    const row = this.stmts.getLease.get(name) as Row | undefined
    return row ? toLease(row) : undefined
  }

  // ---- maintenance mode and parked requests --------------------------------------------------

  /** The maintenance gate, or null when it is off. Read inside every run-creating transaction. */
  getMaintenance(): MaintenanceState | null {
    const row = this.stmts.getSetting.get('maintenance') as { value: string } | undefined
    return row ? (JSON.parse(row.value) as MaintenanceState) : null
  }

  /** Turns the gate on; returns false (and changes nothing) when it already is. */
  setMaintenanceOn(state: MaintenanceState): boolean {
    return this.db
      .transaction(() => {
        if (this.getMaintenance()) return false
        this.stmts.putSetting.run('maintenance', JSON.stringify(state), state.since)
        return true
      })
      .immediate()
  }

  /** Turns the gate off; returns the state it had, or null when it was not on. */
  setMaintenanceOff(): MaintenanceState | null {
    return this.db
      .transaction(() => {
        const state = this.getMaintenance()
        if (state) this.stmts.deleteSetting.run('maintenance')
        return state
      })
      .immediate()
  }

  /** An online backup of the whole store to `file` (consistent even while others write). */
  async backupTo(file: string): Promise<void> {
    await this.db.backup(file)
  }

  recordBackup(record: BackupRecord): void {
    this.stmts.putSetting.run('last_backup', JSON.stringify(record), record.at)
  }

  lastBackup(): BackupRecord | null {
    const row = this.stmts.getSetting.get('last_backup') as { value: string } | undefined
    return row ? (JSON.parse(row.value) as BackupRecord) : null
  }

  /** Parked requests in arrival order; `pending` only those not replayed yet. */
  listParked(options: { pending?: boolean; limit?: number } = {}): ParkedRequest[] {
    const rows = (options.pending ? this.stmts.pendingParked : this.stmts.allParked).all(
      options.limit ?? -1,
    ) as Row[]
    return rows.map(toParked)
  }

  /**
   * Replays the oldest pending parked requests, up to `max` of them in one transaction: `build`
   * turns each into a run request (against the config in force now), and each run is requested
   * and its parked row marked replayed in that same transaction, so a crash in the middle of a
   * replay never replays a request twice nor drops one. Returns an empty list when nothing is
   * pending (or the gate is on again).
   */
  replayParked(
    build: (parked: ParkedRequest) => RunRequest,
    now: number,
    max = 200,
  ): Array<{ parked: ParkedRequest; outcome: RequestOutcome | { outcome: 'failed'; reason: string } }> {
    const requestOne = this.db.transaction((request: RunRequest) => this.requestRunInTx(request))
    return this.db
      .transaction(() => {
        if (this.getMaintenance()) return []
        return (this.stmts.pendingParked.all(max) as Row[]).map((row) => {
          const parked = toParked(row)
          let outcome: RequestOutcome | { outcome: 'failed'; reason: string }
          try {
            // a savepoint: a request that fails leaves nothing half-written
            outcome = requestOne(build(parked))
          } catch (error) {
            // a request that no longer resolves (its asset was removed) is reported, not retried forever
            outcome = { outcome: 'failed', reason: (error as Error).message }
          }
          const runId = 'runId' in outcome ? outcome.runId : null
          const text =
            outcome.outcome === 'failed' || outcome.outcome === 'skipped'
              ? `${outcome.outcome}: ${outcome.reason}`
              : outcome.outcome
          this.stmts.markReplayed.run(now, runId, text, parked.id)
          return { parked: { ...parked, replayedAt: now, replayRunId: runId, replayOutcome: text }, outcome }
        })
      })
      .immediate()
  }

  private park(r: {
    origin: string
    selection: string
    config: Record<string, unknown>
    tags?: Record<string, string>
    runKey?: string
    guard?: RunGuard
    parentRunId?: string
    now: number
  }): number {
    const info = this.stmts.insertParked.run({
      origin: r.origin,
      selection: r.selection,
      config: JSON.stringify(r.config),
      tags: JSON.stringify(r.tags ?? {}),
      run_key: r.runKey ?? null,
      guard: r.guard ? JSON.stringify(r.guard) : null,
      parent_run_id: r.parentRunId ?? null,
      created_at: r.now,
    })
    return Number(info.lastInsertRowid)
  }

  /** Parks a started run that maintenance drained (canceled): replayed as a re-execution from failure. */
  parkForResume(run: RunRecord, now: number): number {
    return this.park({
      origin: run.origin,
      selection: run.selection,
      config: run.config,
      tags: run.tags,
      parentRunId: run.id,
      guard:
        run.guard !== null && run.guardLimit !== null
          ? { key: run.guard, concurrency: run.guardLimit, onConflict: 'queue' }
          : undefined,
      now,
    })
  }

  // ---- pause and resume ----------------------------------------------------------------------

  /** Asks the owner of a started run to pause it: running steps finish, no new step starts. */
  requestPause(runId: string, now: number): RunStatus {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (!run) throw new StoreError(`no run \`${runId}\` in ${this.path}; \`refresh runs\` lists them.`)
        if (run.status !== 'started') {
          throw new StoreError(`run ${runId} is ${run.status}; only a started run can be paused.`)
        }
        this.stmts.requestPause.run(now, runId)
        return run.status
      })
      .immediate()
  }

  /** What the owner of a run is asked to do, in one read (polled a few times a second). */
  pendingRequests(runId: string): { cancel: boolean; pause: boolean } {
    const row = this.stmts.pendingRequests.get(runId) as
      | { cancel_requested_at: number | null; pause_requested_at: number | null }
      | undefined
    return { cancel: row?.cancel_requested_at != null, pause: row?.pause_requested_at != null }
  }

  /** The executor stopped a run at a pause: it keeps its pending steps and its guard slot. */
  markPaused(runId: string, now: number): boolean {
    return this.stmts.markPaused.run(now, runId).changes > 0
  }

  /**
   * Hands a paused run to the daemon: paused -> queued, launched like any queued run (in order,
   * within its guards), and executed from the steps it had left. Returns false if it is not paused.
   */
  requeuePausedRun(runId: string): boolean {
    return this.stmts.requeuePaused.run(runId).changes > 0
  }

  /** Takes a paused run back (for `refresh resume`): paused -> started, owned by the caller. */
  claimPausedRun(runId: string, owner: { pid: number; host: string }, now: number): boolean {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (run?.status !== 'paused') return false
        if (this.getMaintenance()) return false
        this.stmts.resumeRun.run(now, owner.pid, owner.host, now, runId)
        return true
      })
      .immediate()
  }

  // ---- crash recovery ------------------------------------------------------------------------

  /**
   * Marks `started` runs whose owning process is gone as failed (interrupted), with their running
   * steps failed, unstarted steps canceled, pool slots freed and a closing event, so that they can
   * be re-executed from failure. On this host a run is gone when its pid no longer exists; on
   * another host when its heartbeat is older than `staleAfterMs`. (A live pid with a heartbeat ten
   * times that old is taken as a reused pid.)
   */
  recoverInterruptedRuns(options: RecoverOptions = {}): RecoveredRun[] {
    const now = options.now ?? Date.now()
    const staleAfter = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS
    const host = hostname()
    const candidates = (this.stmts.startedRuns.all() as Row[])
      .map(toRun)
      .filter((r) => !options.runIds || options.runIds.includes(r.id))
    const recovered: RecoveredRun[] = []
    for (const run of candidates) {
      const beat = run.heartbeatAt ?? run.startedAt ?? run.createdAt
      const age = now - beat
      let reason: string | undefined
      if (run.ownerHost === host && run.ownerPid !== null) {
        if (!pidAlive(run.ownerPid)) reason = `its process (pid ${run.ownerPid}) is gone`
        else if (age > staleAfter * 10) reason = `its heartbeat stopped ${Math.round(age / 1000)} s ago`
      } else if (age > staleAfter) {
        reason = `its heartbeat stopped ${Math.round(age / 1000)} s ago (owner ${run.ownerHost ?? '?'}:${run.ownerPid ?? '?'})`
      }
      if (reason === undefined) continue
      if (this.markInterrupted(run.id, reason, now)) recovered.push({ runId: run.id, reason })
    }
    return recovered
  }

  private markInterrupted(runId: string, reason: string, now: number): boolean {
    return this.closeRun(
      runId,
      'failure',
      {
        name: 'InterruptedError',
        message: `run interrupted: ${reason}. Re-execute it from failure with \`refresh retry ${runId}\`.`,
      },
      now,
    )
  }

  /**
   * Closes a started (or queued) run that no executor will finish: the owner was told to stop at
   * once, or the process launched for it died before starting it. Running steps and attempts end
   * `canceled` (or `failed`), unstarted steps `canceled`, slots are freed, and a closing event is
   * written so that followers of the run's events see its end.
   */
  abandonRun(runId: string, status: 'failure' | 'canceled', reason: string, now: number): boolean {
    return this.closeRun(
      runId,
      status,
      { name: status === 'canceled' ? 'CanceledError' : 'Error', message: reason },
      now,
    )
  }

  private closeRun(runId: string, status: 'failure' | 'canceled', error: ErrorInfo, now: number): boolean {
    return this.db
      .transaction(() => {
        const run = this.getRun(runId)
        if (run?.status !== 'started' && run?.status !== 'queued') return false
        const errorJson = JSON.stringify(error)
        const interrupted = error.name === 'InterruptedError'
        // an interrupted run ended when its owner last showed signs of life
        const endedAt = interrupted ? Math.max(run.heartbeatAt ?? now, run.startedAt ?? now) : now
        const stepStatus = status === 'canceled' ? 'canceled' : 'failed'
        this.stmts.finishRun.run(status, endedAt, errorJson, runId)
        this.stmts.closeRunningSteps.run(stepStatus, endedAt, errorJson, runId)
        this.stmts.closeRunningAttempts.run(stepStatus, endedAt, errorJson, runId)
        this.stmts.cancelPendingSteps.run(endedAt, runId)
        this.stmts.releaseRunSlots.run(runId)
        const steps = this.getSteps(runId)
        const count = (s: string) => steps.filter((step) => step.status === s).length
        const events: RunEvent[] = [
          { type: 'log', runId, ts: now, step: null, level: 'error', message: error.message },
          {
            type: 'run:end',
            runId,
            ts: now,
            status,
            durationMs: endedAt - (run.startedAt ?? run.createdAt),
            succeeded: count('succeeded'),
            failed: count('failed'),
            skipped: count('skipped'),
            canceled: count('canceled'),
          },
        ]
        for (const e of events) this.stmts.insertEvent.run(runId, e.ts, e.type, null, JSON.stringify(e))
        return true
      })
      .immediate()
  }

  // ---- operations: health, metrics, alerts (read by `refresh status` and `daemon --http`) -------

  /** A value of the settings table (JSON text by convention), or undefined. */
  getSetting(key: string): { value: string; updatedAt: number } | undefined {
    const row = this.stmts.getSettingRow.get(key) as { value: string; updated_at: number } | undefined
    return row ? { value: row.value, updatedAt: row.updated_at } : undefined
  }

  putSetting(key: string, value: string, now: number): void {
    this.stmts.putSetting.run(key, value, now)
  }

  /** A real short write (the health check's probe): fails with SQLITE_BUSY when another process holds the lock. */
  probeWrite(now: number): void {
    this.db.transaction(() => this.stmts.putSetting.run('health_probe', String(now), now)).immediate()
  }

  /** The newest event id (0 when there is none): where an incremental reader of run ends starts. */
  maxEventId(): number {
    return (this.stmts.maxEventId.get() as { id: number | null }).id ?? 0
  }

  /** Runs that ended (a `run:end` event) after event `afterId`, oldest first. */
  runEndsAfter(afterId: number, limit = 1000): Array<{ eventId: number; runId: string }> {
    return (this.stmts.runEndsAfter.all(afterId, limit) as Array<{ id: number; run_id: string }>).map(
      (r) => ({
        eventId: r.id,
        runId: r.run_id,
      }),
    )
  }

  /** The newest tick id (0 when there is none). */
  maxTickId(): number {
    return (this.stmts.maxTickId.get() as { id: number | null }).id ?? 0
  }

  /** Ticks with an id above `afterId`, oldest first. */
  ticksAfter(afterId: number, limit = 1000): TickRecord[] {
    return (this.stmts.ticksAfter.all(afterId, limit) as Row[]).map(toTick)
  }

  countParked(): number {
    return (this.stmts.countParked.get() as { n: number }).n
  }
}

/** Opens (creating if needed) a store file, or `:memory:`. Refuses files it must not touch. */
export function openStore(path: string, options: OpenStoreOptions = {}): SqliteStore {
  const memory = path === ':memory:'
  const file = memory ? path : resolve(path)
  const readonly = options.readonly === true
  if (!memory) {
    if (existsSync(file)) {
      if (!statSync(file).isFile())
        throw new StoreError(`store path ${file} is not a file; pass a file path.`)
    } else if (readonly) {
      throw new StoreError(`no store at ${file}; run \`refresh run\` first or pass --store.`)
    } else {
      try {
        mkdirSync(dirname(file), { recursive: true })
      } catch (cause) {
        throw new StoreError(
          `cannot create the directory for the store ${file}: ${(cause as Error).message}`,
          {
            cause,
          },
        )
      }
    }
  }
  let db: Database.Database
  try {
    db = new Database(file, { readonly, fileMustExist: readonly, timeout: options.busyTimeoutMs ?? 5_000 })
  } catch (cause) {
    throw new StoreError(`cannot open the store ${file}: ${(cause as Error).message}`, { cause })
  }
  try {
    checkAndMigrate(db, file, readonly)
    if (!memory && !readonly) db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.pragma('foreign_keys = ON')
  } catch (error) {
    db.close()
    throw error
  }
  return new SqliteStore(db, file, readonly)
}

/**
 * Reads the file's identity before writing anything: a file that is not SQLite, an SQLite file
 * of another application, or a refresh store of a newer schema is refused untouched.
 */
function checkAndMigrate(db: Database.Database, file: string, readonly: boolean): void {
  let appId: number
  let version: number
  let objects: number
  try {
    appId = db.pragma('application_id', { simple: true }) as number
    version = db.pragma('user_version', { simple: true }) as number
    objects = (db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as { n: number }).n
  } catch (cause) {
    throw new StoreError(
      `${file} is not a refresh store (${(cause as Error).message}); point --store at a refresh store or at a new file.`,
      { cause },
    )
  }
  if (appId !== APPLICATION_ID && !(appId === 0 && objects === 0)) {
    throw new StoreError(
      `${file} is an SQLite database but not a refresh store; it was left untouched. Point --store at a refresh store or at a new file.`,
    )
  }
  if (version > SCHEMA_VERSION) {
    throw new StoreError(
      `${file} was written by a newer version of refresh (schema ${version}; this version knows up to ${SCHEMA_VERSION}); it was left untouched. Upgrade refresh to open it.`,
    )
  }
  if (version === SCHEMA_VERSION) return
  if (readonly) {
    throw new StoreError(
      `${file} has schema ${version} and needs migrating to ${SCHEMA_VERSION}; open it writable once.`,
    )
  }
  db.transaction(() => {
    // another process may have migrated between our read and this IMMEDIATE transaction
    let current = db.pragma('user_version', { simple: true }) as number
    for (; current < SCHEMA_VERSION; current++) db.exec(MIGRATIONS[current]!)
    db.pragma(`application_id = ${APPLICATION_ID}`)
    db.pragma(`user_version = ${SCHEMA_VERSION}`)
  }).immediate()
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`)
}

function toRun(row: Row): RunRecord {
  return {
    id: row.id as string,
    status: row.status as RunStatus,
    selection: row.selection as string,
    plan: parseJson<string[]>(row.plan as string, []),
    reused: parseJson<Record<string, string>>(row.reused as string, {}),
    config: parseJson<Record<string, unknown>>(row.config as string, {}),
    tags: parseJson<Record<string, string>>(row.tags as string, {}),
    origin: row.origin as string,
    runKey: (row.run_key as string | null) ?? null,
    parentRunId: (row.parent_run_id as string | null) ?? null,
    rootRunId: (row.root_run_id as string | null) ?? null,
    partitionKey: (row.partition_key as string | null) ?? null,
    createdAt: row.created_at as number,
    startedAt: (row.started_at as number | null) ?? null,
    endedAt: (row.ended_at as number | null) ?? null,
    ownerPid: (row.owner_pid as number | null) ?? null,
    ownerHost: (row.owner_host as string | null) ?? null,
    heartbeatAt: (row.heartbeat_at as number | null) ?? null,
    cancelRequestedAt: (row.cancel_requested_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
    guard: (row.guard as string | null) ?? null,
    guardLimit: (row.guard_limit as number | null) ?? null,
  }
}

function toInstigator(row: Row): InstigatorState {
  return {
    name: row.name as string,
    kind: row.kind as InstigatorKind,
    status: row.status as InstigatorStatus,
    cursor: (row.cursor as string | null) ?? null,
    enabledAt: (row.enabled_at as number | null) ?? null,
    updatedAt: row.updated_at as number,
    lastTickAt: (row.last_tick_at as number | null) ?? null,
    lastTickId: (row.last_tick_id as number | null) ?? null,
  }
}

function toTick(row: Row): TickRecord {
  return {
    id: row.id as number,
    instigator: row.instigator as string,
    kind: row.kind as InstigatorKind,
    tickTime: row.tick_time as number,
    startedAt: row.started_at as number,
    endedAt: (row.ended_at as number | null) ?? null,
    status: row.status as TickRecord['status'],
    runIds: parseJson<string[]>(row.run_ids as string, []),
    skipReason: (row.skip_reason as string | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
    cursor: (row.cursor as string | null) ?? null,
    repeats: (row.repeats as number | null) ?? 1,
  }
}

function toParked(row: Row): ParkedRequest {
  return {
    id: row.id as number,
    origin: row.origin as string,
    selection: row.selection as string,
    config: parseJson<Record<string, unknown>>(row.config as string, {}),
    tags: parseJson<Record<string, string>>(row.tags as string, {}),
    runKey: (row.run_key as string | null) ?? null,
    guard: parseJson<RunGuard | null>(row.guard as string | null, null),
    parentRunId: (row.parent_run_id as string | null) ?? null,
    createdAt: row.created_at as number,
    replayedAt: (row.replayed_at as number | null) ?? null,
    replayRunId: (row.replay_run_id as string | null) ?? null,
    replayOutcome: (row.replay_outcome as string | null) ?? null,
  }
}

function toLease(row: Row): Lease {
  return {
    name: row.name as string,
    holder: row.holder as string,
    acquiredAt: row.acquired_at as number,
    expiresAt: row.expires_at as number,
  }
}

function toStep(row: Row): StepRecord {
  return {
    runId: row.run_id as string,
    key: row.key as string,
    index: row.plan_index as number,
    status: row.status as StepRecord['status'],
    attempts: row.attempts as number,
    startedAt: (row.started_at as number | null) ?? null,
    endedAt: (row.ended_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
    reason: (row.reason as string | null) ?? null,
  }
}

function toAttempt(row: Row): AttemptRecord {
  return {
    runId: row.run_id as string,
    step: row.step_key as string,
    attempt: row.attempt as number,
    status: row.status as AttemptRecord['status'],
    startedAt: row.started_at as number,
    endedAt: (row.ended_at as number | null) ?? null,
    error: parseJson<ErrorInfo | null>(row.error as string | null, null),
  }
}

function toMaterialization(row: Row): MaterializationRecord {
  return {
    id: row.id as number,
    asset: row.asset_key as string,
    runId: row.run_id as string,
    attempt: row.attempt as number,
    ts: row.ts as number,
    metadata: parseJson<JsonObject>(row.metadata as string, {}),
    partitionKey: (row.partition_key as string | null) ?? null,
  }
}

function prepare(db: Database.Database) {
  return {
    getRunKey: db.prepare('SELECT run_id FROM run_keys WHERE origin = ? AND run_key = ?'),
    insertRunKey: db.prepare(
      'INSERT INTO run_keys (origin, run_key, run_id, created_at) VALUES (?, ?, ?, ?)',
    ),
    insertRun: db.prepare(
      `INSERT INTO runs (id, status, selection, plan, reused, config, tags, origin, run_key, parent_run_id,
         root_run_id, partition_key, created_at, started_at, owner_pid, owner_host, heartbeat_at, guard, guard_limit)
       VALUES (@id, @status, @selection, @plan, @reused, @config, @tags, @origin, @run_key, @parent_run_id,
         @root_run_id, @partition_key, @created_at, @started_at, @owner_pid, @owner_host, @heartbeat_at, @guard,
         @guard_limit)`,
    ),
    insertStep: db.prepare(
      `INSERT INTO steps (run_id, key, plan_index, status, partition_key) VALUES (?, ?, ?, 'pending', ?)`,
    ),
    getRun: db.prepare('SELECT * FROM runs WHERE id = ?'),
    findRunPrefix: db.prepare(`SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2`),
    listRuns: db.prepare(
      `SELECT * FROM runs
       WHERE (@statuses IS NULL OR status IN (SELECT value FROM json_each(@statuses)))
         AND (@before IS NULL OR id < @before)
       ORDER BY id DESC LIMIT @limit`,
    ),
    countRuns: db.prepare('SELECT status, count(*) AS n FROM runs GROUP BY status'),
    failedSteps: db.prepare(
      `SELECT run_id, failed FROM (
         SELECT r.value AS run_id,
           (SELECT s.key FROM steps s WHERE s.run_id = r.value AND s.status = 'failed'
            ORDER BY s.plan_index LIMIT 1) AS failed
         FROM json_each(?) r)
       WHERE failed IS NOT NULL`,
    ),
    startRun: db.prepare(
      `UPDATE runs SET status = 'started', started_at = ?, owner_pid = ?, owner_host = ?, heartbeat_at = ?
       WHERE id = ? AND status = 'queued'`,
    ),
    finishRun: db.prepare(
      `UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ? AND status IN ('started', 'queued', 'paused')`,
    ),
    heartbeat: db.prepare(
      `UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'started' AND owner_pid = ? AND owner_host = ?
       RETURNING cancel_requested_at, pause_requested_at`,
    ),
    requestCancel: db.prepare(
      'UPDATE runs SET cancel_requested_at = ? WHERE id = ? AND cancel_requested_at IS NULL',
    ),
    cancelQueued: db.prepare(
      `UPDATE runs SET status = 'canceled', cancel_requested_at = coalesce(cancel_requested_at, ?), ended_at = ? WHERE id = ?`,
    ),
    cancelPendingSteps: db.prepare(
      `UPDATE steps SET status = 'canceled', ended_at = ? WHERE run_id = ? AND status = 'pending'`,
    ),
    closeRunningSteps: db.prepare(
      `UPDATE steps SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND status IN ('running', 'retrying')`,
    ),
    closeRunningAttempts: db.prepare(
      `UPDATE attempts SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND status = 'running'`,
    ),
    startedRuns: db.prepare(`SELECT * FROM runs WHERE status = 'started'`),
    updateStep: db.prepare(
      `UPDATE steps SET status = ?, attempts = ?, started_at = ?, ended_at = ?, error = ?, reason = ?
       WHERE run_id = ? AND key = ?`,
    ),
    upsertAttempt: db.prepare(
      `INSERT INTO attempts (run_id, step_key, attempt, status, started_at, ended_at, error) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (run_id, step_key, attempt) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
         error = excluded.error`,
    ),
    insertMaterialization: db.prepare(
      'INSERT INTO materializations (asset_key, run_id, attempt, ts, metadata, partition_key) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    insertEvent: db.prepare(
      'INSERT INTO events (run_id, ts, type, step_key, payload) VALUES (?, ?, ?, ?, ?)',
    ),
    getSteps: db.prepare('SELECT * FROM steps WHERE run_id = ? ORDER BY plan_index'),
    getAttempts: db.prepare('SELECT * FROM attempts WHERE run_id = ? ORDER BY started_at, step_key, attempt'),
    getStepAttempts: db.prepare('SELECT * FROM attempts WHERE run_id = ? AND step_key = ? ORDER BY attempt'),
    getEvents: db.prepare(
      `SELECT id, payload FROM events
       WHERE run_id = @run_id AND id > @after
         AND (@step IS NULL OR step_key = @step)
         AND (@types IS NULL OR type IN (SELECT value FROM json_each(@types)))
       ORDER BY id LIMIT @limit`,
    ),
    countAllEvents: db.prepare('SELECT count(*) AS n FROM events'),
    countRunEvents: db.prepare('SELECT count(*) AS n FROM events WHERE run_id = ?'),
    latestMaterialization: db.prepare(
      'SELECT * FROM materializations WHERE asset_key = ? ORDER BY id DESC LIMIT 1',
    ),
    latestMaterializations: db.prepare(
      `SELECT m.* FROM materializations m
       JOIN (SELECT max(id) AS id FROM materializations GROUP BY asset_key) latest ON latest.id = m.id`,
    ),
    runMaterialization: db.prepare(
      'SELECT * FROM materializations WHERE run_id = ? AND asset_key = ? ORDER BY id DESC LIMIT 1',
    ),
    runMaterializations: db.prepare('SELECT * FROM materializations WHERE run_id = ? ORDER BY id'),
    freeDeadSlots: db.prepare(
      `DELETE FROM pool_slots WHERE pool = ? AND run_id NOT IN (SELECT id FROM runs WHERE status = 'started')`,
    ),
    countSlots: db.prepare('SELECT count(*) AS n FROM pool_slots WHERE pool = ?'),
    insertSlot: db.prepare(
      'INSERT INTO pool_slots (pool, run_id, step_key, acquired_at) VALUES (?, ?, ?, ?)',
    ),
    releaseSlot: db.prepare('DELETE FROM pool_slots WHERE pool = ? AND run_id = ? AND step_key = ?'),
    releaseRunSlots: db.prepare('DELETE FROM pool_slots WHERE run_id = ?'),
    poolUsage: db.prepare('SELECT * FROM pool_slots ORDER BY pool, acquired_at'),
    holdInFlight: db.prepare(
      `SELECT h.run_id FROM run_holds h JOIN runs r ON r.id = h.run_id
       WHERE h.hold = ? AND r.status IN ('started', 'paused') ORDER BY r.rowid`,
    ),
    getHolds: db.prepare('SELECT hold, hold_limit FROM run_holds WHERE run_id = ? ORDER BY hold'),
    insertHold: db.prepare('INSERT INTO run_holds (run_id, hold, hold_limit) VALUES (?, ?, ?)'),
    // queued runs go in the order they were requested: insertion order, across processes too
    guardInFlight: db.prepare(
      `SELECT id FROM runs WHERE guard = ? AND status IN ('started', 'paused') ORDER BY rowid`,
    ),
    guardQueued: db.prepare(
      `SELECT id FROM runs WHERE guard = ? AND status = 'queued' ORDER BY rowid LIMIT ?`,
    ),
    queuedRuns: db.prepare(`SELECT * FROM runs WHERE status = 'queued' ORDER BY rowid LIMIT ?`),
    getInstigator: db.prepare('SELECT * FROM instigators WHERE name = ?'),
    listInstigators: db.prepare('SELECT * FROM instigators ORDER BY name'),
    upsertInstigator: db.prepare(
      `INSERT INTO instigators (name, kind, status, enabled_at, updated_at) VALUES (@name, @kind, 'default', @now, @now)
       ON CONFLICT (name) DO NOTHING`,
    ),
    setInstigatorStatus: db.prepare(
      'UPDATE instigators SET status = ?, enabled_at = ?, updated_at = ? WHERE name = ?',
    ),
    updateInstigatorTick: db.prepare(
      'UPDATE instigators SET cursor = ?, last_tick_at = ?, last_tick_id = ?, updated_at = ? WHERE name = ?',
    ),
    insertTick: db.prepare(
      `INSERT INTO ticks (instigator, kind, tick_time, started_at, ended_at, status, run_ids, skip_reason, error, cursor)
       VALUES (@instigator, @kind, @tick_time, @started_at, @ended_at, @status, @run_ids, @skip_reason, @error, @cursor)`,
    ),
    getTick: db.prepare('SELECT * FROM ticks WHERE id = ?'),
    foldTick: db.prepare('UPDATE ticks SET ended_at = ?, repeats = repeats + 1 WHERE id = ?'),
    runsEndedAfter: db.prepare(
      `SELECT * FROM runs WHERE status IN (SELECT value FROM json_each(?)) AND ended_at >= ?
       ORDER BY ended_at, id LIMIT ?`,
    ),
    listTicks: db.prepare('SELECT * FROM ticks WHERE instigator = ? ORDER BY id DESC LIMIT ?'),
    getLease: db.prepare('SELECT * FROM leases WHERE name = ?'),
    getSetting: db.prepare('SELECT value FROM settings WHERE key = ?'),
    putSetting: db.prepare(
      `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    ),
    deleteSetting: db.prepare('DELETE FROM settings WHERE key = ?'),
    insertParked: db.prepare(
      `INSERT INTO parked_requests (origin, selection, config, tags, run_key, guard, parent_run_id, created_at)
       VALUES (@origin, @selection, @config, @tags, @run_key, @guard, @parent_run_id, @created_at)`,
    ),
    findParkedKey: db.prepare(
      'SELECT id FROM parked_requests WHERE origin = ? AND run_key = ? AND replayed_at IS NULL',
    ),
    // a schedule's missed policy while parked: only its N most recent pending requests stay
    trimParked: db.prepare(
      `DELETE FROM parked_requests WHERE origin = ? AND replayed_at IS NULL AND id NOT IN (
         SELECT id FROM parked_requests WHERE origin = ? AND replayed_at IS NULL ORDER BY id DESC LIMIT ?)`,
    ),
    pendingParked: db.prepare('SELECT * FROM parked_requests WHERE replayed_at IS NULL ORDER BY id LIMIT ?'),
    allParked: db.prepare('SELECT * FROM parked_requests ORDER BY id LIMIT ?'),
    markReplayed: db.prepare(
      'UPDATE parked_requests SET replayed_at = ?, replay_run_id = ?, replay_outcome = ? WHERE id = ? AND replayed_at IS NULL',
    ),
    requestPause: db.prepare(
      'UPDATE runs SET pause_requested_at = ? WHERE id = ? AND pause_requested_at IS NULL',
    ),
    requeuePaused: db.prepare(
      `UPDATE runs SET status = 'queued', pause_requested_at = NULL, owner_pid = NULL, owner_host = NULL
       WHERE id = ? AND status = 'paused'`,
    ),
    pendingRequests: db.prepare('SELECT cancel_requested_at, pause_requested_at FROM runs WHERE id = ?'),
    markPaused: db.prepare(
      `UPDATE runs SET status = 'paused', heartbeat_at = ? WHERE id = ? AND status = 'started'`,
    ),
    resumeRun: db.prepare(
      `UPDATE runs SET status = 'started', pause_requested_at = NULL, started_at = coalesce(started_at, ?),
         owner_pid = ?, owner_host = ?, heartbeat_at = ? WHERE id = ? AND status = 'paused'`,
    ),
    upsertLease: db.prepare(
      `INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
         expires_at = excluded.expires_at`,
    ),
    releaseLease: db.prepare('DELETE FROM leases WHERE name = ? AND holder = ?'),
    getSettingRow: db.prepare('SELECT value, updated_at FROM settings WHERE key = ?'),
    maxEventId: db.prepare('SELECT max(id) AS id FROM events'),
    runEndsAfter: db.prepare(
      `SELECT id, run_id FROM events WHERE id > ? AND type = 'run:end' ORDER BY id LIMIT ?`,
    ),
    ticksAfter: db.prepare('SELECT * FROM ticks WHERE id > ? ORDER BY id LIMIT ?'),
    maxTickId: db.prepare('SELECT max(id) AS id FROM ticks'),
    countParked: db.prepare('SELECT count(*) AS n FROM parked_requests WHERE replayed_at IS NULL'),
  }
}
