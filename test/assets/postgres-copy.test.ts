/**
 * `copyPostgresTable` between two databases of a real PostgreSQL server, on a table whose schema
 * is not `media`: a whole copy is equal to its source (rows and column types), a copy killed
 * (SIGKILL) in the middle of a range resumes after the ranges that committed and loads no row
 * twice, and bad input is a `ConfigError` naming the fix, with no password in it.
 * The crash test runs a fixture from dist/: `npm run build` first.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyPostgresTable } from '../../assets/postgres-copy.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

let server: TestPostgres

beforeAll(async () => {
  server = await startPostgres()
}, 60_000)

afterAll(async () => {
  await server?.stop()
})

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'postgres-copy-child.mjs')

/** An upstream `products` table of `rows` rows, with NULLs and text that COPY has to escape. */
async function upstream(rows: number): Promise<string> {
  const url = await server.freshDatabase('up')
  await server.sql(
    `CREATE TABLE products (sku_id bigint PRIMARY KEY, name text NOT NULL, price numeric(12, 2), tags text[], updated timestamptz)`,
    undefined,
    url,
  )
  await server.sql(
    `INSERT INTO products
     SELECT i,
            'product ' || i || CASE WHEN i % 7 = 0 THEN E'\\ttab\\nline \\\\ back ☃' ELSE '' END,
            CASE WHEN i % 11 = 0 THEN NULL ELSE (i % 1000) + 0.99 END,
            CASE WHEN i % 5 = 0 THEN NULL ELSE ARRAY['t' || (i % 3), 'quote"d', 'comma,x'] END,
            timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'
       FROM generate_series(1, $1::int) i`,
    [rows],
    url,
  )
  return url
}

async function digest(url: string, table: string): Promise<string> {
  const [row] = await server.sql<{ d: string }>(
    `SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY sku_id), '')) AS d FROM ${table} t`,
    undefined,
    url,
  )
  return row!.d
}

