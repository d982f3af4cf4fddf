import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { MEDIA_COLUMNS } from '../../assets/copy.js'
import { searchPromoted, toFtsQuery } from '../../assets/search.js'
import { checkSnapshotDir, searchSnapshotDir } from '../../assets/serving.js'
import { probeTerm } from '../../assets/snapshot.js'
import type { Manifest } from '../../assets/state.js'
import { hitLines } from '../../cli/commands/query.js'
import { docsColumns, probeWord, searchShard } from '../../search/docs.js'
import { type IndexFields, indexShard, MEDIA_FIELDS } from '../../search/index-shard.js'
import { CLI, run, tempDir } from '../helpers.js'

/** A `books` table: another shape than `media`, with a year that the index leaves out. */
function booksDb(dir: string): string {
  const file = join(dir, 'books.db')
  const db = new Database(file)
  db.exec('CREATE TABLE books (id INTEGER PRIMARY KEY, name TEXT, author TEXT, isbn TEXT, year INTEGER)')
  const insert = db.prepare('INSERT INTO books VALUES (?, ?, ?, ?, ?)')
  insert.run(1, 'Dune', 'Frank Herbert', '978-0441013593', 1965)
  insert.run(2, 'The Left Hand of Darkness', 'Ursula K. Le Guin', '978-0441478125', 1969)
  insert.run(3, '  A Wizard of Earthsea ', 'Ursula K. Le Guin', '978-0547773742', 1968)
  insert.run(4, 'Foundation', 'Isaac Asimov', '978-0553293357', 1951)
  insert.run(
    5,
    "The Hitchhiker's Guide to the Galaxy: the complete trilogy in five parts, with an introduction and notes",
    'Douglas Adams',
    null,
    1979,
  )
  insert.run(6, 'Neuromancer', 'William Gibson', '978-0441569595', 1984)
  db.close()
  return file
}

/** The whole refresh over `books`, as a user's config would declare it. */
const config = (
  books: string,
) => `import { asset, clean, copy, defineConfig, localProcessRunner, promote, reindex, replicas, snapshot } from 'refresh'

const dataDir = new URL('./state/', import.meta.url)
export default defineConfig({
  assets: [
    asset({ key: 'books', materialize: () => ({ file: ${JSON.stringify(books)}, table: 'books' }) }),
    copy({ dataDir, upstream: 'books' }),
    clean({ dataDir, rules: [{ rule: 'trim', column: 'name' }] }),
    reindex({
      dataDir,
      shards: 2,
      runner: localProcessRunner({ processes: 2 }),
      searchable: ['name', 'author'],
      stored: ['isbn'],
    }),
    snapshot({ dataDir }),
    replicas({ dataDir }),
    promote({ dataDir }),
  ],
  config: { replicas: { replicas: 1 } },
})
`

/** One shard built straight from a table, the way a reindex worker builds it. */
async function shardOf(dir: string, create: string, rows: unknown[][], fields: IndexFields): Promise<string> {
  const source = join(dir, 'source.db')
  const db = new Database(source)
  db.exec(create)
  const table = /CREATE TABLE (\w+)/.exec(create)![1]!
  for (const row of rows)
    db.prepare(`INSERT INTO ${table} VALUES (${row.map(() => '?').join(', ')})`).run(...row)
  db.close()
  const output = join(dir, 'shard.db')
  await indexShard(
    { source, table, fields, lo: 0, hi: 1000, output, shard: 0 },
    { progress: () => undefined },
  )
  return output
}

function withShard<T>(file: string, fn: (db: Database.Database) => T, readonly = true): T {
  const db = new Database(file, { readonly, fileMustExist: true })
  try {
    return fn(db)
  } finally {
    db.close()
  }
}

