import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { ConfigError } from '../core/errors.js'
import { isFileLocation, resolveStoreLocation } from '../core/store/open.js'

/** The file names `refresh` looks for, in order, in the current directory and then each parent. */
export const CONFIG_NAMES = [
  'refresh.config.ts',
  'refresh.config.mts',
  'refresh.config.js',
  'refresh.config.mjs',
]

export const DEFAULT_STORE = '.refresh/refresh.db'

/**
 * Finds the config: `--config FILE`, else `REFRESH_CONFIG`, else the first refresh.config.* in
 * `cwd` or the nearest directory above it (as Vitest finds its config), so every command works
 * from a subdirectory of the project. Relative paths in the config resolve against its own
 * directory, wherever the command runs.
 */
export function findConfig(
  explicit: string | undefined,
  cwd: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): string {
  if (explicit !== undefined) {
    const file = resolve(cwd, explicit)
    if (!existsSync(file)) throw new ConfigError(`--config ${explicit}: no such file (looked for ${file}).`)
    return file
  }
  const fromEnv = env.REFRESH_CONFIG
  if (fromEnv !== undefined && fromEnv !== '') {
    const file = resolve(cwd, fromEnv)
    if (!existsSync(file)) {
      throw new ConfigError(
        `REFRESH_CONFIG=${fromEnv}: no such file (looked for ${file}); point it at your refresh.config.ts, or unset it to search from the current directory.`,
      )
    }
    return file
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    for (const name of CONFIG_NAMES) {
      const file = join(dir, name)
      if (existsSync(file)) return file
    }
    if (dirname(dir) === dir) break
  }
  throw new ConfigError(
    `no refresh.config.ts in ${cwd} or any directory above it; create one (\`export default defineConfig({ assets: [...] })\`), or pass --config FILE (or set REFRESH_CONFIG).`,
  )
}

/**
 * The store a command uses: `--store` (relative to the working directory), else the config's
 * `store` for the chosen environment, else `.refresh/refresh.db`, both relative to the config.
 */
export function storeLocationFor(
  flag: string | undefined,
  cwd: string,
  configDir: string,
  configured?: string,
): string {
  return flag !== undefined
    ? resolveStoreLocation(flag, cwd)
    : resolveStoreLocation(configured ?? DEFAULT_STORE, configDir)
}

/** Where `maintenance on` backs the store up by default: `backups/` beside a store file, else beside the config. */
export function defaultBackupDir(storeLocation: string, configDir: string): string {
  return isFileLocation(storeLocation)
    ? resolve(dirname(storeLocation), 'backups')
    : resolve(configDir, '.refresh', 'backups')
}

export interface StoreLocationOptions {
  store?: string
  config?: string
  env?: string
}

/**
 * The store a command reads: `--store FILE`, else the config's `store` (per environment), else
 * `.refresh/refresh.db` beside the config. Loading a config costs more than the commands that
 * only read the store (`runs`, `show`, `logs`, `cancel`) take in all, so the config is loaded
 * only when its text can set a store or an environment is chosen; otherwise the default path
 * is the answer. (A config that takes its `store` from a spread object should pass --store.)
 */
export async function locateStore(options: StoreLocationOptions, cwd: string): Promise<string> {
  if (options.store !== undefined) return storeLocationFor(options.store, cwd, cwd)
  const file = findConfig(options.config, cwd)
  if (options.env === undefined && !/\bstore\b/.test(readFileSync(file, 'utf8'))) {
    return storeLocationFor(undefined, cwd, dirname(file))
  }
  const [{ loadConfig }, { resolveEnvironment }] = await Promise.all([
    import('./load-config.js'),
    import('../core/config.js'),
  ])
  const loaded = await loadConfig(file)
  const resolved = resolveEnvironment(loaded.config, options.env, loaded.file)
  return storeLocationFor(undefined, cwd, loaded.dir, resolved.store)
}
