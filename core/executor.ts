import { hostname } from 'node:os'
import { performance } from 'node:perf_hooks'
import { type CheckDefinition, checkId, stopsDownstream } from './checks.js'
import type { Clock } from './clock.js'
import {
  type AssetContext,
  type AssetDefinition,
  isPlainObject,
  type LogLevel,
  type Metadata,
} from './definitions.js'
import {
  CanceledError,
  type ErrorInfo,
  errorCode,
  isNonRetriable,
  NonRetriableError,
  retryAfterSeconds,
  StepTimeoutError,
  toErrorInfo,
} from './errors.js'
import type { RunEvent } from './events.js'
import type { AssetGraph } from './graph.js'
import { MinHeap } from './graph.js'
import type { JsonObject } from './json.js'
import { type RunPartition, upstreamPartition } from './partition-runs.js'
import type { RunRecorder } from './recorder.js'
import { retryDelay } from './retry.js'
import type { ExecutorStore } from './store/run-store.js'
import { type CheckResultRecord, HEARTBEAT_INTERVAL_MS, type StepStatus } from './store/types.js'

export interface ExecuteOptions {
  runId: string
  graph: AssetGraph
  /** Step keys in plan order. */
  plan: readonly string[]
  /** Metadata of steps reused from the parent run's lineage (re-execution from failure). */
  reused: ReadonlyMap<string, Metadata>
  /** The partition this run builds of its partitioned assets (none: an unpartitioned run). */
  partition?: RunPartition
  config: Readonly<Record<string, unknown>>
  resources: Readonly<Record<string, unknown>>
  concurrency: number
  pools: Readonly<Record<string, number>>
  signal: AbortSignal | undefined
  clock: Clock
  random: () => number
  /** Only the verbs a run uses: heartbeat and requests, pool slots, batched writes, upstream reads. */
  store: ExecutorStore
  recorder: RunRecorder
  /** How often the owner polls the store for a cancel request from another process. */
  cancelPollMs: number
  /** Asset checks by asset key, evaluated in order right after each materialization of their asset. */
  checks?: ReadonlyMap<string, readonly CheckDefinition[]>
  /** Validated run config of the checks that declare a schema, keyed `asset:name`. */
  checkConfig?: ReadonlyMap<string, unknown>
  /** Blocking checks that failed in this run before a pause (a resumed run still ends `failure`). */
  checksFailedBefore?: number
  /** Steps already settled in this run (a paused run being resumed): they are not run again. */
  initial?: ReadonlyMap<
    string,
    Pick<StepState, 'status' | 'attempts' | 'startedAt' | 'endedAt' | 'error' | 'reason' | 'metadata'>
  >
}

export interface StepState {
  readonly key: string
  readonly index: number
  readonly def: AssetDefinition
  status: StepStatus
  attempts: number
  startedAt: number | null
  endedAt: number | null
  error: ErrorInfo | null
  /** For a skipped step: the failed step it was skipped for (`asset:check` when a check stopped it). */
  reason: string | null
  metadata: Metadata | null
  /** A succeeded step whose blocking check failed: that check's name (its dependents are skipped). */
  stoppedBy?: string | null
}

export interface ExecutionOutcome {
  /** `paused`: stopped at a pause request; pending steps stay pending for a resume. */
  status: 'success' | 'failure' | 'canceled' | 'paused'
  steps: readonly StepState[]
  /** The asset checks evaluated, in order. */
  checks: ReadonlyArray<Omit<CheckResultRecord, 'id'>>
  startedAt: number
  endedAt: number
}

interface InternalStep extends StepState {
  remaining: number
  dependents: number[]
  /** Aborts whatever the step is doing now: an attempt or the wait before a retry. */
  abort: AbortController | undefined
  waitingForPool: boolean
  /** A pool slot is being asked of the store for it (the step counts as running meanwhile). */
  acquiring: boolean
  progress: {
    lastEmit: number
    pending: { done: number; total: number | null } | undefined
    timer?: NodeJS.Timeout
  }
}

