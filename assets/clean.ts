import Database from 'better-sqlite3'
import { z } from 'zod/v4'
import { yieldSlice } from '../core/async.js'
import { type AssetDefinition, asset } from '../core/definitions.js'
import {
  type BlockOptions,
  blockFields,
  fileError,
  isString,
  resolveDataDir,
  upstreamField,
} from './layout.js'
import { MAX_ROWID, type SliceOptions } from './slices.js'

/** A list given as an array in the config file or as `a,b,c` (for `--set clean.licenses=by,cc0`). */
const list = (defaults: string[]) =>
  z
    .union([
      z.array(z.string()),
      z.string().transform((s) =>
        s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      ),
    ])
    .default(defaults)

/** The cleanup rules, each with a default. */
export const cleanConfig = z.object({
  /** Added to URLs that have none (`example.org/a.jpg` -> `https://example.org/a.jpg`). */
  urlScheme: z.enum(['https', 'http']).default('https'),
  /** Licenses that may be served; rows with any other license are dropped. */
  licenses: list(['by', 'by-sa', 'by-nd', 'by-nc', 'by-nc-sa', 'by-nc-nd', 'cc0', 'pdm']),
  /** Tags below this machine-labelling accuracy are dropped. */
  minTagAccuracy: z.number().min(0).max(1).default(0.9),
  /** Tags never shown, whatever their accuracy. */
  deniedTags: list(['watermark', 'no person', 'unknown']),
  /** Drop rows whose title is blank (default: keep them with no title). */
  dropBlankTitles: z.boolean().default(false),
})
export type CleanRules = z.output<typeof cleanConfig>

const NORM_TITLE = `NULLIF(trim(replace(replace(replace(replace(title, char(9), ' '), '    ', ' '), '  ', ' '), '  ', ' ')), '')`
const HAS_URL = `(url IS NOT NULL AND trim(url) <> '')`
const GOOD_LICENSE = `(license IN (SELECT value FROM json_each(@licenses)))`
const KEPT = `(${HAS_URL} AND ${GOOD_LICENSE} AND (@dropBlank = 0 OR ${NORM_TITLE} IS NOT NULL))`
const HAS_SCHEME = `(url LIKE 'http://%' OR url LIKE 'https://%')`

const CREATE = `CREATE TABLE media_clean (id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, title TEXT, creator TEXT,
  url TEXT NOT NULL, license TEXT NOT NULL, provider TEXT NOT NULL, tags TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`

const FILL = `INSERT INTO media_clean
  SELECT id, identifier, ${NORM_TITLE}, creator,
    CASE WHEN ${HAS_SCHEME} THEN url ELSE @scheme || '://' || url END,
    license, provider,
    clean_tags(tags),
    created_at, updated_at
  FROM media AS m WHERE id BETWEEN @from AND @to AND ${KEPT} ORDER BY id`

/**
 * Counts per row rule over one slice of ids in one scan; each flag computed once (cheaper tests
 * than the fixes themselves).
 */
const ROW_COUNTS = `SELECT count(*) AS input,
  coalesce(sum(NOT has_url), 0) AS droppedNoUrl,
  coalesce(sum(has_url AND NOT lic), 0) AS droppedLicense,
  coalesce(sum(has_url AND lic AND blank AND @dropBlank <> 0), 0) AS droppedBlankTitle,
  coalesce(sum(has_url AND lic AND NOT has_scheme AND NOT (blank AND @dropBlank <> 0)), 0) AS urlsFixed,
  coalesce(sum(has_url AND lic AND blank AND @dropBlank = 0), 0) AS blankTitles,
  coalesce(sum(has_url AND lic AND NOT blank AND changed), 0) AS titlesNormalized
  FROM (SELECT ${HAS_URL} AS has_url, ${GOOD_LICENSE} AS lic, ${HAS_SCHEME} AS has_scheme,
    coalesce(trim(title), '') = '' AS blank,
    (instr(title, '  ') > 0 OR title <> trim(title) OR instr(title, char(9)) > 0) AS changed
    FROM media WHERE id BETWEEN @from AND @to)`

/** The first id of the slice after the one starting at `from`: the rowid b-tree walked `CLEAN_SLICE` rows on. */
const NEXT_SLICE = 'SELECT id FROM media WHERE id >= ? ORDER BY id LIMIT 1 OFFSET ?'

/**
 * Rows cleaned per slice: about 20 ms of work here (4 us a row), so the event loop gets a turn
 * many times a second (progress is written, a cancel is seen at once) at a cost of a few ms in all.
 */
const CLEAN_SLICE = 5_000

const RESULT = 'SELECT count(*) AS rows, min(id) AS minId, max(id) AS maxId FROM media_clean'

/**
 * The tag rules as one SQL function (JSON in, JSON out), counting what each rule removed: drop
 * tags below the accuracy threshold or on the deny list, then keep one tag per name (the most
 * accurate), sorted by name. One pass in JS is several times faster than json_each per row.
 */
