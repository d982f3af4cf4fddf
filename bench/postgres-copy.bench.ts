/**
 * `copyPostgresTable` of a 1,000,000-row table from an upstream database into the API database
 * (two databases of the embedded server), against the floor of one plain
 * `COPY … TO STDOUT | COPY … FROM STDIN` pipe between the same databases, and against
 * `postgres_fdw` (`INSERT … SELECT` from a foreign table in the API database), which issue 17
 * asks to weigh by measurement. Runs are interleaved and repeated after one warm-up round (not
 * counted: it pays for cold caches); medians are reported.
 */
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import copyStreams from 'pg-copy-streams'
import { copyPostgresTable } from '../assets/postgres-copy.js'
import { median } from './lib.js'
import { startPostgres, type TestPostgres } from './postgres-server.js'

const ROWS = Number(process.env.REFRESH_BENCH_COPY_ROWS ?? 1_000_000)
const REPEATS = Number(process.env.REFRESH_BENCH_COPY_REPEATS ?? 5)
const SHAPE =
  'sku_id bigint NOT NULL, name text NOT NULL, price numeric(12,2), tags text[], updated timestamptz'

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** The floor: one COPY out of the upstream piped into one COPY into a new table. */
async function floor(from: string, to: string, into: string): Promise<number> {
  const started = performance.now()
  await withClient(from, (up) =>
    withClient(to, async (api) => {
      await api.query(`CREATE TABLE ${into} (${SHAPE})`)
      await api.query('BEGIN')
      await pipeline(
        up.query(copyStreams.to('COPY products TO STDOUT')),
        api.query(copyStreams.from(`COPY ${into} FROM STDIN`)),
      )
      await api.query('COMMIT')
    }),
  )
  return performance.now() - started
}

/** postgres_fdw: the API database reads the upstream table itself, in one INSERT … SELECT. */
async function fdw(to: string, into: string): Promise<number> {
  const started = performance.now()
  await withClient(to, async (api) => {
    await api.query(`CREATE TABLE ${into} (${SHAPE})`)
    await api.query(`INSERT INTO ${into} SELECT * FROM upstream.products`)
  })
  return performance.now() - started
}

async function setupFdw(server: TestPostgres, from: string, to: string): Promise<void> {
  const up = new URL(from)
  await server.sql('CREATE EXTENSION postgres_fdw', undefined, to)
  await server.sql(
    `CREATE SERVER upstream_db FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '${up.hostname}', port '${up.port}', dbname '${up.pathname.slice(1)}', fetch_size '10000')`,
    undefined,
    to,
  )
  await server.sql(
    `CREATE USER MAPPING FOR CURRENT_USER SERVER upstream_db OPTIONS (user '${decodeURIComponent(up.username)}', password '${server.password}')`,
    undefined,
    to,
  )
  await server.sql('CREATE SCHEMA upstream', undefined, to)
  await server.sql(
    'IMPORT FOREIGN SCHEMA public LIMIT TO (products) FROM SERVER upstream_db INTO upstream',
    undefined,
    to,
  )
}

