import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { advanceBackfill, backfillProgress } from '../core/backfills.js'
import { type Clock, systemClock } from '../core/clock.js'
import type { LogLevel } from '../core/definitions.js'
import type { AssetGraph } from '../core/graph.js'
import type { RunGuardConfig } from '../core/guards.js'
import type { LaunchedRun, RunLauncher } from '../core/launcher.js'
import { type Recovery, recoverRuns } from '../core/recovery.js'
import { lastPrune, prunePolicy, pruneStore, type Retention, recordPrune } from '../core/retention.js'
import type { RunStore } from '../core/store/run-store.js'
import {
  DAEMON_PRESENCE_PREFIX,
  FINISHED_RUN_STATUSES,
  HEARTBEAT_INTERVAL_MS,
  type NewTick,
  type RunRecord,
} from '../core/store/types.js'
import { AutomationEvaluator } from '../sensors/automation/evaluator.js'
import type { InstigatorDefinition, ScheduleDefinition, SensorDefinition } from '../sensors/definitions.js'
import {
  effectiveStatus,
  evaluateSensor,
  nextScheduleTick,
  type TickEnv,
  type TickResult,
  tickSchedule,
} from '../sensors/ticker.js'
import type { DaemonEvent, DaemonEventListener } from './events.js'
import { replayParked } from './maintenance.js'

export type { LaunchedRun, RunLauncher } from '../core/launcher.js'

export interface DaemonOptions {
  store: RunStore
  graph: AssetGraph
  runConfig: Record<string, Record<string, unknown>>
  /** The config's run guards (runs requested by sensors and schedules hold them too). */
  guards?: readonly RunGuardConfig[]
  instigators: readonly InstigatorDefinition[]
  /**
   * Starts each queued run in its own process (so a crashing asset cannot take the daemon down):
   * a local one (`localRunLauncher`), or an ECS task (`ecsRunLauncher`).
   */
  launcher: RunLauncher
  /** The config file the daemon loaded (a launched run loads the same one). */
  configFile: string
  /** The daemon's `--env NAME`, passed on to each launched run. */
  environment?: string | undefined
  /** Everything the daemon does, as typed events (the CLI prints them as text or JSON). */
  onEvent: DaemonEventListener
  clock?: Clock
  /** How often the loop wakes (default 250 ms): bounds the latency of due sensors and launches. */
  loopMs?: number
  /** The lease's time to live: a second daemon takes over this long after the first dies (default 5 s). */
  leaseTtlMs?: number
  /** On SIGTERM, how long running runs may go on before they are canceled (default 60 s). */
  graceMs?: number
  /** How long a canceled run may take to stop before it is killed (default 10 s). */
  cancelGraceMs?: number
  /** Called after each completed iteration while holding the lease (alert delivery hooks in here). */
  onIteration?: (now: number) => void | Promise<void>
  /**
   * Several daemons share the store (default: when it is not SQLite): each evaluates the sensors
   * and schedules that fall to it and launches the queued runs it claims, and only the holder of
   * the daemon lease does what must happen once (alerts). Otherwise the lease holder does all.
   */
  shared?: boolean
  /** At most this many runs launched by this daemon at once (default: no limit). */
  maxRuns?: number
  /**
   * Prunes old runs and ticks once a day (`retention` in the config), keeping the runs
   * `keepRunIds` returns (what the promoted alias refers to), read afresh before each prune.
   */
  retention?: { policy: Retention; keepRunIds(): Promise<readonly string[]> }
  /**
   * How often the assets' automation conditions are evaluated (default 5 s); a new event in the
   * store (a run materialized, failed, ended) wakes the evaluation sooner.
   */
  automationIntervalMs?: number
  /** The names of each asset's checks (for `checksPassed()`). */
  checks?: ReadonlyMap<string, readonly string[]>
}

/** The default `--automation-interval`. */
export const AUTOMATION_INTERVAL_MS = 5_000
/** However many events arrive, automation is evaluated at most this often. */
const AUTOMATION_MIN_GAP_MS = 200

