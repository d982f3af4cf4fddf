import { renameSync, rmSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import Database from 'better-sqlite3'
import { z } from 'zod/v4'
import { S3Store, s3Location } from '../aws/s3.js'
import { yieldSlice } from '../core/async.js'
import { type AssetDefinition, asset } from '../core/definitions.js'
import {
  type BlockOptions,
  blockFields,
  ensureWritableDir,
  fileError,
  layout,
  resolveDataDir,
  sweepTemps,
  tempPath,
} from './layout.js'

const FORMAT = 1

export interface ExportCatalogOptions {
  /** How many objects the rows are split into (default 4). */
  objects?: number
  /** gzip each object (`.ndjson.gz`; default true). */
  gzip?: boolean
  /** The store to write with (tests and benchmarks share one); default a new one. */
  store?: S3Store
}

/**
 * Writes a catalog database's `media` table to S3 as an NDJSON export, the shape `copy({ source })`
 * reads: `part-00000.ndjson(.gz)` ... (rows split evenly by id, tags as JSON arrays), then
 * `manifest.json` last with each object's key, size, SHA-256 and rows, so a reader that sees the
 * manifest sees every object. Tests, the end-to-end test and the benchmarks seed exports with it.
 */
export async function exportCatalog(
  catalogDbFile: string,
  location: string | { bucket: string; prefix?: string },
  options: ExportCatalogOptions = {},
): Promise<{ objects: number; rows: number; bytes: number }> {
  const loc = s3Location(location, 'exportCatalog')
  const gzip = options.gzip ?? true
  const store = options.store ?? new S3Store({ where: 'exportCatalog' })
  const db = new Database(catalogDbFile, { readonly: true, fileMustExist: true })
  try {
    const total = (db.prepare('SELECT count(*) AS n FROM media').get() as { n: number }).n
    const count = Math.max(1, Math.min(options.objects ?? 4, total || 1))
    const per = Math.ceil(total / count)
    // keyset paging: each object starts after the last id of the one before
    const select = db.prepare('SELECT * FROM media WHERE id > ? ORDER BY id LIMIT ?')
    let after = Number.MIN_SAFE_INTEGER
    const entries: Array<{ key: string; size: number; sha256: string; rows: number }> = []
    let bytes = 0
    for (let i = 0; i < count; i++) {
      const rows = select.all(after, per) as Array<Record<string, unknown>>
      if (rows.length > 0) after = rows.at(-1)!.id as number
      const text = rows
        .map((r) => `${JSON.stringify({ ...r, tags: JSON.parse(r.tags as string) })}\n`)
        .join('')
      const body = gzip ? gzipSync(text) : Buffer.from(text)
      const key = `${loc.prefix}part-${String(i).padStart(5, '0')}.ndjson${gzip ? '.gz' : ''}`
      const out = await store.putBytes(loc.bucket, key, body, {
        contentType: gzip ? 'application/gzip' : 'application/x-ndjson',
      })
      entries.push({ key, size: body.length, sha256: out.sha256, rows: rows.length })
      bytes += body.length
    }
    await store.putJson(loc.bucket, `${loc.prefix}manifest.json`, {
      version: 1,
      createdAt: new Date().toISOString(),
      rows: total,
      entries,
    })
    return { objects: entries.length, rows: total, bytes }
  } finally {
    db.close()
    if (!options.store) store.close()
  }
}

export const catalogConfig = z.object({
  /** How many media records to generate. */
  rows: z.number().int().min(1).max(50_000_000).default(100_000),
  /** Same rows and seed, same catalog (so a second run reuses the file). */
  seed: z.number().int().default(1),
})

/**
 * `catalog`: the upstream table, generated deterministically: N media records with a realistic
 * share of dirty ones (URLs without a scheme or missing, blank titles, invalid licenses,
 * low-accuracy, denied and duplicate tags). An existing catalog with the same rows and seed is reused.
 */
export function catalog(options: BlockOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  return asset({
    ...blockFields('catalog', options, dataDir, { deps: [] }),
    description: 'the upstream media catalog (generated, deterministic)',
    config: catalogConfig,
    ...sweepTemps(() => [dataDir]),
    async materialize(ctx) {
      ensureWritableDir(dataDir)
      const { rows, seed } = ctx.config
      const existing = readCatalogMeta(paths.catalog)
      if (existing && existing.rows === rows && existing.seed === seed && existing.format === FORMAT) {
        ctx.log(`reusing ${paths.catalog} (${rows} rows, seed ${seed})`)
        return { file: paths.catalog, table: 'media', rows, seed, generated: false }
      }
      const tmp = tempPath(paths.catalog, ctx.runId)
      try {
        await generateCatalog(tmp, rows, seed, (done) => ctx.progress(done, rows), ctx.signal)
        renameSync(tmp, paths.catalog)
      } catch (cause) {
        rmSync(tmp, { force: true })
        if (ctx.signal.aborted) throw cause
        throw fileError('write the catalog', paths.catalog, cause)
      }
      return { file: paths.catalog, table: 'media', rows, seed, generated: true }
    },
  })
}

function readCatalogMeta(file: string): { rows: number; seed: number; format: number } | undefined {
  let db: Database.Database | undefined
  try {
    db = new Database(file, { readonly: true, fileMustExist: true })
    return db.prepare('SELECT rows, seed, format FROM catalog_meta').get() as
      | { rows: number; seed: number; format: number }
      | undefined
  } catch {
    // no file, or not a catalog we wrote: generate a fresh one
    return undefined
  } finally {
    db?.close()
  }
}

const ADJECTIVES = [
  'red',
  'quiet',
  'golden',
  'misty',
  'ancient',
  'bright',
  'frozen',
  'wild',
  'hidden',
  'silver',
  'blue',
  'autumn',
  'winter',
  'summer',
  'little',
  'great',
  'broken',
  'sunlit',
  'stormy',
  'green',
]
const NOUNS = [
  'fox',
  'river',
  'harbor',
  'cathedral',
  'forest',
  'lighthouse',
  'mountain',
  'garden',
  'bridge',
  'owl',
  'market',
  'train',
  'meadow',
  'glacier',
  'temple',
  'cat',
  'horse',
  'village',
  'waterfall',
  'desert',
  'portrait',
  'map',
  'comet',
  'violin',
]
const PLACES = [
  'Kyoto',
  'Lisbon',
  'Oaxaca',
  'Reykjavik',
  'Nairobi',
  'Quebec',
  'Tasmania',
  'Patagonia',
  'Kraków',
  'Hanoi',
  'Montréal',
  'Zürich',
]
const FIRST = [
  'Ada',
  'Bruno',
  'Chen',
  'Dolores',
  'Emeka',
  'Freya',
  'Goran',
  'Hana',
  'Ines',
  'Jonas',
  'Kiri',
  'Lena',
]
const LAST = ['Okafor', 'Silva', 'Novak', 'Tanaka', 'Müller', 'García', 'Haddad', 'Larsen', 'Mbeki', 'Rossi']
const PROVIDERS = ['flickr', 'wikimedia', 'smithsonian', 'met', 'nasa', 'europeana']
const LICENSES = ['by', 'by-sa', 'by-nd', 'by-nc', 'by-nc-sa', 'by-nc-nd', 'cc0', 'pdm']
const BAD_LICENSES = ['unknown', 'all-rights-reserved', '']
const TAGS = [
  ...NOUNS,
  'sky',
  'water',
  'night',
  'people',
  'snow',
  'architecture',
  'animal',
  'sea',
  'tree',
  'city',
]
const DENIED_TAGS = ['watermark', 'no person', 'unknown']

/** mulberry32: a small, fast, seedable PRNG; the catalog must not depend on Math.random. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Rows generated per slice: about 15 ms of work here (3 us a row), so the event loop gets a turn
 * many times a second (the view redraws, a cancel is seen at once) at a cost of a few ms in all.
 */
const CATALOG_SLICE = 5_000

/**
 * Writes a catalog database (`media` table) with `rows` records into `file`, in slices of
 * `CATALOG_SLICE` rows (one transaction each) with a turn of the event loop between them. When the
 * signal aborts, the file is closed and removed at once (the process may exit before the next
 * slice: a canceled run ends without waiting for its steps) and the signal's reason is thrown.
 */
export async function generateCatalog(
  file: string,
  rows: number,
  seed: number,
  progress: (done: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  signal?.throwIfAborted()
  rmSync(file, { force: true })
  const db = new Database(file)
  // an abort is dispatched between two slices (this thread runs one or the other)
  const discard = () => {
    db.close()
    rmSync(file, { force: true })
  }
  signal?.addEventListener('abort', discard, { once: true })
  try {
    db.pragma('journal_mode = OFF')
    db.pragma('synchronous = OFF')
    db.exec(`CREATE TABLE media (
      id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, title TEXT, creator TEXT, url TEXT,
      license TEXT, provider TEXT NOT NULL, tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
    );
    CREATE TABLE catalog_meta (rows INTEGER NOT NULL, seed INTEGER NOT NULL, format INTEGER NOT NULL)`)
    const insert = db.prepare('INSERT INTO media VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    const r = prng(seed)
    const pick = <T>(list: readonly T[]): T => list[Math.floor(r() * list.length)]!
    const base = Date.UTC(2015, 0, 1) / 1000
    const batch = CATALOG_SLICE
    for (let start = 1; start <= rows; start += batch) {
      db.transaction(() => {
        for (let id = start; id < start + batch && id <= rows; id++) {
          const provider = pick(PROVIDERS)
          const identifier = (Math.floor(r() * 2 ** 32).toString(16) + id.toString(16)).padStart(16, '0')
          let title: string = `${pick(ADJECTIVES)} ${pick(NOUNS)}${r() < 0.5 ? ` in ${pick(PLACES)}` : ''}`
          title = title[0]!.toUpperCase() + title.slice(1)
          const d = r()
          if (d < 0.02) title = r() < 0.5 ? '' : '   '
          else if (d < 0.07) title = `  ${title.replace(' ', '  ')} `
          const u = r()
          const path = `cdn.${provider}.example/media/${identifier}.jpg`
          const url = u < 0.02 ? null : u < 0.03 ? '' : u < 0.07 ? path : `https://${path}`
          const license = r() < 0.03 ? pick(BAD_LICENSES) : pick(LICENSES)
          const tags: Array<{ name: string; accuracy: number }> = []
          const n = Math.floor(r() * 5)
          for (let i = 0; i < n; i++) {
            const low = r() < 0.15
            tags.push({
              name: pick(TAGS),
              accuracy: Math.round((low ? 0.3 + r() * 0.6 : 0.9 + r() * 0.1) * 100) / 100,
            })
          }
          if (n > 0 && r() < 0.05) tags.push({ ...tags[0]! })
          if (r() < 0.03) tags.push({ name: pick(DENIED_TAGS), accuracy: 0.99 })
          const created = base + Math.floor(r() * 3e8)
          insert.run(
            id,
            identifier,
            title,
            `${pick(FIRST)} ${pick(LAST)}`,
            url,
            license,
            provider,
            JSON.stringify(tags),
            created,
            created + Math.floor(r() * 1e7),
          )
        }
      })()
      progress(Math.min(rows, start + batch - 1))
      await yieldSlice(signal)
    }
    db.prepare('INSERT INTO catalog_meta VALUES (?, ?, ?)').run(rows, seed, FORMAT)
  } finally {
    signal?.removeEventListener('abort', discard)
    db.close()
  }
}
