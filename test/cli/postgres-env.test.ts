/**
 * End to end on the `postgres` environment of the default refresh.config.ts, unchanged: the real
 * CLI (dist/cli/main.js) against two databases of a real PostgreSQL server, an upstream `books`
 * table whose schema is not `media`. `refresh run --env postgres` copies it into the API
 * database, cleans it there, indexes it with workers that read their id ranges from it, and
 * swaps it in under the live name once the index is promoted; `refresh query` searches it;
 * `refresh promote --rollback` puts back the previous table and index. Bad input (an unreachable
 * server, a wrong password, a missing table, a column that does not exist) is a clear error with
 * exit 2, and no password is printed.
 */
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, ROOT, run, startCli, until } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

let server: TestPostgres
let cwd: string
let upstreamUrl: string
let apiUrl: string
let env: NodeJS.ProcessEnv

const ROWS = 2_000

beforeAll(async () => {
  server = await startPostgres()
  upstreamUrl = await server.freshDatabase('catalog')
  apiUrl = await server.freshDatabase('api')
  await server.sql(
    `CREATE TABLE books (id bigint PRIMARY KEY, name text NOT NULL, author text, isbn text, year integer)`,
    undefined,
    upstreamUrl,
  )
  await addBooks(1, ROWS)
  // the live table of the API database, with an index and a reader role: promotion keeps both
  await server.sql(
    `CREATE TABLE books (id bigint PRIMARY KEY, name text NOT NULL, author text, isbn text, year integer);
     CREATE INDEX books_author ON books (author);
     INSERT INTO books VALUES (1, 'the old book', 'nobody', null, 1900)`,
    undefined,
    apiUrl,
  )
  cwd = mkdtempSync(join(tmpdir(), 'refresh-pg-e2e-'))
  copyFileSync(join(ROOT, 'refresh.config.ts'), join(cwd, 'refresh.config.ts'))
  symlinkSync(join(ROOT, 'node_modules'), join(cwd, 'node_modules'), 'dir')
  env = {
    NO_COLOR: '1',
    REFRESH_UPSTREAM_URL: upstreamUrl,
    REFRESH_API_URL: apiUrl,
    REFRESH_UPSTREAM_TABLE: 'books',
  }
}, 60_000)

afterAll(async () => {
  await server?.stop()
  if (cwd) rmSync(cwd, { recursive: true, force: true })
})

/** Books `from`..`to`: names with stray spaces (clean trims them), every 10th with no author. */
async function addBooks(from: number, to: number): Promise<void> {
  await server.sql(
    `INSERT INTO books
     SELECT i, '  ' || (ARRAY['dune', 'emma', 'ulysses', 'beloved'])[1 + i % 4] || '   volume ' || i || ' ',
            CASE WHEN i % 10 = 0 THEN NULL ELSE 'author ' || (i % 50) END, 'isbn-' || i, 1900 + i % 120
       FROM generate_series($1::int, $2::int) i`,
    [from, to],
    upstreamUrl,
  )
}

function cli(args: string[], extra: NodeJS.ProcessEnv = {}) {
  return run([CLI, ...args], { cwd, env: { ...env, ...extra }, timeoutMs: 120_000 })
}

async function live(): Promise<{ rows: number; trimmed: number; indexes: string[] }> {
  const [count] = await server.sql<{ rows: string; trimmed: string }>(
    `SELECT count(*)::text AS rows, count(*) FILTER (WHERE name = btrim(name) AND name NOT LIKE '%  %')::text AS trimmed FROM books`,
    undefined,
    apiUrl,
  )
  const indexes = await server.sql<{ def: string }>(
    `SELECT regexp_replace(indexdef, ' ON \\S+', ' ON ?') AS def FROM pg_indexes WHERE tablename = 'books' ORDER BY 1`,
    undefined,
    apiUrl,
  )
  return { rows: Number(count!.rows), trimmed: Number(count!.trimmed), indexes: indexes.map((i) => i.def) }
}