/** How often the daemon prunes when the config has `retention`. */
export const PRUNE_EVERY_MS = 24 * 3_600_000
/** How often the daemon reads when the last prune was (it is kept in the store, for every daemon). */
const PRUNE_CHECK_MS = 60_000
/** After a failed prune (an alias that cannot be read, a busy store), when the daemon tries again. */
const PRUNE_RETRY_MS = 3_600_000

export const DAEMON_LEASE = 'daemon'

/**
 * How long the owner of a run whose launched process ended must have been silent to be taken for
 * gone: several missed heartbeats, so that a live owner (if another process claimed the run) is
 * never taken for dead.
 */
const GONE_AFTER_MS = 5 * HEARTBEAT_INTERVAL_MS

/**
 * Which of the live daemons evaluates an instigator: the one whose hash with its name is highest
 * (rendezvous hashing), so that a daemon joining or leaving moves only its share.
 */
export function preferredDaemon(name: string, daemons: readonly string[]): string | undefined {
  let best: string | undefined
  let bestScore = ''
  for (const d of daemons) {
    const score = createHash('sha256').update(d).update('\u0000').update(name).digest('hex')
    if (best === undefined || score > bestScore) {
      best = d
      bestScore = score
    }
  }
  return best
}

/**
 * The daemon: holds the store's lease, evaluates due sensors and schedules, launches queued runs
 * (each in its own process, within guards), recovers runs whose process died, and on stop lets
 * running runs finish within a grace period before canceling them.
 */
export class Daemon {
  private readonly o: Required<
    Omit<DaemonOptions, 'clock' | 'onIteration' | 'retention' | 'environment' | 'checks'>
  > &
    Pick<DaemonOptions, 'onIteration' | 'retention' | 'environment' | 'checks'> & { clock: Clock }
  /** The live daemons (their holders, sorted), as last read from their presence leases. */
  private daemons: string[] = []
  /** The sensors and schedules that fall to this daemon among `daemons`. */
  private mine = new Set<string>()
  private readonly holder = `${hostname()}:${process.pid}:${Date.now().toString(36)}`
  private readonly children = new Map<string, LaunchedRun>()
  /** Launched runs the daemon is stopping (a cancel, a process that outlived its run): since when, and how far. */
  private readonly stops = new Map<string, { since: number; killed: boolean }>()
  /** Launched runs that were still started when their process ended: when it ended. */
  private readonly gone = new Map<string, number>()
  private lastWatch = 0
  private lastGoneCheck = 0
  private holdingBack = false
  private lastHeldCheck = 0
  private readonly lastSkip = new Map<string, string>()
  private stopping = false
  private wake: (() => void) | undefined
  private holding = false
  private lastRecovery = 0
  /** Whether this daemon holds the daemon lease (in this iteration): it drives the backfills. */
  private leading = false
  private readonly evaluating = new Set<string>()
  private readonly pendingTicks: Array<{ def: SensorDefinition; tick: NewTick }> = []
  /** When each schedule is next due, valid while its state row is unchanged. */
  private readonly nextDue = new Map<string, { version: number | undefined; at: number }>()
  private lastRenewal = 0
  private lastIteration: number | undefined
  /** The prune in progress, in the background of the loop, and how to stop it. */
  private pruning: { done: Promise<void>; abort: AbortController } | undefined
  private nextPruneCheck = 0
  /** The assets' automation conditions (undefined when no asset has one). */
  private readonly automation: AutomationEvaluator | undefined
  private lastAutomation = Number.NEGATIVE_INFINITY
  private automationEventId = 0

  constructor(options: DaemonOptions) {
    this.o = {
      clock: options.clock ?? systemClock,
      loopMs: 250,
      leaseTtlMs: 5_000,
      graceMs: 60_000,
      cancelGraceMs: 10_000,
      guards: [],
      shared: options.store.kind !== 'sqlite',
      maxRuns: Number.POSITIVE_INFINITY,
      automationIntervalMs: AUTOMATION_INTERVAL_MS,
      ...options,
    }
    const automation = new AutomationEvaluator({
      store: this.o.store,
      graph: this.o.graph,
      runConfig: this.o.runConfig,
      guards: this.o.guards,
      checks: this.o.checks,
      clock: this.o.clock,
    })
    this.automation = automation.active ? automation : undefined
  }

