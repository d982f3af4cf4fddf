/**
 * The automation evaluator: one tick reads what changed since its cursor (materializations and
 * failed steps, check results, the steps in flight, active backfills) in a bounded number of
 * batched store reads whatever the number of assets, folds it into each asset's state, evaluates
 * only the assets something changed for, and commits the requests of what is true with the new
 * states, the kept evaluations and the cursor in one store transaction (`commitAutomationTick`):
 * a crash before the commit leaves nothing, after it the requests and their marks are both in, so
 * a restart never requests twice nor loses a trigger. The commit is compare-and-set on the tick
 * number: of two evaluators, one commits; the other reloads.
 */
import { createHash } from 'node:crypto'
import { type AutomationCondition, conditionNodes, cronId } from '../../core/automation.js'
import type { Clock } from '../../core/clock.js'
import { type CronSpec, lastTicks, nextTicks, parseCron } from '../../core/cron.js'
import { resolveRunConfig } from '../../core/definitions.js'
import { didYouMean } from '../../core/errors.js'
import type { AssetGraph } from '../../core/graph.js'
import { holdsFor, type RunGuardConfig } from '../../core/guards.js'
import { newRunId } from '../../core/ids.js'
import { dynamicNames, keySubsetOrUndefined, partitionsContext, rangeKey } from '../../core/partition-runs.js'
import type { PartitionsContext, PartitionsDefinition } from '../../core/partitions/definitions.js'
import { allPartitionsMapping } from '../../core/partitions/mapping.js'
import { PartitionSubset } from '../../core/partitions/subset.js'
import type { RunStore } from '../../core/store/run-store.js'
import type {
  AutomationCursor,
  AutomationStatus,
  AutomationTick,
  RequestOutcome,
  RunRequest,
} from '../../core/store/types.js'
import { type DepView, evaluateCondition, type NodeValue } from './evaluate.js'
import { type AssetState, emptyState, parseState, serializeState } from './state.js'

/** Run requests of automation carry this origin (run keys are unique per origin). */
export const AUTOMATION_ORIGIN = 'automation'
/** The tag a run requested by automation carries: the tick that requested it. */
export const AUTOMATION_TAG = 'refresh/automation'
/** Events and check results folded per store read. */
const BATCH = 5_000
/** At most this many runs requested by one tick; what is left is requested by the next ones. */
export const MAX_REQUESTS_PER_TICK = 1_000
const YEAR = 366 * 24 * 3_600_000

export interface AutomationOptions {
  store: RunStore
  graph: AssetGraph
  /** The run config of the config file, as runs get it. */
  runConfig: Record<string, Record<string, unknown>>
  guards?: readonly RunGuardConfig[]
  /** The names of each asset's checks (for `checksPassed()`). */
  checks?: ReadonlyMap<string, readonly string[]>
  clock: Clock
  maxRequestsPerTick?: number
}

/** A run a tick requested, and what became of it. */
export interface AutomationRequest {
  assets: string[]
  partitionKey: string | null
  runKey: string
  outcome: RequestOutcome
}

export interface AutomationTickResult {
  /** The tick committed, or undefined when nothing changed (nothing was written). */
  tick: number | undefined
  /** Assets whose condition was evaluated this tick. */
  evaluated: number
  /** Events and check results folded. */
  folded: number
  requests: AutomationRequest[]
  /** Another evaluator committed first: this one reloads and evaluates at its next tick. */
  conflict?: boolean
}

/**
 * Whether an automated asset's condition is evaluated: the global switch off stops every asset
 * (a deploy, an incident); otherwise an asset is on unless switched off itself.
 */
export function switchedOn(
  automated: boolean,
  global: AutomationStatus,
  own: AutomationStatus | undefined,
): boolean {
  return automated && global !== 'off' && own !== 'off'
}

interface Entry {
  key: string
  definition: PartitionsDefinition | undefined
  condition: AutomationCondition | undefined
  /** Automated assets this one is a dep of (itself, when it reads its own earlier partitions). */
  downstream: string[]
  crons: Array<{ id: string; spec: CronSpec }>
}

