import { resolve } from 'node:path'
import { type AliasStore, partsOf, type ReplicaFleet } from '../assets/backends.js'
import { type ResolvedConfig, resolveEnvironment } from '../core/config.js'
import { ConfigError } from '../core/errors.js'
import { findConfig } from './find-config.js'
import { loadConfig } from './load-config.js'

/**
 * The data directory of the refresh declared in the config: the one the `promote` block (tag
 * `block=promote`) publishes to. `refresh query` and `refresh promote --rollback` read it.
 */
export async function findDataDir(options: { config?: string; env?: string }, cwd: string): Promise<string> {
  return (await findBlocks(options, cwd)).dataDir
}

/**
 * The `promote` block of the config (with its data directory and its alias store) and the
 * `replicas` block's fleet, if any: what `refresh promote` reads and rolls back.
 */
export async function findBlocks(
  options: { config?: string; env?: string },
  cwd: string,
): Promise<{ dataDir: string; alias: AliasStore | undefined; fleet: ReplicaFleet | undefined }> {
  const file = findConfig(options.config, cwd)
  const loaded = await loadConfig(file)
  const resolved = resolveEnvironment(loaded.config, options.env, loaded.file)
  const block = resolved.assets.find((a) => a.tags.block === 'promote' && a.tags.dataDir)
  if (!block) {
    throw new ConfigError(
      `${loaded.file} has no \`promote\` asset, so there is no promoted index to use; add \`promote({ dataDir })\` from 'refresh' to its assets.`,
    )
  }
  const replicas = resolved.assets.find((a) => a.tags.block === 'replicas')
  // an alias on S3 or a fleet on EC2: the SDK must have a region before anything is read
  if (partsOf(block).alias || (replicas && partsOf(replicas).fleet)) {
    const { requireAwsReady } = await import('./config-options.js')
    await requireAwsReady(resolved)
  }
  return {
    dataDir: resolve(loaded.dir, block.tags.dataDir!),
    alias: partsOf(block).alias,
    fleet: replicas ? partsOf(replicas).fleet : undefined,
  }
}

/**
 * The runs the promoted alias of the config's `promote` block refers to (see `aliasRuns`), which a
 * prune keeps; none when the config has no `promote` block or nothing is promoted yet. An alias
 * that cannot be read (S3 without credentials) fails the prune rather than being taken as none.
 */
export async function promotedRuns(resolved: ResolvedConfig, configDir: string): Promise<string[]> {
  const block = resolved.assets.find((a) => a.tags.block === 'promote' && a.tags.dataDir)
  if (!block) return []
  const [{ fileAliasStore, aliasRuns }, { layout }] = await Promise.all([
    import('../assets/state.js'),
    import('../assets/layout.js'),
  ])
  const paths = layout(resolve(configDir, block.tags.dataDir!))
  const store = partsOf(block).alias
  if (store) {
    const { requireAwsReady } = await import('./config-options.js')
    await requireAwsReady(resolved)
  }
  const alias = await (store ?? fileAliasStore(paths.alias)).read()
  return alias ? aliasRuns(alias, paths) : []
}
