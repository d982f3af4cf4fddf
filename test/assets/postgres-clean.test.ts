/**
 * `cleanPostgresTable` against the local clean (`cleanRows` on SQLite), on the same rows: the
 * media refresh's generated catalog under the media rules, and a hand-made table under every
 * rule. The cleaned rows and every rule's counts must be equal on both engines. Then what only
 * the Postgres clean has: a failed clean leaves nothing, a finished clean whose input is gone
 * answers from its table's comment, and a function rule or a bad SQL expression is a clear
 * `ConfigError`.
 */
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateCatalog } from '../../assets/catalog.js'
import { type CleanRule, cleanConfig, cleanRows, mediaRules } from '../../assets/clean.js'
import { cleanPostgresTable } from '../../assets/postgres-clean.js'
import { ConfigError } from '../../core/errors.js'
import { tempDir } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

let server: TestPostgres

beforeAll(async () => {
  server = await startPostgres()
}, 60_000)

afterAll(async () => {
  await server?.stop()
})

interface Table {
  /** SQLite column definitions and Postgres ones, in the same order. */
  sqlite: string
  postgres: string
  rows: unknown[][]
}

/** The same table in a SQLite file and in a fresh Postgres database. */
async function both(name: string, table: Table): Promise<{ file: string; url: string }> {
  const file = join(tempDir(), 'work.db')
  const db = new Database(file)
  db.exec(`CREATE TABLE ${name} (${table.sqlite})`)
  const width = table.rows[0]!.length
  const insert = db.prepare(`INSERT INTO ${name} VALUES (${Array(width).fill('?').join(', ')})`)
  db.transaction(() => {
    for (const row of table.rows) insert.run(...row)
  })()
  db.close()
  const url = await server.freshDatabase('clean')
  await server.sql(`CREATE TABLE ${name} (${table.postgres})`, undefined, url)
  for (let i = 0; i < table.rows.length; i += 1000) {
    const chunk = table.rows.slice(i, i + 1000)
    const values = chunk.map(
      (_, r) => `(${Array.from({ length: width }, (_, c) => `$${r * width + c + 1}`).join(', ')})`,
    )
    await server.sql(`INSERT INTO ${name} VALUES ${values.join(', ')}`, chunk.flat(), url)
  }
  return { file, url }
}

/** The cleaned rows of SQLite, as Postgres returns them (JSON lists parsed, numbers as numbers). */
function sqliteRows(file: string, table: string, json: string[]): Array<Record<string, unknown>> {
  const db = new Database(file, { readonly: true })
  const rows = db.prepare(`SELECT * FROM ${table} ORDER BY id`).all() as Array<Record<string, unknown>>
  db.close()
  return rows.map((r) => {
    for (const c of json) if (typeof r[c] === 'string') r[c] = JSON.parse(r[c] as string)
    return r
  })
}

async function postgresRows(
  url: string,
  table: string,
  json: string[],
): Promise<Array<Record<string, unknown>>> {
  const rows = await server.sql<Record<string, unknown>>(`SELECT * FROM ${table} ORDER BY id`, undefined, url)
  return rows.map((r) => {
    for (const c of json) if (typeof r[c] === 'string') r[c] = JSON.parse(r[c] as string)
    for (const [k, v] of Object.entries(r))
      if (typeof v === 'string' && /^-?\d+$/.test(v) && k !== 'identifier') r[k] = Number(v)
    return r
  })
}