export class AutomationEvaluator {
  private readonly o: AutomationOptions
  private readonly entries = new Map<string, Entry>()
  private loaded = false
  private cursor: AutomationCursor | null = null
  private states = new Map<string, AssetState>()
  private global: AutomationStatus = 'default'
  private switches = new Map<string, AutomationStatus>()
  private readonly lastInFlight = new Map<string, string>()
  private readonly lastSize = new Map<string, number>()
  /** Each tracked asset's key-space version, valid for the dynamic removals `versionsFor`. */
  private readonly versions = new Map<string, string>()
  private versionsFor = ''
  /** Assets to evaluate at the next tick whatever changes (a request a guard skipped, one over the cap). */
  private readonly retry = new Set<string>()
  private readonly cronTicks = new Map<string, { latest: number; next: number }>()
  private readonly guardHolds = new Map<string, ReturnType<typeof holdsFor>>()
  /** The automated assets and their deps: what a tick folds and evaluates (fixed by the config). */
  private readonly tracked: readonly Entry[]
  /** Whether a condition reads check results (only then does a tick read them). */
  private readonly readsChecks: boolean

  constructor(options: AutomationOptions) {
    this.o = options
    const { graph } = options
    for (const [key, def] of graph.assets) {
      const crons = new Map<string, CronSpec>()
      for (const node of def.automation ? conditionNodes(def.automation) : []) {
        if (node.cron) crons.set(cronId(node.cron), parseCron(node.cron.expression, node.cron.timezone))
      }
      this.entries.set(key, {
        key,
        definition: def.partitions,
        condition: def.automation,
        downstream: [],
        crons: [...crons].map(([id, spec]) => ({ id, spec })),
      })
    }
    for (const [key, def] of graph.assets) {
      if (!def.automation) continue
      for (const dep of def.deps) this.entries.get(dep)!.downstream.push(key)
    }
    this.tracked = [...this.entries.values()].filter((e) => e.condition || e.downstream.length > 0)
    this.readsChecks = this.tracked.some(
      (e) => e.condition && conditionNodes(e.condition).some((n) => n.kind === 'checks_passed'),
    )
  }

  /** Whether the config automates any asset. */
  get active(): boolean {
    return this.tracked.length > 0
  }

  private automatedOn(e: Entry): boolean {
    return switchedOn(e.condition !== undefined, this.global, this.switches.get(e.key))
  }

