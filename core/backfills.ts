/**
 * Backfills: a persisted request to materialize a set of partitions of a selection, one run per
 * partition, submitted as capacity frees.
 *
 * `requestBackfill` checks the request (the selection's assets share one partitions definition,
 * the keys exist) and records it. `advanceBackfill` is one step of driving it, called by the
 * daemon on every loop (so it reacts to run ends within a loop, not in waves):
 *   1. folds the run ends since its cursor into its subsets (succeeded, failed);
 *   2. when canceling, dequeues its queued runs and asks its started ones to cancel, then ends;
 *   3. marks skipped the partitions that need a partition that failed (through the partition
 *      mappings between the selection's assets, e.g. a chain where each day reads the day before);
 *   4. creates runs for the next partitions whose needs are met, while its `maxRuns`, the run
 *      guards and maintenance mode allow: each run with its partition marked launched in one
 *      transaction (`submitBackfillRun`), with the partition key as run key under the origin
 *      `backfill:<id>`, so a crash at any point never launches a partition twice;
 *   5. ends when every partition is succeeded, failed or skipped and none is in flight:
 *      `completed`, or `failed` when some did not succeed.
 * The runs are queued runs, launched by the daemon like any other.
 */
import { resolveRunConfig } from './definitions.js'
import { ConfigError, didYouMean, StoreError } from './errors.js'
import type { AssetGraph } from './graph.js'
import type { RunGuardConfig } from './guards.js'
import { holdsFor } from './guards.js'
import { newRunId } from './ids.js'
import { planFromFailure } from './materialize.js'
import { keySubsetOrUndefined, partitionsContext, rangeKey } from './partition-runs.js'
import { partitionStatus } from './partition-status.js'
import type { PartitionsContext, PartitionsDefinition } from './partitions/definitions.js'
import { PartitionSubset } from './partitions/subset.js'
import { resolveSelection } from './selection.js'
import type { RunStore } from './store/run-store.js'
import type { BackfillRecord, BackfillState, NewRun } from './store/types.js'

/** The tag that names a run's backfill. */
export const BACKFILL_TAG = 'refresh/backfill'

export interface BackfillRequest {
  /** Which assets each run materializes (they share one partitions definition). */
  selection?: string | readonly string[]
  /** The first and last partition keys (both included). */
  from?: string
  to?: string
  /** These partition keys (instead of, or within, `from`..`to`). */
  partitions?: readonly string[]
  /** Only the partitions that some asset of the selection is missing (or failed). */
  missingOnly?: boolean
  /** Runs of this backfill in flight at once (default: no limit of its own; guards and the daemon's --max-runs still apply). */
  maxRuns?: number
  /**
   * Partitions per run (default 1): each run then builds a range of consecutive partitions, which
   * its assets receive in `ctx.partition.range`. Capped by each asset's `backfillPolicy`.
   */
  perRun?: number
  config?: Record<string, unknown>
  tags?: Record<string, string>
}

/** The definition the selection's assets share, or a `ConfigError` saying why there is none. */
function sharedDefinition(graph: AssetGraph, plan: readonly string[]): PartitionsDefinition {
  const unpartitioned = plan.filter((k) => !graph.assets.get(k)!.partitions)
  if (unpartitioned.length > 0) {
    throw new ConfigError(
      `a backfill runs partitions, but ${unpartitioned.map((k) => `\`${k}\``).join(', ')} ${unpartitioned.length === 1 ? 'is' : 'are'} not partitioned: select only partitioned assets (and run the others once after it, \`refresh run\`).`,
    )
  }
  const first = graph.assets.get(plan[0]!)!
  const definition = first.partitions!
  const other = plan
    .map((k) => graph.assets.get(k)!)
    .find((a) => a.partitions!.signature !== definition.signature)
  if (other) {
    throw new ConfigError(
      `a backfill's runs each build one partition, but \`${first.key}\` has ${definition.describe()} and \`${other.key}\` has ${other.partitions!.describe()}: backfill them separately.`,
    )
  }
  return definition
}

