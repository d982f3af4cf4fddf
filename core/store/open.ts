import { resolve } from 'node:path'
import { StoreError } from '../errors.js'
import type { RunStore } from './run-store.js'

export interface OpenStoreOptions {
  /**
   * Open for reading only (the store must exist); `if-unwritable`: for writing unless this user
   * cannot write the store, then for reading only (what the reading commands ask for).
   */
  readonly?: boolean | 'if-unwritable'
  /** How long a write waits for another writer (a lock) before a `StoreBusyError` (default 5000 ms). */
  busyTimeoutMs?: number
  /** Postgres: connections this process may open at most (default 4, or `?pool_size=N` in the URL). */
  poolSize?: number
  /** Postgres: how long the store keeps retrying while its server is unreachable (default 30000 ms). */
  reconnectMs?: number
}

/** `scheme://…`: a location that names a server, not a file. */
const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i

/**
 * The one way to a run store: a file path or `:memory:` opens SQLite, a `postgres://` (or
 * `postgresql://`) URL opens Postgres; either is created and migrated if needed. Any other URL is
 * refused: it is never taken for a file name (that would create a folder named after it, with any
 * password in its path).
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<RunStore> {
  if (typeof location !== 'string' || location.trim() === '') {
    throw new StoreError(
      'the store location is empty; pass a file path, or `:memory:` for a store in memory.',
    )
  }
  if (URL_LIKE.test(location)) {
    const scheme = location.slice(0, location.indexOf(':')).toLowerCase()
    if (scheme === 'postgres' || scheme === 'postgresql') {
      const { PostgresStore } = await import('./postgres/store.js')
      return PostgresStore.open(location, options)
    }
    throw new StoreError(
      `\`${scheme}://\` is not a store this version knows; pass a file path (an SQLite store, e.g. --store .refresh/refresh.db) or a postgres:// URL.`,
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

/**
 * A store location fit to print: a URL's password (and any `password=` parameter) replaced by
 * `***`. A file path is returned as it is.
 */
export function redactLocation(location: string): string {
  if (!URL_LIKE.test(location)) return location
  try {
    const url = new URL(location)
    if (url.password !== '') url.password = '***'
    for (const key of [...url.searchParams.keys()]) if (/pass/i.test(key)) url.searchParams.set(key, '***')
    return url.toString().replaceAll('%2A%2A%2A', '***')
  } catch {
    // not a URL the parser reads: cut everything between the scheme and the host
    return location.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1***@')
  }
}
