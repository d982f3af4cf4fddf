import { availableParallelism, hostname } from 'node:os'
import {
  CHECKS_CONFIG_KEY,
  type CheckDefinition,
  checksByAsset,
  parseSkipReason,
  resolveCheckConfig,
  stopsDownstream,
} from './checks.js'
import { type Clock, systemClock } from './clock.js'
import {
  type AssetDefinition,
  isAssetDefinition,
  type Metadata,
  resolveRunConfig,
  uncalledFactory,
} from './definitions.js'
import {
  ConfigError,
  didYouMean,
  type ErrorInfo,
  GuardBusyError,
  RunParkedError,
  StoreError,
  toErrorInfo,
} from './errors.js'
import type { RunEventListener } from './events.js'
import { Execution, type StepState } from './executor.js'
import { AssetGraph } from './graph.js'
import { holdsFor, type RunGuardConfig } from './guards.js'
import { newRunId } from './ids.js'
import { type RunPartition, runPartition } from './partition-runs.js'
import { RunRecorder } from './recorder.js'
import { resolveSelection } from './selection.js'
import { isRunStore, openStore } from './store/open.js'
import { type RunStore, requireRun } from './store/run-store.js'
import type { RunRecord } from './store/types.js'

export interface MaterializeOptions {
  /** A store location (a file path; `:memory:`, the default), or an opened store (left open). */
  store?: string | RunStore
  /** Which assets to run (see the selection syntax); default every asset. An array is a union. */
  selection?: string | readonly string[]
  resources?: Record<string, unknown>
  /**
   * Run config per asset key, validated by each asset's schema before the run starts; the asset
   * checks' config under `checks`: `{ checks: { ASSET: { CHECK: {...} } } }`.
   */
  config?: Record<string, unknown>
  /** Asset checks (`assetCheck`), evaluated right after each materialization of their asset. */
  checks?: readonly CheckDefinition[]
  /** Steps at once within the run (default: the number of CPUs, at least 4). */
  concurrency?: number
  /** Limits of the named pools the selected assets use, shared by every run on the store. */
  pools?: Record<string, number>
  /** Re-execute a failed or canceled run: its succeeded steps are reused, the rest run again. */
  fromFailure?: string
  /**
   * The partition to build of the selection's partitioned assets (they share one definition); a
   * re-execution builds its parent's. Required when the selection has a partitioned asset.
   */
  partition?: string
  /** Aborting it cancels the run: no new steps, running attempts aborted, status `canceled`. */
  signal?: AbortSignal
  tags?: Record<string, string>
  /** Called with every event as it happens (views, reporters). */
  onEvent?: RunEventListener
  /** Time source for retries, timeouts and timestamps (tests pass a `ManualClock`). */
  clock?: Clock
  /** Random source for retry jitter, in [0, 1). */
  random?: () => number
  /** How often the run polls the store for a cancel request from another process (default 250 ms). */
  cancelPollMs?: number
  /** Run even while maintenance mode is on (recorded on the run as a tag). */
  force?: boolean
  /** The config's run guards; the run waits while one it falls under is full. */
  guards?: RunGuardConfig[]
  /** `false`: throw a `GuardBusyError` instead of waiting for a full guard. */
  wait?: boolean
  /** Called when the run starts waiting for a run that holds a guard it needs. */
  onWait?: (waiting: { guard: string; runId: string }) => void
  /** How often a waiting run checks the guard again (default 250 ms). */
  guardPollMs?: number
}

interface StepResultBase {
  key: string
  attempts: number
  startedAt: number | null
  endedAt: number | null
  durationMs: number | null
}

/** A step's outcome. Narrow on `status`; `error` is set only on failed steps. */
export type StepResult = StepResultBase &
  (
    | { status: 'succeeded'; metadata: Metadata; error?: undefined }
    | { status: 'failed'; error: ErrorInfo }
    /** `check`: the blocking check of `upstream` that failed, when a check stopped this step. */
    | { status: 'skipped'; upstream: string; check?: string; error?: undefined }
    | { status: 'canceled'; error?: undefined }
    | { status: 'pending' | 'running' | 'retrying'; error?: undefined }
  )

export interface MaterializationResult {
  runId: string
  ts: number
  attempt: number
  metadata: Metadata
}