/** Checks a backfill request and records it (status `requested`); the daemon then drives it. */
export async function requestBackfill(
  store: RunStore,
  graph: AssetGraph,
  request: BackfillRequest,
  now: number,
): Promise<BackfillRecord> {
  const text =
    request.selection === undefined
      ? '*'
      : typeof request.selection === 'string'
        ? request.selection
        : request.selection.join(',')
  const plan = graph.sort(resolveSelection(graph, text))
  if (plan.length === 0) throw new ConfigError(`the selection \`${text}\` has no asset to backfill.`)
  const definition = sharedDefinition(graph, plan)
  const ctx = await partitionsContext(store, [definition], now)
  if ((request.from === undefined) !== (request.to === undefined)) {
    throw new ConfigError(
      'give both --from and --to (the first and the last partition, both included), or neither.',
    )
  }
  let target =
    request.from !== undefined
      ? definition.subsetBetween(request.from, request.to!, ctx)
      : definition.all(ctx)
  if (request.partitions !== undefined) {
    const named = definition.subsetOf(request.partitions, ctx)
    target = request.from !== undefined ? target.intersect(named) : named
  }
  if (request.missingOnly) {
    let wanted = PartitionSubset.empty
    for (const key of plan) {
      const status = await partitionStatus(store, graph, key, now)
      wanted = wanted.union(status.subsets.missing).union(status.subsets.failed)
    }
    target = target.intersect(wanted)
  }
  if (target.isEmpty) {
    throw new ConfigError(
      `nothing to backfill: no partition of ${definition.describe()} matches${request.missingOnly ? ' (--missing-only: every one is materialized)' : ''}.`,
    )
  }
  if (request.maxRuns !== undefined && (!Number.isSafeInteger(request.maxRuns) || request.maxRuns < 1)) {
    throw new ConfigError(`--max-runs ${String(request.maxRuns)}: expected a whole number of at least 1.`)
  }
  if (request.perRun !== undefined && (!Number.isSafeInteger(request.perRun) || request.perRun < 1)) {
    throw new ConfigError(`--per-run ${String(request.perRun)}: expected a whole number of at least 1.`)
  }
  const caps = plan.flatMap((k) => {
    const policy = graph.assets.get(k)!.backfillPolicy
    return policy ? [policy.maxPartitionsPerRun] : []
  })
  const perRun = Math.min(request.perRun ?? (caps.length > 0 ? Number.POSITIVE_INFINITY : 1), ...caps)
  const config = resolveRunConfig(graph.assets, plan, request.config, (key) =>
    didYouMean(key, graph.assets.keys()),
  )
  const id = newRunId(now)
  return store.createBackfill({
    id,
    status: 'requested',
    spec: {
      selection: text,
      plan,
      partitions: { signature: definition.signature, description: definition.describe() },
      perRun,
      maxRuns: request.maxRuns ?? null,
      config,
      tags: request.tags ?? {},
    },
    state: {
      target: target.toJSON(),
      launched: [],
      succeeded: [],
      failed: [],
      skipped: [],
      // run ends before the backfill are not its own
      cursor: await store.maxEventId(),
    },
    version: 1,
    createdAt: now,
    updatedAt: now,
    endedAt: null,
  })
}

/** A backfill's subsets, decoded. */
export interface BackfillProgress {
  target: PartitionSubset
  launched: PartitionSubset
  succeeded: PartitionSubset
  failed: PartitionSubset
  skipped: PartitionSubset
  /** Launched and not ended yet. */
  inFlight: PartitionSubset
}

export function backfillProgress(state: BackfillState): BackfillProgress {
  const target = PartitionSubset.fromJSON(state.target)
  const launched = PartitionSubset.fromJSON(state.launched)
  const succeeded = PartitionSubset.fromJSON(state.succeeded)
  const failed = PartitionSubset.fromJSON(state.failed)
  const skipped = PartitionSubset.fromJSON(state.skipped)
  return {
    target,
    launched,
    succeeded,
    failed,
    skipped,
    inFlight: launched.difference(succeeded).difference(failed),
  }
}

function encode(
  p: Omit<BackfillProgress, 'inFlight'>,
  cursor: number,
  resume: readonly string[] = [],
): BackfillState {
  return {
    ...(resume.length > 0 ? { resume: [...resume] } : {}),
    target: p.target.toJSON(),
    launched: p.launched.toJSON(),
    succeeded: p.succeeded.toJSON(),
    failed: p.failed.toJSON(),
    skipped: p.skipped.toJSON(),
    cursor,
  }
}

export interface AdvanceOptions {
  guards?: readonly RunGuardConfig[]
  /** At most this many runs created by this call (the daemon's own limit); default 500. */
  maxNew?: number
}