export default async function postgresCopyBench() {
  const server = await startPostgres({ embedded: true })
  try {
    const from = await server.freshDatabase('upstream')
    const to = await server.freshDatabase('api')
    const loadStarted = performance.now()
    await server.sql(`CREATE TABLE products (${SHAPE}, PRIMARY KEY (sku_id))`, undefined, from)
    await server.sql(
      `INSERT INTO products
       SELECT i, 'product ' || i || ' ' || md5(i::text), (i % 1000) + 0.99,
              ARRAY['t' || (i % 3), 'tag' || (i % 17)], timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
         FROM generate_series(1, $1::int) i`,
      [ROWS],
      from,
    )
    await server.sql('VACUUM ANALYZE products', undefined, from)
    const [size] = await server.sql<{ s: string }>(
      `SELECT pg_size_pretty(pg_table_size('products')) AS s`,
      undefined,
      from,
    )
    const loadSeconds = (performance.now() - loadStarted) / 1000
    await setupFdw(server, from, to)

    const times = { floor: [] as number[], copy: [] as number[], single: [] as number[], fdw: [] as number[] }
    let ranges = 0
    const drop = (name: string) => server.sql(`DROP TABLE ${name}`, undefined, to)
    // round 0 warms the caches and is not counted
    const keep = (i: number, list: number[], ms: number) => {
      if (i > 0) list.push(ms)
    }
    for (let i = 0; i <= REPEATS; i++) {
      keep(i, times.floor, await floor(from, to, `floor_${i}`))
      await drop(`floor_${i}`)
      const copied = await copyPostgresTable({
        from,
        to,
        table: 'products',
        into: `copy_${i}`,
        idColumn: 'sku_id',
      })
      if (copied.rows !== ROWS) throw new Error(`the copy has ${copied.rows} rows, not ${ROWS}`)
      ranges = copied.ranges
      keep(i, times.copy, copied.ms)
      await drop(`copy_${i}`)
      const single = await copyPostgresTable({
        from,
        to,
        table: 'products',
        into: `single_${i}`,
        idColumn: 'sku_id',
        batchRows: ROWS,
      })
      keep(i, times.single, single.ms)
      await drop(`single_${i}`)
      keep(i, times.fdw, await fdw(to, `fdw_${i}`))
      await drop(`fdw_${i}`)
    }
    const floorMs = median(times.floor)
    const floorBest = Math.min(...times.floor)
    const f = (n: number, digits = 0) =>
      n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    const row = (name: string, values: number[]) =>
      `| ${name} | ${f(median(values))} | ${f(median(values) / floorMs, 2)}x | ${f(Math.min(...values))} | ${f(Math.min(...values) / floorBest, 2)}x | ${values.map((v) => f(v)).join(' / ')} | ${f(ROWS / (median(values) / 1000))} |`
    return {
      title: 'Copy between Postgres databases: 1,000,000 rows',
      body: `
${f(ROWS)} rows of \`products(sku_id bigint primary key, name text, price numeric, tags text[], updated timestamptz)\`
(${size!.s} on disk, loaded in ${f(loadSeconds, 1)} s) copied from one database of the embedded test server
(\`fsync=off\`, \`synchronous_commit=off\`) into a new table of another database on the same server. ${REPEATS} runs
of each, interleaved, after one warm-up round not counted; the new tables have no indexes (\`promoteTable\` builds the live table's).

| how | median (ms) | median vs floor | best (ms) | best vs floor | runs (ms) | rows/s (median) |
|---|---:|---:|---:|---:|---:|---:|
${row('floor: one `COPY products TO STDOUT` piped into one `COPY … FROM STDIN` (pg-copy-streams)', times.floor)}
${row(`\`copyPostgresTable\`, default ranges of 100,000 ids (${ranges} ranges, one transaction each)`, times.copy)}
${row('`copyPostgresTable`, one range of all ids', times.single)}
${row('`postgres_fdw`: `INSERT … SELECT` from the foreign table (`fetch_size` 10000)', times.fdw)}

\`copyPostgresTable\` includes connecting, introspection, the plan of ranges and its progress marks; each range is
\`COPY (SELECT … WHERE sku_id > lo AND sku_id <= hi ORDER BY sku_id) TO STDOUT\` (an index range scan) piped into
\`COPY … FROM STDIN\`. "Best" is the fastest run of each: on a shared machine it is the steadier measure of
the work itself, the median includes other load. Why COPY streaming and not \`postgres_fdw\`: here the
foreign table took ${f(median(times.fdw) / median(times.copy), 2)}x the time of \`copyPostgresTable\` (medians); it
also needs the API database's server to reach the upstream, and a user mapping that keeps the upstream's password
in the API database. Load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' / ')} after.
`,
    }
  } finally {
    await server.stop()
  }
}