const PROGRESS_INTERVAL_MS = 100
const POOL_POLL_MS = 100

/**
 * Runs a plan: independent steps concurrently up to `concurrency`, pools limiting steps across
 * runs and processes, retries by policy, per-attempt timeouts, cancellation. Everything it does
 * is an event through the recorder; it never prints and never throws for a failing asset.
 */
export class Execution {
  private readonly o: ExecuteOptions
  private readonly steps: InternalStep[]
  private readonly byKey: Map<string, InternalStep>
  private readonly ready = new MinHeap()
  private readonly blocked: InternalStep[] = []
  private readonly poolInUse = new Map<string, number>()
  private readonly owner = { pid: process.pid, host: hostname() }
  private running = 0
  private canceling = false
  private pausing = false
  private cancelReason = ''
  private finished = false
  private checksStopped = 0
  private readonly checkResults: Array<Omit<CheckResultRecord, 'id'>> = []
  private startedAt = 0
  private resolveDone!: (outcome: ExecutionOutcome) => void
  private poolTimer: NodeJS.Timeout | undefined
  private watchTimer: NodeJS.Timeout | undefined
  private lastHeartbeat = 0
  private watching = false

  constructor(options: ExecuteOptions) {
    this.o = options
    const index = new Map(options.plan.map((key, i) => [key, i]))
    this.steps = options.plan.map((key, i) => ({
      key,
      index: i,
      def: options.graph.assets.get(key)!,
      status: 'pending' as StepStatus,
      attempts: 0,
      startedAt: null,
      endedAt: null,
      error: null,
      reason: null,
      metadata: null,
      remaining: 0,
      dependents: [],
      abort: undefined,
      waitingForPool: false,
      acquiring: false,
      progress: { lastEmit: Number.NEGATIVE_INFINITY, pending: undefined },
    }))
    this.byKey = new Map(this.steps.map((s) => [s.key, s]))
    this.checksStopped = options.checksFailedBefore ?? 0
    for (const step of this.steps) {
      const settled = options.initial?.get(step.key)
      if (settled && settled.status !== 'pending') Object.assign(step, settled)
    }
    for (const step of this.steps) {
      for (const dep of step.def.deps) {
        const d = dep === step.key ? undefined : index.get(dep)
        if (d !== undefined) {
          // a dep that already succeeded (before a pause) does not hold its dependents back
          if (this.steps[d]!.status !== 'succeeded') step.remaining++
          this.steps[d]!.dependents.push(step.index)
        }
      }
    }
  }

  run(): Promise<ExecutionOutcome> {
    const { signal, recorder } = this.o
    this.startedAt = this.o.clock.now()
    this.lastHeartbeat = this.startedAt
    recorder.onWriteError = (error) =>
      this.cancel(`the store could not be written: ${(error as Error).message}`)
    const done = new Promise<ExecutionOutcome>((resolve) => {
      this.resolveDone = resolve
    })
    if (signal) {
      if (signal.aborted) this.cancel(reasonText(signal.reason))
      else signal.addEventListener('abort', () => this.cancel(reasonText(signal.reason)), { once: true })
    }
    // not unref'd: a run in flight keeps its process alive, even while its assets wait on nothing
    this.watchTimer = setInterval(() => this.watch(), this.o.cancelPollMs)
    for (const step of this.steps)
      if (step.remaining === 0 && step.status === 'pending') this.ready.push(step.index)
    this.pump()
    return done
  }

  /** Stops starting steps; running ones finish; then the run is `paused`, its pending steps kept. */
  pause(reason: string): void {
    if (this.pausing || this.canceling || this.finished) return
    this.pausing = true
    this.emit({ type: 'run:pausing', reason })
    this.pump()
  }

  /** Stops new steps, aborts running attempts and pending retries; the run ends `canceled`. */
  cancel(reason: string): void {
    if (this.canceling || this.finished) return
    this.canceling = true
    this.cancelReason = reason
    this.emit({ type: 'run:canceling', reason })
    for (const step of this.steps) step.abort?.abort(new CanceledError(reason))
    this.pump()
  }

