/**
 * What the automation evaluator keeps per asset between ticks (persisted as JSON in the store's
 * `automation` rows, written only when it changed): the partitions ever materialized, those
 * requested and not materialized since, those whose deps changed since, and per cron the tick in
 * force with what was handled and which dep partitions updated since it. Subsets are ranges of
 * indices into the asset's key space (and its deps'), valid while `version` is.
 */
import { PartitionSubset } from '../../core/partitions/subset.js'

export interface CronState {
  /** The latest tick of the cron at or before the last evaluation (0: none yet). */
  tick: number
  /** Partitions requested since that tick. */
  handled: PartitionSubset
  /** Per dep: its partitions materialized since that tick. */
  deps: Map<string, PartitionSubset>
}

export interface AssetState {
  /** The key spaces the subsets index (definitions and dynamic removals): another one resets them. */
  version: string
  /** When automation first saw the asset: cron ticks before it do not count. */
  since: number
  materialized: PartitionSubset
  /** Requested by automation and not materialized since. */
  requested: PartitionSubset
  /** A dep was materialized since the partition was last materialized or requested. */
  news: PartitionSubset
  /** By cron id (`expression@timezone`). */
  crons: Map<string, CronState>
  /** By check name: the partitions whose latest result of that check passed. */
  checks: Map<string, PartitionSubset>
  /** The last evaluation kept (its tree, as JSON): an evaluation is kept only when it differs. */
  lastTree: string | null
}

export function emptyState(version: string, since: number): AssetState {
  return {
    version,
    since,
    materialized: PartitionSubset.empty,
    requested: PartitionSubset.empty,
    news: PartitionSubset.empty,
    crons: new Map(),
    checks: new Map(),
    lastTree: null,
  }
}

interface StateJson {
  version: string
  since: number
  materialized: number[]
  requested: number[]
  news: number[]
  crons: Record<string, { tick: number; handled: number[]; deps: Record<string, number[]> }>
  checks: Record<string, number[]>
  lastTree: string | null
}

const subsetsOf = (record: Record<string, number[]>) =>
  new Map(Object.entries(record).map(([k, v]) => [k, PartitionSubset.fromJSON(v)]))

const jsonOf = (map: ReadonlyMap<string, PartitionSubset>) =>
  Object.fromEntries([...map].map(([k, v]) => [k, v.toJSON()]))

export function serializeState(s: AssetState): string {
  const json: StateJson = {
    version: s.version,
    since: s.since,
    materialized: s.materialized.toJSON(),
    requested: s.requested.toJSON(),
    news: s.news.toJSON(),
    crons: Object.fromEntries(
      [...s.crons].map(([id, c]) => [
        id,
        { tick: c.tick, handled: c.handled.toJSON(), deps: jsonOf(c.deps) },
      ]),
    ),
    checks: jsonOf(s.checks),
    lastTree: s.lastTree,
  }
  return JSON.stringify(json)
}

/** A stored state, or undefined when it cannot be read (it is then rebuilt, like a new asset's). */
export function parseState(text: string | null): AssetState | undefined {
  if (text === null) return undefined
  try {
    const j = JSON.parse(text) as StateJson
    return {
      version: j.version,
      since: j.since,
      materialized: PartitionSubset.fromJSON(j.materialized),
      requested: PartitionSubset.fromJSON(j.requested),
      news: PartitionSubset.fromJSON(j.news),
      crons: new Map(
        Object.entries(j.crons).map(([id, c]) => [
          id,
          { tick: c.tick, handled: PartitionSubset.fromJSON(c.handled), deps: subsetsOf(c.deps) },
        ]),
      ),
      checks: subsetsOf(j.checks),
      lastTree: j.lastTree,
    }
  } catch {
    return undefined
  }
}
