import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { z } from 'zod/v4'
import { configDir } from '../core/config-dir.js'
import { type AssetSpec, formatIssues, type RetryPolicy } from '../core/definitions.js'
import { ConfigError, NonRetriableError } from '../core/errors.js'

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

/** The name of the index the run `runId` builds (`idx-<runId>`): index names sort by their run's time. */
export function indexName(runId: string): string {
  return `idx-${runId}`
}

/** The run that built an index, from its name; undefined for a name `indexName` did not make. */
export function indexRun(name: string): string | undefined {
  return /^idx-([^./]+)$/.exec(name)?.[1]
}

/**
 * Temporary names. Whatever a block writes before it is complete (a catalog, a working database,
 * an index, a snapshot, a replica's copy, a JSON file) is written as `.partial-<runId>.<name>`
 * beside its final `<name>`, and renamed into place once complete. A file or directory left by a
 * run that died half-way is therefore known by its name alone, with the run that wrote it: the
 * blocks' `recover` hooks (`sweepTemps`) remove those of runs that recovery finds dead, and never
 * those of a run still alive. Run ids hold no `.`.
 */
const TEMP_NAME = /^\.partial-([^./]+)\./

/** The temporary name of `finalPath` for the run `runId`: `.partial-<runId>.<name>` in the same directory. */
export function tempPath(finalPath: string, runId: string): string {
  if (!/^[^./]+$/.test(runId)) throw new Error(`a run id holds no '.' or '/', not ${JSON.stringify(runId)}`)
  return join(dirname(finalPath), `.partial-${runId}.${basename(finalPath)}`)
}

/** The run whose temporary file or directory `name` is, or undefined for any other name. */
export function tempOwner(name: string): string | undefined {
  return TEMP_NAME.exec(name)?.[1]
}

/** The temporary files and directories directly in `dirs` (missing directories hold none). */
function temps(dirs: readonly string[]): Array<{ path: string; runId: string }> {
  const found: Array<{ path: string; runId: string }> = []
  for (const dir of dirs) {
    if (!existsSync(dir)) continue
    for (const name of readdirSync(dir)) {
      const runId = tempOwner(name)
      if (runId !== undefined) found.push({ path: join(dir, name), runId })
    }
  }
  return found
}

/** Removes the temporary files and directories of `runIds` directly in `dirs`; returns their paths. */
export function removeTemps(dirs: readonly string[], runIds: readonly string[]): string[] {
  const dead = new Set(runIds)
  const removed: string[] = []
  for (const t of temps(dirs)) {
    if (!dead.has(t.runId)) continue
    rmSync(t.path, { recursive: true, force: true })
    removed.push(t.path)
  }
  return removed
}

/**
 * The crash-recovery fields of a block that writes temporary names in `dirs` (read when recovery
 * runs: replica directories come and go): `leftoverRuns` tells recovery which runs have
 * temporary files there, so that those of runs that ended with their owner gone are swept too,
 * and `recover` removes the temporary files of the dead runs it is given, after `also` (the
 * block's own recovery: stopping remote work) when there is one. It returns what it removed and
 * what `also` returned, as one list.
 */
export function sweepTemps(
  dirs: () => readonly string[],
  also?: (runIds: readonly string[]) => unknown,
): Required<Pick<AssetSpec, 'recover' | 'leftoverRuns'>> {
  return {
    leftoverRuns: () => [...new Set(temps(dirs()).map((t) => t.runId))],
    async recover(runIds) {
      const other = also ? await also(runIds) : undefined
      const removed = removeTemps(dirs(), runIds)
      if (other === undefined) return removed
      return [...(Array.isArray(other) ? other : [other]), ...removed]
    },
  }
}

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

/**
 * Writes a JSON file atomically: a temp file, fsync, rename. Readers see the old or the new
 * content. A step passes its run id, so that a kill between the write and the rename leaves a
 * temporary name recovery knows (`tempPath`); other callers' temp files are named by their pid.
 */
export function writeJsonAtomic(path: string, value: unknown, runId?: string): void {
  const tmp = runId === undefined ? `${path}.${process.pid}.tmp` : tempPath(path, runId)
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

/**
 * A block factory's options checked against their zod schema when the asset is declared: a typo
 * fails `refresh validate`, not a run. Throws a `ConfigError` naming the block and each bad field.
 */
export function parseOptions<T>(schema: z.ZodType<T>, options: unknown, block: string): T {
  const parsed = schema.safeParse(options)
  if (!parsed.success)
    throw new ConfigError(`${block}(...) options are invalid: ${formatIssues(parsed.error)}`)
  return parsed.data
}
