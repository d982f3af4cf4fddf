import { resolve } from 'node:path'
import { type AliasStore, partsOf, type ReplicaFleet } from '../assets/backends.js'
import type { TablePromotion } from '../assets/postgres-table.js'
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
  given?: LoadedConfig,
): Promise<{ dataDir: string; alias: AliasStore | undefined; fleet: ReplicaFleet | undefined }> {
  const { loaded, resolved } = given ?? (await loadResolved(options, cwd))
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
 * The config's table promotion (`promoteTable`, tag `block=promote-table`), if it has one, and
 * whether it also has an index `promote` block: `refresh promote` acts on the table when it is
 * the only promotion, or when `--table` says so.
 */
export async function findTablePromotion(
  options: { config?: string; env?: string },
  cwd: string,
): Promise<{ table: TablePromotion | undefined; indexPromote: boolean; config: LoadedConfig }> {
  const config = await loadResolved(options, cwd)
  const { resolved } = config
  const block = resolved.assets.find((a) => a.tags.block === 'promote-table')
  return {
    table: block ? partsOf(block).table : undefined,
    indexPromote: resolved.assets.some((a) => a.tags.block === 'promote' && a.tags.dataDir),
    config,
  }
}

/** A config file loaded and its environment resolved, once for the blocks found in it. */
export interface LoadedConfig {
  loaded: Awaited<ReturnType<typeof loadConfig>>
  resolved: ResolvedConfig
}

async function loadResolved(options: { config?: string; env?: string }, cwd: string): Promise<LoadedConfig> {
  const loaded = await loadConfig(findConfig(options.config, cwd))
  return { loaded, resolved: resolveEnvironment(loaded.config, options.env, loaded.file) }
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