  get leaseHolder(): string {
    return this.holder
  }

  /** When the loop last completed an iteration while holding the lease (health checks read it). */
  get lastIterationAt(): number | undefined {
    return this.lastIteration
  }

  /** Whether several daemons share the store (each works; see `DaemonOptions.shared`). */
  get shared(): boolean {
    return this.o.shared
  }

  /** The config is loaded and one iteration is done (`/readyz`). */
  get ready(): boolean {
    return this.lastIteration !== undefined
  }

  /** Runs until `stop()`; resolves once every launched run has ended and the lease is released. */
  async run(): Promise<void> {
    const env: TickEnv = {
      store: this.o.store,
      graph: this.o.graph,
      runConfig: this.o.runConfig,
      guards: this.o.guards,
      clock: this.o.clock,
      log: (name, level, message) => this.emit(level, { type: 'sensor:log', name, message }),
    }
    while (!this.stopping) {
      try {
        const leader = await this.holdLease()
        this.leading = leader
        if (leader || this.o.shared) {
          await this.iterate(env)
          this.lastIteration = this.o.clock.now()
          // what must happen once, whatever the number of daemons: the lease holder's
          if (leader) {
            this.maybePrune(this.lastIteration)
            await this.o.onIteration?.(this.lastIteration)
          }
        }
      } catch (error) {
        // a failing iteration (a locked store, a bug) is logged; the loop goes on
        this.emitError('daemon iteration failed', error)
      }
      await this.sleep(this.o.loopMs)
    }
    await this.shutdown()
  }

  /** Stops ticking; `run()` then drains running runs and returns. */
  stop(): void {
    if (this.stopping) return
    this.stopping = true
    this.pruning?.abort.abort()
    this.wake?.()
  }

  /**
   * Renews this daemon's presence (the lease `daemon/<holder>`, read by other daemons and by
   * `refresh status`) and takes or renews the daemon lease; true while this daemon holds the
   * latter. A fifth of the time to live apart: two writes a second, not two per loop.
   */
  private async holdLease(): Promise<boolean> {
    const now = this.o.clock.now()
    if (now - this.lastRenewal < this.o.leaseTtlMs / 5) return this.holding
    this.lastRenewal = now
    await this.o.store.acquireLease(
      `${DAEMON_PRESENCE_PREFIX}${this.holder}`,
      this.holder,
      this.o.leaseTtlMs,
      now,
    )
    await this.readDaemons(now)
    const { acquired, lease } = await this.o.store.acquireLease(
      DAEMON_LEASE,
      this.holder,
      this.o.leaseTtlMs,
      now,
    )
    if (acquired && !this.holding) {
      this.emit('info', { type: 'lease:acquired', holder: this.holder })
    } else if (!acquired && this.holding) {
      this.emit('error', { type: 'lease:lost', holder: lease.holder })
    } else if (!acquired && !this.lastSkip.has('lease') && !this.o.shared) {
      this.emit('warn', {
        type: 'lease:waiting',
        holder: lease.holder,
        expiresInMs: Math.max(0, lease.expiresAt - now),
      })
    }
    if (acquired) this.lastSkip.delete('lease')
    else this.lastSkip.set('lease', lease.holder)
    this.holding = acquired
    return acquired
  }

  /** The live daemons; on a change, an event saying how the instigators are spread now. */
  private async readDaemons(now: number): Promise<void> {
    const live = (await this.o.store.listLeases(DAEMON_PRESENCE_PREFIX))
      .filter((l) => l.expiresAt > now)
      .map((l) => l.holder)
    if (!live.includes(this.holder)) live.push(this.holder)
    live.sort()
    if (live.join('\n') === this.daemons.join('\n')) return
    this.daemons = live
    this.mine = new Set(
      this.o.instigators
        .filter((i) => !this.o.shared || preferredDaemon(i.name, live) === this.holder)
        .map((i) => i.name),
    )
    if (this.o.shared) {
      this.emit('info', { type: 'daemons:changed', daemons: live, instigators: this.mine.size })
    }
  }

  /** Whether this daemon evaluates an instigator (its share of them on a shared store; all of them otherwise). */
  private evaluatesHere(name: string): boolean {
    return this.mine.has(name)
  }