export interface AdvanceResult {
  backfill: BackfillRecord
  /** Runs created by this call. */
  created: string[]
  /** Why no more runs were created, when something held them back (a guard, maintenance). */
  blocked?: string
}

/** The tag that counts a partition's runs in a backfill (1, then 2 for a re-execution after an interruption...). */
const ATTEMPT_TAG = 'refresh/backfill-attempt'
/** Runs of one partition at most when crashes interrupt them. */
const MAX_RESUMES = 3

/** A run that ended failed because its process died (recovered as interrupted), not because an asset failed. */
function interrupted(run: { status: string; error: { name: string } | null }): boolean {
  return run.status === 'failure' && run.error?.name === 'InterruptedError'
}

/** Runs created per call at most, so that one call stays short (the next call goes on). */
const MAX_NEW = 500

/** Runs ended per read while folding. */
const FOLD_BATCH = 1_000

/** One step of driving a backfill (see the file comment). Safe to call from several processes. */
export async function advanceBackfill(
  store: RunStore,
  graph: AssetGraph,
  id: string,
  now: number,
  options: AdvanceOptions = {},
): Promise<AdvanceResult> {
  let backfill = await store.getBackfill(id)
  if (!backfill) throw new StoreError(`no backfill \`${id}\` in ${store.displayName}.`)
  if (backfill.status !== 'requested' && backfill.status !== 'canceling') return { backfill, created: [] }
  const definition = definitionOf(graph, backfill)
  if (typeof definition === 'string') {
    return { backfill: await finish(store, backfill, 'failed', now, definition), created: [] }
  }
  const ctx = await partitionsContext(store, [definition], now)
  let progress = backfillProgress(backfill.state)
  let cursor = backfill.state.cursor
  // runs a crash interrupted (their process died: a daemon killed, a host lost), to re-execute
  const resume = [...(backfill.state.resume ?? [])]

  // 1. run ends since the cursor
  fold: for (;;) {
    const ends = await store.runEndsAfter(cursor, FOLD_BATCH)
    for (const end of ends) {
      const run = await store.getRun(end.runId)
      // its `run:end` event is written a moment before its status: folded at the next step, in order
      if (run && (run.status === 'queued' || run.status === 'started' || run.status === 'paused')) break fold
      cursor = end.eventId
      if (!run || run.tags[BACKFILL_TAG] !== id || run.partitionKey === null) continue
      // one partition, or the range of a run of several
      const built = keySubsetOrUndefined(definition, run.partitionKey, ctx)
      if (built === undefined) continue
      if (run.status === 'success') progress = { ...progress, succeeded: progress.succeeded.union(built) }
      else if (interrupted(run) && backfill.status === 'requested') resume.push(run.id)
      else progress = { ...progress, failed: progress.failed.union(built) }
    }
    if (ends.length < FOLD_BATCH) break
  }
  progress = {
    ...progress,
    inFlight: progress.launched.difference(progress.succeeded).difference(progress.failed),
  }

  // 2. canceling: nothing new; what is queued is dequeued, what runs is asked to stop
  if (backfill.status === 'canceling') {
    const live = await stopRuns(store, id, now)
    if (live.length === 0 || live.every((r) => r.status !== 'started')) {
      // the dequeued runs' ends are folded on the next step: count them canceled now
      let failed = progress.failed
      for (const r of live) {
        const dequeued =
          r.partitionKey === null ? undefined : keySubsetOrUndefined(definition, r.partitionKey, ctx)
        if (dequeued) failed = failed.union(dequeued)
      }
      const skipped = progress.target.difference(progress.launched).union(progress.skipped)
      const next = { ...backfill, state: encode({ ...progress, failed, skipped }, cursor) }
      return { backfill: await finish(store, next, 'canceled', now), created: [] }
    }
    await save(store, backfill, encode(progress, cursor), now)
    return { backfill: (await store.getBackfill(id))!, created: [] }
  }

  // 3. partitions that need a partition that failed (or was skipped) are skipped, transitively
  const needs = dependencyNeeds(graph, backfill.spec.plan, definition, ctx)
  const notLaunched = () => progress.target.difference(progress.launched).difference(progress.skipped)
  for (let changed = true; changed; ) {
    changed = false
    const bad = progress.failed.union(progress.skipped)
    if (bad.isEmpty) break
    for (const [start, end] of notLaunched().ranges()) {
      for (let i = start; i < end; i++) {
        if (!needs(i).intersect(bad).isEmpty) {
          progress = { ...progress, skipped: progress.skipped.add(i) }
          changed = true
        }
      }
    }
  }

  // 4. new runs while there is room
  const created: string[] = []
  let blocked: string | undefined
  const room = Math.min(
    backfill.spec.maxRuns === null
      ? Number.POSITIVE_INFINITY
      : backfill.spec.maxRuns - (await liveRuns(store, id)).length,
    options.maxNew ?? MAX_NEW,
  )
  const holds = holdsFor(graph, options.guards ?? [], backfill.spec.plan)
  let version = backfill.version
  let stateBefore = backfill.state
  let stale = false
  const record = backfill
  /**
   * Creates one run with the backfill's next state (one transaction): true when it was created;
   * false when it was held back (`blocked` says why) or the backfill changed meanwhile (`stale`).
   */
  const submit = async (
    state: BackfillState,
    run: Omit<NewRun, 'id' | 'status' | 'origin' | 'holds' | 'now'>,
  ) => {
    const runId = newRunId(now)
    const outcome = await store.submitBackfillRun(
      { ...record, state },
      version,
      { ...run, id: runId, status: 'queued', origin: `backfill:${id}`, holds, now },
      now,
    )
    if (outcome.outcome === 'stale') stale = true
    if (outcome.outcome === 'blocked') blocked = outcome.reason
    if (outcome.outcome !== 'created') return false
    created.push(runId)
    version = outcome.version
    stateBefore = state
    return true
  }
  // the interrupted runs first: each re-executed from failure once more (a new run of the same
  // partition whose parent is the interrupted one), at most MAX_RESUMES times per partition
  while (resume.length > 0 && created.length < room) {
    const parentId = resume[0]!
    const parent = (await store.getRun(parentId))!
    const attempt = Number(parent.tags[ATTEMPT_TAG] ?? '1')
    if (attempt >= MAX_RESUMES) {
      resume.shift()
      const built = keySubsetOrUndefined(definition, parent.partitionKey!, ctx) ?? PartitionSubset.empty
      progress = { ...progress, failed: progress.failed.union(built) }
      continue
    }
    const plan = await planFromFailure(store, graph, parentId)
    const made = await submit(encode(progress, cursor, resume.slice(1)), {
      runKey: `${parent.partitionKey}#${attempt + 1}`,
      selection: plan.selection,
      plan: plan.keys,
      reused: plan.reused,
      parentRunId: parentId,
      rootRunId: parent.rootRunId ?? parentId,
      config: parent.config,
      tags: { ...parent.tags, [ATTEMPT_TAG]: String(attempt + 1) },
      partitionKey: parent.partitionKey!,
    })
    if (stale) return { backfill: (await store.getBackfill(id))!, created }
    if (!made) break
    resume.shift()
  }
  // the next runs: up to `perRun` consecutive partitions each, whose needs outside the run are met
  const waiting = (i: number, chunk: PartitionSubset) =>
    !needs(i).intersect(progress.target).difference(progress.succeeded).difference(chunk).isEmpty
  outer: for (const [start, end] of blocked ? [] : notLaunched().ranges()) {
    for (let i = start; i < end && created.length < room; ) {
      if (waiting(i, PartitionSubset.empty)) {
        i++
        continue
      }
      let last = i
      while (
        last + 1 < end &&
        last + 1 - i + 1 <= backfill.spec.perRun &&
        !waiting(last + 1, PartitionSubset.range(i, last + 1))
      ) {
        last++
      }
      const chunk = PartitionSubset.range(i, last + 1)
      const key = rangeKey(definition.keyAt(i, ctx), definition.keyAt(last, ctx))
      const next = { ...progress, launched: progress.launched.union(chunk) }
      const made = await submit(encode(next, cursor, resume), {
        runKey: key,
        selection: backfill.spec.selection,
        plan: backfill.spec.plan,
        config: backfill.spec.config,
        tags: { ...backfill.spec.tags, [BACKFILL_TAG]: id },
        partitionKey: key,
      })
      if (stale) return { backfill: (await store.getBackfill(id))!, created }
      if (!made) break outer
      progress = next
      i = last + 1
    }
    if (created.length >= room) break
  }
  backfill = { ...backfill, version }
  progress = {
    ...progress,
    inFlight: progress.launched.difference(progress.succeeded).difference(progress.failed),
  }

  // 5. the end: every partition succeeded, failed or skipped, none in flight
  const settled = progress.succeeded.union(progress.failed).union(progress.skipped)
  if (progress.inFlight.isEmpty && resume.length === 0 && settled.containsAll(progress.target)) {
    const ok = progress.failed.isEmpty && progress.skipped.isEmpty
    const next = { ...backfill, state: encode(progress, cursor) }
    return { backfill: await finish(store, next, ok ? 'completed' : 'failed', now), created }
  }
  // saved only when something changed (run ends folded, partitions skipped) beyond the runs' own saves
  const stored = created.length > 0 ? stateBefore : backfill.state
  const state = encode(progress, cursor, resume)
  if (JSON.stringify(stored) !== JSON.stringify(state)) await save(store, backfill, state, now)
  return { backfill: (await store.getBackfill(id))!, created, ...(blocked ? { blocked } : {}) }
}