/** One evaluation of an asset check in a run. */
export interface CheckResult {
  asset: string
  check: string
  partition: string | null
  passed: boolean
  severity: 'warn' | 'error'
  blocking: boolean
  metadata: Metadata
  error: ErrorInfo | null
}

export interface MaterializeResult {
  runId: string
  /** `paused`: stopped at a pause request (`refresh pause`); `resumeRun` continues it. */
  status: 'success' | 'failure' | 'canceled' | 'paused'
  parentRunId: string | null
  selection: string
  /** The partition the run built of its partitioned assets (null: an unpartitioned run). */
  partition: string | null
  startedAt: number
  endedAt: number
  durationMs: number
  /** Every step this run executed, by asset key. */
  steps: Record<string, StepResult>
  /** What this run materialized, by asset key. */
  materializations: Record<string, MaterializationResult>
  /** Steps not executed because the parent run's lineage already materialized them. */
  reused: Record<string, { runId: string; metadata: Metadata }>
  /** The asset checks this run evaluated, in order. */
  checks: CheckResult[]
  /** Why the run was canceled, when it was. */
  cancelReason: string | undefined
}

interface Plan {
  selection: string
  keys: string[]
  reused: Map<string, { runId: string; metadata: Metadata }>
  parent: RunRecord | undefined
}

/**
 * Materializes assets: validates the graph, the selection and the run config, records a run in
 * the store, executes it and returns its outcome. Bad input throws a `RefreshError` before any
 * run is recorded; a failing asset does not throw, it makes `result.status` 'failure'.
 */
export async function materialize(
  assets: readonly AssetDefinition[],
  options: MaterializeOptions = {},
): Promise<MaterializeResult> {
  const graph = buildGraph(assets)
  const concurrency = checkConcurrency(options.concurrency)
  const clock = options.clock ?? systemClock
  const ownStore = !isRunStore(options.store)
  const store = isRunStore(options.store) ? options.store : await openStore(options.store ?? ':memory:')
  if (!store.isOpen)
    throw new StoreError('the store passed to materialize() is closed; open it with openStore().')
  try {
    const plan = options.fromFailure
      ? await planReexecution(store, graph, options.fromFailure, clock)
      : planSelection(graph, options.selection)
    const config = resolveRunConfig(graph.assets, plan.keys, options.config ?? plan.parent?.config, (key) =>
      didYouMean(key, graph.assets.keys()),
    )
    const checks = resolveChecks(graph, options.checks, config)
    const pools = checkPools(graph, plan.keys, options.pools ?? {})

    const holds = holdsFor(graph, options.guards ?? [], plan.keys)
    const reusedIds = Object.fromEntries([...plan.reused].map(([key, r]) => [key, r.runId]))
    let now = clock.now()
    const partition = await runPartition(graph, plan.keys, partitionOf(plan, options.partition), store, now)
    const runId = newRunId(now)
    let waitingFor: string | undefined
    for (;;) {
      const created = await store.createRun({
        id: runId,
        status: 'started',
        force: options.force,
        holds,
        selection: plan.selection,
        plan: plan.keys,
        reused: reusedIds,
        config,
        tags: options.tags ?? {},
        parentRunId: plan.parent?.id,
        rootRunId: plan.parent ? (plan.parent.rootRunId ?? plan.parent.id) : undefined,
        ...(partition ? { partitionKey: partition.key } : {}),
        now,
        owner: { pid: process.pid, host: hostname() },
      })
      if (!created.created && 'parkedRequestId' in created) {
        throw new RunParkedError(created.parkedRequestId, (await store.getMaintenance())?.reason ?? '')
      }
      if (created.created || !('blockedBy' in created)) break
      // a run guard of the config is full: wait for its holder (or give up at once)
      const { runId: holder, hold } = created.blockedBy
      if (options.wait === false) throw new GuardBusyError(hold, holder)
      if (waitingFor !== holder) {
        waitingFor = holder
        options.onWait?.({ guard: hold, runId: holder })
      }
      await clock.sleep(options.guardPollMs ?? 250, options.signal)
      now = clock.now()
    }
    return await executeRun(
      store,
      graph,
      plan,
      { runId, now, config, checks, pools, concurrency, clock, partition },
      options,
    )
  } finally {
    if (ownStore) await store.close()
  }
}

