import { DURATION_HINT, durationMs, shortDuration } from './duration.js'
import { ConfigError } from './errors.js'
import type { PartitionsDefinition } from './partitions/definitions.js'
import type { TimePartitionsDefinition } from './partitions/time.js'
import type { RunStore } from './store/run-store.js'
import type { MaterializationRecord } from './store/types.js'

/** `freshness` on an asset, as written: how old its latest materialization may get. */
export interface FreshnessPolicy {
  /** A duration (`26h`, `30d`, `90m`) or a number of milliseconds. */
  maxLag: string | number
}

/** A freshness policy read: the limit in ms and as it is quoted back (`26h`). */
export interface Freshness {
  readonly maxLag: string
  readonly maxLagMs: number
}

/**
 * Reads an asset's `freshness`. A bad `maxLag` is a `ConfigError` naming the asset and the forms
 * accepted.
 */
export function readFreshness(asset: string, policy: { maxLag?: unknown }): Freshness {
  const { maxLag } = policy
  const hint = `${DURATION_HINT}, or a number of milliseconds above 0`
  if (typeof maxLag === 'number') {
    if (!Number.isSafeInteger(maxLag) || maxLag <= 0) {
      throw new ConfigError(`asset \`${asset}\` freshness.maxLag ${maxLag}: ${hint}.`)
    }
    return Object.freeze({ maxLag: shortDuration(maxLag), maxLagMs: maxLag })
  }
  if (typeof maxLag === 'string') {
    const ms = durationMs(maxLag.trim())
    if (ms === undefined) {
      throw new ConfigError(`asset \`${asset}\` freshness.maxLag ${JSON.stringify(maxLag)}: ${hint}.`)
    }
    return Object.freeze({ maxLag: maxLag.trim(), maxLagMs: ms })
  }
  throw new ConfigError(
    `asset \`${asset}\` freshness.maxLag is ${maxLag === undefined ? 'missing' : `a ${typeof maxLag}`}: ${hint}, like \`freshness: { maxLag: '26h' }\`.`,
  )
}

/**
 * An asset's freshness at a time. Unpartitioned (and partitioned by anything but time alone): from
 * its latest materialization, of any partition (the asset is fresh while some partition was
 * materialized within the lag); `missing`: never materialized, which counts as stale (there is
 * nothing fresh to read). Time-partitioned: per partition, from the partition that is due (see
 * `duePartition`): fresh when it was materialized, `partition_missing` (stale) when it was not.
 */
export type FreshnessState =
  | {
      status: 'fresh'
      maxLag: string
      maxLagMs: number
      materializedAt: number
      ageMs: number
      runId: string
      partitionKey: string | null
      /**
       * When it goes stale unless materialized again (for a time-partitioned asset: when the next
       * partition falls due); null when no later partition will ever exist.
       */
      staleAt: number | null
    }
  | {
      status: 'stale'
      maxLag: string
      maxLagMs: number
      materializedAt: number
      ageMs: number
      runId: string
      partitionKey: string | null
      /** When it went stale: the materialization's time plus the lag. */
      staleSince: number
      /** The materialization the stale period is measured from: it identifies the period. */
      materializationId: number
    }
  | { status: 'missing'; maxLag: string; maxLagMs: number }
  | {
      /** A time-partitioned asset whose due partition was not materialized: stale. */
      status: 'partition_missing'
      maxLag: string
      maxLagMs: number
      /** The due partition: it identifies the stale period. */
      partitionKey: string
      /** When it went stale: the partition's window end plus the lag. */
      staleSince: number
    }

/** An asset's freshness at `now` given its latest materialization (undefined: none yet). */
export function assetFreshness(
  freshness: Freshness,
  latest: MaterializationRecord | undefined,
  now: number,
): FreshnessState {
  const { maxLag, maxLagMs } = freshness
  if (!latest) return { status: 'missing', maxLag, maxLagMs }
  const ageMs = Math.max(0, now - latest.ts)
  const common = {
    maxLag,
    maxLagMs,
    materializedAt: latest.ts,
    ageMs,
    runId: latest.runId,
    partitionKey: latest.partitionKey,
  }
  // stale when older than the lag: at exactly maxLag it is still fresh
  return ageMs > maxLagMs
    ? { status: 'stale', ...common, staleSince: latest.ts + maxLagMs, materializationId: latest.id }
    : { status: 'fresh', ...common, staleAt: latest.ts + maxLagMs }
}