/** Asks a backfill to cancel: no new run; its queued runs are dequeued and its started ones canceled by the daemon. */
export async function cancelBackfill(store: RunStore, id: string, now: number): Promise<BackfillRecord> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const backfill = await store.findBackfill(id)
    if (!backfill)
      throw new StoreError(`no backfill \`${id}\` in ${store.displayName}; \`refresh backfills\` lists them.`)
    if (backfill.status !== 'requested') return backfill
    if (await store.saveBackfill({ ...backfill, status: 'canceling' }, backfill.version, now)) {
      // the queued runs go at once, whoever drives the backfill; the started ones are asked to stop
      await stopRuns(store, backfill.id, now)
      return (await store.getBackfill(backfill.id))!
    }
  }
  throw new StoreError(`backfill ${id} kept changing while being canceled; try again.`)
}

/**
 * A new backfill of what a backfill did not get done: its failed, skipped and never-launched
 * partitions (the ones that succeeded are not run again).
 */
export async function retryBackfill(
  store: RunStore,
  graph: AssetGraph,
  id: string,
  now: number,
): Promise<BackfillRecord> {
  const backfill = await store.findBackfill(id)
  if (!backfill)
    throw new StoreError(`no backfill \`${id}\` in ${store.displayName}; \`refresh backfills\` lists them.`)
  if (backfill.status === 'requested' || backfill.status === 'canceling') {
    throw new ConfigError(`backfill ${backfill.id} is still ${backfill.status}; retry it once it has ended.`)
  }
  const definition = definitionOf(graph, backfill)
  if (typeof definition === 'string') throw new ConfigError(definition)
  const progress = backfillProgress(backfill.state)
  const left = progress.target.difference(progress.succeeded)
  if (left.isEmpty)
    throw new ConfigError(`backfill ${backfill.id} has nothing left to retry: every partition succeeded.`)
  const ctx = await partitionsContext(store, [definition], now)
  return requestBackfill(
    store,
    graph,
    {
      selection: backfill.spec.selection,
      partitions: definition.keysOf(left, ctx),
      ...(backfill.spec.maxRuns === null ? {} : { maxRuns: backfill.spec.maxRuns }),
      perRun: backfill.spec.perRun,
      config: backfill.spec.config,
      tags: { ...backfill.spec.tags, 'refresh/retry-of': backfill.id },
    },
    now,
  )
}

