import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { configDir } from '../core/config-dir.js'
import type { RetryPolicy } from '../core/definitions.js'
import { NonRetriableError } from '../core/errors.js'

/** What every building block's factory accepts. */
export interface BlockOptions {
  /**
   * Where the refresh keeps its files: default `.refresh/data` beside the config file (like the
   * store), whatever the working directory. A relative path is resolved beside the config too;
   * an absolute path or a `file:` URL is used as is. Outside a config (a test calling
   * `materialize()`), relative paths resolve against the current directory.
   */
  dataDir?: string | URL
  /** The asset's key (default: the block's name). */
  key?: string
  /** The asset it reads (default: the previous block of the chain). */
  upstream?: string
  group?: string
  retry?: Partial<RetryPolicy>
  timeoutMs?: number
}

export const DEFAULT_DATA_DIR = '.refresh/data'

/**
 * What every building block's asset shares: its key (the block's name unless `key` says
 * otherwise), its deps, the `refresh` group, the tags that say which block it is and where its
 * data lives (`refresh query` and `refresh promote` read them), and its retry policy (the
 * block's default unless `retry` says otherwise) and timeout.
 */
export function blockFields(
  block: string,
  options: BlockOptions,
  dataDir: string,
  defaults: { deps: string[]; retry?: Partial<RetryPolicy>; tags?: Record<string, string> },
) {
  return {
    key: options.key ?? block,
    deps: defaults.deps,
    group: options.group ?? 'refresh',
    tags: { block, dataDir, ...defaults.tags },
    retry: options.retry ?? defaults.retry,
    timeoutMs: options.timeoutMs,
  }
}

/** The absolute data directory of a block: see `BlockOptions.dataDir`. */
export function resolveDataDir(dir: string | URL | undefined): string {
  if (dir instanceof URL) return fileURLToPath(dir)
  const base = configDir() ?? process.cwd()
  return resolve(base, dir ?? DEFAULT_DATA_DIR)
}

/** Every path of the data directory, in one place. */
export function layout(dataDir: string) {
  return {
    root: dataDir,
    catalog: join(dataDir, 'catalog.db'),
    work: join(dataDir, 'work'),
    workDb: (runId: string) => join(dataDir, 'work', `${runId}.db`),
    indexes: join(dataDir, 'indexes'),
    index: (name: string) => join(dataDir, 'indexes', name),
    snapshots: join(dataDir, 'snapshots'),
    snapshot: (id: string) => join(dataDir, 'snapshots', id),
    replicas: join(dataDir, 'replicas'),
    replica: (name: string) => join(dataDir, 'replicas', name),
    /** The `current` alias: which snapshot (and index) is promoted, and the previous ones. */
    alias: join(dataDir, 'current.json'),
  }
}

export type Layout = ReturnType<typeof layout>

/**
 * Makes sure a directory exists and is writable; otherwise fails (not retried) with an error
 * that names the path and the fix.
 */
export function ensureWritableDir(dir: string): void {
  const probe = join(dir, `.write-test-${process.pid}`)
  try {
    mkdirSync(dir, { recursive: true })
    writeFileSync(probe, '')
    rmSync(probe, { force: true })
  } catch (cause) {
    throw new NonRetriableError(
      `cannot write to the data directory ${dir} (${describe(cause)}); make it writable or set \`dataDir\` to another directory in refresh.config.ts.`,
      { cause },
    )
  }
}

/** Wraps a file system or SQLite error with the path it concerns; disk-full gets its own words. */
export function fileError(action: string, path: string, cause: unknown): Error {
  const code = (cause as { code?: unknown })?.code
  if (code === 'ENOSPC' || code === 'SQLITE_FULL') {
    return new Error(`the disk is full: could not ${action} ${path}; free some space and retry.`, { cause })
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'SQLITE_READONLY') {
    return new NonRetriableError(`could not ${action} ${path} (${describe(cause)}); make it writable.`, {
      cause,
    })
  }
  return new Error(`could not ${action} ${path}: ${describe(cause)}`, { cause })
}

function describe(cause: unknown): string {
  if (cause instanceof Error) return cause.message
  return String(cause)
}

/** Writes a JSON file atomically: a temp file, fsync, rename. Readers see the old or the new content. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`
  try {
    writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`)
    const fd = openSync(tmp, 'r')
    try {
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
  } catch (cause) {
    rmSync(tmp, { force: true })
    throw fileError('write', path, cause)
  }
}

/** Reads a JSON file, or undefined when it does not exist. */
export function readJson<T>(path: string): T | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (cause) {
    if ((cause as { code?: unknown }).code === 'ENOENT') return undefined
    throw fileError('read', path, cause)
  }
  try {
    return JSON.parse(text) as T
  } catch (cause) {
    throw new NonRetriableError(`${path} is not valid JSON (${describe(cause)}); remove or restore it.`, {
      cause,
    })
  }
}

/**
 * A dep's metadata field, or a clear error when the upstream step did not produce it. The fix it
 * names runs this step with everything upstream of it (`refresh run +clean`), which works
 * whatever is missing further up; `+key`'s own `key+` would fail in turn when the gap is higher.
 */
export function upstreamField<T>(
  ctx: { key: string; upstream: Readonly<Record<string, Record<string, unknown> | undefined>> },
  key: string,
  field: string,
  check: (v: unknown) => v is T,
): T {
  const value = ctx.upstream[key]?.[field]
  if (!check(value)) {
    throw new NonRetriableError(
      `upstream asset \`${key}\` has no \`${field}\` in its metadata (it has not materialized yet in this store); run \`${ctx.key}\` with everything upstream of it: \`refresh run +${ctx.key}\`.`,
    )
  }
  return value
}

export const isString = (v: unknown): v is string => typeof v === 'string'
export const isNumber = (v: unknown): v is number => typeof v === 'number'