/** The partition a new run builds: the one asked for, or its parent's for a re-execution. */
function partitionOf(plan: Plan, asked: string | undefined): string | undefined {
  const inherited = plan.parent?.partitionKey ?? undefined
  if (asked !== undefined && inherited !== undefined && asked !== inherited) {
    throw new ConfigError(
      `run ${plan.parent!.id} built partition ${inherited}; its re-execution builds it again, not ${asked}: drop --partition, or start a new run of ${asked}.`,
    )
  }
  return asked ?? inherited
}

interface Started {
  runId: string
  now: number
  config: Record<string, unknown>
  checks: ResolvedChecks
  pools: Record<string, number>
  concurrency: number
  clock: Clock
  /** Steps settled before a pause, when resuming. */
  initial?: ConstructorParameters<typeof Execution>[0]['initial']
  partition?: RunPartition | undefined
}

/** Executes a run already recorded as started by this process, and closes (or pauses) it. */
async function executeRun(
  store: RunStore,
  graph: AssetGraph,
  plan: Plan,
  { runId, now, config, checks, pools, concurrency, clock, initial, partition }: Started,
  options: Omit<MaterializeOptions, 'store'>,
): Promise<MaterializeResult> {
  const reusedIds = Object.fromEntries([...plan.reused].map(([key, r]) => [key, r.runId]))
  const recorder = new RunRecorder(store, options.onEvent ? [options.onEvent] : [])
  recorder.emit({
    type: 'run:start',
    runId,
    ts: now,
    selection: plan.selection,
    steps: plan.keys,
    reused: reusedIds,
    parentRunId: plan.parent?.id ?? null,
    concurrency,
    ...(partition ? { partition: partition.key } : {}),
  })
  if (initial) {
    const pending = plan.keys.filter((key) => (initial.get(key)?.status ?? 'pending') === 'pending')
    recorder.emit({ type: 'run:resumed', runId, ts: now, steps: pending })
  }
  let execution: Execution
  let outcome: Awaited<ReturnType<Execution['run']>>
  try {
    execution = new Execution({
      runId,
      graph,
      plan: plan.keys,
      reused: new Map([...plan.reused].map(([key, r]) => [key, r.metadata])),
      ...(partition ? { partition } : {}),
      config,
      resources: options.resources ?? {},
      concurrency,
      pools,
      signal: options.signal,
      clock,
      random: options.random ?? Math.random,
      store,
      recorder,
      cancelPollMs: options.cancelPollMs ?? 250,
      initial,
      checks: checks.byAsset,
      checkConfig: checks.config,
      // a run resumed after a pause: the blocking checks that failed before it still fail it
      checksFailedBefore: initial
        ? (await store.checkResultsOfRun(runId)).filter((c) => !c.passed && stopsDownstream(c)).length
        : 0,
    })
    outcome = await execution.run()
    await recorder.flush()
  } catch (cause) {
    // the engine or the store failed (not an asset): close the run so that it is not left
    // `started`, then let the error go up as it is (a bug is reported as a bug, with its stack)
    await recorder.flush().catch(() => {})
    await store.finishRun(runId, 'failure', clock.now(), toErrorInfo(cause)).catch(() => {})
    throw cause
  }
  if (outcome.status === 'paused') await store.markPaused(runId, outcome.endedAt)
  else await store.finishRun(runId, outcome.status, outcome.endedAt)
  if (recorder.listenerError !== undefined) {
    throw new Error(`an onEvent listener threw during run ${runId}`, { cause: recorder.listenerError })
  }
  return {
    runId,
    status: outcome.status,
    parentRunId: plan.parent?.id ?? null,
    selection: plan.selection,
    partition: partition?.key ?? null,
    startedAt: outcome.startedAt,
    endedAt: outcome.endedAt,
    durationMs: outcome.endedAt - outcome.startedAt,
    steps: Object.fromEntries(outcome.steps.map((s) => [s.key, toStepResult(s)])),
    materializations: Object.fromEntries(
      outcome.steps
        .filter((s) => s.status === 'succeeded')
        .map((s) => [s.key, { runId, ts: s.endedAt!, attempt: s.attempts, metadata: s.metadata! }]),
    ),
    reused: Object.fromEntries(plan.reused),
    checks: outcome.checks.map((c) => ({
      asset: c.asset,
      check: c.check,
      partition: c.partitionKey,
      passed: c.passed,
      severity: c.severity,
      blocking: c.blocking,
      metadata: c.metadata,
      error: c.error,
    })),
    cancelReason: outcome.status === 'canceled' ? execution.cancelMessage : undefined,
  }
}

