/**
 * The upstream export in S3, as `copy({ source: 's3://bucket/prefix/' })` reads it: every
 * `*.ndjson`, `*.ndjson.gz`, `*.jsonl` and `*.jsonl.gz` object under the prefix (or the objects an
 * export `manifest.json` lists), one media record a line. Objects are downloaded a few at a time
 * into the data directory, checked (size and ETag from the listing, SHA-256 from the manifest),
 * and each is loaded into the work database in one transaction together with its row in
 * `_loaded`: the next attempt of the step reopens the same database and loads only what is not
 * there yet, so one bad object does not restart the whole copy.
 */
import { createReadStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import Database from 'better-sqlite3'
import { type S3Location, S3NotFoundError, type S3ObjectInfo, type S3Store, s3Url } from '../aws/s3.js'
import type { AwsCallError } from '../aws/service.js'
import { NonRetriableError } from '../core/errors.js'
import { tempPath } from './layout.js'

/** The objects of an export: data files only (a `manifest.json` beside them is read, not loaded). */
export const EXPORT_OBJECT = /\.(ndjson|jsonl)(\.gz)?$/

/** An export's `manifest.json`: the objects that make it up and what each must be. */
export interface ExportManifest {
  version?: number
  createdAt?: string
  rows?: number
  /** `key` is the object's full key, or a key relative to the export's prefix. */
  entries: Array<{ key: string; size?: number; sha256?: string; rows?: number }>
}

/** The columns of a media record, in the `media` table's order. */
const FIELDS = [
  'id',
  'identifier',
  'title',
  'creator',
  'url',
  'license',
  'provider',
  'tags',
  'created_at',
  'updated_at',
] as const

export interface ExportObject extends S3ObjectInfo {
  sha256?: string
}

/**
 * The objects to load: the manifest's entries when the prefix holds a `manifest.json` (each one
 * must be listed, with the size the manifest says), else every export object under the prefix.
 * A missing bucket or an empty prefix is a clear, non-retriable error.
 */
export async function exportObjects(
  store: S3Store,
  loc: S3Location,
  where: string,
): Promise<{ objects: ExportObject[]; manifest: boolean }> {
  const url = s3Url(loc.bucket, loc.prefix)
  let listed: S3ObjectInfo[]
  try {
    listed = await store.list(loc.bucket, loc.prefix)
  } catch (error) {
    throw asNonRetriable(error, where)
  }
  const byKey = new Map(listed.map((o) => [o.key, o]))
  const manifestKey = `${loc.prefix}manifest.json`
  if (byKey.has(manifestKey)) {
    const manifest = await store.getJson<ExportManifest>(loc.bucket, manifestKey)
    if (!manifest || !Array.isArray(manifest.entries)) {
      throw new NonRetriableError(
        `${s3Url(loc.bucket, manifestKey)} has no \`entries\` list; rewrite the export's manifest or remove it.`,
      )
    }
    const objects = manifest.entries.map((entry) => {
      const key = entry.key.startsWith(loc.prefix) ? entry.key : `${loc.prefix}${entry.key}`
      const found = byKey.get(key)
      if (!found) {
        throw new NonRetriableError(
          `${s3Url(loc.bucket, key)} is listed in the export manifest but is not in ${url}; re-run the export.`,
        )
      }
      if (entry.size !== undefined && entry.size !== found.size) {
        throw new Error(
          `${s3Url(loc.bucket, key)} is ${found.size} bytes but the export manifest says ${entry.size}; the export is incomplete or was overwritten.`,
        )
      }
      return { ...found, sha256: entry.sha256 }
    })
    if (objects.length === 0) throw emptyExport(url, where)
    return { objects, manifest: true }
  }
  const objects = listed.filter((o) => EXPORT_OBJECT.test(o.key))
  if (objects.length === 0) throw emptyExport(url, where)
  return { objects, manifest: false }
}

function emptyExport(url: string, where: string): NonRetriableError {
  return new NonRetriableError(
    `no export objects (*.ndjson, *.ndjson.gz, *.jsonl, *.jsonl.gz) under ${url}; export the catalog there first or fix \`source\` in ${where}.`,
  )
}

/** AWS errors that a retry cannot fix (a missing bucket, denied, invalid) become non-retriable. */
export function asNonRetriable(error: unknown, where: string): unknown {
  if (error instanceof S3NotFoundError) return new NonRetriableError(error.message, { cause: error })
  const aws = error as Partial<AwsCallError>
  if (aws?.name === 'AwsCallError' && (aws.kind === 'denied' || aws.kind === 'invalid'))
    return new NonRetriableError(`${aws.message} (${where})`, { cause: error })
  return error
}

export interface LoadOptions {
  store: S3Store
  bucket: string
  /** The work database (created, or reopened by a retry). */
  file: string
  /** Where downloads are written before they are loaded. */
  tempDir: string
  /** The run loading it: its downloads are temporary names of this run (`tempPath`). */
  runId: string
  objects: ExportObject[]
  concurrency: number
  columns: string
  signal: AbortSignal
  log(message: string): void
  progress(done: number, total: number): void
}

export interface LoadResult {
  rows: number
  /** Objects loaded by this attempt. */
  loaded: number
  /** Objects an earlier attempt had loaded (same key and ETag), not read again. */
  skipped: number
}

/**
 * Loads the objects into `media` of the work database, skipping those `_loaded` already holds
 * with the same ETag. Downloads run `concurrency` at a time; the loads go one at a time (one
 * SQLite connection), each object in its own transaction with its `_loaded` row, so an object is
 * either all in or not at all. On the first failure the other downloads stop; what was loaded
 * stays for the next attempt.
 */
export async function loadExport(o: LoadOptions): Promise<LoadResult> {
  const db = new Database(o.file)
  const temps: string[] = []
  try {
    db.pragma('synchronous = NORMAL')
    db.exec(`CREATE TABLE IF NOT EXISTS media (${o.columns});
      CREATE TABLE IF NOT EXISTS _loaded (key TEXT PRIMARY KEY, etag TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL)`)
    const done = new Map(
      (db.prepare('SELECT key, etag FROM _loaded').all() as Array<{ key: string; etag: string }>).map((r) => [
        r.key,
        r.etag,
      ]),
    )
    const wanted = new Map(o.objects.map((obj) => [obj.key, obj.etag]))
    const stale = [...done].filter(([key, etag]) => wanted.get(key) !== etag)
    if (stale.length > 0) {
      // an object changed (or left the export) since it was loaded: its rows cannot be told apart
      o.log(
        `${s3Url(o.bucket, stale[0]![0])} changed since an earlier attempt loaded it; loading the export again from the start`,
      )
      db.exec('DELETE FROM media; DELETE FROM _loaded')
      done.clear()
    }
    const pending = o.objects.filter((obj) => done.get(obj.key) !== obj.etag)
    const skipped = o.objects.length - pending.length
    const total = o.objects.reduce((a, obj) => a + obj.size, 0)
    let moved = total - pending.reduce((a, obj) => a + obj.size, 0)
    o.progress(moved, total)
    if (skipped > 0) o.log(`resuming: ${skipped} of ${o.objects.length} object(s) already loaded`)

    const insert = db.prepare(
      `INSERT INTO media (${FIELDS.join(', ')}) VALUES (${FIELDS.map(() => '?').join(', ')})`,
    )
    const mark = db.prepare('INSERT OR REPLACE INTO _loaded (key, etag, rows, bytes) VALUES (?, ?, ?, ?)')
    const stop = new AbortController()
    const signal = AbortSignal.any([o.signal, stop.signal])
    let lock: Promise<unknown> = Promise.resolve()
    let next = 0
    let failure: unknown
    const worker = async (slot: number) => {
      while (next < pending.length && !signal.aborted) {
        const obj = pending[next++]!
        const url = s3Url(o.bucket, obj.key)
        const temp = tempPath(
          join(o.tempDir, `export-${slot}${obj.key.endsWith('.gz') ? '.gz' : ''}`),
          o.runId,
        )
        temps.push(temp)
        await o.store.download(o.bucket, obj.key, temp, {
          signal,
          expect: { size: obj.size, etag: obj.etag, sha256: obj.sha256 },
          onBytes: (n) => {
            moved += n
            o.progress(moved, total)
          },
        })
        // one load at a time: the transaction spans the awaits of reading the file
        const turn = lock.then(() => loadObject(db, insert, mark, obj, url, temp, signal))
        lock = turn.catch(() => undefined)
        const rows = await turn
        await rm(temp, { force: true })
        o.log(`loaded ${url}: ${rows} rows, ${obj.size} bytes`)
      }
    }
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(o.concurrency, pending.length)) }, (_, slot) =>
        worker(slot).catch((error) => {
          failure ??= error
          stop.abort(error)
        }),
      ),
    )
    if (failure !== undefined) throw failure
    o.signal.throwIfAborted()
    const rows = (db.prepare('SELECT count(*) AS n FROM media').get() as { n: number }).n
    return { rows, loaded: pending.length, skipped }
  } finally {
    db.close()
    await Promise.all(temps.map((t) => rm(t, { force: true })))
  }
}

