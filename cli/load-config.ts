import { dirname, extname } from 'node:path'
import { pathToFileURL } from 'node:url'
import { type RefreshConfig, validateConfig } from '../core/config.js'
import { ConfigError } from '../core/errors.js'

export interface LoadedConfig {
  config: RefreshConfig
  /** Absolute path of the config file. */
  file: string
  /** The directory relative paths in the config (store, data) are resolved against. */
  dir: string
}

/**
 * Loads and validates a config file. TypeScript is loaded natively where this Node strips types,
 * else through jiti; under jiti, `import ... from 'refresh'` is bound to this very copy of the
 * library, so a config outside any project that installs refresh works too. A load failure
 * names the file and keeps the cause.
 */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  let mod: unknown
  try {
    mod = await importConfig(file)
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause
    const message = cause instanceof Error ? cause.message : String(cause)
    throw new ConfigError(`cannot load ${file}: ${message}`, { cause })
  }
  const value = (mod as { default?: unknown })?.default ?? mod
  return { config: validateConfig(value, file), file, dir: dirname(file) }
}

async function importConfig(file: string): Promise<unknown> {
  const ts = ['.ts', '.mts', '.cts'].includes(extname(file))
  const nativeTs = (process.features as { typescript?: unknown }).typescript
  if (!ts || nativeTs) return import(pathToFileURL(file).href)
  const [{ createJiti }, self] = await Promise.all([import('jiti'), import('../index.js')])
  const jiti = createJiti(import.meta.url, {
    interopDefault: true,
    moduleCache: false,
    virtualModules: { refresh: self },
  })
  return jiti.import(file)
}