export interface LaunchOptions
  extends Omit<MaterializeOptions, 'store' | 'selection' | 'config' | 'fromFailure' | 'tags'> {
  store: RunStore
}

/**
 * Claims a queued run (requested by a sensor, a schedule or a command) for this process and
 * executes it with the plan and config it was requested with. Returns `undefined` when the run
 * cannot be claimed now: another process launched it, it was canceled, or its guard is full.
 */
export function launchRun(
  assets: readonly AssetDefinition[],
  runId: string,
  options: LaunchOptions,
): Promise<MaterializeResult | undefined> {
  return runRecorded(assets, runId, options, 'queued')
}

/**
 * Continues a paused run in this process: steps that settled before the pause keep their outcome
 * (their materializations feed their dependents), the pending ones run. Throws when the run is
 * not paused; returns `undefined` when maintenance mode holds it.
 */
export function resumeRun(
  assets: readonly AssetDefinition[],
  runId: string,
  options: LaunchOptions,
): Promise<MaterializeResult | undefined> {
  return runRecorded(assets, runId, options, 'paused')
}

/**
 * Executes a run recorded in the store (queued, or paused and resumed here): checked against the
 * assets defined now, claimed for this process, and run from the steps it has left (a paused run
 * queued again for a daemon keeps the steps it finished too).
 */
async function runRecorded(
  assets: readonly AssetDefinition[],
  runId: string,
  options: LaunchOptions,
  from: 'queued' | 'paused',
): Promise<MaterializeResult | undefined> {
  const graph = buildGraph(assets)
  const { store } = options
  const clock = options.clock ?? systemClock
  const run = await requireRun(store, runId)
  if (from === 'paused' && run.status !== 'paused') {
    throw new ConfigError(`run ${run.id} is ${run.status}; only a paused run can be resumed.`)
  }
  const { config, checks, pools, concurrency } = checkStoredRun(graph, run, options)
  const initial = await settledSteps(store, run.id)
  const now = clock.now()
  const owner = { pid: process.pid, host: hostname() }
  // checked before the run is claimed: a key that no longer exists leaves it queued, not stuck
  const partition = await runPartition(graph, run.plan, run.partitionKey ?? undefined, store, now)
  const claimed =
    from === 'queued'
      ? await store.claimQueuedRun(run.id, owner, now)
      : await store.claimPausedRun(run.id, owner, now)
  if (!claimed) return undefined
  return executeRun(
    store,
    graph,
    await storedPlan(store, run),
    { runId: run.id, now, config, checks, pools, concurrency, clock, initial, partition },
    options,
  )
}

/**
 * The steps of a recorded run that already settled (a run paused, then queued again to be resumed
 * by a daemon, or resumed here), with the metadata their dependents need; undefined when none did.
 */
async function settledSteps(store: RunStore, runId: string): Promise<Started['initial']> {
  const initial = new Map<
    string,
    Pick<StepState, 'status' | 'attempts' | 'startedAt' | 'endedAt' | 'error' | 'reason' | 'metadata'>
  >()
  for (const step of await store.getSteps(runId)) {
    if (step.status === 'pending') continue
    const metadata =
      step.status === 'succeeded' ? ((await store.runMaterialization(runId, step.key))?.metadata ?? {}) : null
    initial.set(step.key, { ...step, metadata })
  }
  return initial.size > 0 ? initial : undefined
}