  private async iterate(env: TickEnv): Promise<void> {
    const { store, clock } = this.o
    const now = clock.now()
    if (now - this.lastRecovery >= 5_000) {
      this.lastRecovery = now
      await this.reportRecovery(await recoverRuns(store, [...this.o.graph.assets.values()], now))
    }
    if (this.gone.size > 0 && now - this.lastGoneCheck >= 1_000) {
      this.lastGoneCheck = now
      await this.closeGone(now)
    }
    if (this.children.size > 0 && now - this.lastWatch >= 1_000) {
      this.lastWatch = now
      await this.watchLaunched(now)
    }
    // requests parked during maintenance: replayed once the gate is off, also after a crash mid-replay
    if (
      (await store.getMaintenance()) === null &&
      (await store.listParked({ pending: true, limit: 1 })).length > 0
    ) {
      for (const { parked, outcome } of await replayParked(env)) {
        this.emit(outcome.outcome === 'failed' ? 'warn' : 'info', {
          type: 'parked:replayed',
          requestId: parked.id,
          origin: parked.origin,
          selection: parked.selection,
          outcome,
        })
      }
    }
    // one read of every sensor's and schedule's state per iteration
    const states = new Map((await store.listInstigators()).map((s) => [s.name, s]))
    const due: Array<{ def: InstigatorDefinition; slot: number }> = []
    for (const def of this.o.instigators) {
      const state = states.get(def.name)
      if (effectiveStatus(def, state) === 'off') {
        this.nextDue.delete(def.name)
        continue
      }
      if (!this.evaluatesHere(def.name)) continue
      if (def.kind === 'sensor') {
        if (this.evaluating.has(def.name)) continue
        const intervalMs = def.intervalSeconds * 1000
        if (state?.lastTickAt != null && now - state.lastTickAt < intervalMs) continue
        due.push({ def, slot: Math.floor(now / intervalMs) })
      } else {
        const next = this.nextDue.get(def.name)
        if (next && next.version === state?.updatedAt && now < next.at) continue
        due.push({ def, slot: Math.floor(now / 1000) })
      }
    }
    if (due.length === 0) return this.launchQueued()
    // each tick is evaluated by one daemon: the claim of its slot decides which
    const granted = new Set(
      await store.claimTicks(
        due.map((d) => ({ name: d.def.name, slot: d.slot })),
        this.holder,
        now,
      ),
    )
    if (granted.size === 0) return this.launchQueued()
    // the state as the claim found it: a tick another daemon committed before handing over is in it
    const fresh = new Map((await store.listInstigators()).map((s) => [s.name, s]))
    const unused: string[] = []
    for (const { def } of due) {
      if (!granted.has(def.name)) continue
      if (this.stopping) {
        unused.push(def.name)
        continue
      }
      const state = fresh.get(def.name)
      if (def.kind === 'sensor') {
        if (state?.lastTickAt != null && now - state.lastTickAt < def.intervalSeconds * 1000) {
          unused.push(def.name)
          continue
        }
        // sensors evaluate concurrently, each bounded by its timeout; their ticks commit together
        this.evaluating.add(def.name)
        evaluateSensor(def, env, { state }).then((tick) => this.queueCommit(def, tick))
      } else {
        const results = await tickSchedule(def, env)
        for (const result of results) this.report(def, result)
        if (results.length === 0) unused.push(def.name)
        const after = await store.getInstigator(def.name)
        this.nextDue.set(def.name, {
          version: after?.updatedAt,
          at: nextScheduleTick(def, now) ?? Number.POSITIVE_INFINITY,
        })
      }
    }
    // claims that led to no tick are given back, so the next daemon to own them need not wait
    if (unused.length > 0) await store.finishTickClaims(unused, this.holder, now)
    await this.launchQueued()
  }

