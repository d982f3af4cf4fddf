/**
 * Table promotion (`promoteTable`) of a 1,000,000-row table on a real server: how long the
 * promotion takes, and what readers of the live table wait meanwhile. Readers run point queries
 * on the live name in a loop on their own connections; the longest query during the promotion is
 * the longest any reader waited for the swap's lock. A second pass adds a long reader (an
 * analytic query holding its lock for a second): the swap gives up its place in the lock queue
 * after its `lock_timeout` and tries again, so the other readers still wait at most about that.
 */
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import pg from 'pg'
import { promoteTableNow, rollbackTable } from '../assets/postgres-table.js'
import { startPostgres, type TestPostgres } from './postgres-server.js'

const ROWS = Number(process.env.REFRESH_BENCH_PROMOTE_ROWS ?? 1_000_000)
const READERS = 4
const LOCK_TIMEOUT_MS = 200

async function build(server: TestPostgres, url: string, name: string, like: boolean): Promise<void> {
  if (like) await server.sql(`CREATE TABLE ${name} (LIKE media INCLUDING ALL)`, undefined, url)
  else {
    await server.sql(
      `CREATE TABLE ${name} (id serial PRIMARY KEY, title text NOT NULL, url text UNIQUE,
         score int NOT NULL DEFAULT 0 CONSTRAINT media_score_positive CHECK (score >= 0), created timestamptz DEFAULT now())`,
      undefined,
      url,
    )
    await server.sql(`CREATE INDEX media_title_lower ON ${name} (lower(title))`, undefined, url)
    await server.sql(`CREATE INDEX media_high_score ON ${name} (score) WHERE score > 10`, undefined, url)
    await server.sql('GRANT SELECT ON media TO refresh_bench_reader', undefined, url)
  }
  await server.sql(
    `INSERT INTO ${name} (id, title, url, score)
     SELECT i, '${name} ' || i, 'https://example.org/${name}/' || i, i % 50 FROM generate_series(1, $1::int) i`,
    [ROWS],
    url,
  )
  await server.sql(`ANALYZE ${name}`, undefined, url)
}

interface Pass {
  ms: number
  attempts: number
  longestRead: number
  p99Read: number
  reads: number
  errors: number
}

/** Runs `act` while readers query the live table; the readers' longest wait and any errors. */
async function withReaders(url: string, act: () => Promise<{ ms: number; attempts: number }>, holdMs = 0) {
  const clients = await Promise.all(
    Array.from({ length: READERS + 1 }, async () => {
      const c = new pg.Client({ connectionString: url })
      await c.connect()
      return c
    }),
  )
  const holder = clients.pop()!
  let done = false
  let errors = 0
  const times: number[] = []
  const loops = clients.map(async (c) => {
    while (!done) {
      const t = performance.now()
      try {
        await c.query('SELECT title FROM media WHERE id = $1', [1 + Math.floor(Math.random() * ROWS)])
      } catch {
        errors++
      }
      times.push(performance.now() - t)
    }
  })
  let held: Promise<unknown> = Promise.resolve()
  if (holdMs > 0) {
    await holder.query('BEGIN')
    await holder.query('SELECT count(*) FROM media')
    held = new Promise((r) => setTimeout(r, holdMs)).then(() => holder.query('COMMIT'))
  }
  await new Promise((r) => setTimeout(r, 200))
  const from = times.length
  const r = await act()
  await held
  done = true
  await Promise.all(loops)
  await Promise.all([...clients, holder].map((c) => c.end()))
  const during = times.slice(from).sort((a, b) => a - b)
  return {
    ms: r.ms,
    attempts: r.attempts,
    longestRead: during.at(-1) ?? 0,
    p99Read: during[Math.floor(during.length * 0.99)] ?? 0,
    reads: during.length,
    errors,
  } satisfies Pass
}

export default async function promoteTableBench() {
  const server = await startPostgres({ embedded: true })
  try {
    await server.sql('DROP ROLE IF EXISTS refresh_bench_reader')
    await server.sql('CREATE ROLE refresh_bench_reader NOLOGIN')
    const url = await server.freshDatabase('promote')
    const loadStarted = performance.now()
    await build(server, url, 'media', false)
    await build(server, url, 'media_run1', true)
    const loadSeconds = (performance.now() - loadStarted) / 1000

    const quiet = await withReaders(url, () =>
      promoteTableNow({ url, table: 'media', next: 'media_run1', lockTimeoutMs: LOCK_TIMEOUT_MS }),
    )
    const rollback = await withReaders(url, async () => {
      const r = await rollbackTable({ url, table: 'media', lockTimeoutMs: LOCK_TIMEOUT_MS })
      return { ms: r.ms, attempts: r.attempts }
    })
    await build(server, url, 'media_run2', true)
    const contended = await withReaders(
      url,
      () => promoteTableNow({ url, table: 'media', next: 'media_run2', lockTimeoutMs: LOCK_TIMEOUT_MS }),
      1_000,
    )
    // a baseline: the same readers with nothing else going on
    const baseline = await withReaders(url, async () => {
      await new Promise((r) => setTimeout(r, 1_000))
      return { ms: 0, attempts: 0 }
    })

    const f = (n: number, digits = 0) =>
      n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    const row = (name: string, p: Pass) =>
      `| ${name} | ${p.ms ? f(p.ms) : '-'} | ${p.attempts || '-'} | ${f(p.reads)} | ${f(p.p99Read, 1)} | ${f(p.longestRead, 1)} | ${p.errors} |`
    return {
      title: 'Table promotion: 1,000,000 rows, and what readers wait',
      body: `
\`promoteTableNow\` (what the \`promoteTable\` step runs) and \`rollbackTable\` (\`refresh promote --rollback\`) on a
${f(ROWS)}-row table with a serial key, a unique column, a check, two more indexes and a grant (the embedded
test server, \`fsync=off\`; the two tables loaded in ${f(loadSeconds, 1)} s). The new table was built
\`LIKE media INCLUDING ALL\`, so the promotion builds nothing: it plans, then renames in one transaction.
${READERS} readers ran point queries on \`media\` in a loop on their own connections during each operation;
"longest read" is the longest any of them waited (the swap's lock included). \`lock_timeout\` ${LOCK_TIMEOUT_MS} ms.

| operation | time (ms) | attempts | reads | p99 read (ms) | longest read (ms) | reader errors |
|---|---:|---:|---:|---:|---:|---:|
${row('promotion', quiet)}
${row('rollback', rollback)}
${row('promotion, a 1 s reader holding its lock', contended)}
${row('readers alone (baseline, 1 s)', baseline)}

With a long reader in the way, the swap waits ${LOCK_TIMEOUT_MS} ms for its lock, rolls back (letting queued readers
through) and tries again until the long reader is done: the other readers wait at most about one lock timeout, never
the long reader's whole duration. The promotion time grows by the long reader's remaining time. Load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' / ')} after.
`,
    }
  } finally {
    await server.stop()
  }
}