async function columnTypes(url: string, table: string): Promise<string[]> {
  const rows = await server.sql<{ c: string }>(
    `SELECT attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END AS c
       FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [table],
    url,
  )
  return rows.map((r) => r.c)
}

describe('copyPostgresTable', () => {
  it('copies a whole table into a new table of the API database, equal to its source', async () => {
    const from = await upstream(5_000)
    const to = await server.freshDatabase('api')
    const seen: number[] = []
    const result = await copyPostgresTable({
      from,
      to,
      table: 'products',
      into: 'products_new',
      idColumn: 'sku_id',
      batchRows: 700,
      onProgress: (p) => seen.push(p.done),
    })
    expect(result).toMatchObject({ table: 'products_new', rows: 5_000, loaded: 5_000, ranges: 8, skipped: 0 })
    expect(result.columns).toEqual(['sku_id', 'name', 'price', 'tags', 'updated'])
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(await digest(to, 'products_new')).toBe(await digest(from, 'products'))
    expect(await columnTypes(to, 'products_new')).toEqual(await columnTypes(from, 'products'))
    // the progress table is gone; a retry of the finished copy does nothing
    const left = await server.sql(`SELECT to_regclass('products_new_copy_progress') AS t`, undefined, to)
    expect(left[0]!.t).toBeNull()
    const again = await copyPostgresTable({
      from,
      to,
      table: 'products',
      into: 'products_new',
      idColumn: 'sku_id',
    })
    expect(again).toMatchObject({ rows: 5_000, loaded: 0 })
  }, 60_000)

  it('copies only the columns named, and an empty table', async () => {
    const from = await upstream(300)
    const to = await server.freshDatabase('api')
    const some = await copyPostgresTable({
      from,
      to,
      table: 'products',
      into: 'narrow',
      columns: ['sku_id', 'tags'],
      idColumn: 'sku_id',
    })
    expect(some).toMatchObject({ rows: 300, columns: ['sku_id', 'tags'], ranges: 1 })
    expect(await columnTypes(to, 'narrow')).toEqual(['sku_id bigint not null', 'tags text[]'])
    await server.sql('CREATE TABLE empty (id int, label text)', undefined, from)
    const none = await copyPostgresTable({ from, to, table: 'empty', into: 'empty_copy' })
    expect(none).toMatchObject({ rows: 0, ranges: 0 })
  }, 60_000)

  it('resumes a copy killed in the middle of a range: no row twice, ranges done not redone', async () => {
    const rows = 10_000
    const batch = 1_000
    const from = await upstream(rows)
    const to = await server.freshDatabase('api')
    const child = spawn(process.execPath, [FIXTURE, 'products', 'products_new', String(batch)], {
      env: { ...process.env, REFRESH_FROM: from, REFRESH_TO: to, REFRESH_PAUSE_MS: '1500' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise<void>((done) => child.once('exit', () => done()))
    let out = ''
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString()
    })
    child.stderr!.on('data', (c: Buffer) => {
      out += c.toString()
    })
    const holder = new pg.Client({ connectionString: to })
    await holder.connect()
    try {
      await until(
        () => out.includes('1/10'),
        () => `the child did not copy its first range:\n${out}`,
      )
      // block the third range's mark: its rows are sent, its transaction cannot commit
      await holder.query('BEGIN')
      await holder.query('SELECT * FROM products_new_copy_progress WHERE lo = $1 FOR UPDATE', [2 * batch])
      await until(
        async () => (await waitingCopies(to)) > 0,
        () => `the child never waited on the third range:\n${out}`,
      )
      expect(out).toContain('2/10')
      kill(child)
      await exited
      await holder.query('ROLLBACK')
    } finally {
      await holder.end()
    }
    expect(out).not.toContain('3/10')
    const [before] = await server.sql<{ n: string; x: string }>(
      `SELECT count(*)::text AS n, string_agg(xmin::text, ',' ORDER BY sku_id) AS x FROM products_new`,
      undefined,
      to,
    )
    expect(before!.n).toBe(String(2 * batch))

    const redone: string[] = []
    const result = await copyPostgresTable({
      from,
      to,
      table: 'products',
      into: 'products_new',
      idColumn: 'sku_id',
      batchRows: batch,
      onProgress: (p) => redone.push(p.lo),
    })
    expect(result).toMatchObject({ rows, loaded: rows - 2 * batch, ranges: 10, skipped: 2 })
    expect(redone).toEqual(['2000', '3000', '4000', '5000', '6000', '7000', '8000', '9000'])
    const [after] = await server.sql<{ n: string; distinct: string; x: string }>(
      `SELECT count(*)::text AS n, count(DISTINCT sku_id)::text AS distinct,
              string_agg(xmin::text, ',' ORDER BY sku_id) FILTER (WHERE sku_id <= $1) AS x FROM products_new`,
      [2 * batch],
      to,
    )
    expect(after).toMatchObject({ n: String(rows), distinct: String(rows), x: before!.x })
    expect(await digest(to, 'products_new')).toBe(await digest(from, 'products'))
  }, 60_000)

  it('stops when its signal is aborted, keeping the ranges done, and resumes', async () => {
    const from = await upstream(3_000)
    const to = await server.freshDatabase('api')
    const controller = new AbortController()
    const options = { from, to, table: 'products', into: 'products_new', idColumn: 'sku_id', batchRows: 500 }
    const error = await failure({
      ...options,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done === 2) controller.abort()
      },
    })
    expect(error).toMatchObject({ name: 'CanceledError', code: 'canceled' })
    const [partial] = await server.sql<{ n: string }>('SELECT count(*)::text AS n FROM products_new', [], to)
    expect(partial!.n).toBe('1000')
    const result = await copyPostgresTable(options)
    expect(result).toMatchObject({ rows: 3_000, loaded: 2_000, skipped: 2, ranges: 6 })
    expect(await digest(to, 'products_new')).toBe(await digest(from, 'products'))
  }, 60_000)

  describe('bad input is a ConfigError naming the fix', () => {
    it('a wrong password: the message has no password', async () => {
      const from = await upstream(10)
      const to = await server.freshDatabase('api')
      const wrong = new URL(from)
      wrong.password = 'not-the-secret-42'
      const error = await failure({ from: wrong.toString(), to, table: 'products', into: 'x' })
      expect(error).toMatchObject({ name: 'ConfigError', code: 'config' })
      expect(error.message).toMatch(/cannot connect to the upstream database .*user and password/)
      expect(error.message).not.toContain('not-the-secret-42')
      expect(error.message).not.toContain(server.password)
      expect(JSON.stringify(error, Object.getOwnPropertyNames(error))).not.toContain('not-the-secret-42')
    })

    it('an unreachable server', async () => {
      const to = await server.freshDatabase('api')
      const error = await failure({
        from: 'postgres://u:secret-pw@127.0.0.1:1/nowhere',
        to,
        table: 'products',
        into: 'x',
      })
      expect(error).toMatchObject({ code: 'config' })
      expect(error.message).toMatch(/host and port/)
      expect(error.message).not.toContain('secret-pw')
    })

    it('a missing table', async () => {
      const from = await upstream(10)
      const to = await server.freshDatabase('api')
      const error = await failure({ from, to, table: 'prodcts', into: 'x' })
      expect(error).toMatchObject({ code: 'config' })
      expect(error.message).toContain('the upstream table public.prodcts does not exist')
      expect(error.message).toContain('Did you mean `products`?')
      expect(error.message).not.toContain(server.password)
    })

    it('a named column that does not exist, an id column that does not, ids too sparse for batchRows', async () => {
      const from = await upstream(10)
      const to = await server.freshDatabase('api')
      const error = await failure({
        from,
        to,
        table: 'products',
        into: 'x',
        idColumn: 'sku_id',
        columns: ['sku_id', 'nmae'],
      })
      expect(error).toMatchObject({ code: 'config' })
      expect(error.message).toContain(
        'the column `nmae` does not exist in the upstream table public.products',
      )
      expect(error.message).toContain('Did you mean `name`?')
      expect(error.message).toContain('fix `columns`')
      const noId = await failure({ from, to, table: 'products', into: 'x' })
      expect(noId).toMatchObject({ code: 'config' })
      expect(noId.message).toContain('the id column `id` does not exist')
      expect(noId.message).toContain('fix `idColumn`')
      await server.sql(`INSERT INTO products VALUES (1000000000000, 'far')`, undefined, from)
      const sparse = await failure({
        from,
        to,
        table: 'products',
        into: 'x',
        idColumn: 'sku_id',
        batchRows: 1_000,
      })
      expect(sparse).toMatchObject({ code: 'config' })
      expect(sparse.message).toContain('raise `batchRows`')
      // nothing was created in the API database
      const tables = await server.sql(`SELECT to_regclass('x') AS t`, undefined, to)
      expect(tables[0]!.t).toBeNull()
    })
  })
})

type Failure = Error & { code?: string }

/** The error `copyPostgresTable` rejects with (a test failure if it resolves). */
async function failure(options: Parameters<typeof copyPostgresTable>[0]): Promise<Failure> {
  const outcome = await copyPostgresTable(options).then(
    (result) => ({ result }),
    (error: unknown) => ({ error: error as Failure }),
  )
  if ('result' in outcome) throw new Error(`the copy succeeded: ${JSON.stringify(outcome.result)}`)
  return outcome.error
}

/** Sessions of the copy waiting for a lock in the API database. */
async function waitingCopies(url: string): Promise<number> {
  const [row] = await server.sql<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE application_name = 'refresh postgres-copy' AND wait_event_type = 'Lock' AND datname = current_database()`,
    undefined,
    url,
  )
  return row!.n
}

async function until(
  check: () => boolean | Promise<boolean>,
  message: () => string,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(message())
    await new Promise((r) => setTimeout(r, 20))
  }
}

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}