  /**
   * Starts the daily prune when it is due: a day after the last complete one, which the store
   * keeps (a restarted daemon, or another one taking over the lease, does not prune again early).
   * It runs beside the loop, one short transaction at a time, and stops after the batch in
   * progress when the daemon stops or loses its lease.
   */
  private maybePrune(now: number): void {
    const retention = this.o.retention
    if (!retention || this.pruning || this.stopping || now < this.nextPruneCheck) return
    this.nextPruneCheck = now + PRUNE_CHECK_MS
    const abort = new AbortController()
    const done = this.prune(retention, now, abort)
      .catch((error: unknown) => {
        this.nextPruneCheck = now + PRUNE_RETRY_MS
        this.emitError('the daily prune failed; retrying in an hour', error)
      })
      .finally(() => {
        this.pruning = undefined
      })
    this.pruning = { done, abort }
  }

  private async prune(
    retention: NonNullable<DaemonOptions['retention']>,
    now: number,
    abort: AbortController,
  ): Promise<void> {
    const { store, clock } = this.o
    const last = await lastPrune(store)
    if (last && now - last.at < PRUNE_EVERY_MS) {
      this.nextPruneCheck = Math.max(this.nextPruneCheck, last.at + PRUNE_EVERY_MS)
      return
    }
    const keep = await retention.keepRunIds()
    // stopped while reading the alias: nothing started, nothing to report
    if (abort.signal.aborted) return
    const { olderThan, keepFailed } = retention.policy
    this.emit('info', { type: 'prune:start', olderThan, keepFailed, keptForAlias: keep.length })
    const result = await pruneStore(store, prunePolicy(retention.policy, now, keep), {
      signal: abort.signal,
      onBatch: () => {
        if (!this.holding) abort.abort()
      },
    })
    if (result.complete) {
      await recordPrune(store, {
        at: clock.now(),
        by: this.holder,
        olderThan,
        keepFailed,
        deleted: result.deleted,
        durationMs: result.durationMs,
        longestBatchMs: result.longestBatchMs,
      })
      this.nextPruneCheck = clock.now() + PRUNE_EVERY_MS
    }
    this.emit('info', {
      type: 'prune:done',
      olderThan,
      keepFailed,
      deleted: result.deleted,
      batches: result.batches,
      durationMs: result.durationMs,
      longestBatchMs: result.longestBatchMs,
      complete: result.complete,
    })
  }

  private queueCommit(def: SensorDefinition, tick: NewTick): void {
    this.pendingTicks.push({ def, tick })
    if (this.pendingTicks.length > 1) return
    setImmediate(async () => {
      const batch = this.pendingTicks.splice(0)
      try {
        const results = await this.o.store.commitTicks(batch.map((b) => b.tick))
        results.forEach((result, i) => {
          this.report(batch[i]!.def, result)
        })
      } catch (error) {
        this.emitError('could not record sensor ticks', error)
        await this.o.store
          .finishTickClaims(
            batch.map((b) => b.def.name),
            this.holder,
            this.o.clock.now(),
          )
          .catch(() => {})
      } finally {
        for (const b of batch) this.evaluating.delete(b.def.name)
      }
      if (!this.stopping) {
        await this.launchQueued().catch((error: unknown) =>
          this.emitError('could not launch queued runs', error),
        )
      }
    })
  }

  /**
   * Launches the queued runs this daemon claims (of several daemons, one launches each run), up to
   * `maxRuns` of its own at once.
   */
  /**
   * One step of every active backfill (the lease holder's work: one driver at a time, though two
   * would still create each run once): its run ends folded, the runs that fit created.
   */
  private async advanceBackfills(): Promise<void> {
    const { store, clock } = this.o
    const active = await store.listBackfills({ active: true })
    for (const backfill of active) {
      if (this.stopping) return
      try {
        const step = await advanceBackfill(store, this.o.graph, backfill.id, clock.now(), {
          guards: this.o.guards,
        })
        const p = backfillProgress(step.backfill.state)
        if (step.created.length > 0) {
          this.emit('info', {
            type: 'backfill:submitted',
            backfillId: backfill.id,
            runs: step.created.length,
            done: p.succeeded.size,
            failed: p.failed.size,
            total: p.target.size,
          })
        }
        if (step.backfill.status !== 'requested' && step.backfill.status !== 'canceling') {
          this.emit(step.backfill.status === 'completed' ? 'info' : 'warn', {
            type: 'backfill:ended',
            backfillId: backfill.id,
            status: step.backfill.status,
            succeeded: p.succeeded.size,
            failed: p.failed.size,
            skipped: p.skipped.size,
            total: p.target.size,
          })
        }
      } catch (error) {
        this.emitError(`backfill ${backfill.id} could not advance`, error)
      }
    }
  }

