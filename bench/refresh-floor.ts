/**
 * The floor for `bench/refresh.bench.ts`: the refresh's SQL and file work done directly with
 * better-sqlite3 in one process, no engine, no store, no worker processes. The same statements
 * as the building blocks (copyTable, cleanTable, the FTS5 schema and fill), one index over the
 * whole id range, and one plain file copy for the snapshot.
 * Usage: node dist/bench/refresh-floor.js <catalog.db> <out-dir>; prints one JSON line of timings.
 */
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import Database from 'better-sqlite3'
import { cleanConfig, cleanTable } from '../assets/clean.js'
import { copyTable } from '../assets/copy.js'
import { BUILD_PRAGMAS, FTS_TABLE_SQL, fillSql } from '../search/index-shard.js'

const [catalog, out] = process.argv.slice(2)
if (!catalog || !out) throw new Error('usage: refresh-floor.js <catalog.db> <out-dir>')
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })
const ms: Record<string, number> = {}
const time = async <T>(label: string, fn: () => T | Promise<T>): Promise<T> => {
  const t = performance.now()
  const value = await fn()
  ms[label] = Math.round(performance.now() - t)
  return value
}
const start = performance.now()
const work = join(out, 'work.db')
await time('copy', () => copyTable(catalog, work))
const cleaned = await time('clean', () => cleanTable(work, cleanConfig.parse({})))
const index = join(out, 'index.db')
const documents = await time('reindex', () => {
  const db = new Database(index)
  try {
    for (const pragma of BUILD_PRAGMAS) db.pragma(pragma)
    db.prepare('ATTACH DATABASE ? AS src').run(work)
    db.exec(FTS_TABLE_SQL)
    const n = db.transaction(
      () => db.prepare(fillSql('media_clean')).run(cleaned.minId, (cleaned.maxId ?? 0) + 1).changes,
    )()
    db.exec('DETACH DATABASE src')
    return n
  } finally {
    db.close()
  }
})
await time('snapshot', () => copyFileSync(index, join(out, 'snapshot.db')))
ms.total = Math.round(performance.now() - start)
process.stdout.write(
  `${JSON.stringify({ ms, documents, rows: cleaned.rows, maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`,
)
