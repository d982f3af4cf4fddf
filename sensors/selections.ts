import { ConfigError, isInputError } from '../core/errors.js'
import type { AssetGraph } from '../core/graph.js'
import type { TimePartitionsDefinition } from '../core/partitions/time.js'
import { resolveSelection } from '../core/selection.js'
import type { InstigatorDefinition, ScheduleDefinition } from './definitions.js'

/**
 * The selections a sensor or schedule names before it ever ticks: a schedule's `selection`, the
 * asset a `whenMaterialized` sensor watches and the selection it launches. A sensor written with
 * `sensor({...})` decides its requests when it runs, so only its tick can check them.
 */
export function declaredSelections(def: InstigatorDefinition): Array<{ field: string; selection: string }> {
  if (def.kind === 'schedule') return [{ field: 'selection', selection: def.selection }]
  return def.selections ? [...def.selections] : []
}

/**
 * Checks that every sensor's and schedule's selection names assets of the graph, so that a typo
 * is refused by `refresh validate` and at daemon start, not recorded as a failed tick on every
 * iteration of the daemon. `where` names the environment in the message.
 */
export function checkInstigatorSelections(
  defs: readonly InstigatorDefinition[],
  graph: AssetGraph,
  source: string,
  where = '',
): void {
  for (const def of defs) {
    for (const { field, selection } of declaredSelections(def)) {
      try {
        resolveSelection(graph, selection)
      } catch (error) {
        if (!isInputError(error)) throw error
        throw new ConfigError(
          `${source}: ${def.kind} \`${def.name}\`: ${field} \`${selection}\`${where}: ${error.message}`,
          { cause: error },
        )
      }
    }
    if (def.kind === 'schedule' && def.partitioned) {
      try {
        schedulePartitions(def, graph)
      } catch (error) {
        if (!isInputError(error)) throw error
        throw new ConfigError(`${source}: ${error.message}${where}`, { cause: error })
      }
    }
  }
}

/**
 * The time partitions a partitioned schedule requests from: the one definition its selection's
 * partitioned assets share. A ConfigError naming the schedule when there is none, several, or one
 * that is not time-based (which partition would have "just closed"?).
 */
export function schedulePartitions(def: ScheduleDefinition, graph: AssetGraph): TimePartitionsDefinition {
  const assets = graph.sort(resolveSelection(graph, def.selection)).map((k) => graph.assets.get(k)!)
  const partitioned = assets.filter((a) => a.partitions !== undefined)
  const first = partitioned[0]
  if (!first?.partitions) {
    throw new ConfigError(
      `schedule \`${def.name}\` is partitioned, but no asset of its selection \`${def.selection}\` is partitioned; drop \`partitioned: true\`, or select time-partitioned assets.`,
    )
  }
  const other = partitioned.find((a) => a.partitions!.signature !== first.partitions!.signature)
  if (other) {
    throw new ConfigError(
      `schedule \`${def.name}\` is partitioned, but its selection mixes partitions: \`${first.key}\` has ${first.partitions.describe()} and \`${other.key}\` has ${other.partitions!.describe()}; give each definition its own schedule.`,
    )
  }
  if (first.partitions.kind !== 'time') {
    throw new ConfigError(
      `schedule \`${def.name}\` is partitioned, but \`${first.key}\` has ${first.partitions.describe()}, not time partitions: a partitioned schedule requests the time partition that just closed; request other partitions from a sensor.`,
    )
  }
  return first.partitions
}
