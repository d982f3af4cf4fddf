import type { Command } from 'commander'
import type { ResolvedConfig } from '../core/config.js'
import type { RunStore } from '../core/store/run-store.js'
import { findConfig, storeLocationFor } from './find-config.js'
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
  const [{ settingsOf, requireRegion }, { isPeerInstalled }] = await Promise.all([
    import('../aws/settings.js'),
    import('../core/peers.js'),
  ])
  const aws = settingsOf(resolved.resources)
  // without the SDK there is no region to ask for: the backends (and doctor) name the package to install
  if (aws && isPeerInstalled('@aws-sdk/client-s3')) await requireRegion(aws)
}

/**
 * Loads the config and opens its store: `--store FILE`, else the config's `store` (per
 * environment), else `.refresh/refresh.db` beside the config. Creates the store if missing.
 */
export async function openConfigured(
  options: ConfigOptions & { store?: string },
  cwd: string,
): Promise<{ loaded: LoadedConfig; resolved: ResolvedConfig; storeLocation: string; store: RunStore }> {
  const { loaded, resolved } = await loadResolved(options, cwd)
  const { openStore } = await import('../core/store/open.js')
  const storeLocation = storeLocationFor(options.store, cwd, loaded.dir, resolved.store)
  return { loaded, resolved, storeLocation, store: await openStore(storeLocation) }
}