/** Checks a recorded run against the assets defined now; its config, pools and concurrency. */
function checkStoredRun(graph: AssetGraph, run: RunRecord, options: LaunchOptions) {
  for (const key of run.plan) {
    if (!graph.has(key)) {
      throw new ConfigError(
        `run ${run.id} includes asset \`${key}\`, which is no longer defined in the config.`,
      )
    }
  }
  const config = resolveRunConfig(graph.assets, run.plan, run.config, (key) =>
    didYouMean(key, graph.assets.keys()),
  )
  return {
    config,
    checks: resolveChecks(graph, options.checks, config),
    pools: checkPools(graph, run.plan, options.pools ?? {}),
    concurrency: checkConcurrency(options.concurrency),
  }
}

/** The plan of a recorded run: its steps, what it reuses from its lineage, its parent. */
async function storedPlan(store: RunStore, run: RunRecord): Promise<Plan> {
  const reused = new Map<string, { runId: string; metadata: Metadata }>()
  for (const [key, from] of Object.entries(run.reused)) {
    const m = await store.runMaterialization(from, key)
    if (m) reused.set(key, { runId: from, metadata: m.metadata })
  }
  const parent = run.parentRunId === null ? undefined : await store.getRun(run.parentRunId)
  return { selection: run.selection, keys: run.plan, reused, parent }
}

function checkConcurrency(value: number | undefined): number {
  const concurrency = value ?? Math.max(4, availableParallelism())
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new ConfigError(`concurrency must be a whole number of at least 1, not ${String(value)}.`)
  }
  return concurrency
}

/** Checks the definitions and builds the graph (duplicates, missing deps, cycles). */
export function buildGraph(assets: readonly AssetDefinition[]): AssetGraph {
  if (!Array.isArray(assets)) {
    throw new ConfigError(
      'materialize() takes an array of assets made with asset({...}) as its first argument.',
    )
  }
  assets.forEach((a, i) => {
    const uncalled = uncalledFactory(a)
    if (uncalled) throw new ConfigError(`assets[${i}] ${uncalled}`)
    if (!isAssetDefinition(a)) {
      throw new ConfigError(`assets[${i}] is not an asset; make each one with asset({ key, materialize }).`)
    }
  })
  return AssetGraph.build(assets)
}

function planSelection(graph: AssetGraph, selection: string | readonly string[] | undefined): Plan {
  const text = selection === undefined ? '*' : typeof selection === 'string' ? selection : selection.join(',')
  return {
    selection: text,
    keys: graph.sort(resolveSelection(graph, text)),
    reused: new Map(),
    parent: undefined,
  }
}

/**
 * The plan to re-execute a run from failure: its selection, the steps to run again, and the
 * materializations reused from its lineage (for requests replayed after maintenance).
 */
export async function planFromFailure(
  store: RunStore,
  graph: AssetGraph,
  parentId: string,
  clock: Clock = systemClock,
): Promise<{ selection: string; keys: string[]; reused: Record<string, string>; parentRunId: string }> {
  const plan = await planReexecution(store, graph, parentId, clock)
  return {
    selection: plan.selection,
    keys: plan.keys,
    reused: Object.fromEntries([...plan.reused].map(([key, r]) => [key, r.runId])),
    parentRunId: plan.parent!.id,
  }
}

/**
 * Re-execution from failure: the parent's succeeded steps (and what the parent itself reused) are
 * not run again; their materializations feed the new run's steps as upstream metadata.
 */
async function planReexecution(
  store: RunStore,
  graph: AssetGraph,
  parentId: string,
  clock: Clock,
): Promise<Plan> {
  let parent = await requireRun(store, parentId)
  if (parent.status === 'started') {
    await store.recoverInterruptedRuns({ runIds: [parent.id], now: clock.now() })
    parent = (await store.getRun(parent.id))!
  }
  if (parent.status === 'success') {
    throw new ConfigError(
      `run ${parent.id} succeeded; there is nothing to re-execute. Start a new run instead.`,
    )
  }
  if (parent.status !== 'failure' && parent.status !== 'canceled') {
    throw new ConfigError(
      `run ${parent.id} is ${parent.status}; only a failed or canceled run can be re-executed from failure.`,
    )
  }
  const reused = new Map<string, { runId: string; metadata: Metadata }>()
  const candidates: Array<[string, string]> = Object.entries(parent.reused)
  for (const step of await store.getSteps(parent.id))
    if (step.status === 'succeeded') candidates.push([step.key, parent.id])
  const stopped = await stoppedByChecks(store, new Set(candidates.map(([, runId]) => runId)))
  for (const [key, runId] of candidates) {
    // a materialization a blocking check failed on is made again (and checked again): see below
    if (stopped.has(`${runId}\u0000${key}`)) continue
    const m = await store.runMaterialization(runId, key)
    // a materialization pruned since is simply run again
    if (m) reused.set(key, { runId, metadata: m.metadata })
  }
  const all = new Set([...parent.plan, ...Object.keys(parent.reused)])
  for (const key of all) {
    if (!graph.has(key)) {
      throw new ConfigError(
        `run ${parent.id} included asset \`${key}\`, which is no longer defined; restore it or start a new run.`,
      )
    }
  }
  const keys = graph.sort([...all].filter((key) => !reused.has(key)))
  if (keys.length === 0) {
    throw new ConfigError(`every step of run ${parent.id} already succeeded; there is nothing to re-execute.`)
  }
  return { selection: parent.selection, keys, reused, parent }
}

