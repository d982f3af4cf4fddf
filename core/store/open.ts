import { resolve } from 'node:path'
import { StoreError } from '../errors.js'
import type { RunStore } from './run-store.js'

export interface OpenStoreOptions {
  /**
   * Open for reading only (the store must exist); `if-unwritable`: for writing unless this user
   * cannot write the store, then for reading only (what the reading commands ask for).
   */
  readonly?: boolean | 'if-unwritable'
  /** How long a write waits for another writer before a `StoreBusyError` (default 5000 ms). */
  busyTimeoutMs?: number
}

/** `scheme://…`: a location that names a server, not a file. */
const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i

/**
 * The one way to a run store: a file path or `:memory:` opens SQLite (created and migrated if
 * needed). A URL is never taken for a file name (it would create a folder named after it, with
 * any password in its path).
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<RunStore> {
  if (typeof location !== 'string' || location.trim() === '') {
    throw new StoreError(
      'the store location is empty; pass a file path, or `:memory:` for a store in memory.',
    )
  }
  if (URL_LIKE.test(location)) {
    const scheme = location.slice(0, location.indexOf(':')).toLowerCase()
    const what =
      scheme === 'postgres' || scheme === 'postgresql'
        ? 'a Postgres store is not supported yet'
        : `\`${scheme}://\` is not a store this version knows`
    throw new StoreError(
      `${what}; pass a file path (an SQLite store) instead, e.g. --store .refresh/refresh.db.`,
    )
  }
  const { SqliteStore } = await import('./sqlite/store.js')
  return SqliteStore.open(location, options)
}

/**
 * A store location as given (a flag, a config's `store`) made absolute: a file path is resolved
 * against `baseDir`; `:memory:` and URLs are kept as they are.
 */
export function resolveStoreLocation(location: string, baseDir: string): string {
  return location === ':memory:' || URL_LIKE.test(location) ? location : resolve(baseDir, location)
}

/** Whether a location names a file (which reading commands require to exist). */
export function isFileLocation(location: string): boolean {
  return location !== ':memory:' && !URL_LIKE.test(location)
}

/** Whether a value is an opened store (rather than a location). */
export function isRunStore(value: unknown): value is RunStore {
  return typeof value === 'object' && value !== null && typeof (value as RunStore).createRun === 'function'
}
