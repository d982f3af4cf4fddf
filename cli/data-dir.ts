import { resolve } from 'node:path'
import { type AliasStore, partsOf, type ReplicaFleet } from '../assets/backends.js'
import { resolveEnvironment } from '../core/config.js'
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