  /** Polls the store for a cancel request and keeps the owner's heartbeat fresh (one poll at a time). */
  private watch(): void {
    if (this.finished || this.watching) return
    this.watching = true
    this.poll()
      .catch((error: unknown) => {
        // a busy store delays the poll; the next tick tries again
        if (!isBusy(error)) this.cancel(`the store could not be read: ${(error as Error).message}`)
      })
      .finally(() => {
        this.watching = false
      })
  }

  private async poll(): Promise<void> {
    const now = this.o.clock.now()
    if (now - this.lastHeartbeat >= HEARTBEAT_INTERVAL_MS) {
      this.lastHeartbeat = now
      const state = await this.o.store.heartbeat(this.o.runId, this.owner, now)
      if (state === 'lost') this.cancel('another process marked this run as interrupted')
      else if (state === 'cancel') this.cancel('cancel requested')
      else if (state === 'pause') this.pause('pause requested')
    } else {
      const requested = await this.o.store.pendingRequests(this.o.runId)
      if (requested.cancel) this.cancel('cancel requested')
      else if (requested.pause) this.pause('pause requested')
    }
  }

  private emit(event: DistributiveOmit<RunEvent, 'runId' | 'ts'>): void {
    this.o.recorder.emit({ ...event, runId: this.o.runId, ts: this.o.clock.now() } as RunEvent)
  }

  private record(step: InternalStep): void {
    this.o.recorder.step({
      runId: this.o.runId,
      key: step.key,
      status: step.status,
      attempts: step.attempts,
      startedAt: step.startedAt,
      endedAt: step.endedAt,
      error: step.error,
      reason: step.reason,
    })
  }

  /**
   * Starts what can start now. Steps without a pool start at once; a step with a pool asks the
   * store for a slot (counted as running while it asks) and pumps again when the answer comes.
   */
  private pump(): void {
    if (this.finished) return
    if (!this.canceling && !this.pausing) {
      // steps that waited for a pool go first: they were ready earlier
      for (let i = 0; i < this.blocked.length && this.running < this.o.concurrency; ) {
        const step = this.blocked[i]!
        if (this.poolFull(step)) {
          i++
          continue
        }
        this.blocked.splice(i, 1)
        this.acquireAndStart(step)
      }
      while (this.running < this.o.concurrency && this.ready.size > 0) {
        const step = this.steps[this.ready.pop()!]!
        if (step.status !== 'pending') continue
        if (step.def.pool === undefined) this.start(step)
        else if (this.poolFull(step)) this.waitForPool(step)
        else this.acquireAndStart(step)
      }
      if (this.blocked.length > 0 && this.running < this.o.concurrency) this.pollPools()
    }
    if (
      this.running === 0 &&
      (this.canceling || this.pausing || (this.ready.size === 0 && this.blocked.length === 0))
    ) {
      this.finish()
    }
  }

  /** A slot held by another process frees without telling us: pump again a little later. */
  private pollPools(): void {
    if (this.poolTimer !== undefined || this.finished) return
    this.poolTimer = setTimeout(() => {
      this.poolTimer = undefined
      this.pump()
    }, POOL_POLL_MS)
  }

  /** This run already holds as many slots of the step's pool as the pool allows. */
  private poolFull(step: InternalStep): boolean {
    const pool = step.def.pool!
    return (this.poolInUse.get(pool) ?? 0) >= this.o.pools[pool]!
  }

  private waitForPool(step: InternalStep): void {
    this.blocked.push(step)
    this.blocked.sort((a, b) => a.index - b.index)
    if (step.waitingForPool) return
    step.waitingForPool = true
    const pool = step.def.pool!
    this.emit({ type: 'step:waiting', step: step.key, pool, limit: this.o.pools[pool]! })
  }