/** The partition of a time-partitioned asset that its freshness is measured by, at a time. */
export interface DuePartition {
  key: string
  /** Its window's end plus the lag: past it, the partition not materialized makes the asset stale. */
  deadline: number
  /** When the partition after it falls due; null when none will exist (the partitions end). */
  nextDeadline: number | null
}

/**
 * The partition due at `now`: the latest partition that exists (respecting `endOffset`), has
 * closed, and whose window ended more than `maxLagMs` ago. Undefined while none is due (the first
 * partition has not closed, or closed within the lag). Arithmetic only: no key is listed.
 */
export function duePartition(
  def: TimePartitionsDefinition,
  maxLagMs: number,
  now: number,
): DuePartition | undefined {
  const ctx = { now }
  // the latest closed partition that exists: endOffset 1 makes the open one exist (not closed),
  // -1 hides the last closed one
  const lastClosed = Math.min(def.size(ctx) - 1, def.indexAt(now) - 1)
  // the latest whose window end (the next one's start) is before now - maxLag
  const t = now - maxLagMs
  const j = def.indexAt(t)
  const i = Math.min((def.boundary(j) < t ? j : j - 1) - 1, lastClosed)
  if (i < 0) return undefined
  const next = i + 1
  // the next one falls due when its window has ended by the lag, and it exists (endOffset < 0
  // makes a partition exist only some windows after its end)
  const nextDue = Math.max(
    def.boundary(next + 1) + maxLagMs,
    def.boundary(next + 1 - Math.min(0, def.endOffset)),
  )
  return {
    key: def.keyAt(i, ctx),
    deadline: def.boundary(i + 1) + maxLagMs,
    nextDeadline: def.size({ now: nextDue + 1 }) > next ? nextDue : null,
  }
}

/** A time-partitioned asset's freshness at `now`, given its due partition's latest materialization. */
export function partitionFreshness(
  freshness: Freshness,
  due: DuePartition,
  materialization: MaterializationRecord | undefined,
  now: number,
): FreshnessState {
  const { maxLag, maxLagMs } = freshness
  if (!materialization) {
    return { status: 'partition_missing', maxLag, maxLagMs, partitionKey: due.key, staleSince: due.deadline }
  }
  return {
    status: 'fresh',
    maxLag,
    maxLagMs,
    materializedAt: materialization.ts,
    ageMs: Math.max(0, now - materialization.ts),
    runId: materialization.runId,
    partitionKey: due.key,
    staleAt: due.nextDeadline,
  }
}

/** What the freshness of assets is read from. */
export type FreshnessStore = Pick<RunStore, 'latestMaterializations' | 'latestMaterialization'>

/** An asset as freshness reads it: its policy and, when partitioned, its partitions. */
export interface FreshnessAsset {
  readonly key: string
  readonly freshness: Freshness | undefined
  readonly partitions?: PartitionsDefinition | undefined
}

/**
 * The freshness of every asset that has a policy, by key. Store reads: the latest
 * materializations of every asset once (unless given as `latest`), and one
 * `latestMaterialization(asset, partition)` per time-partitioned asset with a partition due.
 */
export async function freshnessOf(
  store: FreshnessStore,
  assets: Iterable<FreshnessAsset>,
  now: number,
  latest?: ReadonlyMap<string, MaterializationRecord>,
): Promise<Map<string, FreshnessState>> {
  const out = new Map<string, FreshnessState>()
  let all = latest
  for (const a of assets) {
    if (!a.freshness) continue
    const due =
      a.partitions?.kind === 'time' ? duePartition(a.partitions, a.freshness.maxLagMs, now) : undefined
    if (due) {
      out.set(
        a.key,
        partitionFreshness(a.freshness, due, await store.latestMaterialization(a.key, due.key), now),
      )
      continue
    }
    all ??= await store.latestMaterializations()
    out.set(a.key, assetFreshness(a.freshness, all.get(a.key), now))
  }
  return out
}
