/**
 * A run of one partition: which assets of the plan are partitioned, the key checked against their
 * definition, and what each of them sees as `ctx.partition`; the partitions context (now, and the
 * keys of dynamic partitions, read from the store once per run).
 */
import type { AssetDefinition } from './definitions.js'
import { ConfigError } from './errors.js'
import type { AssetGraph } from './graph.js'
import type { PartitionContext, PartitionsContext, PartitionsDefinition } from './partitions/definitions.js'
import { PartitionSubset } from './partitions/subset.js'
import type { RunStore } from './store/run-store.js'

/** The dynamic partitions definitions' names a definition reads keys from. */
export function dynamicNames(def: PartitionsDefinition): string[] {
  if (def.kind === 'dynamic') return [def.name]
  if (def.kind === 'multi')
    return def.dimensions.flatMap((d) => (d.definition.kind === 'dynamic' ? [d.definition.name] : []))
  return []
}

/** A partitions context at `now` whose dynamic keys are those of the store now (read once). */
export async function partitionsContext(
  store: Pick<RunStore, 'dynamicPartitionKeys'>,
  defs: Iterable<PartitionsDefinition>,
  now: number,
): Promise<PartitionsContext> {
  const names = new Set([...defs].flatMap(dynamicNames))
  const keys = new Map<string, readonly string[]>()
  for (const name of names) keys.set(name, await store.dynamicPartitionKeys(name))
  return { now, dynamic: (name) => keys.get(name) ?? [] }
}

/** A run's partition: its key, and the context each partitioned asset of the plan gets. */
export interface RunPartition {
  key: string
  /** The partitioned assets of the plan (all of one definition), and their `ctx.partition`. */
  contexts: ReadonlyMap<string, PartitionContext>
  definition: PartitionsDefinition
  ctx: PartitionsContext
}

/**
 * Checks a run's partition key against the partitioned assets of its plan: they must share one
 * definition (a run materializes one partition of each), and the key must be one of it. Without a
 * key, a plan with partitioned assets is refused: which partition would it build?
 */
export async function runPartition(
  graph: AssetGraph,
  plan: readonly string[],
  key: string | undefined,
  store: Pick<RunStore, 'dynamicPartitionKeys'>,
  now: number,
): Promise<RunPartition | undefined> {
  const partitioned = plan
    .map((k) => graph.assets.get(k)!)
    .filter((a): a is AssetDefinition & { partitions: PartitionsDefinition } => a.partitions !== undefined)
  if (key === undefined) {
    if (partitioned.length === 0) return undefined
    const first = partitioned[0]!
    throw new ConfigError(
      `\`${first.key}\` is partitioned (${first.partitions.describe()}): say which partition to run with --partition KEY (materialize(..., { partition })), or backfill a range with \`refresh backfill\`.`,
    )
  }
  if (partitioned.length === 0) {
    throw new ConfigError(
      `--partition ${key}: no asset of the selection (${plan.join(', ')}) is partitioned; drop --partition, or select a partitioned asset.`,
    )
  }
  const definition = partitioned[0]!.partitions
  const other = partitioned.find((a) => a.partitions.signature !== definition.signature)
  if (other) {
    throw new ConfigError(
      `one run builds one partition, but \`${partitioned[0]!.key}\` has ${definition.describe()} and \`${other.key}\` has ${other.partitions.describe()}: run them separately (a selection per definition).`,
    )
  }
  const ctx = await partitionsContext(store, [definition], now)
  const contexts = new Map<string, PartitionContext>()
  // the same definition for all: checked once (a bad key throws a PartitionKeyError naming the format)
  const context = definition.partitionContext(key, ctx)
  for (const a of partitioned) contexts.set(a.key, context)
  return { key, contexts, definition, ctx }
}

/**
 * The partition of `dep` that the partition `key` of `asset` reads, when it is exactly one: the
 * same key for a dep of the same definition, else the one its mapping gives. Undefined when the
 * dep is not partitioned or the mapping gives several (the dep's latest materialization is read);
 * null when it gives none (the first partition of a chain reads no earlier one).
 */
export function upstreamPartition(
  graph: AssetGraph,
  asset: string,
  dep: string,
  partition: RunPartition,
): string | null | undefined {
  const up = graph.assets.get(dep)?.partitions
  if (!up) return undefined
  if (up.signature === partition.definition.signature && dep !== asset) return partition.key
  const mapping = graph.partitionMapping(asset, dep)
  if (!mapping) return undefined
  const index = partition.definition.indexOf(partition.key, partition.ctx)
  const needed = mapping.upstreamFor(
    PartitionSubset.range(index, index + 1),
    partition.definition,
    up,
    partition.ctx,
  )
  if (needed.isEmpty) return null
  if (needed.size !== 1) return undefined
  return up.keyAt(needed.first!, partition.ctx)
}