  /**
   * Evaluates the automation conditions when due (every `automationIntervalMs`, or sooner when a
   * new event came in); the lease holder's work, one evaluator at a time.
   */
  private async evaluateAutomation(): Promise<void> {
    const automation = this.automation
    if (!automation) return
    const { store, clock } = this.o
    const now = clock.now()
    if (now - this.lastAutomation < AUTOMATION_MIN_GAP_MS) return
    if (now - this.lastAutomation < this.o.automationIntervalMs) {
      const newest = await store.maxEventId()
      if (newest === this.automationEventId) return
      this.automationEventId = newest
    }
    this.lastAutomation = now
    try {
      const result = await automation.tick()
      if (result.tick !== undefined && result.requests.length > 0) {
        this.emit('info', {
          type: 'automation:requested',
          tick: result.tick,
          runs: result.requests.map((r) => ({
            assets: r.assets,
            partitionKey: r.partitionKey,
            outcome: r.outcome,
          })),
        })
      }
    } catch (error) {
      this.emitError('automation could not be evaluated', error)
    }
  }

  private async launchQueued(): Promise<void> {
    // the backfills first, then automation: the runs they create launch in this same iteration
    if (this.leading) await this.advanceBackfills()
    if (this.leading && !this.stopping) await this.evaluateAutomation()
    if (this.stopping) return
    const room = this.o.maxRuns - this.children.size
    if (room <= 0) return this.sayHeld()
    this.holdingBack = false
    const claimed = await this.o.store.claimLaunches(
      this.holder,
      Number.isFinite(room) ? room : 500,
      this.o.clock.now(),
      [...this.children.keys()],
    )
    for (const run of claimed) {
      if (this.children.has(run.id) || this.stopping) continue
      this.launch(run)
    }
  }

  /** At `maxRuns`: says once, each time launches start to wait for a slot, how many runs wait. */
  private async sayHeld(): Promise<void> {
    const now = this.o.clock.now()
    if (this.holdingBack || now - this.lastHeldCheck < 1_000) return
    this.lastHeldCheck = now
    const waiting = (await this.o.store.queuedRuns(100)).filter(
      (r) => r.launchable && !this.children.has(r.id),
    ).length
    if (waiting === 0) return
    this.holdingBack = true
    this.emit('info', {
      type: 'runs:held',
      queued: waiting,
      running: this.children.size,
      maxRuns: this.o.maxRuns,
    })
  }

  private launch(run: RunRecord): void {
    const child = this.o.launcher.launch({
      run,
      environment: this.o.environment,
      configFile: this.o.configFile,
      storeLocation: this.o.store.location,
      onError: (message) => this.emit('warn', { type: 'error', message, stack: null }),
    })
    this.children.set(run.id, child)
    const launched = (task: string | undefined) =>
      this.emit('info', {
        type: 'run:launched',
        runId: run.id,
        selection: run.selection,
        partition: run.partitionKey,
        origin: run.origin,
        pid: child.pid,
        task: task ?? null,
      })
    // a task is announced once it started (a launch that failed says so when it "exits")
    if (child.started) void child.started.then((task) => task !== undefined && launched(task))
    else launched(undefined)
    child.exited.then(async ({ code, signal, stderr }) => {
      this.children.delete(run.id)
      this.stops.delete(run.id)
      const now = Date.now()
      const record = await this.o.store.getRun(run.id).catch(() => undefined)
      let status = record?.status ?? 'unknown'
      const how = signal ? `signal ${signal}` : code === null ? 'without an exit code' : `exit ${code}`
      const tail = stderr.trim().split('\n').slice(-3).join(' | ')
      if (status === 'queued' && (code !== 0 || signal !== null)) {
        // it died before starting the run (a broken config, say): fail the run, do not relaunch forever
        await this.o.store
          .abandonRun(run.id, 'failure', `the run's process ended (${how}) before starting it: ${tail}`, now)
          .catch((error: unknown) => this.emitError(`could not close run ${run.id}`, error))
        status = 'failure'
      } else if (status === 'started') {
        // it died while running the run: closed as soon as its owner is seen gone (closeGone)
        this.gone.set(run.id, now)
        this.lastGoneCheck = 0
      }
      this.emit(status === 'success' ? 'info' : 'warn', {
        type: 'run:exited',
        runId: run.id,
        status,
        code,
        signal,
        stderrTail: status === 'success' ? '' : tail,
      })
      this.wake?.()
    })
  }