describe('cleanPostgresTable', () => {
  it('cleans the generated media catalog exactly as the local clean does', async () => {
    const catalog = join(tempDir(), 'catalog.db')
    await generateCatalog(catalog, 20_000, 7, () => undefined)
    const source = new Database(catalog, { readonly: true })
    const rows = (source.prepare('SELECT * FROM media ORDER BY id').raw().all() as unknown[][]).map((r) => r)
    const sqliteColumns = (
      source.prepare("SELECT sql FROM sqlite_master WHERE name = 'media'").pluck().get() as string
    )
      .replace(/^[^(]*\(/, '')
      .replace(/\)\s*$/, '')
    source.close()
    const { file, url } = await both('media', {
      sqlite: sqliteColumns,
      postgres: `id bigint PRIMARY KEY, identifier text NOT NULL, title text, creator text, url text, license text,
        provider text NOT NULL, tags jsonb NOT NULL, created_at bigint NOT NULL, updated_at bigint NOT NULL`,
      rows,
    })
    const rules = mediaRules(cleanConfig.parse({}))
    const local = await cleanRows(file, { table: 'media', idColumn: 'id', rules })
    const progress: number[] = []
    const remote = await cleanPostgresTable({
      url,
      table: 'media',
      into: 'media_clean',
      rules,
      batchRows: 3_000,
      onProgress: (done) => progress.push(done),
    })
    expect(remote.rows).toBe(local.rows)
    expect(remote.input).toBe(20_000)
    expect(remote.rules).toEqual(local.rules)
    expect(local.rules.some((r) => r.rowsDropped > 0 && r.rule === 'dropNotIn')).toBe(true)
    expect(local.rules.find((r) => r.name === 'tags')!.itemsDenied).toBeGreaterThan(0)
    expect(progress.at(-1)).toBe(20_000)
    expect(progress.length).toBeGreaterThan(5)
    expect(await postgresRows(url, 'media_clean', ['tags'])).toEqual(
      sqliteRows(file, 'media_clean', ['tags']),
    )
  }, 120_000)

  it('applies every rule like the local clean, on a table that is not media', async () => {
    const people: unknown[][] = [
      [
        1,
        '  Ada   Lovelace ',
        'ADA@Example.org',
        'example.org/ada',
        'uk',
        '[{"n":"Math","s":0.9},{"n":"math","s":0.95}]',
        1815,
      ],
      [2, 'Alan Turing', 'alan@example.org', 'http://example.org/alan', 'uk', '[{"n":"spam","s":1}]', 1912],
      [3, '   ', 'blank@example.org', null, 'us', '[]', 1900],
      [4, 'Grace Hopper', 'not an email', 'https://example.org/grace', 'us', '[{"n":"navy","s":0.2}]', 1906],
      [5, 'Ada Lovelace', 'ada2@example.org', 'https://example.org/ada2', 'uk', '[]', 1815],
      [
        6,
        'Edsger\tDijkstra',
        'edsger@example.org',
        'https://example.org/e',
        'nl',
        '[{"n":" Graphs ","s":0.99}]',
        1930,
      ],
      [7, 'Someone', 'x@example.org', 'https://example.org/x', 'fr', '[]', 1990],
      [8, 'Old One', 'old@example.org', 'https://example.org/o', 'uk', '[]', 1700],
    ]
    const { file, url } = await both('people', {
      sqlite:
        'id INTEGER PRIMARY KEY, name TEXT, email TEXT, homepage TEXT, country TEXT, topics TEXT NOT NULL, born INTEGER',
      postgres:
        'id bigint PRIMARY KEY, name text, email text, homepage text, country text, topics text NOT NULL, born integer',
      rows: people,
    })
    const rules: CleanRule[] = [
      { rule: 'trim', column: 'name', collapseSpaces: true, emptyToNull: true },
      { rule: 'dropNull', column: 'name' },
      { rule: 'lowercase', column: 'email' },
      { rule: 'dropUnmatched', column: 'email', pattern: '^[a-z0-9.]+@[a-z.]+$' },
      { rule: 'url', column: 'homepage' },
      { rule: 'dropNotIn', column: 'country', values: ['uk', 'us', 'nl'] },
      {
        rule: 'filterList',
        column: 'topics',
        field: 'n',
        score: 's',
        min: 0.5,
        deny: ['spam'],
        dedupe: true,
        sort: true,
      },
      { rule: 'sql', column: 'born', expression: 'born + 0' },
      { rule: 'dropWhere', where: 'born < 1800' },
      { rule: 'dedupe', key: ['name'] },
    ]
    const local = await cleanRows(file, { table: 'people', idColumn: 'id', rules })
    const remote = await cleanPostgresTable({
      url,
      table: 'people',
      into: 'people_clean',
      rules,
      dropSource: true,
    })
    expect(remote.rules).toEqual(local.rules)
    expect(remote.rows).toBe(local.rows)
    expect(remote.rows).toBe(3) // 1, 2, 6 kept; 3 blank; 4 bad email; 5 duplicate name; 7 country; 8 born
    expect(await postgresRows(url, 'people_clean', ['topics'])).toEqual(
      sqliteRows(file, 'people_clean', ['topics']),
    )
    // the input is gone with the commit; a retry answers from the finished table's comment
    const again = await cleanPostgresTable({
      url,
      table: 'people',
      into: 'people_clean',
      rules,
      dropSource: true,
    })
    expect({ ...again, ms: 0 }).toEqual({ ...remote, ms: 0 })
  }, 60_000)

  it('refuses JavaScript rules and reports a bad SQL expression as a config error, leaving nothing', async () => {
    const { url } = await both('things', {
      sqlite: 'id INTEGER PRIMARY KEY, label TEXT',
      postgres: 'id bigint PRIMARY KEY, label text',
      rows: [
        [1, 'a'],
        [2, 'b'],
      ],
    })
    await expect(
      cleanPostgresTable({
        url,
        table: 'things',
        into: 'things_clean',
        rules: [{ rule: 'map', column: 'label', fn: (v) => v }],
      }),
    ).rejects.toThrow(/calls a JavaScript function.*rule: 'sql'/)
    const bad = cleanPostgresTable({
      url,
      table: 'things',
      into: 'things_clean',
      rules: [{ rule: 'sql', column: 'label', expression: 'no_such_column || 1' }],
    })
    await expect(bad).rejects.toBeInstanceOf(ConfigError)
    await expect(bad).rejects.toThrow(/a rule's SQL failed .*no_such_column.*Fix the rule/)
    const left = await server.sql<{ n: string }>(
      `SELECT count(*)::text AS n FROM pg_tables WHERE tablename = 'things_clean'`,
      undefined,
      url,
    )
    expect(left[0]!.n).toBe('0')
    await expect(cleanPostgresTable({ url, table: 'thing', into: 'x', rules: [] })).rejects.toThrow(
      /the table public\.thing does not exist .*did you mean `things`/i,
    )
    await expect(
      cleanPostgresTable({ url, table: 'things', into: 'x', rules: [{ rule: 'trim', column: 'lable' }] }),
    ).rejects.toThrow(/column `lable` .*does not exist in table `things`/)
  }, 60_000)
})