/** The definition a backfill's subsets are over, or why it no longer exists as it was. */
function definitionOf(graph: AssetGraph, backfill: BackfillRecord): PartitionsDefinition | string {
  const missing = backfill.spec.plan.find((k) => !graph.has(k))
  if (missing) return `asset \`${missing}\` of backfill ${backfill.id} is no longer defined in the config.`
  const definition = graph.assets.get(backfill.spec.plan[0]!)!.partitions
  if (!definition || definition.signature !== backfill.spec.partitions.signature) {
    return `the partitions of \`${backfill.spec.plan[0]}\` changed since backfill ${backfill.id} was requested (it was over ${backfill.spec.partitions.description}).`
  }
  return definition
}

/**
 * The partitions (of the shared definition) that partition `i` needs from other runs: through
 * each mapping between the selection's assets that is not identity (a self-dependency on earlier
 * partitions, a window over several), the partitions other than `i` itself.
 */
function dependencyNeeds(
  graph: AssetGraph,
  plan: readonly string[],
  definition: PartitionsDefinition,
  ctx: PartitionsContext,
): (i: number) => PartitionSubset {
  const inPlan = new Set(plan)
  const mappings = plan.flatMap((key) =>
    graph.assets
      .get(key)!
      .deps.filter((dep) => inPlan.has(dep))
      .flatMap((dep) => {
        const mapping = graph.partitionMapping(key, dep)
        return mapping && (mapping.kind !== 'identity' || dep === key) ? [mapping] : []
      }),
  )
  return (i) => {
    let needed = PartitionSubset.empty
    for (const m of mappings) {
      needed = needed.union(m.upstreamFor(PartitionSubset.range(i, i + 1), definition, definition, ctx))
    }
    return needed.remove(i)
  }
}

