import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { ResolvedConfig } from '../core/config.js'
import type { SqliteStore } from '../core/store/sqlite.js'
import { DEFAULT_STORE, findConfig } from './find-config.js'
import type { LoadedConfig } from './load-config.js'

export interface ConfigOptions {
  config?: string
  env?: string
}

/** `--config`, `--env`: for commands that read the config but run nothing. */
export function addConfigOptions(command: Command): Command {
  return command
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .option('--env <name>', 'a named environment block of the config')
}

/** Finds, loads, validates and resolves the config for one environment. */
export async function loadResolved(
  options: ConfigOptions,
  cwd: string,
): Promise<{ loaded: LoadedConfig; resolved: ResolvedConfig }> {
  const file = findConfig(options.config, cwd)
  const [{ loadConfig }, { resolveEnvironment }] = await Promise.all([
    import('./load-config.js'),
    import('../core/config.js'),
  ])
  const loaded = await loadConfig(file)
  return { loaded, resolved: resolveEnvironment(loaded.config, options.env, loaded.file) }
}

/**
 * For a command that talks to AWS: when the environment has AWS settings, the SDK must have a
 * region (exit 2 naming what to set), checked once before any call. Loads the AWS SDK only then.
 */
export async function requireAwsReady(resolved: ResolvedConfig): Promise<void> {
  const { settingsOf } = await import('../runners/aws/settings.js')
  const aws = settingsOf(resolved.resources)
  if (aws) await (await import('../runners/aws/settings.js')).requireRegion(aws)
}

/**
 * Loads the config and opens its store: `--store FILE`, else the config's `store` (per
 * environment), else `.refresh/refresh.db` beside the config. Creates the store if missing.
 */
export async function openConfigured(
  options: ConfigOptions & { store?: string },
  cwd: string,
): Promise<{ loaded: LoadedConfig; resolved: ResolvedConfig; storePath: string; store: SqliteStore }> {
  const { loaded, resolved } = await loadResolved(options, cwd)
  const storePath = options.store
    ? resolve(cwd, options.store)
    : resolve(loaded.dir, resolved.store ?? DEFAULT_STORE)
  const { openStore } = await import('../core/store/sqlite.js')
  return { loaded, resolved, storePath, store: openStore(storePath) }
}
