import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * The directory of the config file being evaluated. The CLI loads `refresh.config.ts` (and later
 * calls its environment blocks) inside `withConfigDir`, so what the config declares can resolve
 * its relative paths beside the file, whatever the working directory: the building blocks'
 * default data directory is `.refresh/data` there, like the store. Outside a config (a test
 * calling `materialize()`), there is none and the current directory is the base.
 */
const current = new AsyncLocalStorage<string>()

/** Runs `fn` (and everything it awaits) with `dir` as the config's directory. */
export function withConfigDir<T>(dir: string, fn: () => T): T {
  return current.run(dir, fn)
}

/** The directory of the config being evaluated, if any. */
export function configDir(): string | undefined {
  return current.getStore()
}