  /** Asks the store for a slot of the step's pool; starts the step with it, or puts it back to wait. */
  private acquireAndStart(step: InternalStep): void {
    const pool = step.def.pool!
    const limit = this.o.pools[pool]!
    this.running++
    step.acquiring = true
    this.poolInUse.set(pool, (this.poolInUse.get(pool) ?? 0) + 1)
    this.o.store
      .tryAcquirePoolSlot(pool, limit, this.o.runId, step.key, this.o.clock.now())
      .catch((error: unknown) => {
        if (isBusy(error)) return false
        throw error
      })
      .then(
        (acquired) => {
          step.acquiring = false
          this.running--
          if (!acquired) {
            this.poolInUse.set(pool, this.poolInUse.get(pool)! - 1)
            this.waitForPool(step)
            // another process holds the slots: ask again on the poll, not at once
            if (!this.canceling && !this.pausing) return this.pollPools()
          } else if (this.canceling || this.pausing || this.finished) {
            // the slot came back after the run stopped starting steps: give it back
            this.releasePool(step)
            this.ready.push(step.index)
          } else {
            step.waitingForPool = false
            this.start(step)
          }
          this.pump()
        },
        (error: unknown) => {
          step.acquiring = false
          this.running--
          this.poolInUse.set(pool, this.poolInUse.get(pool)! - 1)
          this.cancel(`the store could not give a pool slot: ${(error as Error).message}`)
        },
      )
  }

  private releasePool(step: InternalStep): void {
    const pool = step.def.pool
    if (pool === undefined) return
    this.poolInUse.set(pool, (this.poolInUse.get(pool) ?? 1) - 1)
    // a slot not released now is freed with the run at the latest (finishRun, recovery)
    this.o.store.releasePoolSlot(pool, this.o.runId, step.key).catch(() => {})
  }

  private start(step: InternalStep): void {
    this.running++
    step.status = 'running'
    step.startedAt = this.o.clock.now()
    this.runStep(step)
      .catch((error: unknown) => {
        // an error of the engine itself (not of the asset): fail the step with it
        step.status = 'failed'
        step.error = toErrorInfo(error)
        step.endedAt = this.o.clock.now()
        this.record(step)
      })
      .finally(() => {
        this.running--
        this.releasePool(step)
        if (step.status === 'succeeded' && step.stoppedBy) {
          this.skipDownstream(step, step.stoppedBy)
        } else if (step.status === 'succeeded') {
          for (const d of step.dependents) {
            const dependent = this.steps[d]!
            if (--dependent.remaining === 0 && dependent.status === 'pending') this.ready.push(d)
          }
        } else if (step.status === 'failed') {
          this.skipDownstream(step)
        }
        this.pump()
      })
  }

