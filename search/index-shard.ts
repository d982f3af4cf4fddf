import { existsSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import Database from 'better-sqlite3'
import type { JsonObject } from '../core/json.js'

/** A searchable field: a column, or a JSON array column whose items (or each item's `list` field) are indexed as words. */
export type SearchableField = string | { column: string; list?: true | string }

/** What the index holds: the searchable fields (full-text) and the stored ones (returned with hits). */
export interface IndexFields {
  searchable: SearchableField[]
  stored: string[]
}

/** The media index: titles, creators and tag names searchable; the rest stored so hits can be shown. */
export const MEDIA_FIELDS: IndexFields = {
  searchable: ['title', 'creator', { column: 'tags', list: 'name' }],
  stored: ['url', 'license', 'provider', 'identifier'],
}

const fieldColumn = (f: SearchableField) => (typeof f === 'string' ? f : f.column)

/** The columns of the source table that `fields` read. */
export function fieldColumns(fields: IndexFields): string[] {
  return [...fields.searchable.map(fieldColumn), ...fields.stored]
}

/** The FTS5 table `docs` for `fields` (rowid = the source's id). */
export function ftsTableSql(fields: IndexFields = MEDIA_FIELDS): string {
  const columns = [
    ...fields.searchable.map((f) => identifier(fieldColumn(f))),
    ...fields.stored.map((c) => `${identifier(c)} UNINDEXED`),
  ]
  return `CREATE VIRTUAL TABLE docs USING fts5(
  ${columns.join(', ')},
  tokenize = 'unicode61 remove_diacritics 2'
)`
}

/**
 * The full-text index: one SQLite file per shard with an FTS5 table `docs` (rowid = media id).
 * Titles, creators and tag names are searchable; the rest is stored so hits can be shown.
 */
export const FTS_TABLE_SQL = ftsTableSql(MEDIA_FIELDS)

/** Fills `docs` from a cleaned table, for the half-open id range [?, ?). */
export function fillSql(table: string, fields: IndexFields = MEDIA_FIELDS, idColumn = 'id'): string {
  const id = identifier(idColumn)
  const value = (f: SearchableField) => {
    if (typeof f === 'string') return `m.${identifier(f)}`
    if (f.list === undefined) return `m.${identifier(f.column)}`
    const item = f.list === true ? 't.value' : `json_extract(t.value, '$.${identifier(f.list).slice(1, -1)}')`
    return `(SELECT group_concat(${item}, ' ') FROM json_each(m.${identifier(f.column)}) AS t)`
  }
  const names = fieldColumns(fields).map(identifier)
  const values = [...fields.searchable.map(value), ...fields.stored.map((c) => `m.${identifier(c)}`)]
  return `INSERT INTO docs (rowid, ${names.join(', ')})
  SELECT m.${id}, ${values.join(', ')}
  FROM src.${identifier(table)} AS m WHERE m.${id} >= ? AND m.${id} < ? ORDER BY m.${id}`
}

/** Settings for a scratch file built in one go: no fsync, a larger page cache for FTS merges. */
export const BUILD_PRAGMAS = ['synchronous = OFF', 'cache_size = -65536', 'temp_store = MEMORY'] as const

export interface IndexShardInput {
  /** The cleaned database (a path, or `s3://bucket/key`: downloaded first, checked) and its table. */
  source: string
  table: string
  /** The id column the range is on (default `id`). */
  idColumn?: string
  /** The index's fields (default: the media index's, `MEDIA_FIELDS`). */
  fields?: IndexFields
  /** The half-open id range [lo, hi). */
  lo: number
  hi: number
  /** The shard file to write (replaced if it exists), or `s3://bucket/key`: built in a temp dir, then uploaded. */
  output: string
  shard: number
  /** Fault injection for tests and drills: make this attempt crash (SIGKILL) or exit non-zero. */
  fail?: 'crash' | 'exit' | null
  /**
   * Read the range from a Postgres table (`table`, in the URL's `?schema=`) instead of `source`:
   * `env` names the environment variable that holds the database's URL (the URL itself never
   * travels in the input).
   */
  database?: { env: string } | undefined
}

export interface TaskReporter {
  progress(done: number, total: number): void
  /**
   * Aborted when whoever started the task is gone (a local worker's parent died): the task stops
   * at once and completes nothing more. Check it before making a result visible.
   */
  readonly signal?: AbortSignal
}

/**
 * Builds one shard: every row of the range into a fresh FTS5 file. Returns its counts, its size
 * and time, and for an S3 output the uploaded object's SHA-256 (what the orchestrator checks the
 * download against). The build yields to the event loop between batches, so a status write in
 * flight (an S3 PutObject) goes out while it runs. A batch that fails fails the whole range: the
 * transaction is rolled back and nothing of it counts as done.
 */
export async function indexShard(input: IndexShardInput, report: TaskReporter): Promise<JsonObject> {
  const started = performance.now()
  const remoteSource = !input.database && input.source.startsWith('s3://')
  const remoteOutput = input.output.startsWith('s3://')
  if (!remoteSource && !remoteOutput) {
    const built = await buildShard(input, input.source, input.output, report)
    return { ...built, bytes: statSync(input.output).size, ms: Math.round(performance.now() - started) }
  }
  const { S3Store, parseS3ObjectUrl } = await import('../aws/s3.js')
  const store = new S3Store({ where: 'the index-shard input' })
  const scratch = mkdtempSync(join(tmpdir(), 'refresh-shard-'))
  try {
    let source = input.source
    if (remoteSource) {
      const { bucket, key } = parseS3ObjectUrl(input.source)
      source = join(scratch, basename(key))
      await store.download(bucket, key, source)
    }
    const output = remoteOutput ? join(scratch, `shard-${input.shard}.db`) : input.output
    const built = await buildShard(input, source, output, report)
    if (!remoteOutput) {
      return { ...built, bytes: statSync(output).size, ms: Math.round(performance.now() - started) }
    }
    const { bucket, key } = parseS3ObjectUrl(input.output)
    const up = await store.upload(output, bucket, key, { contentType: 'application/vnd.sqlite3' })
    return {
      ...built,
      output: input.output,
      bytes: up.bytes,
      sha256: up.sha256,
      ms: Math.round(performance.now() - started),
    }
  } finally {
    store.close()
    rmSync(scratch, { recursive: true, force: true })
  }
}

async function buildShard(
  input: IndexShardInput,
  source: string,
  output: string,
  report: TaskReporter,
): Promise<JsonObject> {
  // ATTACH creates a database that does not exist: a missing source would leave an empty file
  // behind (and an empty shard); it is refused before anything is written
  if (!input.database && !existsSync(source)) {
    throw new Error(
      `the source database ${source} does not exist; pass the cleaned database the \`clean\` step wrote (its metadata's \`file\`).`,
    )
  }
  // built under a temporary name and renamed into place: a failed build leaves no shard file
  const building = `${output}.${process.pid}.building`
  rmSync(building, { force: true })
  rmSync(`${building}-journal`, { force: true })
  let built = false
  let pg: import('./postgres-source.js').PostgresRange | undefined
  const db = new Database(building)
  try {
    for (const pragma of BUILD_PRAGMAS) db.pragma(pragma)
    let total: number
    let fill: { run(lo: number, hi: number): { changes: number } | Promise<{ changes: number }> }
    if (input.database) {
      const { postgresRange } = await import('./postgres-source.js')
      const range = await postgresRange(input, db)
      pg = range
      total = await range.count()
      db.exec(ftsTableSql(input.fields ?? MEDIA_FIELDS))
      fill = range
    } else {
      db.prepare('ATTACH DATABASE ? AS src').run(source)
      total = (
        db
          .prepare(
            `SELECT count(*) AS n FROM src.${identifier(input.table)} WHERE ${identifier(input.idColumn ?? 'id')} >= ? AND ${identifier(input.idColumn ?? 'id')} < ?`,
          )
          .get(input.lo, input.hi) as { n: number }
      ).n
      db.exec(ftsTableSql(input.fields ?? MEDIA_FIELDS))
      fill = db.prepare(fillSql(input.table, input.fields ?? MEDIA_FIELDS, input.idColumn ?? 'id'))
    }
    report.progress(0, total)
    db.exec('CREATE TABLE shard_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID')
    const meta = db.prepare('INSERT INTO shard_meta (key, value) VALUES (?, ?)')
    const step = Math.max(1, Math.ceil((input.hi - input.lo) / 20))
    let done = 0
    db.exec('BEGIN')
    try {
      for (let lo = input.lo; lo < input.hi; lo += step) {
        done += (await fill.run(lo, Math.min(input.hi, lo + step))).changes
        report.progress(done, total)
        if (input.fail && lo + step >= input.lo + (input.hi - input.lo) / 2) fail(input.fail)
        await yieldToLoop()
        report.signal?.throwIfAborted()
      }
      if (input.fail) fail(input.fail)
      const fields = input.fields ?? MEDIA_FIELDS
      for (const [key, value] of Object.entries({
        shard: input.shard,
        lo: input.lo,
        hi: input.hi,
        documents: done,
        // which columns of `docs` are searchable: what readers of the shard (search/docs.ts) go by
        searchable: JSON.stringify(fields.searchable.map(fieldColumn)),
        stored: JSON.stringify(fields.stored),
      }))
        meta.run(key, value)
      db.exec('COMMIT')
    } catch (error) {
      if (db.inTransaction) db.exec('ROLLBACK')
      throw error
    }
    if (!input.database) db.exec('DETACH DATABASE src')
    // the commit takes a while: a parent that died meanwhile gets no shard
    report.signal?.throwIfAborted()
    built = true
    return {
      shard: input.shard,
      documents: done,
      maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    }
  } finally {
    await pg?.close()
    db.close()
    if (built) renameSync(building, output)
    else rmSync(building, { force: true })
    rmSync(`${building}-journal`, { force: true })
  }
}

function fail(mode: 'crash' | 'exit'): never {
  if (mode === 'crash') process.kill(process.pid, 'SIGKILL')
  process.stderr.write('index-shard: failing on purpose (fault injection)\n')
  process.exit(3)
}

/** A table name checked to be a plain identifier (it cannot be a bound parameter). */
export function identifier(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new Error(`not a plain table name: ${JSON.stringify(name)}`)
  return `"${name}"`
}
