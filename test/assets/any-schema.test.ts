import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { type CleanRule, clean } from '../../assets/clean.js'
import { copy } from '../../assets/copy.js'
import { reindex } from '../../assets/reindex.js'
import { toFtsQuery } from '../../assets/search.js'
import { asset } from '../../core/definitions.js'
import { materialize } from '../../core/materialize.js'
import { localProcessRunner } from '../../runners/local.js'
import { tempDir } from '../helpers.js'

/**
 * A generated upstream of another shape than `media`: a `products` table keyed by `sku_id`, with
 * tags as a JSON list of strings and a column (`price`) that the refresh does not copy.
 */
function productsDb(dir: string): string {
  const file = join(dir, 'products.db')
  const db = new Database(file)
  db.exec(`CREATE TABLE products (sku_id INTEGER PRIMARY KEY, name TEXT, url TEXT, category TEXT NOT NULL,
    tags TEXT NOT NULL, price REAL)`)
  const insert = db.prepare('INSERT INTO products VALUES (?, ?, ?, ?, ?, 9.5)')
  const rows: Array<[number, string, string, string, string[]]> = [
    [1, '  red   kettle ', 'shop.example/kettle', 'Kitchen', ['steel', 'sale', 'steel']],
    [2, 'Blue mug', 'http://shop.example/mug?ref=x', 'kitchen', ['ceramic']],
    [3, '   ', 'https://shop.example/x', 'kitchen', []],
    [4, 'Garden hose', 'https://shop.example/hose', 'Garden & Patio', ['green']],
    [5, 'Test item', 'https://shop.example/test', 'misc', []],
    [6, 'red kettle', 'https://shop.example/kettle', 'kitchen', ['steel']],
    [7, 'lamp', 'https://shop.example/lamp', 'lighting', ['Sale', 'warm']],
    [8, 'Desk', 'https://shop.example/desk', 'office', ['oak']],
  ]
  for (const [id, name, url, category, tags] of rows)
    insert.run(id, name, url, category, JSON.stringify(tags))
  db.close()
  return file
}

const RULES: CleanRule[] = [
  { rule: 'trim', column: 'name', collapseSpaces: true, emptyToNull: true },
  { rule: 'dropNull', column: 'name' },
  { rule: 'lowercase', column: 'category' },
  { rule: 'dropUnmatched', column: 'category', pattern: '^[a-z]+$' },
  { rule: 'url', column: 'url' },
  { rule: 'filterList', column: 'tags', deny: ['sale'], dedupe: true },
  {
    rule: 'sql',
    column: 'name',
    expression: 'upper(substr(name, 1, 1)) || substr(name, 2)',
    name: 'capitalize',
  },
  { rule: 'map', column: 'url', fn: (v) => String(v).replace(/\?.*$/, ''), name: 'stripQuery' },
  { rule: 'dropWhere', where: (row) => String(row.name).startsWith('Test'), name: 'noTestProducts' },
  { rule: 'dedupe', key: ['url'] },
]

function products(
  dir: string,
  over: {
    copy?: Parameters<typeof copy>[0]
    clean?: Parameters<typeof clean>[0]
    reindex?: Parameters<typeof reindex>[0]
  } = {},
) {
  const file = productsDb(dir)
  const dataDir = join(dir, 'data')
  return [
    asset({ key: 'products', materialize: () => ({ file, table: 'products' }) }),
    copy({
      dataDir,
      upstream: 'products',
      columns: ['sku_id', 'name', 'url', 'category', 'tags'],
      ...over.copy,
    }),
    clean({ dataDir, rules: RULES, ...over.clean }),
    reindex({
      dataDir,
      shards: 2,
      runner: localProcessRunner({ processes: 2 }),
      searchable: ['name', 'category', { column: 'tags', list: true }],
      stored: ['url'],
      ...over.reindex,
    }),
  ]
}