  private async runStep(step: InternalStep): Promise<void> {
    const { clock, recorder, runId } = this.o
    const policy = step.def.retry
    for (let attempt = 1; ; attempt++) {
      if (this.canceling) return this.markCanceled(step)
      step.attempts = attempt
      step.status = 'running'
      const attemptStart = clock.now()
      recorder.attempt({
        runId,
        step: step.key,
        attempt,
        status: 'running',
        startedAt: attemptStart,
        endedAt: null,
        error: null,
      })
      this.record(step)
      this.emit({ type: 'step:start', step: step.key, attempt, maxAttempts: policy.maxAttempts })

      const controller = new AbortController()
      step.abort = controller
      const timeout = step.def.timeoutMs
      const timeoutWait = timeout === undefined ? undefined : new AbortController()
      if (timeout !== undefined) {
        clock.sleep(timeout, timeoutWait!.signal).then(
          () => controller.abort(new StepTimeoutError(timeout)),
          () => {},
        )
      }
      let metadata: Metadata | undefined
      let failure: unknown
      try {
        const ctx = await this.context(step, attempt, controller.signal)
        const value = await raceAbort(
          Promise.resolve().then(() => step.def.materialize(ctx)),
          controller.signal,
        )
        metadata = toMetadata(value)
      } catch (error) {
        failure = controller.signal.aborted ? controller.signal.reason : error
      } finally {
        timeoutWait?.abort()
        step.abort = undefined
      }
      const now = clock.now()
      this.flushProgress(step)

      if (metadata !== undefined) {
        step.status = 'succeeded'
        step.metadata = metadata
        step.endedAt = now
        recorder.attempt({
          runId,
          step: step.key,
          attempt,
          status: 'succeeded',
          startedAt: attemptStart,
          endedAt: now,
          error: null,
        })
        this.record(step)
        // a run of several partitions materializes each of them (each is then the latest of its key)
        const keys = this.o.partition?.contexts.has(step.key) ? this.o.partition.keys : [null]
        for (const partitionKey of keys) {
          recorder.materialization({ asset: step.key, runId, attempt, ts: now, metadata, partitionKey })
        }
        this.emit({ type: 'asset:materialized', step: step.key, asset: step.key, attempt, metadata })
        // checks come before the step's success, so that a view shows the step with its checks
        const checks = this.o.checks?.get(step.key)
        if (checks !== undefined && checks.length > 0) await this.evaluateChecks(step, checks, metadata)
        this.emit({
          type: 'step:success',
          step: step.key,
          attempt,
          durationMs: clock.now() - step.startedAt!,
          metadata,
        })
        return
      }

      const error = toErrorInfo(failure)
      if (failure instanceof CanceledError && this.canceling) {
        recorder.attempt({
          runId,
          step: step.key,
          attempt,
          status: 'canceled',
          startedAt: attemptStart,
          endedAt: now,
          error,
        })
        return this.markCanceled(step)
      }
      recorder.attempt({
        runId,
        step: step.key,
        attempt,
        status: 'failed',
        startedAt: attemptStart,
        endedAt: now,
        error,
      })
      const retriable = !isNonRetriable(failure)
      if (retriable && attempt < policy.maxAttempts && !this.canceling) {
        const after = retryAfterSeconds(failure)
        const delayMs =
          after !== undefined ? Math.round(after * 1000) : retryDelay(policy, attempt, this.o.random)
        step.status = 'retrying'
        step.error = error
        this.record(step)
        this.emit({
          type: 'step:retry',
          step: step.key,
          attempt,
          nextAttempt: attempt + 1,
          maxAttempts: policy.maxAttempts,
          delayMs,
          error,
        })
        const wait = new AbortController()
        step.abort = wait
        try {
          await clock.sleep(delayMs, wait.signal)
        } catch {
          // only a cancel aborts the wait
          return this.markCanceled(step)
        } finally {
          step.abort = undefined
        }
        continue
      }
      step.status = 'failed'
      step.error = error
      step.endedAt = now
      this.record(step)
      this.emit({
        type: 'step:failure',
        step: step.key,
        attempt,
        durationMs: now - step.startedAt!,
        error,
        retriable,
      })
      return
    }
  }

  /**
   * Evaluates the asset's checks on the materialization its step just made, one after another.
   * A check that throws (or returns something else than `{ passed }`) counts as failed with its
   * error. The first failed blocking check of severity `error` marks the step stopped: its
   * dependents are skipped naming the check, and the run ends `failure`.
   */
  private async evaluateChecks(
    step: InternalStep,
    checks: readonly CheckDefinition[],
    metadata: Metadata,
  ): Promise<void> {
    const { clock, recorder, runId } = this.o
    const controller = new AbortController()
    step.abort = controller
    try {
      for (const check of checks) {
        const started = clock.now()
        let passed = false
        let resultMetadata: Metadata = {}
        let error: ErrorInfo | null = null
        try {
          if (controller.signal.aborted) throw controller.signal.reason
          const value: unknown = await raceAbort(
            Promise.resolve().then(() =>
              check.evaluate({
                runId,
                asset: step.key,
                check: check.name,
                partition: this.partitionOf(step.key),
                metadata,
                config: this.o.checkConfig?.get(checkId(step.key, check.name)) ?? {},
                resources: this.o.resources as AssetContext['resources'],
                signal: controller.signal,
                log: (message: string, level: LogLevel = 'info') => {
                  this.emit({ type: 'log', step: step.key, level, message: String(message) })
                },
              }),
            ),
            controller.signal,
          )
          if (!isPlainObject(value) || typeof value.passed !== 'boolean') {
            throw new NonRetriableError(
              `check \`${checkId(step.key, check.name)}\` must return { passed: boolean, metadata? }`,
            )
          }
          resultMetadata = value.metadata === undefined ? {} : toMetadata(value.metadata)
          passed = value.passed
        } catch (failure) {
          error = toErrorInfo(failure)
        }
        const now = clock.now()
        const stops = !passed && stopsDownstream(check)
        const result = {
          runId,
          asset: step.key,
          check: check.name,
          partitionKey: this.partitionOf(step.key),
          passed,
          severity: check.severity,
          blocking: check.blocking,
          ts: now,
          metadata: resultMetadata,
          error,
        }
        this.checkResults.push(result)
        recorder.check(result)
        this.emit({
          type: 'check:evaluated',
          step: step.key,
          asset: step.key,
          check: check.name,
          partition: this.partitionOf(step.key),
          passed,
          severity: check.severity,
          blocking: check.blocking,
          stops,
          durationMs: now - started,
          metadata: resultMetadata,
          error,
        })
        if (stops && !step.stoppedBy) {
          step.stoppedBy = check.name
          this.checksStopped++
        }
      }
    } finally {
      step.abort = undefined
    }
  }

