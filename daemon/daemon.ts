import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { type Clock, systemClock } from '../core/clock.js'
import type { LogLevel } from '../core/definitions.js'
import type { AssetGraph } from '../core/graph.js'
import type { RunGuardConfig } from '../core/guards.js'
import { recoverRuns } from '../core/recovery.js'
import { lastPrune, prunePolicy, pruneStore, type Retention, recordPrune } from '../core/retention.js'
import type { RunStore } from '../core/store/run-store.js'
import { DAEMON_PRESENCE_PREFIX, type NewTick } from '../core/store/types.js'
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

/** A run started in its own process by the daemon. */
export interface LaunchedRun {
  pid: number | undefined
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>
  /** Sends a signal to the run's process (SIGINT: cancel gracefully; SIGKILL: stop at once). */
  kill(signal: NodeJS.Signals): void
}

export interface DaemonOptions {
  store: RunStore
  graph: AssetGraph
  runConfig: Record<string, Record<string, unknown>>
  /** The config's run guards (runs requested by sensors and schedules hold them too). */
  guards?: readonly RunGuardConfig[]
  instigators: readonly InstigatorDefinition[]
  /** Starts a queued run in a child process (so a crashing asset cannot take the daemon down). */
  launch(runId: string): LaunchedRun
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
}

/** How often the daemon prunes when the config has `retention`. */
export const PRUNE_EVERY_MS = 24 * 3_600_000
/** How often the daemon reads when the last prune was (it is kept in the store, for every daemon). */
const PRUNE_CHECK_MS = 60_000
/** After a failed prune (an alias that cannot be read, a busy store), when the daemon tries again. */
const PRUNE_RETRY_MS = 3_600_000

export const DAEMON_LEASE = 'daemon'

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
  private readonly o: Required<Omit<DaemonOptions, 'clock' | 'onIteration' | 'retention'>> &
    Pick<DaemonOptions, 'onIteration' | 'retention'> & { clock: Clock }
  /** The live daemons (their holders, sorted), as last read from their presence leases. */
  private daemons: string[] = []
  /** The sensors and schedules that fall to this daemon among `daemons`. */
  private mine = new Set<string>()
  private readonly holder = `${hostname()}:${process.pid}:${Date.now().toString(36)}`
  private readonly children = new Map<string, LaunchedRun>()
  private readonly lastSkip = new Map<string, string>()
  private stopping = false
  private wake: (() => void) | undefined
  private holding = false
  private lastRecovery = 0
  private readonly evaluating = new Set<string>()
  private readonly pendingTicks: Array<{ def: SensorDefinition; tick: NewTick }> = []
  /** When each schedule is next due, valid while its state row is unchanged. */
  private readonly nextDue = new Map<string, { version: number | undefined; at: number }>()
  private lastRenewal = 0
  private lastIteration: number | undefined
  /** The prune in progress, in the background of the loop, and how to stop it. */
  private pruning: { done: Promise<void>; abort: AbortController } | undefined
  private nextPruneCheck = 0

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
      ...options,
    }
  }

  get leaseHolder(): string {
    return this.holder
  }

  /** When the loop last completed an iteration while holding the lease (health checks read it). */
  get lastIterationAt(): number | undefined {
    return this.lastIteration
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
      const recovery = await recoverRuns(store, [...this.o.graph.assets.values()], now)
      for (const r of recovery.recovered)
        this.emit('warn', { type: 'run:recovered', runId: r.runId, reason: r.reason })
      for (const h of recovery.hooks) {
        this.emit(h.error ? 'error' : 'info', {
          type: 'recovery:hook',
          asset: h.asset,
          runIds: h.runIds,
          error: h.error?.message ?? null,
        })
      }
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
    for (const { def } of due) {
      if (this.stopping) return
      if (!granted.has(def.name)) continue
      const state = states.get(def.name)
      if (def.kind === 'sensor') {
        // sensors evaluate concurrently, each bounded by its timeout; their ticks commit together
        this.evaluating.add(def.name)
        evaluateSensor(def, env, { state }).then((tick) => this.queueCommit(def, tick))
      } else {
        for (const result of await tickSchedule(def, env)) this.report(def, result)
        const after = await store.getInstigator(def.name)
        this.nextDue.set(def.name, {
          version: after?.updatedAt,
          at: nextScheduleTick(def, now) ?? Number.POSITIVE_INFINITY,
        })
      }
    }
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
  private async launchQueued(): Promise<void> {
    if (this.stopping) return
    const room = this.o.maxRuns - this.children.size
    if (room <= 0) return
    const claimed = await this.o.store.claimLaunches(
      this.holder,
      Number.isFinite(room) ? room : 500,
      this.o.clock.now(),
      [...this.children.keys()],
    )
    for (const run of claimed) {
      if (this.children.has(run.id) || this.stopping) continue
      const child = this.o.launch(run.id)
      this.children.set(run.id, child)
      this.emit('info', {
        type: 'run:launched',
        runId: run.id,
        selection: run.selection,
        origin: run.origin,
        pid: child.pid,
      })
      child.exited.then(async ({ code, signal, stderr }) => {
        this.children.delete(run.id)
        let status = (await this.o.store.getRun(run.id).catch(() => undefined))?.status ?? 'unknown'
        const how = signal ? `signal ${signal}` : `exit ${code}`
        const tail = stderr.trim().split('\n').slice(-3).join(' | ')
        if (status === 'queued' && (code !== 0 || signal !== null)) {
          // it died before starting the run (a broken config, say): fail the run, do not relaunch forever
          await this.o.store
            .abandonRun(
              run.id,
              'failure',
              `the run's process ended (${how}) before starting it: ${tail}`,
              Date.now(),
            )
            .catch((error: unknown) => this.emitError(`could not close run ${run.id}`, error))
          status = 'failure'
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