describe('refresh --env postgres', () => {
  it('copies, cleans, indexes and promotes a table of another schema; query finds it; rollback restores both', async () => {
    const before = await live()
    const first = await cli(['run', '--env', 'postgres'])
    expect(first.code, first.stderr + first.stdout).toBe(0)
    const after = await live()
    expect(after.rows).toBe(ROWS)
    expect(after.trimmed).toBe(ROWS)
    // the live table's indexes and primary key are carried over under their own names
    expect(after.indexes).toEqual(before.indexes)
    const [sample] = await server.sql<{ name: string }>(
      `SELECT name FROM books WHERE id = 4`,
      undefined,
      apiUrl,
    )
    expect(sample!.name).toBe('dune volume 4')
    // the scratch tables of the run are gone: the copy dropped by clean, the new table now `books`
    const tables = await server.sql<{ t: string }>(
      `SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`,
      undefined,
      apiUrl,
    )
    expect(tables.map((t) => t.t)).toEqual(['books', expect.stringMatching(/^books_prev_[0-9a-z]{18}$/)])

    const hits = await cli(['query', '--env', 'postgres', 'beloved', '--json'])
    expect(hits.code, hits.stderr).toBe(0)
    const result = JSON.parse(hits.stdout) as { hits: Array<Record<string, unknown>>; documents: number }
    expect(result.documents).toBe(ROWS)
    expect(result.hits.length).toBeGreaterThan(0)
    expect(String(result.hits[0]!.name)).toMatch(/^beloved volume \d+$/)

    // a second refresh with more upstream rows, then a rollback to the first
    await addBooks(ROWS + 1, ROWS + 500)
    const second = await cli(['run', '--env', 'postgres'])
    expect(second.code, second.stderr + second.stdout).toBe(0)
    expect((await live()).rows).toBe(ROWS + 500)
    const shown = await cli(['promote', '--env', 'postgres', '--json'])
    expect(shown.code, shown.stderr).toBe(0)
    const promoted = JSON.parse(shown.stdout) as { current: { index: string }; table: { previous: string[] } }
    expect(promoted.table.previous).toHaveLength(1)

    const back = await cli(['promote', '--env', 'postgres', '--rollback'])
    expect(back.code, back.stderr + back.stdout).toBe(0)
    expect(back.stdout).toMatch(/rolled back: current -> /)
    expect(back.stdout).toMatch(/rolled back: books is books_prev_/)
    expect((await live()).rows).toBe(ROWS)
    const again = await cli(['query', '--env', 'postgres', 'beloved', '--json'])
    expect((JSON.parse(again.stdout) as { documents: number }).documents).toBe(ROWS)
    for (const out of [first, second, hits, shown, back]) {
      expect(out.stdout + out.stderr).not.toContain(new URL(apiUrl).password || '\u0000')
    }
  }, 240_000)

  it('refuses bad input with exit 2 and the fix, never printing a password', async () => {
    const password = new URL(apiUrl).password
    const wrong = new URL(upstreamUrl)
    wrong.password = 'not-the-password'
    const unreachable = new URL(upstreamUrl)
    unreachable.port = '1'
    const cases: Array<[NodeJS.ProcessEnv, RegExp]> = [
      [{ REFRESH_UPSTREAM_URL: '' }, /REFRESH_UPSTREAM_URL is not set/],
      [{ REFRESH_API_URL: 'mysql://x@y/z' }, /REFRESH_API_URL .* is not a postgres:\/\/ URL/],
      [
        { REFRESH_UPSTREAM_URL: unreachable.toString() },
        /cannot connect to the upstream database .*host and port/,
      ],
      [
        { REFRESH_UPSTREAM_URL: wrong.toString() },
        /cannot connect to the upstream database .*user and password/,
      ],
      [
        { REFRESH_UPSTREAM_TABLE: 'bookz' },
        /upstream table public\.bookz does not exist.*did you mean `books`/i,
      ],
    ]
    for (const [extra, message] of cases) {
      const r = await cli(['run', '--env', 'postgres', 'copy'], extra)
      expect(r.code, `${JSON.stringify(extra)}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(message)
      expect(r.stdout + r.stderr).not.toContain('not-the-password')
      if (password) expect(r.stdout + r.stderr).not.toContain(password)
    }
    // a column named in the config that the table does not have
    const dir = mkdtempSync(join(tmpdir(), 'refresh-pg-bad-'))
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      `import { copy, defineConfig } from 'refresh'
export default defineConfig({ assets: [copy({ table: 'books', columns: ['id', 'titel'], postgres: true })] })
`,
    )
    const column = await run([CLI, 'run'], { cwd: dir, env, timeoutMs: 60_000 })
    expect(column.code, column.stderr).toBe(2)
    expect(column.stderr).toMatch(/column `titel` does not exist in the upstream table public\.books/)
    expect(column.stderr).toMatch(/fix `columns`/)
    rmSync(dir, { recursive: true, force: true })
  }, 240_000)

  it('resumes a copy whose process was killed mid-copy: no range loaded twice, none from zero', async () => {
    await server.sql(
      `CREATE TABLE big (id bigint PRIMARY KEY, label text NOT NULL);
       INSERT INTO big SELECT i, 'row ' || i FROM generate_series(1, 300000) i`,
      undefined,
      upstreamUrl,
    )
    const dir = mkdtempSync(join(tmpdir(), 'refresh-pg-crash-'))
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      `import { copy, defineConfig } from 'refresh'
export default defineConfig({ assets: [copy({ table: 'big', postgres: { batchRows: 1000 } })] })
`,
    )
    const first = startCli(['run', '--plain'], { cwd: dir, env, killAfterMs: 60_000 })
    // killed once some ranges committed, long before all 300 did
    const done = async () => {
      const rows = await server
        .sql<{ n: string }>(
          `SELECT count(*)::text AS n FROM pg_tables WHERE tablename LIKE 'big\\_copy\\_%\\_copy\\_progress'`,
          undefined,
          apiUrl,
        )
        .catch(() => [{ n: '0' }])
      if (rows[0]!.n !== '1') return 0
      const [progress] = await server.sql<{ t: string }>(
        `SELECT tablename AS t FROM pg_tables WHERE tablename LIKE 'big\\_copy\\_%\\_copy\\_progress'`,
        undefined,
        apiUrl,
      )
      const [n] = await server.sql<{ n: string }>(
        `SELECT count(*)::text AS n FROM ${progress!.t} WHERE copied_at IS NOT NULL`,
        undefined,
        apiUrl,
      )
      return Number(n!.n)
    }
    await until(async () => (await done()) >= 20, 'twenty ranges copied', 30_000)
    first.child.kill('SIGKILL')
    await first.done
    const before = await done()
    expect(before).toBeLessThan(300)

    const second = await run([CLI, 'run', '--plain'], { cwd: dir, env, timeoutMs: 60_000 })
    expect(second.code, second.stderr + second.stdout).toBe(0)
    expect(second.stdout + second.stderr).toMatch(
      /resumed big_copy_[0-9a-z]{18}: \d+ of 300 id ranges were loaded by an earlier attempt/,
    )
    const skipped = Number(/resumed big_copy_\w+: (\d+) of/.exec(second.stdout + second.stderr)![1])
    expect(skipped).toBeGreaterThanOrEqual(before)
    const [copied] = await server.sql<{ t: string }>(
      `SELECT tablename AS t FROM pg_tables WHERE tablename LIKE 'big\\_copy\\_%' AND tablename NOT LIKE '%progress'`,
      undefined,
      apiUrl,
    )
    const [check] = await server.sql<{ n: string; d: string }>(
      `SELECT count(*)::text AS n, count(DISTINCT id)::text AS d FROM ${copied!.t}`,
      undefined,
      apiUrl,
    )
    expect(check).toEqual({ n: '300000', d: '300000' })
    rmSync(dir, { recursive: true, force: true })
  }, 120_000)
})