/** Loads one downloaded object in one transaction with its `_loaded` row; returns its rows. */
async function loadObject(
  db: Database.Database,
  insert: Database.Statement,
  mark: Database.Statement,
  obj: ExportObject,
  url: string,
  file: string,
  signal: AbortSignal,
): Promise<number> {
  let stream: Readable = createReadStream(file, { highWaterMark: 1 << 20 })
  if (obj.key.endsWith('.gz')) stream = stream.pipe(createGunzip())
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY })
  let line = 0
  let rows = 0
  db.exec('BEGIN')
  try {
    for await (const text of lines) {
      line++
      if (text.trim() === '') continue
      if (rows % 10_000 === 0) signal.throwIfAborted()
      const values = parseRecord(text, url, line)
      try {
        insert.run(values)
      } catch (cause) {
        const code = (cause as { code?: string }).code ?? ''
        if (code.startsWith('SQLITE_CONSTRAINT')) {
          throw new Error(
            `${url} line ${line}: id ${values[0]} is already loaded (a duplicate id in the export)`,
            {
              cause,
            },
          )
        }
        throw cause
      }
      rows++
    }
    mark.run(obj.key, obj.etag, rows, obj.size)
    db.exec('COMMIT')
    return rows
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK')
    const code = (error as { code?: string }).code
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') {
      throw new Error(`${url} after line ${line}: not valid gzip (${(error as Error).message})`, {
        cause: error,
      })
    }
    throw error
  } finally {
    lines.close()
    stream.destroy()
  }
}