  /**
   * Runs whose launched process (or task) ended while they were still started. Their owner is
   * taken for gone once it is silent for GONE_AFTER_MS (a live owner beats every second; the
   * process that ended may not have been the owner, if another one claimed the run), rather than
   * the minute recovery waits for an owner it knows nothing about: a run canceled meanwhile ends
   * canceled, any other is recovered as interrupted (resumable from failure).
   */
  private async closeGone(now: number): Promise<void> {
    const ids = [...this.gone.keys()]
    const { store } = this.o
    const dead = await store.interruptedRuns({ runIds: ids, staleAfterMs: GONE_AFTER_MS, now })
    const interrupted: string[] = []
    for (const d of dead) {
      const run = await store.getRun(d.runId)
      if (run?.cancelRequestedAt == null) {
        interrupted.push(d.runId)
        continue
      }
      await store.abandonRun(
        d.runId,
        'canceled',
        `canceled; its process ended (${d.reason}) before it could close the run`,
        now,
      )
      this.emit('warn', { type: 'run:recovered', runId: d.runId, reason: d.reason, status: 'canceled' })
    }
    if (interrupted.length > 0) {
      await this.reportRecovery(
        await recoverRuns(store, [...this.o.graph.assets.values()], now, {
          runIds: interrupted,
          staleAfterMs: GONE_AFTER_MS,
        }),
      )
    }
    for (const id of ids) {
      const run = await store.getRun(id)
      // no longer started, or left to the general rule after a while
      if (run?.status !== 'started' || now - this.gone.get(id)! > 120_000) this.gone.delete(id)
    }
  }

  /**
   * Stops launched runs that should stop: a run whose cancel was requested (its process is told at
   * once, as the executor is: StopTask for an ECS task), and a process that outlives its run's end
   * by the cancel grace; one still there a grace period later is killed, and a run it left
   * started is closed canceled.
   */
  private async watchLaunched(now: number): Promise<void> {
    for (const [runId, child] of [...this.children]) {
      const run = await this.o.store.getRun(runId)
      if (!run) continue
      const stop = this.stops.get(runId)
      if (stop) {
        if (stop.killed || now - stop.since < this.o.cancelGraceMs) continue
        stop.killed = true
        this.emit('warn', {
          type: 'run:stopping',
          runId,
          reason: `it did not stop within ${Math.round(this.o.cancelGraceMs / 1000)} s`,
          how: this.how('SIGKILL'),
        })
        child.kill('SIGKILL')
        if (run.status === 'started') {
          await this.o.store.abandonRun(
            runId,
            run.cancelRequestedAt !== null ? 'canceled' : 'failure',
            `its process did not stop within ${Math.round(this.o.cancelGraceMs / 1000)} s of being told to, and was killed`,
            now,
          )
        }
        continue
      }
      const canceled =
        run.cancelRequestedAt !== null && (run.status === 'started' || run.status === 'canceled')
      if (canceled) {
        this.stops.set(runId, { since: now, killed: false })
        this.emit('info', { type: 'run:canceling', runId, reason: 'cancel requested' })
        child.kill('SIGTERM')
        continue
      }
      const ended = FINISHED_RUN_STATUSES.includes(run.status) || run.status === 'paused'
      const endedAt = run.status === 'paused' ? run.heartbeatAt : run.endedAt
      if (ended && endedAt !== null && now - endedAt > this.o.cancelGraceMs) {
        this.stops.set(runId, { since: now, killed: false })
        this.emit('warn', {
          type: 'run:stopping',
          runId,
          reason: `the run ended ${run.status}, but its process is still there`,
          how: this.how('SIGTERM'),
        })
        child.kill('SIGTERM')
      }
    }
  }