/** What a backfill's runs are doing now, beyond its subsets: what the terminal panel shows. */
export interface BackfillActivity {
  /** Partitions in flight whose run has started (or is paused). */
  running: number
  /** Partitions in flight whose run is queued (created, not launched yet). */
  queued: number
  /** Its most recently created runs, newest first. */
  recent: Array<{ runId: string; partitionKey: string | null; status: string; createdAt: number }>
}

/**
 * Splits a backfill's partitions in flight into running and queued (from its live runs, a run of
 * several partitions counting each of them), and lists its latest runs. Two store reads: its live
 * runs, and the newest runs of the store (of which those of this backfill are kept, at most
 * `recent`). The split follows the backfill's own `inFlight` subset: `queued` is capped by it and
 * `running` is the rest, so the counts always add up to the backfill's total.
 */
export async function backfillActivity(
  store: RunStore,
  graph: AssetGraph,
  backfill: BackfillRecord,
  now: number,
  recent = 8,
): Promise<BackfillActivity> {
  const inFlight = backfillProgress(backfill.state).inFlight.size
  const live = await liveRuns(store, backfill.id)
  const definition = definitionOf(graph, backfill)
  const ctx = typeof definition === 'string' ? undefined : await partitionsContext(store, [definition], now)
  const size = (key: string | null) =>
    key === null || typeof definition === 'string' || !ctx
      ? 1
      : (keySubsetOrUndefined(definition, key, ctx)?.size ?? 1)
  let queued = 0
  for (const run of live) if (run.status === 'queued') queued += size(run.partitionKey)
  queued = Math.min(queued, inFlight)
  const newest = (await store.listRuns({ limit: Math.max(50, recent * 4) }))
    .filter((r) => r.tags[BACKFILL_TAG] === backfill.id)
    .slice(0, recent)
  return {
    running: inFlight - queued,
    queued,
    recent: newest.map((r) => ({
      runId: r.id,
      partitionKey: r.partitionKey,
      status: r.status,
      createdAt: r.createdAt,
    })),
  }
}

/** The runs of backfill `id` not ended yet (queued, started or paused). */
async function liveRuns(store: RunStore, id: string) {
  return (await store.listRuns({ status: ['queued', 'started', 'paused'] })).filter(
    (r) => r.tags[BACKFILL_TAG] === id,
  )
}

/**
 * Stops a canceled backfill's runs: the queued (and paused) ones are dequeued, the started ones
 * asked to cancel. Returns them as they were.
 */
async function stopRuns(store: RunStore, id: string, now: number) {
  const live = await liveRuns(store, id)
  // the queued ones in a few transactions (hundreds at a time), not one each
  const queued = live.filter((run) => run.status === 'queued').map((run) => run.id)
  for (let i = 0; i < queued.length; i += STOP_BATCH) {
    await store.abandonRuns(queued.slice(i, i + STOP_BATCH), 'canceled', `backfill ${id} was canceled`, now)
  }
  // started ones are asked to stop (their owner cancels them); a paused one is canceled at once
  for (const run of live) if (run.status !== 'queued') await store.requestCancel(run.id, now)
  return live
}

/** Queued runs of a canceled backfill closed per transaction. */
const STOP_BATCH = 500

async function save(
  store: RunStore,
  backfill: BackfillRecord,
  state: BackfillState,
  now: number,
): Promise<void> {
  // a lost race is fine: whoever saved folded the same run ends
  await store.saveBackfill({ ...backfill, state }, backfill.version, now)
}

async function finish(
  store: RunStore,
  backfill: BackfillRecord,
  status: 'completed' | 'failed' | 'canceled',
  now: number,
  reason?: string,
): Promise<BackfillRecord> {
  const state = reason === undefined ? backfill.state : { ...backfill.state, error: reason }
  await store.saveBackfill({ ...backfill, status, state, endedAt: now }, backfill.version, now)
  return (await store.getBackfill(backfill.id))!
}
