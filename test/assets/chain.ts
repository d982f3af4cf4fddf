import { catalog } from '../../assets/catalog.js'
import { clean } from '../../assets/clean.js'
import { copy } from '../../assets/copy.js'
import { promote } from '../../assets/promote.js'
import { reindex } from '../../assets/reindex.js'
import { replicas } from '../../assets/replicas.js'
import { snapshot } from '../../assets/snapshot.js'
import type { AssetDefinition } from '../../core/definitions.js'
import { localProcessRunner } from '../../runners/local.js'

/** The default chain over a temp data directory, small enough to run in a second. */
export function chain(dataDir: string): AssetDefinition[] {
  const runner = localProcessRunner({ processes: 2 })
  return [
    catalog({ dataDir }),
    copy({ dataDir }),
    clean({ dataDir }),
    reindex({ dataDir, shards: 3, runner }),
    snapshot({ dataDir, retry: { maxAttempts: 2, delayMs: 0 } }),
    replicas({ dataDir }),
    promote({ dataDir }),
  ]
}

/** Run config for a small catalog; merge test-specific config over it. */
export function small(extra: Record<string, Record<string, unknown>> = {}): Record<string, unknown> {
  const base: Record<string, Record<string, unknown>> = {
    catalog: { rows: 3000 },
    reindex: { shardRetryDelayMs: 0 },
  }
  for (const [key, value] of Object.entries(extra)) base[key] = { ...(base[key] ?? {}), ...value }
  return base
}