  /** One tick (see the file comment). */
  async tick(): Promise<AutomationTickResult> {
    const { store, graph, clock } = this.o
    const now = clock.now()
    const dirty = new Set<string>(this.retry)
    this.retry.clear()
    if (!this.loaded) {
      const saved = await store.automationState()
      this.cursor = saved.cursor
      this.global = saved.status
      this.switches = new Map(
        saved.assets.filter((a) => a.status !== 'default').map((a) => [a.asset, a.status]),
      )
      this.states = new Map()
      for (const row of saved.assets) {
        const state = parseState(row.state)
        if (state) this.states.set(row.asset, state)
      }
      this.lastInFlight.clear()
      this.lastSize.clear()
      this.loaded = true
      for (const e of this.entries.values()) if (e.condition) dirty.add(e.key)
    } else {
      const switches = await store.automationSwitches()
      const next = new Map(Object.entries(switches.assets))
      for (const e of this.entries.values()) {
        const before = this.automatedOn(e)
        const after = switchedOn(e.condition !== undefined, switches.status, next.get(e.key))
        if (before !== after) dirty.add(e.key)
      }
      this.global = switches.status
      this.switches = next
    }
    const { tracked } = this
    const tickNo = (this.cursor?.tick ?? 0) + 1
    const changed = new Set<string>()
    const definitions = tracked.flatMap((e) => (e.definition ? [e.definition] : []))
    const ctx = await partitionsContext(store, definitions, now)
    // key spaces: a definition or a dynamic removal changed resets what was kept over the old one
    const removals = new Map<string, number>()
    for (const name of new Set(definitions.flatMap(dynamicNames))) {
      removals.set(name, await store.dynamicPartitionsVersion(name))
    }
    const sizes = new Map<string, number>()
    for (const e of tracked) sizes.set(e.key, e.definition ? this.sizeOf(e.definition, ctx) : 1)
    const fresh = this.cursor === null
    // the versions change only with a dynamic removal: computed again only then
    const removalsKey = JSON.stringify([...removals])
    if (removalsKey !== this.versionsFor) {
      this.versions.clear()
      this.versionsFor = removalsKey
    }
    for (const e of tracked) {
      let version = this.versions.get(e.key)
      if (version === undefined) {
        version = this.versionOf(e, removals)
        this.versions.set(e.key, version)
      }
      const state = this.states.get(e.key)
      if (state && state.version === version) continue
      changed.add(e.key)
      dirty.add(e.key)
      // a first tick folds every event from the start; an asset seen later reads its history once
      const next = emptyState(version, now)
      if (!fresh) next.materialized = await this.materializedSoFar(e, ctx)
      this.states.set(e.key, next)
    }
    // cron ticks: a new tick starts a new round of what was handled and what updated since
    for (const e of tracked) {
      if (!e.condition) continue
      const state = this.states.get(e.key)!
      for (const { id, spec } of e.crons) {
        const latest = this.latestTick(id, spec, now)
        const current = state.crons.get(id)
        if (current && current.tick === latest) continue
        state.crons.set(id, { tick: latest, handled: PartitionSubset.empty, deps: new Map() })
        changed.add(e.key)
        dirty.add(e.key)
      }
    }
    // what was materialized or failed since the cursor
    let eventId = this.cursor?.eventId ?? 0
    let folded = 0
    const newly = new Map<string, PartitionSubset>()
    for (;;) {
      const events = await store.partitionEvents(eventId, null, BATCH)
      for (const ev of events) {
        eventId = ev.id
        const e = this.entries.get(ev.asset)
        const state = this.states.get(ev.asset)
        if (!e || !state) continue
        folded++
        const subset = this.subsetOf(e, ev.partitionKey, ctx)
        if (!subset) continue
        // a failed step changes no state: it ends something in progress (read below)
        dirty.add(e.key)
        if (ev.kind !== 'materialized') continue
        changed.add(e.key)
        state.materialized = state.materialized.union(subset)
        state.requested = state.requested.difference(subset)
        state.news = state.news.difference(subset)
        newly.set(e.key, (newly.get(e.key) ?? PartitionSubset.empty).union(subset))
        for (const d of e.downstream) {
          const down = this.states.get(d)!
          const entry = this.entries.get(d)!
          down.news = down.news.union(this.mapDown(d, e.key, subset, ctx, sizes))
          for (const { id } of entry.crons) {
            const cron = down.crons.get(id)
            if (cron && ev.ts >= cron.tick) {
              cron.deps.set(e.key, (cron.deps.get(e.key) ?? PartitionSubset.empty).union(subset))
            }
          }
          dirty.add(d)
          changed.add(d)
        }
      }
      if (events.length < BATCH) break
    }
    // check results, when a condition reads them
    let checkId = this.cursor?.checkId ?? 0
    if (this.readsChecks) {
      for (;;) {
        const results = await store.checkResultsAfter(checkId, BATCH)
        for (const r of results) {
          checkId = r.id
          const e = this.entries.get(r.asset)
          const state = this.states.get(r.asset)
          if (!e?.condition || !state) continue
          folded++
          const subset = this.subsetOf(e, r.partitionKey, ctx)
          if (!subset) continue
          const passed = state.checks.get(r.check) ?? PartitionSubset.empty
          state.checks.set(r.check, r.passed ? passed.union(subset) : passed.difference(subset))
          dirty.add(e.key)
          changed.add(e.key)
        }
        if (results.length < BATCH) break
      }
    }
    // in progress: the unfinished steps of queued and started runs, and what active backfills have yet to finish
    const inProgress = new Map<string, PartitionSubset>()
    const addInProgress = (key: string, subset: PartitionSubset) =>
      inProgress.set(key, (inProgress.get(key) ?? PartitionSubset.empty).union(subset))
    for (const step of await store.inFlightSteps()) {
      const e = this.entries.get(step.asset)
      if (!e || !this.states.has(step.asset)) continue
      const subset = this.subsetOf(e, step.partitionKey, ctx)
      if (subset) addInProgress(e.key, subset)
    }
    for (const backfill of await store.listBackfills({ active: true })) {
      const s = backfill.state
      const pending = PartitionSubset.fromJSON(s.target)
        .difference(PartitionSubset.fromJSON(s.succeeded))
        .difference(PartitionSubset.fromJSON(s.failed))
        .difference(PartitionSubset.fromJSON(s.skipped))
      for (const key of backfill.spec.plan) {
        const e = this.entries.get(key)
        if (e?.definition?.signature === backfill.spec.partitions.signature && this.states.has(key)) {
          addInProgress(key, pending)
        }
      }
    }
    // assets whose in-progress partitions or key space changed, and the automated assets reading them
    for (const key of new Set([...inProgress.keys(), ...this.lastInFlight.keys()])) {
      const running = inProgress.get(key)
      const text = running && !running.isEmpty ? running.serialize() : undefined
      if (this.lastInFlight.get(key) === text) continue
      if (text === undefined) this.lastInFlight.delete(key)
      else this.lastInFlight.set(key, text)
      dirty.add(key)
    }
    for (const e of tracked) {
      if (!e.definition) continue
      const size = sizes.get(e.key)!
      if (this.lastSize.get(e.key) === size) continue
      this.lastSize.set(e.key, size)
      dirty.add(e.key)
    }
    for (const key of [...dirty]) for (const d of this.entries.get(key)?.downstream ?? []) dirty.add(d)

    // evaluate what changed
    const evaluations: AutomationTick['evaluations'] = []
    const requests: RunRequest[] = []
    const made: Array<{
      runKey: string
      assets: string[]
      partitionKey: string | null
      subsets: Map<string, PartitionSubset>
    }> = []
    const trueSets: Array<{ key: string; subset: PartitionSubset }> = []
    const treeOf = new Map<string, { json: string; evaluation: number }>()
    let evaluated = 0
    for (const key of graph.order) {
      const e = this.entries.get(key)!
      if (!dirty.has(key) || !e.condition || !this.automatedOn(e)) continue
      evaluated++
      const state = this.states.get(key)!
      const size = sizes.get(key)!
      const deps: DepView[] = graph.assets.get(key)!.deps.map((dep) => {
        const depState = this.states.get(dep)!
        return {
          key: dep,
          size: sizes.get(dep)!,
          materialized: depState.materialized,
          inProgress: inProgress.get(dep) ?? PartitionSubset.empty,
          mapDown: (subset) => this.mapDown(key, dep, subset, ctx, sizes),
        }
      })
      const { result, tree } = evaluateCondition(e.condition, {
        size,
        state,
        inProgress: inProgress.get(key) ?? PartitionSubset.empty,
        newlyUpdated: newly.get(key) ?? PartitionSubset.empty,
        checks: this.o.checks?.get(key) ?? [],
        deps,
        space: e.definition ? { size, keyAt: (i) => e.definition!.keyAt(i, ctx) } : undefined,
      })
      if (!result.isEmpty) trueSets.push({ key, subset: result })
      const json = JSON.stringify(tree)
      if (json !== state.lastTree) {
        treeOf.set(key, { json, evaluation: evaluations.length })
        evaluations.push({
          tick: tickNo,
          asset: key,
          evaluatedAt: now,
          trueCount: result.size,
          total: size,
          tree: json,
          requests: [],
        })
        state.lastTree = json
        changed.add(key)
      }
    }
    for (const group of this.groups(trueSets, ctx)) {
      if (requests.length >= (this.o.maxRequestsPerTick ?? MAX_REQUESTS_PER_TICK)) {
        for (const key of group.assets) this.retry.add(key)
        continue
      }
      const request = this.request(group.assets, group.partitionKey, tickNo, now)
      const index = requests.length
      requests.push(request)
      made.push({
        runKey: request.runKey!,
        assets: group.assets,
        partitionKey: group.partitionKey,
        subsets: group.subsets,
      })
      for (const key of group.assets) {
        const kept = treeOf.get(key)
        if (kept) evaluations[kept.evaluation]!.requests.push(index)
      }
    }
    if (
      requests.length === 0 &&
      evaluations.length === 0 &&
      changed.size === 0 &&
      folded === 0 &&
      eventId === (this.cursor?.eventId ?? 0) &&
      checkId === (this.cursor?.checkId ?? 0)
    ) {
      return { tick: undefined, evaluated, folded, requests: [] }
    }
    const cursor: AutomationCursor = { tick: tickNo, eventId, checkId, evaluatedAt: now }
    const handled = new Set(['created', 'duplicate', 'coalesced', 'parked'])
    let commit: Awaited<ReturnType<RunStore['commitAutomationTick']>>
    try {
      commit = await store.commitAutomationTick({
        expectedTick: this.cursor?.tick ?? null,
        cursor,
        requests,
        evaluations,
        now,
        states: (outcomes) => {
          const touched = new Set(changed)
          outcomes.forEach((outcome, i) => {
            const m = made[i]!
            if (!handled.has(outcome.outcome)) {
              for (const key of m.assets) this.retry.add(key)
              return
            }
            for (const [key, subset] of m.subsets) this.markRequested(key, subset)
            for (const key of m.assets) touched.add(key)
          })
          return [...touched].map((asset) => ({ asset, state: serializeState(this.states.get(asset)!) }))
        },
      })
    } catch (error) {
      // the states in memory went ahead of the store: read them again next tick
      this.loaded = false
      throw error
    }
    if (!commit.committed) {
      this.loaded = false
      return { tick: undefined, evaluated, folded, requests: [], conflict: true }
    }
    this.cursor = cursor
    return {
      tick: tickNo,
      evaluated,
      folded,
      requests: made.map((m, i) => ({
        assets: m.assets,
        partitionKey: m.partitionKey,
        runKey: m.runKey,
        outcome: commit.outcomes[i]!,
      })),
    }
  }