type Value = string | number | null

/** One NDJSON line as the `media` row's values; the error names the object, the line and the field. */
export function parseRecord(text: string, url: string, line: number): Value[] {
  let record: unknown
  try {
    record = JSON.parse(text)
  } catch (cause) {
    throw new Error(`${url} line ${line}: not valid JSON (${(cause as Error).message})`, { cause })
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw new Error(`${url} line ${line}: expected a JSON object (a media record), got ${preview(record)}`)
  }
  const r = record as Record<string, unknown>
  const bad = (field: string, want: string) =>
    new Error(`${url} line ${line}: \`${field}\` must be ${want}, got ${preview(r[field])}`)
  const int = (field: string) => {
    const v = r[field]
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v
    throw bad(field, 'an integer')
  }
  const text_ = (field: string) => {
    const v = r[field]
    if (typeof v === 'string' && v !== '') return v
    throw bad(field, 'a non-empty string')
  }
  const optional = (field: string) => {
    const v = r[field]
    if (v === undefined || v === null) return null
    if (typeof v === 'string') return v
    throw bad(field, 'a string or null')
  }
  const time = (field: string) => {
    const v = r[field]
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v
    if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return Math.floor(Date.parse(v) / 1000)
    throw bad(field, 'epoch seconds or an ISO date')
  }
  const tags = r.tags ?? []
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'object' && t !== null && 'name' in t)) {
    throw bad('tags', 'an array of { name, accuracy? } objects')
  }
  return [
    int('id'),
    text_('identifier'),
    optional('title'),
    optional('creator'),
    optional('url'),
    optional('license'),
    text_('provider'),
    JSON.stringify(tags),
    time('created_at'),
    time('updated_at'),
  ]
}

function preview(value: unknown): string {
  const s = value === undefined ? 'nothing' : JSON.stringify(value)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}
