/**
 * An index shard built from a Postgres table (what `reindex({ postgres })` workers do): the range
 * is read from the database whose URL the named environment variable holds, list fields are
 * turned into words whether the column is `jsonb` or JSON text, the half-open range is exact, and
 * a missing variable is a clear error naming it.
 */
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { indexShard } from '../../search/index-shard.js'
import { tempDir } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

let server: TestPostgres
let url: string

beforeAll(async () => {
  server = await startPostgres()
  url = await server.freshDatabase('index')
  await server.sql(
    `CREATE TABLE media_new (id bigint PRIMARY KEY, identifier text, title text, creator text, url text, license text,
       provider text, tags jsonb, created_at bigint, updated_at bigint);
     INSERT INTO media_new
       SELECT i, 'id-' || i, CASE WHEN i % 2 = 0 THEN 'Red fox ' || i ELSE 'Blue heron ' || i END, 'Ada', 'https://x/' || i,
              'by', 'p', jsonb_build_array(jsonb_build_object('name', 'meadow' || (i % 3), 'accuracy', 0.9)), 0, 0
         FROM generate_series(1, 1000) i;
     CREATE TABLE notes (note_id integer PRIMARY KEY, body text, words text);
     INSERT INTO notes VALUES (5, 'alpha beta', '["gamma", "delta"]'), (6, 'epsilon', NULL), (7, 'zeta', '[]')`,
    undefined,
    url,
  )
}, 60_000)

afterAll(async () => {
  await server?.stop()
  delete process.env.REFRESH_TEST_INDEX_URL
})

const report = { progress: () => undefined }

function search(file: string, query: string): number[] {
  const db = new Database(file, { readonly: true })
  try {
    return (
      db.prepare('SELECT rowid AS id FROM docs WHERE docs MATCH ? ORDER BY rowid').all(query) as Array<{
        id: number
      }>
    ).map((r) => r.id)
  } finally {
    db.close()
  }
}

describe('index shards from Postgres', () => {
  it('builds the media index of an id range straight from the table, tags as words', async () => {
    process.env.REFRESH_TEST_INDEX_URL = url
    const output = join(tempDir(), 'shard.db')
    const result = await indexShard(
      {
        source: 'postgres:$REFRESH_TEST_INDEX_URL',
        database: { env: 'REFRESH_TEST_INDEX_URL' },
        table: 'media_new',
        lo: 101,
        hi: 301,
        output,
        shard: 1,
      },
      report,
    )
    expect(result.documents).toBe(200)
    expect(search(output, 'fox')).toHaveLength(100)
    expect(search(output, 'meadow1')).toEqual(
      Array.from({ length: 200 }, (_, k) => 101 + k).filter((i) => i % 3 === 1),
    )
    expect(search(output, '"heron 301"')).toEqual([])
    expect(search(output, '"heron 101"')).toEqual([101])
  })

  it('reads any table: another id column, a JSON text list, NULL lists', async () => {
    const output = join(tempDir(), 'notes.db')
    const result = await indexShard(
      {
        source: 'postgres:$REFRESH_TEST_INDEX_URL',
        database: { env: 'REFRESH_TEST_INDEX_URL' },
        table: 'notes',
        idColumn: 'note_id',
        fields: { searchable: ['body', { column: 'words', list: true }], stored: [] },
        lo: 0,
        hi: 100,
        output,
        shard: 0,
      },
      report,
    )
    expect(result.documents).toBe(3)
    expect(search(output, 'delta')).toEqual([5])
    expect(search(output, 'zeta')).toEqual([7])
  })

  it('names the environment variable when it is not set', async () => {
    await expect(
      indexShard(
        {
          source: 'postgres:$REFRESH_NO_SUCH_URL',
          database: { env: 'REFRESH_NO_SUCH_URL' },
          table: 'notes',
          lo: 0,
          hi: 10,
          output: join(tempDir(), 'x.db'),
          shard: 0,
        },
        report,
      ),
    ).rejects.toThrow(/REFRESH_NO_SUCH_URL is not set in this worker's environment/)
  })
})