  /** A request handled these partitions: they are requested, their news seen, their cron ticks handled. */
  private markRequested(key: string, subset: PartitionSubset): void {
    const state = this.states.get(key)!
    state.requested = state.requested.union(subset)
    state.news = state.news.difference(subset)
    for (const cron of state.crons.values()) cron.handled = cron.handled.union(subset)
  }

  /**
   * What is true, in runs: unpartitioned assets together in one run; partitioned assets with the
   * same partitions and the same true partitions together, one run per partition, or per range
   * of consecutive partitions up to their `backfillPolicy.maxPartitionsPerRun`.
   */
  private groups(
    trueSets: ReadonlyArray<{ key: string; subset: PartitionSubset }>,
    ctx: PartitionsContext,
  ): Array<{ assets: string[]; partitionKey: string | null; subsets: Map<string, PartitionSubset> }> {
    const out: Array<{
      assets: string[]
      partitionKey: string | null
      subsets: Map<string, PartitionSubset>
    }> = []
    const unpartitioned = trueSets.filter((t) => !this.entries.get(t.key)!.definition)
    if (unpartitioned.length > 0) {
      out.push({
        assets: this.o.graph.sort(unpartitioned.map((t) => t.key)),
        partitionKey: null,
        subsets: new Map(unpartitioned.map((t) => [t.key, t.subset])),
      })
    }
    const bySet = new Map<string, Array<{ key: string; subset: PartitionSubset }>>()
    for (const t of trueSets) {
      const def = this.entries.get(t.key)!.definition
      if (!def) continue
      const id = `${def.signature}\u0000${t.subset.serialize()}`
      const members = bySet.get(id)
      if (members) members.push(t)
      else bySet.set(id, [t])
    }
    for (const members of bySet.values()) {
      const def = this.entries.get(members[0]!.key)!.definition!
      const perRun = Math.min(
        ...members.map((m) => this.o.graph.assets.get(m.key)!.backfillPolicy?.maxPartitionsPerRun ?? 1),
      )
      const assets = this.o.graph.sort(members.map((m) => m.key))
      for (const [start, end] of members[0]!.subset.ranges()) {
        for (let i = start; i < end; i += perRun) {
          const last = Math.min(end, i + perRun) - 1
          const chunk = PartitionSubset.range(i, last + 1)
          out.push({
            assets,
            partitionKey: rangeKey(def.keyAt(i, ctx), def.keyAt(last, ctx)),
            subsets: new Map(assets.map((a) => [a, chunk])),
          })
        }
      }
    }
    return out
  }

