import { ConfigError } from './errors.js'
import type { AssetGraph } from './graph.js'
import { resolveSelection } from './selection.js'
import type { RunHold } from './store/types.js'

/**
 * A run guard of the config: at most `concurrency` runs at a time may touch the assets of
 * `selection`, whoever starts them (`refresh run`, `materialize()`, the daemon). For example
 * `{ name: 'index_writers', selection: 'reindex,promote', concurrency: 1 }`: two refreshes never
 * overwrite each other's index.
 */
export interface RunGuardConfig {
  name: string
  selection: string
  concurrency: number
}

/** The guards a plan falls under: those whose selection shares an asset with it. */
export function holdsFor(
  graph: AssetGraph,
  guards: readonly RunGuardConfig[],
  plan: readonly string[],
): RunHold[] {
  const keys = new Set(plan)
  const out: RunHold[] = []
  for (const g of guards) {
    let selected: Set<string>
    try {
      selected = resolveSelection(graph, g.selection)
    } catch (error) {
      throw new ConfigError(`run guard \`${g.name}\`: ${(error as Error).message}`)
    }
    if ([...selected].some((k) => keys.has(k))) out.push({ key: g.name, limit: g.concurrency })
  }
  return out
}