function tagCleaner(minAccuracy: number, denied: readonly string[]) {
  const deny = new Set(denied.map((t) => t.trim().toLowerCase()))
  const counts = { tagsLowAccuracy: 0, tagsDenied: 0, tagsDuplicate: 0 }
  const clean = (json: string): string => {
    const tags = JSON.parse(json) as Array<{ name?: unknown; accuracy?: unknown }>
    if (!Array.isArray(tags) || tags.length === 0) return '[]'
    const best = new Map<string, number>()
    for (const tag of tags) {
      const accuracy = typeof tag.accuracy === 'number' ? tag.accuracy : 0
      const name = String(tag.name ?? '')
        .trim()
        .toLowerCase()
      if (accuracy < minAccuracy || name === '') counts.tagsLowAccuracy++
      else if (deny.has(name)) counts.tagsDenied++
      else if (best.has(name)) {
        counts.tagsDuplicate++
        if (accuracy > best.get(name)!) best.set(name, accuracy)
      } else best.set(name, accuracy)
    }
    const out = [...best].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    return JSON.stringify(out.map(([name, accuracy]) => ({ name, accuracy })))
  }
  return { clean, counts }
}

export interface CleanResult {
  rows: number
  minId: number | null
  maxId: number | null
  counts: Record<string, number>
}

/**
 * Cleans the working table `media` into `media_clean` (a new table, so a retry starts over
 * cleanly) and counts what each rule did. The rows go in slices of `CLEAN_SLICE` by id, with a
 * turn of the event loop between them, all in one transaction: a clean that fails or is aborted
 * is rolled back and leaves no half-filled table (on abort at once: the process may exit before
 * the next slice, as a canceled run ends without waiting for its steps). The SQL is shared with
 * the benchmark's floor.
 */
export async function cleanTable(
  file: string,
  rules: CleanRules,
  options: SliceOptions = {},
): Promise<CleanResult> {
  const { signal, progress, sliceRows = CLEAN_SLICE } = options
  signal?.throwIfAborted()
  const db = new Database(file)
  // an abort is dispatched between two slices (this thread runs one or the other)
  const discard = () => {
    if (db.inTransaction) db.exec('ROLLBACK')
    db.close()
  }
  signal?.addEventListener('abort', discard, { once: true })
  try {
    db.pragma('synchronous = OFF')
    const params = {
      scheme: rules.urlScheme,
      licenses: JSON.stringify(rules.licenses),
      dropBlank: rules.dropBlankTitles ? 1 : 0,
    }
    const tags = tagCleaner(rules.minTagAccuracy, rules.deniedTags)
    db.function('clean_tags', { deterministic: false }, (json) => tags.clean(String(json)))
    const total = db.prepare('SELECT count(*) FROM media').pluck().get() as number
    // ids as BigInt: a slice's bounds are exact whatever the ids
    const first = db.prepare('SELECT min(id) FROM media').pluck().safeIntegers().get() as bigint | null
    const nextSlice = db.prepare(NEXT_SLICE).pluck().safeIntegers()
    const countSlice = db.prepare(ROW_COUNTS)
    db.exec('BEGIN')
    db.exec('DROP TABLE IF EXISTS media_clean')
    db.exec(CREATE)
    const fillSlice = db.prepare(FILL)
    // an empty range: every count 0, then each slice's counts added
    const rowCounts = countSlice.get({ ...params, from: 1n, to: 0n }) as Record<string, number>
    let done = 0
    for (let from = first; from !== null; ) {
      const next = (nextSlice.get(from, sliceRows) as bigint | undefined) ?? null
      const slice = { ...params, from, to: next === null ? MAX_ROWID : next - 1n }
      const counts = countSlice.get(slice) as Record<string, number>
      for (const [rule, n] of Object.entries(counts)) rowCounts[rule] = (rowCounts[rule] ?? 0) + n
      fillSlice.run(slice)
      done += counts.input!
      progress?.(done, total)
      from = next
      await yieldSlice(signal)
    }
    db.exec('COMMIT')
    const result = db.prepare(RESULT).get() as { rows: number; minId: number | null; maxId: number | null }
    return { ...result, counts: { ...rowCounts, ...tags.counts } }
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw error
  } finally {
    signal?.removeEventListener('abort', discard)
    db.close()
  }
}

/** `clean`: fixes URLs, drops rows that cannot be served, filters and dedupes tags, normalizes titles. */
export function clean(options: BlockOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const from = options.upstream ?? 'copy'
  return asset({
    ...blockFields('clean', options, dataDir, { deps: [from], retry: { maxAttempts: 2, delayMs: 500 } }),
    description: 'the working table cleaned by the rules in its config; counts per rule',
    config: cleanConfig,
    async materialize(ctx) {
      const file = upstreamField(ctx, from, 'file', isString)
      let result: CleanResult
      try {
        result = await cleanTable(file, ctx.config, {
          signal: ctx.signal,
          progress: (done, total) => ctx.progress(done, total),
        })
      } catch (cause) {
        if (ctx.signal.aborted) throw cause
        throw fileError('clean', file, cause)
      }
      const dropped =
        result.counts.droppedNoUrl! + result.counts.droppedLicense! + result.counts.droppedBlankTitle!
      ctx.log(`kept ${result.rows} of ${result.counts.input} rows (${dropped} dropped)`)
      return {
        file,
        table: 'media_clean',
        rows: result.rows,
        minId: result.minId,
        maxId: result.maxId,
        ...result.counts,
      }
    },
  })
}
