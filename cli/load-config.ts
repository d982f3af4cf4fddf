import { readFileSync } from 'node:fs'
import { dirname, extname } from 'node:path'
import { pathToFileURL } from 'node:url'
import { type RefreshConfig, validateConfig } from '../core/config.js'
import { withConfigDir } from '../core/config-dir.js'
import { ConfigError } from '../core/errors.js'

export interface LoadedConfig {
  config: RefreshConfig
  /** Absolute path of the config file. */
  file: string
  /** The directory relative paths in the config (store, data) are resolved against. */
  dir: string
}

/** What a config file needs at least; quoted by the errors about a missing or empty config. */
export const MINIMAL_CONFIG = `import { asset, defineConfig } from 'refresh'

export default defineConfig({
  assets: [asset({ key: 'hello', materialize: () => ({ greeting: 'hello' }) })],
})`

const indent = (text: string) =>
  text
    .split('\n')
    .map((l) => (l ? `    ${l}` : l))
    .join('\n')

/**
 * Loads and validates a config file. TypeScript is loaded natively where this Node strips types,
 * else through jiti; under jiti, `import ... from 'refresh'` is bound to this very copy of the
 * library, so a config outside any project that installs refresh works too. A load failure
 * names the file and keeps the cause. The building blocks declared while the file (and later its
 * environment blocks) is evaluated keep their data beside it (`withConfigDir`).
 */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  const dir = dirname(file)
  let mod: unknown
  try {
    mod = await withConfigDir(dir, () => importConfig(file))
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause
    const message = cause instanceof Error ? cause.message : String(cause)
    throw new ConfigError(`cannot load ${file}: ${message}${moduleFormatHint(message, file)}`, { cause })
  }
  return { config: validateConfig(defaultExport(mod, file), file), file, dir }
}

/**
 * A file that exports nothing which Node loaded itself as CommonJS (a `.ts` file without any
 * `import` or `export` is one, where Node strips types) still has a default: its empty
 * `module.exports`. It has no default export all the same.
 */
function exportsNothing(ns: Record<string, unknown>, file: string): boolean {
  const value = ns.default
  if (typeof value !== 'object' || value === null || Object.keys(value).length > 0) return false
  return !/\bexport\b|\bexports\b/.test(readFileSync(file, 'utf8'))
}

/**
 * The config is the module's default export. A CommonJS file's `module.exports` counts as its
 * default; a module without one, or whose default is not an object, is told what to export.
 */
function defaultExport(mod: unknown, file: string): unknown {
  const ns = (typeof mod === 'object' && mod !== null ? mod : {}) as Record<string, unknown>
  if (!('default' in ns) || exportsNothing(ns, file)) {
    // `module.exports = defineConfig({...})` loaded through jiti comes back as the object itself
    // (an ES module's namespace is marked as one, and its named exports are not the config)
    const esm = ns.__esModule === true || ns[Symbol.toStringTag as unknown as string] === 'Module'
    if ('assets' in ns && !esm) return ns
    const named = Object.keys(ns).filter((k) => !['__esModule', 'default', 'module.exports'].includes(k))
    throw new ConfigError(
      `${file} has no default export${named.length ? ` (it exports ${named.map((n) => `\`${n}\``).join(', ')})` : ''}; refresh reads the config from \`export default defineConfig({ assets: [...] })\`. The smallest config:\n\n${indent(MINIMAL_CONFIG)}`,
    )
  }
  let value = ns.default
  // a CommonJS module compiled from ESM: `exports.default = ...` under the namespace's default
  if (
    typeof value === 'object' &&
    value !== null &&
    !('assets' in value) &&
    'default' in value &&
    (value as { __esModule?: unknown }).__esModule === true
  ) {
    value = (value as { default: unknown }).default
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const what = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`
    throw new ConfigError(
      `the default export of ${file} is ${what}; it must be the config: \`export default defineConfig({ assets: [...] })\`. The smallest config:\n\n${indent(MINIMAL_CONFIG)}`,
    )
  }
  if (!('assets' in value)) {
    throw new ConfigError(
      `the default export of ${file} declares no \`assets\`; give it the assets to materialize: \`export default defineConfig({ assets: [...] })\`. The smallest config:\n\n${indent(MINIMAL_CONFIG)}`,
    )
  }
  return value
}

/**
 * An ES module loaded as CommonJS (or the reverse) fails with an error that does not say why; the
 * file's extension and the nearest package.json's `"type"` decide which one it is.
 */
function moduleFormatHint(message: string, file: string): string {
  const esmAsCjs =
    /Cannot use import statement outside a module|Cannot use 'import\.meta' outside a module|Unexpected token 'export'/.test(
      message,
    )
  if (esmAsCjs) {
    const esmName = ['.ts', '.mts', '.cts'].includes(extname(file))
      ? 'refresh.config.mts'
      : 'refresh.config.mjs'
    return `. The file was loaded as CommonJS: its package.json has no \`"type": "module"\`. Rename it to ${esmName}, or add \`"type": "module"\` to package.json. (\`new URL(..., import.meta.url)\` needs an ES module; the building blocks keep their data beside the config without it.)`
  }
  if (/require is not defined in ES module scope|__dirname is not defined in ES module scope/.test(message)) {
    return `. The file is an ES module, where \`require\` and \`__dirname\` do not exist: use \`import\` (and \`import.meta.dirname\`), or rename it to refresh.config.cts.`
  }
  return ''
}

let refreshBound = false

/** For configs Node loads itself: `import ... from 'refresh'` is this copy (see config-hooks.ts). */
async function bindRefresh(): Promise<void> {
  if (refreshBound) return
  refreshBound = true
  const { register } = await import('node:module')
  register(new URL('./config-hooks.js', import.meta.url), {
    data: { refresh: new URL('../index.js', import.meta.url).href },
  })
}

async function importConfig(file: string): Promise<unknown> {
  const ts = ['.ts', '.mts', '.cts'].includes(extname(file))
  const nativeTs = (process.features as { typescript?: unknown }).typescript
  // refresh itself running from its TypeScript sources (its own tests): only jiti can bind
  // 'refresh' to this copy, which Node cannot import as it is
  const fromSource = import.meta.url.endsWith('.ts')
  if (!fromSource && (!ts || nativeTs)) {
    await bindRefresh()
    return import(pathToFileURL(file).href)
  }
  const [{ createJiti }, self] = await Promise.all([import('jiti'), import('../index.js')])
  const jiti = createJiti(import.meta.url, {
    // the namespace as is: `defaultExport` picks the default (jiti's interop reads `.then` of it)
    interopDefault: false,
    moduleCache: false,
    virtualModules: { refresh: self },
  })
  return jiti.import(file)
}
