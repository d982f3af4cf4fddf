/**
 * `cleanPostgresTable` of a 1,000,000-row media table inside the API database, by the media rules
 * (the default refresh's cleanup, compiled to SQL), against two references measured in the same
 * run: the floor of copying the same rows into a new table with no rule (`INSERT … SELECT *`),
 * and the local clean (`cleanRows` on SQLite) of the same rows by the same rules. Runs are
 * interleaved and repeated after one warm-up round (not counted); medians are reported.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import Database from 'better-sqlite3'
import { cleanConfig, cleanRows, mediaRules } from '../assets/clean.js'
import { cleanPostgresTable } from '../assets/postgres-clean.js'
import { median } from './lib.js'
import { startPostgres } from './postgres-server.js'

const ROWS = Number(process.env.REFRESH_BENCH_CLEAN_ROWS ?? 1_000_000)
const REPEATS = Number(process.env.REFRESH_BENCH_CLEAN_REPEATS ?? 3)

/**
 * Media rows, some dirty as the generated catalog's: a URL without a scheme every 7th, none every
 * 53rd, a license outside the list every 13th, stray spaces in every 5th title, 4 tags of which
 * some are below the accuracy threshold, denied or duplicates.
 */
const ROWS_SQL = `SELECT i AS id, 'id-' || i AS identifier,
    CASE WHEN i % 5 = 0 THEN '  A   title ' || i || ' ' ELSE 'A title ' || i END AS title,
    'creator ' || (i % 1000) AS creator,
    CASE WHEN i % 53 = 0 THEN NULL WHEN i % 7 = 0 THEN 'img.example/' || i || '.jpg' ELSE 'https://img.example/' || i || '.jpg' END AS url,
    CASE WHEN i % 13 = 0 THEN 'all-rights-reserved' ELSE (ARRAY['by', 'by-sa', 'cc0', 'pdm'])[1 + i % 4] END AS license,
    'provider' || (i % 10) AS provider,
    jsonb_build_array(
      jsonb_build_object('name', 'Fox', 'accuracy', 0.95),
      jsonb_build_object('name', 'fox', 'accuracy', 0.97),
      jsonb_build_object('name', 'tag' || (i % 100), 'accuracy', CASE WHEN i % 3 = 0 THEN 0.5 ELSE 0.92 END),
      jsonb_build_object('name', CASE WHEN i % 11 = 0 THEN 'watermark' ELSE 'sky' END, 'accuracy', 0.99)
    ) AS tags,
    1700000000 + i AS created_at, 1700000000 + i AS updated_at
  FROM generate_series(1, $1::int) i`

export default async function postgresCleanBench() {
  const server = await startPostgres({ embedded: true })
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-clean-'))
  try {
    const url = await server.freshDatabase('api')
    const loadStarted = performance.now()
    await server.sql(
      `CREATE TABLE media (id bigint PRIMARY KEY, identifier text NOT NULL, title text, creator text, url text,
        license text, provider text NOT NULL, tags jsonb NOT NULL, created_at bigint NOT NULL, updated_at bigint NOT NULL)`,
      undefined,
      url,
    )
    await server.sql(`INSERT INTO media ${ROWS_SQL}`, [ROWS], url)
    await server.sql('VACUUM ANALYZE media', undefined, url)
    const loadSeconds = (performance.now() - loadStarted) / 1000
    // the same rows in a SQLite working file, for the local clean
    const file = join(dir, 'work.db')
    const local = new Database(file)
    local.exec(`CREATE TABLE media (id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, title TEXT, creator TEXT, url TEXT,
      license TEXT, provider TEXT NOT NULL, tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`)
    const insert = local.prepare('INSERT INTO media VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    const rows = await server.sql<Record<string, unknown>>(
      `SELECT id::int, identifier, title, creator, url, license, provider, tags::text AS tags, created_at::int, updated_at::int FROM media ORDER BY id`,
      undefined,
      url,
    )
    local.transaction(() => {
      for (const r of rows) insert.run(...Object.values(r))
    })()
    rows.length = 0
    local.close()

    const rules = mediaRules(cleanConfig.parse({}))
    const times = { floor: [] as number[], clean: [] as number[], sqlite: [] as number[] }
    let kept = 0
    let counts: Array<{ name: string; rowsChanged: number; rowsDropped: number }> = []
    for (let i = 0; i <= REPEATS; i++) {
      const keep = (list: number[], ms: number) => {
        if (i > 0) list.push(ms)
      }
      let started = performance.now()
      await server.sql(`CREATE TABLE floor_${i} (LIKE media)`, undefined, url)
      await server.sql(`INSERT INTO floor_${i} SELECT * FROM media`, undefined, url)
      keep(times.floor, performance.now() - started)
      await server.sql(`DROP TABLE floor_${i}`, undefined, url)

      const result = await cleanPostgresTable({ url, table: 'media', into: `clean_${i}`, rules })
      keep(times.clean, result.ms)
      kept = result.rows
      counts = result.rules
      await server.sql(`DROP TABLE clean_${i}`, undefined, url)

      started = performance.now()
      const sqlite = await cleanRows(file, { table: 'media', idColumn: 'id', rules })
      keep(times.sqlite, performance.now() - started)
      if (sqlite.rows !== kept)
        throw new Error(`the local clean kept ${sqlite.rows} rows, the Postgres one ${kept}`)
    }
    const f = (n: number, digits = 0) =>
      n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    const floorMs = median(times.floor)
    const row = (name: string, values: number[]) =>
      `| ${name} | ${f(median(values))} | ${f(median(values) / floorMs, 2)}x | ${values.map((v) => f(v)).join(' / ')} | ${f(ROWS / (median(values) / 1000))} |`
    return {
      title: 'Clean in Postgres: 1,000,000 rows by the media rules',
      body: `
${f(ROWS)} media rows (tags as \`jsonb\`, loaded in ${f(loadSeconds, 1)} s) in one database of the embedded test
server (\`fsync=off\`), cleaned by the default refresh's rules (drop rows without a URL or with a license outside the
list, trim titles, add a scheme to URLs, filter tags by accuracy and a deny list, dedupe and sort them) into a new
table: ${f(kept)} rows kept. ${REPEATS} runs of each, interleaved, after one warm-up round not counted.

| how | median (ms) | vs floor | runs (ms) | rows/s (median) |
|---|---:|---:|---:|---:|
${row('floor: `INSERT INTO new SELECT * FROM media` (no rule)', times.floor)}
${row('`cleanPostgresTable` (the rules as SQL, ranges of 100,000 ids, one transaction)', times.clean)}
${row('local clean (`cleanRows`, SQLite, same rows and rules), for comparison', times.sqlite)}

Per rule (last run): ${counts.map((c) => `${c.name} ${f(c.rowsChanged)} changed / ${f(c.rowsDropped)} dropped`).join('; ')}.
The clean computes every rule once per row in one statement per id range (a materialized CTE that inserts the kept
rows and returns the counts), so counting costs no second pass; most of the time over the floor is the tag list,
unpacked, filtered, deduplicated and rebuilt per row. Load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' / ')} after.
`,
    }
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
