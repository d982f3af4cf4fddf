/**
 * The default refresh: a small catalog is generated, copied into a working table, cleaned and
 * summarized, each step a real SQLite job under `.refresh/data`. Run it with `npx refresh run`.
 * (The full chain - reindex, snapshot, replicas, promote - replaces this example as the
 * building blocks land.)
 */
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { asset, defineConfig } from 'refresh'
import { z } from 'zod'

const dataDir = fileURLToPath(new URL('./.refresh/data/', import.meta.url))
const LICENSES = ['by', 'by-sa', 'cc0', 'pdm', 'by-nc', 'bogus']

/** Deterministic upstream data: N media records, some of them dirty. */
const catalog = asset({
  key: 'catalog',
  group: 'refresh',
  description: 'the upstream catalog table (generated)',
  config: z.object({ rows: z.number().int().min(1).default(20_000) }),
  async materialize(ctx) {
    mkdirSync(dataDir, { recursive: true })
    const file = `${dataDir}catalog.db`
    const db = new Database(file)
    db.exec(
      'DROP TABLE IF EXISTS media; CREATE TABLE media (id INTEGER PRIMARY KEY, title TEXT, url TEXT, license TEXT)',
    )
    const insert = db.prepare('INSERT INTO media VALUES (?, ?, ?, ?)')
    const { rows } = ctx.config
    db.transaction(() => {
      for (let id = 1; id <= rows; id++) {
        const url =
          id % 17 === 0 ? null : id % 5 === 0 ? `example.org/${id}.jpg` : `https://example.org/${id}.jpg`
        insert.run(id, id % 23 === 0 ? '  ' : `Photo ${id}`, url, LICENSES[id % LICENSES.length])
        if (id % 5000 === 0) ctx.progress(id, rows)
      }
    })()
    db.close()
    return { file, rows }
  },
})

/** Copies the upstream table into a fresh working database named for the run. */
const copy = asset({
  key: 'copy',
  deps: ['catalog'],
  group: 'refresh',
  retry: { maxAttempts: 3, delayMs: 200, backoff: 'exponential' },
  async materialize(ctx) {
    const source = String(ctx.upstream.catalog?.file)
    const file = `${dataDir}work-${ctx.runId}.db`
    const db = new Database(file)
    db.prepare('ATTACH DATABASE ? AS upstream').run(source)
    db.exec('DROP TABLE IF EXISTS main.media; CREATE TABLE main.media AS SELECT * FROM upstream.media')
    const { n } = db.prepare('SELECT count(*) AS n FROM media').get() as { n: number }
    db.close()
    return { file, rows: n }
  },
})

/** Fixes URLs, drops rows that cannot be served, normalizes titles; counts per rule. */
const clean = asset({
  key: 'clean',
  deps: ['copy'],
  group: 'refresh',
  config: z.object({ licenses: z.array(z.string()).default(['by', 'by-sa', 'cc0', 'pdm', 'by-nc']) }),
  async materialize(ctx) {
    const file = String(ctx.upstream.copy?.file)
    const db = new Database(file)
    const counts = db.transaction(() => ({
      fixedUrls: db.prepare(`UPDATE media SET url = 'https://' || url WHERE url NOT LIKE 'http%'`).run()
        .changes,
      droppedNoUrl: db.prepare('DELETE FROM media WHERE url IS NULL').run().changes,
      droppedLicense: db
        .prepare('DELETE FROM media WHERE license NOT IN (SELECT value FROM json_each(?))')
        .run(JSON.stringify(ctx.config.licenses)).changes,
      blankTitles: db.prepare(`UPDATE media SET title = NULL WHERE trim(title) = ''`).run().changes,
    }))()
    const { n } = db.prepare('SELECT count(*) AS n FROM media').get() as { n: number }
    db.close()
    ctx.log(`kept ${n} rows`)
    return { file, rows: n, ...counts }
  },
})

/** A summary of the cleaned table: rows per license. */
const summary = asset({
  key: 'summary',
  deps: ['clean'],
  group: 'refresh',
  async materialize(ctx) {
    const db = new Database(String(ctx.upstream.clean?.file), { readonly: true })
    const rows = db
      .prepare('SELECT license, count(*) AS n FROM media GROUP BY license ORDER BY license')
      .all() as Array<{
      license: string
      n: number
    }>
    db.close()
    return Object.fromEntries(rows.map((r) => [r.license, r.n]))
  },
})

export default defineConfig({
  assets: [catalog, copy, clean, summary],
})
