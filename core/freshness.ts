import { DURATION_HINT, durationMs, shortDuration } from './duration.js'
import { ConfigError } from './errors.js'
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
 * An asset's freshness at a time, from its latest materialization (of any partition, for a
 * partitioned asset: the asset is fresh while some partition was materialized within the lag).
 * `missing`: never materialized, which counts as stale (there is nothing fresh to read).
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
      /** When it goes stale unless materialized again. */
      staleAt: number
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

/** The freshness of every asset that has a policy, by key, from the store's latest materializations. */
export function freshnessOf(
  assets: Iterable<{ readonly key: string; readonly freshness: Freshness | undefined }>,
  latest: ReadonlyMap<string, MaterializationRecord>,
  now: number,
): Map<string, FreshnessState> {
  const out = new Map<string, FreshnessState>()
  for (const a of assets) {
    if (a.freshness) out.set(a.key, assetFreshness(a.freshness, latest.get(a.key), now))
  }
  return out
}