  private async context(step: InternalStep, attempt: number, signal: AbortSignal): Promise<AssetContext> {
    const upstream: Record<string, Metadata | undefined> = {}
    for (const dep of step.def.deps) upstream[dep] = await this.upstreamMetadata(dep, step.key)
    const key = step.key
    const partition = this.o.partition?.contexts.get(key)
    return {
      ...(partition ? { partition } : {}),
      runId: this.o.runId,
      key,
      attempt,
      maxAttempts: step.def.retry.maxAttempts,
      config: this.o.config[key],
      resources: this.o.resources as AssetContext['resources'],
      signal,
      upstream,
      log: (message: string, level: LogLevel = 'info') => {
        this.emit({ type: 'log', step: key, level, message: String(message) })
      },
      progress: (done: number, total?: number) => this.progress(step, done, total),
    }
  }

  /**
   * A dep's metadata: from this run, from the reused lineage, else its latest materialization (in
   * a partitioned run, the latest of the dep's partition that this one reads, when it is one).
   */
  private async upstreamMetadata(dep: string, key: string): Promise<Metadata | undefined> {
    // its own earlier partitions: what the mapping names, never this step itself
    const self = dep === key
    const inRun = self ? undefined : this.byKey.get(dep)
    if (inRun !== undefined) return inRun.metadata ?? undefined
    const reused = self ? undefined : this.o.reused.get(dep)
    if (reused !== undefined) return reused
    if (self && !this.o.partition) return undefined
    const partition = this.o.partition
      ? upstreamPartition(this.o.graph, key, dep, this.o.partition)
      : undefined
    if (partition === null) return undefined
    return (await this.o.store.latestMaterialization(dep, partition))?.metadata
  }

  /** The partition key of this run's step `key` (null for an unpartitioned asset or run). */
  private partitionOf(key: string): string | null {
    return this.o.partition?.contexts.has(key) ? this.o.partition.key : null
  }

  /** Progress is throttled per step to one event per 100 ms; the latest value is never lost. */
  private progress(step: InternalStep, done: number, total: number | undefined): void {
    if (!Number.isFinite(done) || (total !== undefined && !Number.isFinite(total))) return
    const p = step.progress
    p.pending = { done, total: total ?? null }
    const now = performance.now()
    if (now - p.lastEmit >= PROGRESS_INTERVAL_MS) {
      this.flushProgress(step)
    } else if (p.timer === undefined) {
      p.timer = setTimeout(() => this.flushProgress(step), PROGRESS_INTERVAL_MS - (now - p.lastEmit))
      p.timer.unref()
    }
  }