  private request(assets: string[], partitionKey: string | null, tick: number, now: number): RunRequest {
    const { graph } = this.o
    const plan = graph.sort(assets)
    const config = resolveRunConfig(graph.assets, plan, this.o.runConfig, (key) =>
      didYouMean(key, graph.assets.keys()),
    )
    const digest = createHash('sha256').update(plan.join('\n')).digest('hex').slice(0, 12)
    const request: RunRequest = {
      id: newRunId(now),
      selection: plan.join(','),
      plan,
      config,
      tags: { [AUTOMATION_TAG]: `tick ${tick}` },
      origin: AUTOMATION_ORIGIN,
      runKey: `${tick}:${partitionKey ?? '-'}:${digest}`,
      now,
    }
    if (partitionKey !== null) request.partitionKey = partitionKey
    const holdsKey = plan.join('\n')
    let holds = this.guardHolds.get(holdsKey)
    if (!holds) {
      holds = holdsFor(graph, this.o.guards ?? [], plan)
      this.guardHolds.set(holdsKey, holds)
    }
    if (holds.length > 0) request.holds = holds
    return request
  }

  /** The asset `down`'s partitions that read these partitions of its dep `dep`. */
  private mapDown(
    down: string,
    dep: string,
    subset: PartitionSubset,
    ctx: PartitionsContext,
    sizes: ReadonlyMap<string, number>,
  ): PartitionSubset {
    if (subset.isEmpty) return PartitionSubset.empty
    const mapping = this.o.graph.partitionMapping(down, dep) ?? allPartitionsMapping()
    const downDef = this.entries.get(down)!.definition
    const upDef = this.entries.get(dep)!.definition
    return mapping.downstreamFor(subset, upDef, downDef, ctx).clip(sizes.get(down) ?? 1)
  }

