import { readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { z } from 'zod/v4'
import { type S3Options, S3Store, s3Location, s3Url } from '../aws/s3.js'
import { yieldSlice } from '../core/async.js'
import { type AssetDefinition, asset } from '../core/definitions.js'
import { ConfigError } from '../core/errors.js'
import { identifier } from '../search/index-shard.js'
import {
  type BlockOptions,
  blockFields,
  ensureWritableDir,
  fileError,
  isString,
  layout,
  parseOptions,
  resolveDataDir,
  sweepTemps,
  tempPath,
  upstreamField,
} from './layout.js'
import { copyFromPostgres, type PostgresCopyBlock } from './postgres-refresh.js'
import { columnDefinitions, configError, idColumnOf, requireColumns, tableSchema } from './schema.js'
import { MAX_ROWID, type SliceOptions } from './slices.js'

export const copyConfig = z.object({
  /** Working databases of earlier runs to keep (the newest ones); older ones are removed. */
  keepWork: z.number().int().min(0).default(1),
  /** Export objects downloaded at once when the source is in S3. */
  downloadConcurrency: z.number().int().min(1).max(64).default(4),
})

export interface CopyOptions extends BlockOptions {
  /**
   * The upstream export in S3 (`s3://bucket/prefix/` or `{ bucket, prefix }`): NDJSON objects,
   * optionally gzipped, read instead of the `catalog` asset's database (the asset then has no deps).
   */
  source?: string | { bucket: string; prefix?: string }
  /** S3 client options (region, retries; tests may pass a client). */
  s3?: S3Options
  /** The upstream table to copy (default: the upstream asset's metadata `table`, `media` for `catalog`). */
  table?: string
  /** The columns to copy (default: every column of the upstream table, as introspected). */
  columns?: string[]
  /**
   * The integer column the table is split on into id ranges (copy slices, clean slices, one
   * reindex worker per range); default: the table's INTEGER PRIMARY KEY, else `id`.
   */
  idColumn?: string
  /**
   * Copy from an upstream Postgres database into a new table of the API database (named for the
   * run), streamed with COPY in id ranges, resumable (see assets/postgres-copy.ts), instead of
   * into a working file. `true` takes the databases from `$REFRESH_UPSTREAM_URL` and `$REFRESH_API_URL`.
   */
  postgres?: PostgresCopyBlock | true
}

/** What `copy` takes from the config to choose the table and its columns (validated when the asset is declared). */
export const copyOptionsSchema = z.object({
  table: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain table name')
    .optional(),
  columns: z
    .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain column name'))
    .min(1)
    .optional(),
  idColumn: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain column name')
    .optional(),
})

export interface CopySchemaOptions {
  table?: string
  columns?: readonly string[]
  idColumn?: string
}

export interface CopyResult {
  rows: number
  table: string
  idColumn: string
  columns: string[]
}

/** The `media` table's columns: the local copy and the S3 export load into the same table. */
export const MEDIA_COLUMNS = `id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, title TEXT, creator TEXT, url TEXT,
  license TEXT, provider TEXT NOT NULL, tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL`

/**
 * Rows copied per slice: about 10 ms of work here, so the event loop gets a turn many times a
 * second (progress is written, a cancel is seen at once) at a cost of a few ms in all.
 */
const COPY_SLICE = 20_000

/**
 * Copies the upstream `media` table into a fresh working database `target`, in slices of
 * `COPY_SLICE` rows by id with a turn of the event loop between them. It is written as
 * `<target>.tmp` and renamed at the end, so an aborted or failed copy leaves nothing at `target`;
 * on abort the temporary file goes at once (the process may exit before the next slice: a
 * canceled run ends without waiting for its steps).
 * The working file is scratch (rebuilt by a retry), so it is written without journal or fsync.
 * Returns the rows copied.
 */
export async function copyTable(
  source: string,
  target: string,
  options: SliceOptions & CopySchemaOptions = {},
): Promise<number> {
  return (await copyRows(source, target, options)).rows
}

/**
 * `copyTable` for any table: the upstream `table` (default `media`) is introspected (`PRAGMA
 * table_info`), `columns` (default all) are copied into a table of the same name and column
 * types, sliced on `idColumn` (default: its INTEGER PRIMARY KEY, else `id`). A column named in
 * the options that the table does not have is a `ConfigError` naming it.
 */
export async function copyRows(
  source: string,
  target: string,
  options: SliceOptions & CopySchemaOptions = {},
): Promise<CopyResult> {
  const { signal, progress, sliceRows = COPY_SLICE } = options
  const table = options.table ?? 'media'
  signal?.throwIfAborted()
  const tmp = `${target}.tmp`
  for (const file of [target, tmp])
    for (const suffix of ['', '-journal']) rmSync(file + suffix, { force: true })
  const db = new Database(tmp)
  // an abort is dispatched between two slices (this thread runs one or the other)
  const discard = () => {
    db.close()
    rmSync(tmp, { force: true })
  }
  signal?.addEventListener('abort', discard, { once: true })
  try {
    db.pragma('journal_mode = OFF')
    db.pragma('synchronous = OFF')
    db.prepare('ATTACH DATABASE ? AS up').run(source)
    const schema = tableSchema(db, table, 'up')
    if (!schema) {
      throw configError(
        `copy: the upstream database ${source} has no table \`${table}\`; set \`table\` on \`copy({ table })\` to one of its tables.`,
      )
    }
    const columns = options.columns ? [...options.columns] : schema.columns.map((c) => c.name)
    requireColumns(schema, columns, 'copy', 'columns')
    const idColumn = idColumnOf(schema, options.idColumn, 'copy')
    if (!columns.includes(idColumn)) {
      throw configError(
        `copy: \`columns\` must include the id column \`${idColumn}\` of table \`${table}\` (the ranges are split on it); add it to \`columns\` or set \`idColumn\`.`,
      )
    }
    const t = identifier(table)
    const id = identifier(idColumn)
    const list = columns.map(identifier).join(', ')
    db.exec(`CREATE TABLE main.${t} (${columnDefinitions(schema, columns)})`)
    const total = db.prepare(`SELECT count(*) FROM up.${t}`).pluck().get() as number
    // ids as BigInt: a slice's bounds are exact whatever the ids
    const first = db.prepare(`SELECT min(${id}) FROM up.${t}`).pluck().safeIntegers().get() as bigint | null
    // the first id of the next slice: the id b-tree walked `COPY_SLICE` rows on
    const nextSlice = db
      .prepare(`SELECT ${id} FROM up.${t} WHERE ${id} >= ? ORDER BY ${id} LIMIT 1 OFFSET ?`)
      .pluck()
      .safeIntegers()
    const copySlice = db.prepare(
      `INSERT INTO main.${t} (${list}) SELECT ${list} FROM up.${t} WHERE ${id} BETWEEN ? AND ? ORDER BY ${id}`,
    )
    let copied = 0
    for (let from = first; from !== null; ) {
      const next = (nextSlice.get(from, sliceRows) as bigint | undefined) ?? null
      copied += copySlice.run(from, next === null ? MAX_ROWID : next - 1n).changes
      progress?.(copied, total)
      from = next
      await yieldSlice(signal)
    }
    // a table whose id is not its rowid gets an index on it: clean and reindex read by id ranges
    if (!/PRIMARY KEY/.test(columnDefinitions(schema, [idColumn])))
      db.exec(`CREATE INDEX main.${identifier(`${table}_${idColumn}_idx`)} ON ${t} (${id})`)
    db.close()
    renameSync(tmp, target)
    return { rows: copied, table, idColumn, columns }
  } catch (error) {
    db.close()
    rmSync(tmp, { force: true })
    throw error
  } finally {
    signal?.removeEventListener('abort', discard)
  }
}

/**
 * `copy`: the upstream table copied into a new working database named for the run; from the
 * `catalog` asset's database, or with `source` from an export in S3.
 */
export function copy(options: CopyOptions = {}): AssetDefinition {
  const schema = parseOptions(copyOptionsSchema, options, 'copy')
  if (options.source !== undefined && options.postgres)
    throw configError(
      'copy({ source, postgres }): choose one upstream, an S3 export (`source`) or a Postgres database (`postgres`).',
    )
  if (options.source !== undefined) return copyFromS3(options, options.source)
  if (options.postgres) {
    return copyFromPostgres({ ...options, ...schema }, options.postgres === true ? {} : options.postgres)
  }
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  const from = options.upstream ?? 'catalog'
  return asset({
    ...blockFields('copy', options, dataDir, {
      deps: [from],
      retry: { maxAttempts: 3, delayMs: 500, backoff: 'exponential' },
    }),
    description: 'the upstream table copied into a fresh working database',
    config: copyConfig,
    ...sweepTemps(() => [paths.work]),
    async materialize(ctx) {
      const source = upstreamField(ctx, from, 'file', isString)
      ensureWritableDir(paths.work)
      const file = paths.workDb(ctx.runId)
      const partial = tempPath(file, ctx.runId)
      // the table: the option, else what the upstream asset says it wrote
      const upstreamTable = ctx.upstream[from]?.table
      const table = schema.table ?? (typeof upstreamTable === 'string' ? upstreamTable : 'media')
      let copied: CopyResult
      try {
        copied = await copyRows(source, partial, {
          table,
          ...(schema.columns ? { columns: schema.columns } : {}),
          ...(schema.idColumn ? { idColumn: schema.idColumn } : {}),
          signal: ctx.signal,
          progress: (done, total) => ctx.progress(done, total),
        })
        renameSync(partial, file)
      } catch (cause) {
        for (const suffix of ['', '-journal']) rmSync(partial + suffix, { force: true })
        if (ctx.signal.aborted || cause instanceof ConfigError) throw cause
        throw fileError(`copy ${source} into`, file, cause)
      }
      const removed = pruneWork(paths.work, file, ctx.config.keepWork)
      if (removed.length) ctx.log(`removed ${removed.length} old working database(s)`)
      return {
        file,
        table: copied.table,
        idColumn: copied.idColumn,
        columns: copied.columns,
        rows: copied.rows,
        bytes: statSync(file).size,
        source,
      }
    },
  })
}

/**
 * `copy({ source })`: the export's objects loaded into the run's working database. A retry of the
 * step (the next attempt of the same run) reopens that database and loads only the objects an
 * earlier attempt did not finish (see assets/s3-export.ts).
 */
function copyFromS3(
  options: CopyOptions,
  source: string | { bucket: string; prefix?: string },
): AssetDefinition {
  const where = 'copy({ source })'
  const loc = s3Location(source, where)
  const url = s3Url(loc.bucket, loc.prefix)
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  return asset({
    ...blockFields('copy', options, dataDir, {
      deps: [],
      retry: { maxAttempts: 3, delayMs: 500, backoff: 'exponential' },
      tags: { source: url },
    }),
    description: `the upstream export (${url}) loaded into a fresh working database`,
    config: copyConfig,
    ...sweepTemps(() => [paths.work]),
    async materialize(ctx) {
      const { exportObjects, loadExport } = await import('./s3-export.js')
      const store = new S3Store({ ...options.s3, where })
      try {
        const found = await exportObjects(store, loc, where)
        ensureWritableDir(paths.work)
        const file = paths.workDb(ctx.runId)
        // loaded under a temporary name: a first attempt starts clean; a retry of the same run
        // resumes the database it left
        const partial = tempPath(file, ctx.runId)
        if (ctx.attempt === 1)
          for (const suffix of ['', '-journal']) rmSync(partial + suffix, { force: true })
        ctx.log(
          `${found.objects.length} export object(s) under ${url}${found.manifest ? ' (from its manifest.json)' : ''}`,
        )
        const result = await loadExport({
          store,
          bucket: loc.bucket,
          file: partial,
          tempDir: paths.work,
          runId: ctx.runId,
          objects: found.objects,
          concurrency: ctx.config.downloadConcurrency,
          columns: MEDIA_COLUMNS,
          signal: ctx.signal,
          log: (m) => ctx.log(m),
          progress: (done, total) => ctx.progress(done, total),
        })
        renameSync(partial, file)
        const removed = pruneWork(paths.work, file, ctx.config.keepWork)
        if (removed.length) ctx.log(`removed ${removed.length} old working database(s)`)
        return {
          file,
          table: 'media',
          rows: result.rows,
          bytes: statSync(file).size,
          source: url,
          objects: found.objects.length,
          loadedObjects: result.loaded,
          skippedObjects: result.skipped,
        }
      } finally {
        store.close()
      }
    },
  })
}

/**
 * Removes working databases beyond the newest `keep` (run ids sort by time), never `current`, nor
 * a temporary one (another run may be writing it; recovery sweeps those of dead runs).
 */
function pruneWork(dir: string, current: string, keep: number): string[] {
  const others = readdirSync(dir)
    .filter((f) => f.endsWith('.db') && !f.startsWith('.') && join(dir, f) !== current)
    .sort()
  const drop = others.slice(0, Math.max(0, others.length - keep))
  for (const f of drop) for (const suffix of ['', '-journal']) rmSync(join(dir, f + suffix), { force: true })
  return drop
}
