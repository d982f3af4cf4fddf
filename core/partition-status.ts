/**
 * The status of every partition of an asset (materialized, failed, in progress, missing, stale),
 * kept as range-compressed subsets and folded incrementally: a saved status carries the id of the
 * last event it folded, and a read folds only the partition events after it (the asset's own
 * materializations and failures, and its deps' materializations, which make the partitions that
 * read them stale), then saves the result compare-and-set. A status is rebuilt from the first
 * event only when it was never saved or its key space changed (another definition, a dynamic
 * key removed). Memory and time go with the number of ranges and of new events, not with the
 * number of partitions.
 */
import { ConfigError, didYouMean } from './errors.js'
import type { AssetGraph } from './graph.js'
import { dynamicNames, keySubsetOrUndefined, partitionsContext } from './partition-runs.js'
import type { PartitionsContext, PartitionsDefinition } from './partitions/definitions.js'
import { PartitionSubset } from './partitions/subset.js'
import type { RunStore } from './store/run-store.js'
import type { PartitionEvent, StoredPartitionStatus } from './store/types.js'

/** Events folded per store read. */
const BATCH = 5_000

/** The statuses a partition is shown with, one each: in progress, else failed, else stale, else materialized, else missing. */
export const PARTITION_STATUSES = ['materialized', 'failed', 'in_progress', 'missing', 'stale'] as const
export type PartitionStatusName = (typeof PARTITION_STATUSES)[number]

export interface PartitionStatus {
  asset: string
  definition: PartitionsDefinition
  ctx: PartitionsContext
  /** Partitions that exist now. */
  total: number
  /** Disjoint subsets, one per status. */
  subsets: Record<PartitionStatusName, PartitionSubset>
  /** The last event folded into it. */
  cursor: number
  /** Events folded by this read (0 when the saved status was current). */
  folded: number
}

type Store = Pick<
  RunStore,
  | 'dynamicPartitionKeys'
  | 'dynamicPartitionsVersion'
  | 'partitionEvents'
  | 'partitionsInFlight'
  | 'getPartitionStatus'
  | 'savePartitionStatus'
>

/** The status of every partition of `asset` (see the file comment). */
export async function partitionStatus(
  store: Store,
  graph: AssetGraph,
  asset: string,
  now: number,
): Promise<PartitionStatus> {
  const def = graph.assets.get(asset)
  if (!def) {
    throw new ConfigError(`no asset \`${asset}\` in the config.${didYouMean(asset, graph.assets.keys())}`)
  }
  const definition = def.partitions
  if (!definition) {
    throw new ConfigError(
      `\`${asset}\` is not partitioned; give it \`partitions\` (dailyPartitions, staticPartitions, ...) to track it per partition.`,
    )
  }
  const deps = def.deps.map((key) => ({ key, partitions: graph.assets.get(key)?.partitions }))
  const ctx = await partitionsContext(
    store,
    [definition, ...deps.flatMap((d) => (d.partitions ? [d.partitions] : []))],
    now,
  )
  const version = await versionOf(store, definition, deps)
  const saved = await store.getPartitionStatus(asset)
  const fresh = !saved || saved.version !== version
  let cursor = fresh ? 0 : saved.cursor
  let materialized = fresh ? PartitionSubset.empty : PartitionSubset.fromJSON(saved.status.materialized)
  let failed = fresh ? PartitionSubset.empty : PartitionSubset.fromJSON(saved.status.failed)
  let stale = fresh ? PartitionSubset.empty : PartitionSubset.fromJSON(saved.status.stale)
  let folded = 0
  const assets = [asset, ...deps.map((d) => d.key)]
  for (;;) {
    const events: PartitionEvent[] = await store.partitionEvents(cursor, assets, BATCH)
    // materializations of the asset are gathered and applied in one union (a subset of many
    // ranges is rebuilt once per batch, not once per event); anything else applies them first
    let pending: number[] = []
    const flush = () => {
      if (pending.length === 0) return
      const added = PartitionSubset.fromIndices(pending)
      materialized = materialized.union(added)
      failed = failed.difference(added)
      stale = stale.difference(added)
      pending = []
    }
    for (const e of events) {
      cursor = e.id
      if (e.asset === asset) {
        // one partition, or the range a run of several built
        const built =
          e.partitionKey === null ? undefined : keySubsetOrUndefined(definition, e.partitionKey, ctx)
        if (built === undefined) continue
        if (e.kind === 'materialized' && built.size === 1) pending.push(built.first!)
        else if (e.kind === 'materialized') {
          flush()
          materialized = materialized.union(built)
          failed = failed.difference(built)
          stale = stale.difference(built)
        } else {
          flush()
          failed = failed.union(built)
        }
      } else if (e.kind === 'materialized') {
        flush()
        if (materialized.isEmpty) continue
        // a dep changed: the materialized partitions that read what changed are stale
        const dep = deps.find((d) => d.key === e.asset)!
        let upstream: PartitionSubset | undefined
        if (!dep.partitions) upstream = PartitionSubset.all(1)
        else if (e.partitionKey !== null) upstream = keySubsetOrUndefined(dep.partitions, e.partitionKey, ctx)
        const mapping = graph.partitionMapping(asset, e.asset)
        if (upstream && mapping) {
          const affected = mapping.downstreamFor(upstream, dep.partitions, definition, ctx)
          stale = stale.union(affected.intersect(materialized))
        }
      }
    }
    flush()
    folded += events.length
    if (events.length < BATCH) break
  }
  if (folded > 0 || fresh) {
    const next: StoredPartitionStatus = {
      asset,
      cursor,
      version,
      status: { materialized: materialized.toJSON(), failed: failed.toJSON(), stale: stale.toJSON() },
      updatedAt: now,
    }
    // another reader that saved first folded the same events: its status is as good as this one
    await store.savePartitionStatus(next, saved ? saved.cursor : null)
  }
  const total = definition.size(ctx)
  let inProgress = PartitionSubset.empty
  for (const k of await store.partitionsInFlight(asset)) {
    const running = keySubsetOrUndefined(definition, k, ctx)
    if (running) inProgress = inProgress.union(running)
  }
  inProgress = inProgress.clip(total)
  const failedShown = failed.difference(inProgress).clip(total)
  const staleShown = stale.difference(inProgress).difference(failedShown).clip(total)
  const materializedShown = materialized
    .difference(inProgress)
    .difference(failedShown)
    .difference(staleShown)
    .clip(total)
  const missing = PartitionSubset.all(total)
    .difference(materialized)
    .difference(failedShown)
    .difference(inProgress)
  return {
    asset,
    definition,
    ctx,
    total,
    subsets: {
      materialized: materializedShown,
      failed: failedShown,
      in_progress: inProgress,
      missing,
      stale: staleShown,
    },
    cursor,
    folded,
  }
}

/** What the saved indices are over: the definitions, and how many dynamic keys were removed. */
async function versionOf(
  store: Pick<RunStore, 'dynamicPartitionsVersion'>,
  definition: PartitionsDefinition,
  deps: ReadonlyArray<{ key: string; partitions: PartitionsDefinition | undefined }>,
): Promise<string> {
  const names = new Set(
    [definition, ...deps.flatMap((d) => (d.partitions ? [d.partitions] : []))].flatMap(dynamicNames),
  )
  const removals: string[] = []
  for (const name of [...names].sort()) removals.push(`${name}:${await store.dynamicPartitionsVersion(name)}`)
  return JSON.stringify([
    definition.signature,
    deps.map((d) => [d.key, d.partitions?.signature ?? null]),
    removals,
  ])
}