/** Searches every shard of a built index the way `refresh query` does (FTS5 MATCH, ranked). */
function search(indexDir: string, text: string): Array<{ id: number; name: string; url: string }> {
  const hits: Array<{ id: number; name: string; url: string }> = []
  for (const f of readdirSync(indexDir)
    .filter((n) => n.endsWith('.db'))
    .sort()) {
    const db = new Database(join(indexDir, f), { readonly: true })
    try {
      hits.push(
        ...(db
          .prepare('SELECT rowid AS id, name, url FROM docs WHERE docs MATCH ? ORDER BY rank')
          .all(toFtsQuery(text)) as typeof hits),
      )
    } finally {
      db.close()
    }
  }
  return hits.sort((a, b) => a.id - b.id)
}

describe('any schema: a products table through copy -> clean -> reindex', () => {
  it('copies the chosen columns, applies every rule with exact counts, and indexes the searchable fields', async () => {
    const dir = tempDir()
    const result = await materialize(products(dir), {
      store: join(dir, 'refresh.db'),
      config: { reindex: { shardRetryDelayMs: 0 } },
    })
    expect(result.status).toBe('success')
    const m = (key: string) => result.materializations[key]!.metadata as Record<string, unknown>

    expect(m('copy')).toMatchObject({
      table: 'products',
      idColumn: 'sku_id',
      columns: ['sku_id', 'name', 'url', 'category', 'tags'],
      rows: 8,
    })
    const work = new Database(m('copy').file as string, { readonly: true })
    const copied = work.prepare('PRAGMA table_info(products)').all() as Array<{ name: string }>
    expect(copied.map((c) => c.name)).toEqual(['sku_id', 'name', 'url', 'category', 'tags'])

    expect(m('clean')).toMatchObject({
      table: 'products_clean',
      idColumn: 'sku_id',
      rows: 4,
      input: 8,
      dropped: 4,
      minId: 1,
      maxId: 8,
    })
    expect(m('clean').droppedNoUrl).toBeUndefined() // the media counts belong to the media rules only
    expect(m('clean').rules).toEqual([
      { name: 'trim:name', rule: 'trim', column: 'name', rowsChanged: 1, rowsDropped: 0, rowsBlanked: 0 },
      { name: 'dropNull:name', rule: 'dropNull', column: 'name', rowsChanged: 0, rowsDropped: 1 },
      { name: 'lowercase:category', rule: 'lowercase', column: 'category', rowsChanged: 1, rowsDropped: 0 },
      {
        name: 'dropUnmatched:category',
        rule: 'dropUnmatched',
        column: 'category',
        rowsChanged: 0,
        rowsDropped: 1,
      },
      { name: 'url:url', rule: 'url', column: 'url', rowsChanged: 2, rowsDropped: 0 },
      {
        name: 'filterList:tags',
        rule: 'filterList',
        column: 'tags',
        rowsChanged: 2,
        rowsDropped: 0,
        itemsBelowMin: 0,
        itemsDenied: 2,
        itemsDuplicate: 1,
      },
      { name: 'capitalize', rule: 'sql', column: 'name', rowsChanged: 3, rowsDropped: 0 },
      { name: 'stripQuery', rule: 'map', column: 'url', rowsChanged: 1, rowsDropped: 0 },
      { name: 'noTestProducts', rule: 'dropWhere', column: null, rowsChanged: 0, rowsDropped: 1 },
      { name: 'dedupe:url', rule: 'dedupe', column: 'url', rowsChanged: 0, rowsDropped: 1 },
    ])
    const cleaned = work.prepare('SELECT * FROM products_clean ORDER BY sku_id').all()
    work.close()
    expect(cleaned).toEqual([
      {
        sku_id: 1,
        name: 'Red kettle',
        url: 'https://shop.example/kettle',
        category: 'kitchen',
        tags: '["steel"]',
      },
      {
        sku_id: 2,
        name: 'Blue mug',
        url: 'https://shop.example/mug',
        category: 'kitchen',
        tags: '["ceramic"]',
      },
      { sku_id: 7, name: 'Lamp', url: 'https://shop.example/lamp', category: 'lighting', tags: '["warm"]' },
      { sku_id: 8, name: 'Desk', url: 'https://shop.example/desk', category: 'office', tags: '["oak"]' },
    ])

    // the index holds the kept rows; name, category and the tag list are searchable, url stored
    expect(m('reindex')).toMatchObject({ documents: 4, shards: 2 })
    const index = m('reindex').dir as string
    expect(search(index, 'kettle')).toEqual([
      { id: 1, name: 'Red kettle', url: 'https://shop.example/kettle' },
    ])
    expect(search(index, 'steel').map((h) => h.id)).toEqual([1])
    expect(search(index, 'kitchen').map((h) => h.id)).toEqual([1, 2])
    expect(search(index, 'warm lighting').map((h) => h.id)).toEqual([7])
    expect(search(index, 'sale')).toEqual([]) // denied tag
    expect(search(index, 'shop')).toEqual([]) // url is stored, not searched
  })

  it('a column named in the config that the table does not have fails the step with a ConfigError naming it', async () => {
    const cases: Array<[string, Parameters<typeof products>[1], RegExp]> = [
      [
        'copy',
        { copy: { columns: ['sku_id', 'title'] } },
        /column `title` \(`columns` of copy\) does not exist in table `products`.*Fix `columns`/,
      ],
      [
        'copy',
        { copy: { idColumn: 'id' } },
        /column `id` \(`idColumn` of copy\) does not exist in table `products`/,
      ],
      [
        'clean',
        { clean: { rules: [{ rule: 'trim', column: 'title' }] } },
        /column `title` \(`rules\[0\] \(trim\)` of clean\) does not exist in table `products`/,
      ],
      [
        'reindex',
        { reindex: { searchable: ['title'] } },
        /column `title` \(`searchable` of reindex\) does not exist in table `products_clean`/,
      ],
      [
        'reindex',
        { reindex: { searchable: ['name'], stored: ['price'] } },
        /column `price` \(`stored` of reindex\) does not exist in table `products_clean`/,
      ],
    ]
    for (const [step, over, message] of cases) {
      const dir = tempDir()
      const result = await materialize(products(dir, over), { store: join(dir, 'refresh.db') })
      expect(result.status, step).toBe('failure')
      const failed = result.steps[step]!
      expect(failed.status).toBe('failed')
      expect(failed.error).toMatchObject({ code: 'config' })
      expect(failed.error!.message).toMatch(message)
      expect(failed.attempts, 'not retried: only the config can fix it').toBe(1)
    }
  })

  it('a bad rule or option is refused when the asset is declared, naming the field', () => {
    expect(() => clean({ rules: [{ rule: 'capitalise', column: 'name' } as unknown as CleanRule] })).toThrow(
      /clean\(\{ rules \}\): `rules` is invalid: \[0\]\.rule/,
    )
    expect(() => clean({ rules: [{ rule: 'dropUnmatched', column: 'name', pattern: '(' }] })).toThrow(
      /\[0\]\.pattern: must be a valid regular expression/,
    )
    expect(() => clean({ rules: [{ rule: 'trim', column: 'name; DROP TABLE x' }] })).toThrow(
      /\[0\]\.column: must be a plain column name/,
    )
    expect(() => clean({ rules: [{ rule: 'map', column: 'name', fn: 'x' as never }] })).toThrow(
      /\[0\]\.fn: must be a function/,
    )
    expect(() => copy({ columns: [] })).toThrow(/copy\(\.\.\.\) options are invalid: columns/)
    expect(() => reindex({ searchable: [] })).toThrow(/reindex\(\.\.\.\) options are invalid: searchable/)
    expect(() => reindex({ stored: ['url'] })).toThrow(/`stored` needs `searchable`/)
  })
})