  private flushProgress(step: InternalStep): void {
    const p = step.progress
    if (p.timer !== undefined) {
      clearTimeout(p.timer)
      p.timer = undefined
    }
    if (p.pending === undefined || this.finished) return
    const { done, total } = p.pending
    p.pending = undefined
    p.lastEmit = performance.now()
    this.emit({ type: 'step:progress', step: step.key, done, total })
  }

  private markCanceled(step: InternalStep): void {
    step.status = 'canceled'
    step.endedAt = this.o.clock.now()
    this.record(step)
    this.emit({ type: 'step:canceled', step: step.key, attempt: step.attempts })
  }

  /**
   * A failed step (or a succeeded one whose blocking `check` failed) skips everything downstream
   * of it that has not run; siblings go on.
   */
  private skipDownstream(failed: InternalStep, check?: string): void {
    const queue = [...failed.dependents]
    while (queue.length > 0) {
      const step = this.steps[queue.pop()!]!
      if (step.status !== 'pending') continue
      step.status = 'skipped'
      step.reason = check === undefined ? failed.key : checkId(failed.key, check)
      step.endedAt = this.o.clock.now()
      this.record(step)
      this.emit(
        check === undefined
          ? { type: 'step:skipped', step: step.key, upstream: failed.key }
          : { type: 'step:skipped', step: step.key, upstream: failed.key, check },
      )
      queue.push(...step.dependents)
    }
  }

  private finish(): void {
    if (this.finished) return
    const paused = this.pausing && !this.canceling
    if (!paused) {
      for (const step of this.steps) {
        if (step.status === 'pending') this.markCanceled(step)
      }
    }
    this.finished = true
    clearInterval(this.watchTimer)
    clearTimeout(this.poolTimer)
    const counts = { succeeded: 0, failed: 0, skipped: 0, canceled: 0 }
    let pending = 0
    for (const step of this.steps) {
      if (step.status === 'pending') pending++
      else if (
        step.status === 'succeeded' ||
        step.status === 'failed' ||
        step.status === 'skipped' ||
        step.status === 'canceled'
      ) {
        counts[step.status]++
      }
    }
    const endedAt = this.o.clock.now()
    if (paused && pending > 0) {
      this.o.recorder.emit({ type: 'run:paused', runId: this.o.runId, ts: endedAt, pending, ...counts })
      this.resolveDone({
        status: 'paused',
        steps: this.steps,
        checks: this.checkResults,
        startedAt: this.startedAt,
        endedAt,
      })
      return
    }
    // a blocking check that failed fails the run, even when nothing is downstream of its asset
    const status = this.canceling
      ? 'canceled'
      : counts.failed + counts.skipped + this.checksStopped > 0
        ? 'failure'
        : 'success'
    this.o.recorder.emit({
      type: 'run:end',
      runId: this.o.runId,
      ts: endedAt,
      status,
      durationMs: endedAt - this.startedAt,
      ...counts,
      ...(this.checksStopped > 0 ? { checksFailed: this.checksStopped } : {}),
    })
    this.resolveDone({
      status,
      steps: this.steps,
      checks: this.checkResults,
      startedAt: this.startedAt,
      endedAt,
    })
  }

  get cancelMessage(): string {
    return this.cancelReason
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

/** Settles with the promise, or rejects with the signal's reason as soon as it aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      },
    )
  })
}

/** Metadata must be a plain JSON object (or nothing); it is stored and shown as JSON. */
function toMetadata(value: unknown): Metadata {
  if (value === undefined || value === null) return {}
  if (!isPlainObject(value)) {
    const kind = Array.isArray(value) ? 'an array' : typeof value
    throw new NonRetriableError(
      `materialize must return a plain object of metadata (or nothing), not ${kind}`,
    )
  }
  try {
    return JSON.parse(JSON.stringify(value)) as JsonObject
  } catch (cause) {
    throw new NonRetriableError(
      `the metadata returned cannot be stored as JSON: ${(cause as Error).message}`,
      { cause },
    )
  }
}

function reasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.message
  if (typeof reason === 'string') return reason
  return 'canceled by the caller'
}

function isBusy(error: unknown): boolean {
  return errorCode(error) === 'store-busy'
}