interface ResolvedChecks {
  byAsset: Map<string, CheckDefinition[]>
  /** Validated config of the checks that declare a schema, keyed `asset:name`. */
  config: Map<string, unknown>
}

/** The run's checks by asset, and their config validated from the run config's `checks`. */
function resolveChecks(
  graph: AssetGraph,
  checks: readonly CheckDefinition[] | undefined,
  config: Record<string, unknown>,
): ResolvedChecks {
  if (checks !== undefined && !Array.isArray(checks)) {
    throw new ConfigError('checks must be an array of asset checks made with assetCheck({...}).')
  }
  const byAsset = checksByAsset(checks ?? [], graph.assets)
  const raw = graph.has(CHECKS_CONFIG_KEY) ? undefined : config[CHECKS_CONFIG_KEY]
  return { byAsset, config: resolveCheckConfig(byAsset, raw) }
}

/**
 * Re-execution from failure and checks: a step whose materialization a blocking check failed on
 * succeeded, but its dependents never ran on it. Its materialization is not reused: the asset runs
 * again, and its checks with it, before anything downstream (the data is fixed upstream, or a
 * `--set` relaxed the check). Dagster re-runs only the check; running the asset again means a
 * check never passes on data made before the fix. Returns `runId\0asset` pairs.
 */
async function stoppedByChecks(store: RunStore, runIds: ReadonlySet<string>): Promise<Set<string>> {
  const out = new Set<string>()
  for (const runId of runIds) {
    for (const r of await store.checkResultsOfRun(runId)) {
      if (!r.passed && stopsDownstream(r)) out.add(`${runId}\u0000${r.asset}`)
    }
  }
  return out
}

function checkPools(
  graph: AssetGraph,
  keys: readonly string[],
  pools: Record<string, number>,
): Record<string, number> {
  for (const [name, limit] of Object.entries(pools)) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new ConfigError(
        `pool \`${name}\` has limit ${String(limit)}; a pool limit is a whole number of at least 1.`,
      )
    }
  }
  for (const key of keys) {
    const pool = graph.assets.get(key)!.pool
    if (pool !== undefined && pools[pool] === undefined) {
      throw new ConfigError(
        `asset \`${key}\` uses pool \`${pool}\`, which has no limit; set one with \`pools: { ${JSON.stringify(pool)}: 1 }\`.`,
      )
    }
  }
  return pools
}

function toStepResult(s: StepState): StepResult {
  const base: StepResultBase = {
    key: s.key,
    attempts: s.attempts,
    startedAt: s.startedAt,
    endedAt: s.endedAt,
    durationMs: s.startedAt !== null && s.endedAt !== null ? s.endedAt - s.startedAt : null,
  }
  switch (s.status) {
    case 'succeeded':
      return { ...base, status: 'succeeded', metadata: s.metadata ?? {} }
    case 'failed':
      return { ...base, status: 'failed', error: s.error! }
    case 'skipped': {
      const { upstream, check } = parseSkipReason(s.reason ?? '')
      return check === undefined
        ? { ...base, status: 'skipped', upstream }
        : { ...base, status: 'skipped', upstream, check }
    }
    case 'canceled':
      return { ...base, status: 'canceled' }
    default:
      return { ...base, status: s.status }
  }
}