  /** A run's partition key as a subset of the asset's partitions (every one of an unpartitioned asset). */
  private subsetOf(e: Entry, key: string | null, ctx: PartitionsContext): PartitionSubset | undefined {
    if (!e.definition) return PartitionSubset.all(1)
    if (key === null) return undefined
    return keySubsetOrUndefined(e.definition, key, ctx)
  }

  private versionOf(e: Entry, removals: ReadonlyMap<string, number>): string {
    const deps = this.o.graph.assets.get(e.key)!.deps.map((d) => this.entries.get(d)!.definition)
    const defs = [e.definition, ...deps]
    const names = [...new Set(defs.flatMap((d) => (d ? dynamicNames(d) : [])))].sort()
    return JSON.stringify([
      defs.map((d) => d?.signature ?? null),
      names.map((n) => `${n}:${removals.get(n) ?? 0}`),
      e.crons.map((c) => c.id),
    ])
  }

  /** An asset first seen after the first tick: what it has materialized so far, read once. */
  private async materializedSoFar(e: Entry, ctx: PartitionsContext): Promise<PartitionSubset> {
    const { store } = this.o
    if (!e.definition)
      return (await store.latestMaterialization(e.key)) ? PartitionSubset.all(1) : PartitionSubset.empty
    const ranges: Array<[number, number]> = []
    for (const key of await store.materializedPartitions(e.key)) {
      const subset = keySubsetOrUndefined(e.definition, key, ctx)
      if (subset) ranges.push(...subset.ranges())
    }
    return PartitionSubset.fromRanges(ranges)
  }

  /** A definition's size now, computed once per definition per tick (assets share definitions). */
  private sizeOf(definition: PartitionsDefinition, ctx: PartitionsContext): number {
    if (this.sizeCtx !== ctx) {
      this.sizeCache.clear()
      this.sizeCtx = ctx
    }
    let size = this.sizeCache.get(definition)
    if (size === undefined) {
      size = definition.size(ctx)
      this.sizeCache.set(definition, size)
    }
    return size
  }

  private sizeCtx: PartitionsContext | undefined
  private readonly sizeCache = new Map<PartitionsDefinition, number>()

  /** The latest tick of a cron at or before `now` (0 when none in four years). */
  private latestTick(id: string, spec: CronSpec, now: number): number {
    const cached = this.cronTicks.get(id)
    if (cached && now < cached.next) return cached.latest
    const latest = lastTicks(spec, now - 4 * YEAR, now, 1)[0] ?? 0
    const next = nextTicks(spec, now, 1)[0] ?? Number.POSITIVE_INFINITY
    this.cronTicks.set(id, { latest, next })
    return latest
  }
}

export type { NodeValue }
