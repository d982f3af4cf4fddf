import { ConfigError, isInputError } from '../core/errors.js'
import type { AssetGraph } from '../core/graph.js'
import { resolveSelection } from '../core/selection.js'
import type { InstigatorDefinition } from './definitions.js'

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
  }
}