  /** What stopping a launched run's process with `signal` does, for messages. */
  private how(signal: NodeJS.Signals): string {
    return this.o.launcher.remote ? `StopTask (${this.o.launcher.kind})` : signal
  }

  private async reportRecovery(recovery: Recovery): Promise<void> {
    for (const r of recovery.recovered)
      this.emit('warn', { type: 'run:recovered', runId: r.runId, reason: r.reason, status: 'failure' })
    for (const h of recovery.hooks) {
      this.emit(h.error ? 'error' : 'info', {
        type: 'recovery:hook',
        asset: h.asset,
        runIds: h.runIds,
        error: h.error?.message ?? null,
      })
    }
    // the tasks of runs recovered as interrupted, if any still run (an owner cut off from the store)
    const runIds = recovery.recovered.map((r) => r.runId)
    if (runIds.length === 0 || !this.o.launcher.recover) return
    try {
      const stopped = await this.o.launcher.recover(runIds)
      if (stopped.length > 0) this.emit('warn', { type: 'launcher:recovered', runIds, stopped, error: null })
    } catch (error) {
      this.emit('error', {
        type: 'launcher:recovered',
        runIds,
        stopped: [],
        error: error instanceof Error ? error.message : String(error),
      })
    }
  }

  private report(def: SensorDefinition | ScheduleDefinition, { tick, outcomes }: TickResult): void {
    if (tick.status === 'skipped') {
      // one event per change of skip reason, not one a second
      const reason = tick.skipReason ?? ''
      if (this.lastSkip.get(def.name) === reason) return
      this.lastSkip.set(def.name, reason)
    } else {
      this.lastSkip.delete(def.name)
    }
    this.emit(tick.status === 'failure' ? 'error' : 'info', {
      type: 'tick',
      kind: def.kind,
      name: def.name,
      status: tick.status,
      outcomes,
      skipReason: tick.skipReason,
      error: tick.status === 'failure' ? (tick.error?.message ?? 'unknown error') : null,
    })
  }

  private async shutdown(): Promise<void> {
    // a prune stops after the batch in progress (stop() aborted it)
    await this.pruning?.done
    // let evaluations in flight record their ticks (each is bounded by its timeout)
    for (let i = 0; i < 100 && this.evaluating.size > 0; i++) await new Promise((r) => setTimeout(r, 50))
    const running = [...this.children.entries()]
    if (running.length > 0) {
      this.emit('info', { type: 'stopping', running: running.length, graceMs: this.o.graceMs })
      if (!(await this.waitChildren(this.o.graceMs))) {
        for (const [runId, child] of this.children) {
          this.emit('warn', { type: 'run:canceling', runId, reason: 'grace period over' })
          child.kill('SIGINT')
        }
        if (!(await this.waitChildren(this.o.cancelGraceMs))) {
          for (const [runId, child] of this.children) {
            child.kill('SIGKILL')
            await this.o.store.abandonRun(
              runId,
              'canceled',
              'the daemon stopped and the run did not stop in time',
              Date.now(),
            )
          }
          await this.waitChildren(2_000)
        }
      }
    }
    await this.o.store.releaseLease(DAEMON_LEASE, this.holder)
    // gone: the runs it claimed but did not launch go to the daemons still alive
    await this.o.store.releaseLease(`${DAEMON_PRESENCE_PREFIX}${this.holder}`, this.holder)
    this.emit('info', { type: 'stopped', holder: this.holder })
  }

  private async waitChildren(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (this.children.size > 0 && Date.now() < deadline) {
      await Promise.race([
        Promise.all([...this.children.values()].map((c) => c.exited)),
        new Promise((r) => setTimeout(r, Math.min(250, deadline - Date.now()))),
      ])
    }
    return this.children.size === 0
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }

  private emit(level: LogLevel, event: DistributiveOmit<DaemonEvent, 'ts' | 'level'>): void {
    this.o.onEvent({ ...event, ts: this.o.clock.now(), level } as DaemonEvent)
  }

  private emitError(what: string, error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error))
    this.emit('error', { type: 'error', message: `${what}: ${e.message}`, stack: e.stack ?? null })
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