describe('an index of any fields: search, serve, probe and query read the fields from the shard', () => {
  it('books (name and author searchable, isbn stored) through the whole refresh and `refresh query`', async () => {
    const cwd = tempDir()
    const books = booksDb(cwd)
    const configFile = join(cwd, 'refresh.config.ts')
    writeFileSync(configFile, config(books))
    const env = { NO_COLOR: '1', REFRESH_CONFIG: '' }

    const built = await run([CLI, 'run', '--plain'], { cwd, env, timeoutMs: 60_000 })
    expect(built.stderr).toBe('')
    expect(built.code).toBe(0)

    // the snapshot's probe word is from the first searchable field (`name`), not from a `title`
    const dataDir = join(cwd, 'state')
    const alias = JSON.parse(readFileSync(join(dataDir, 'current.json'), 'utf8')) as {
      current: { snapshot: string }
    }
    const snapshotDir = join(dataDir, 'snapshots', alias.current.snapshot)
    const manifest = JSON.parse(readFileSync(join(snapshotDir, 'manifest.json'), 'utf8')) as Manifest
    expect(manifest).toMatchObject({ documents: 6, shards: 2, probe: 'dune' })
    expect(probeTerm(join(snapshotDir, manifest.files[0]!.name))).toBe('dune')
    expect(checkSnapshotDir(snapshotDir)).toEqual({
      ok: true,
      snapshot: alias.current.snapshot,
      index: manifest.index,
      documents: 6,
      shards: 2,
      probe: 'dune',
    })

    // the library: every field of the index, by name; `year` is not in it
    const found = searchPromoted(dataDir, 'earthsea')
    expect(found.fields).toEqual({ searchable: ['name', 'author'], stored: ['isbn'] })
    expect(found.hits).toEqual([
      {
        id: 3,
        name: 'A Wizard of Earthsea',
        author: 'Ursula K. Le Guin',
        isbn: '978-0547773742',
        score: expect.any(Number),
      },
    ])
    const served = searchSnapshotDir(snapshotDir, 'le guin', 10)
    expect(served.fields).toEqual(found.fields)
    expect(served.hits.map((h) => h.id).sort()).toEqual([2, 3])
    expect(served.hits.every((h) => h.author === 'Ursula K. Le Guin')).toBe(true)
    expect(searchSnapshotDir(snapshotDir, '0547773742', 10).hits).toEqual([]) // isbn is stored, not searched

    // refresh query: the first searchable field, then the others that have a value
    const query = await run([CLI, 'query', 'earthsea'], { cwd, env })
    expect(query.code).toBe(0)
    const lines = query.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^index idx-\S+ \(snapshot snap-\S+, 6 documents\) via replica replica-1$/)
    expect(lines.slice(1, -1)).toEqual([
      '  1. A Wizard of Earthsea [author: Ursula K. Le Guin, isbn: 978-0547773742]',
    ])
    expect(lines.at(-1)).toMatch(/^1 hit for "earthsea" in \d+ ms$/)

    // a long value is cut, a field with no value left out
    const long = await run([CLI, 'query', 'galaxy'], { cwd, env })
    expect(long.stdout).toContain(
      "  1. The Hitchhiker's Guide to the Galaxy: the complete trilogy in five parts, with… [author: Douglas Adams]\n",
    )

    // --json: the hits with all their fields, and the fields
    const json = await run([CLI, 'query', 'dune', '--json'], { cwd, env })
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject({
      fields: { searchable: ['name', 'author'], stored: ['isbn'] },
      documents: 6,
      hits: [
        { id: 1, name: 'Dune', author: 'Frank Herbert', isbn: '978-0441013593', score: expect.any(Number) },
      ],
    })

    const none = await run([CLI, 'query', '0441013593'], { cwd, env })
    expect(none.code).toBe(1)
    expect(none.stdout).toMatch(/^0 hits for "0441013593"/m)
  }, 90_000)

  it('a field named `id` or `score` comes back as `field_id` / `field_score`; the probe word is from the first searchable field that has one', async () => {
    const shard = await shardOf(
      tempDir(),
      'CREATE TABLE reviews (id INTEGER PRIMARY KEY, headline TEXT, body TEXT, score REAL)',
      [
        [1, null, 'Warm and funny', 4.5],
        [2, '...', 'Cold, slow', 2],
        [3, 'Quiet', null, 3],
      ],
      { searchable: ['headline', 'body'], stored: ['id', 'score'] },
    )
    const found = withShard(shard, (db) => searchShard(db, toFtsQuery('funny'), 10))
    expect(found.fields).toEqual({ searchable: ['headline', 'body'], stored: ['field_id', 'field_score'] })
    expect(found.hits).toEqual([
      {
        id: 1,
        headline: null,
        body: 'Warm and funny',
        field_id: 1,
        field_score: 4.5,
        score: expect.any(Number),
      },
    ])
    expect(found.hits[0]!.score).toBeLessThan(0) // bm25, not the review's score
    // `headline` is the first searchable field and has a word (in the 3rd document): it is the probe
    expect(withShard(shard, probeWord)).toBe('quiet')
    expect(hitLines(found)).toEqual(['  1. (empty) [body: Warm and funny, field_id: 1, field_score: 4.5]'])

    // no word in the first searchable field at all: the next one's
    const noHeadline = await shardOf(
      tempDir(),
      'CREATE TABLE reviews (id INTEGER PRIMARY KEY, headline TEXT, body TEXT)',
      [
        [1, '!!', 'Éclair review'],
        [2, null, 'second'],
      ],
      { searchable: ['headline', 'body'], stored: [] },
    )
    expect(withShard(noHeadline, probeWord)).toBe('éclair')
  })

  it('a shard built before its fields were recorded: the searchable columns are read from its FTS5 declaration', async () => {
    const shard = await shardOf(
      tempDir(),
      'CREATE TABLE books (id INTEGER PRIMARY KEY, name TEXT, author TEXT, isbn TEXT)',
      [[1, 'Dune', 'Frank Herbert', '978-0441013593']],
      { searchable: ['name', 'author'], stored: ['isbn'] },
    )
    const recorded = withShard(shard, docsColumns)
    expect(recorded).toEqual({ searchable: ['name', 'author'], stored: ['isbn'] })
    withShard(shard, (db) => db.exec("DELETE FROM shard_meta WHERE key IN ('searchable', 'stored')"), false)
    expect(withShard(shard, docsColumns)).toEqual(recorded)
    withShard(shard, (db) => db.exec('DROP TABLE shard_meta'), false)
    expect(withShard(shard, docsColumns)).toEqual(recorded)
    expect(
      withShard(shard, (db) => searchShard(db, toFtsQuery('herbert'), 5).hits.map((h) => h.isbn)),
    ).toEqual(['978-0441013593'])
  })

  it('the media index: the same hits as before (and its other fields), printed exactly as before', async () => {
    const tags = JSON.stringify([{ name: 'animal' }, { name: 'forest' }])
    const shard = await shardOf(
      tempDir(),
      `CREATE TABLE media (${MEDIA_COLUMNS})`,
      [
        [7, 'ident-7', 'Red fox at dawn', 'Ana', 'https://img.example/7', 'by', 'flickr', tags, 0, 0],
        [8, 'ident-8', null, null, 'https://img.example/8', 'cc0', 'wikimedia', '[{"name":"fox"}]', 0, 0],
      ],
      MEDIA_FIELDS,
    )
    expect(withShard(shard, probeWord)).toBe('red')
    const found = withShard(shard, (db) => searchShard(db, toFtsQuery('fox'), 10))
    expect(found.fields).toEqual({
      searchable: ['title', 'creator', 'tags'],
      stored: ['url', 'license', 'provider', 'identifier'],
    })
    const byId = [...found.hits].sort((a, b) => a.id - b.id)
    expect(byId[0]).toMatchObject({
      id: 7,
      title: 'Red fox at dawn',
      creator: 'Ana',
      url: 'https://img.example/7',
      license: 'by',
      provider: 'flickr',
      tags: 'animal forest',
      identifier: 'ident-7',
    })
    expect(hitLines({ hits: byId, fields: found.fields })).toEqual([
      '  1. Red fox at dawn - Ana [by, flickr]',
      '     https://img.example/7',
      '  2. (untitled) - unknown [cc0, wikimedia]',
      '     https://img.example/8',
    ])
  })
})
