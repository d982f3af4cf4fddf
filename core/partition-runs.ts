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

/** Joins the first and the last key of a run of several partitions: `2026-01-01...2026-01-31`. */
export const RANGE_SEPARATOR = '...'

/** The key of a run of the partitions `from` to `to` (one key when they are the same). */
export function rangeKey(from: string, to: string): string {
  return from === to ? from : `${from}${RANGE_SEPARATOR}${to}`
}

/** The partitions a run's key stands for: one key, or `FIRST...LAST` (both included). */
export function keySubset(
  definition: PartitionsDefinition,
  key: string,
  ctx: PartitionsContext,
): PartitionSubset {
  const at = key.indexOf(RANGE_SEPARATOR)
  if (at < 0) {
    const i = definition.indexOf(key, ctx)
    return PartitionSubset.range(i, i + 1)
  }
  return definition.subsetBetween(key.slice(0, at), key.slice(at + RANGE_SEPARATOR.length), ctx)
}

/** `keySubset`, or undefined for a key that no longer exists (a dynamic key removed). */
export function keySubsetOrUndefined(
  definition: PartitionsDefinition,
  key: string,
  ctx: PartitionsContext,
): PartitionSubset | undefined {
  try {
    return keySubset(definition, key, ctx)
  } catch {
    return undefined
  }
}

/** A run's partition: its key, and the context each partitioned asset of the plan gets. */
export interface RunPartition {
  /** One key, or `FIRST...LAST` for a run of several partitions. */
  key: string
  /** The partitions the run builds (one, or a range). */
  subset: PartitionSubset
  /** Their keys, in order. */
  keys: readonly string[]
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
  const subset = keySubset(definition, key, ctx)
  const keys = definition.keysOf(subset, ctx)
  let context: PartitionContext
  if (keys.length === 1) context = definition.partitionContext(keys[0]!, ctx)
  else {
    const first = definition.partitionContext(keys[0]!, ctx)
    const last = definition.partitionContext(keys.at(-1)!, ctx)
    context = {
      key: rangeKey(keys[0]!, keys.at(-1)!),
      keys: {},
      ...(first.window && last.window ? { window: { start: first.window.start, end: last.window.end } } : {}),
      range: { from: keys[0]!, to: keys.at(-1)!, keys },
    }
  }
  for (const a of partitioned) contexts.set(a.key, context)
  return { key: context.key, subset, keys, contexts, definition, ctx }
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
  if (up.signature === partition.definition.signature && dep !== asset) {
    // the same partitions: one key is read as itself; a range, as the dep's latest
    return partition.keys.length === 1 ? partition.key : undefined
  }
  const mapping = graph.partitionMapping(asset, dep)
  if (!mapping) return undefined
  let needed = mapping.upstreamFor(partition.subset, partition.definition, up, partition.ctx)
  // its own earlier partitions: those before the range (the range itself is being built)
  if (dep === asset) needed = needed.difference(partition.subset)
  if (needed.isEmpty) return null
  if (needed.size !== 1) return undefined
  return up.keyAt(needed.first!, partition.ctx)
}
