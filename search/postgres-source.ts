/**
 * An index shard's rows read straight from a Postgres table (a Postgres refresh's cleaned table in
 * the API database) instead of a cleaned SQLite file: the worker connects with the URL held by
 * the environment variable its input names, reads its id range in pages by id (keyset, so each
 * page is an index range scan), and inserts the documents into the shard's `docs` table.
 *
 * A list field (`{ column, list }`) is turned into its words in SQL (`jsonb_array_elements`),
 * every other field is read as text, as the FTS5 table stores it.
 */
import type Database from 'better-sqlite3'
import { ConfigError } from '../core/errors.js'
import { connectUserDatabase, qualified, quoteIdent, type UserDatabase } from '../core/pg-client.js'
import { fieldColumns, type IndexShardInput, MEDIA_FIELDS, type SearchableField } from './index-shard.js'

/** Rows fetched per query. */
const PAGE = 5_000

export interface PostgresRange {
  /** Rows of the whole range [lo, hi). */
  count(): Promise<number>
  /** Reads the rows of [lo, hi) into `docs`. */
  run(lo: number, hi: number): Promise<{ changes: number }>
  close(): Promise<void>
}

/** Connects to the input's database and prepares the reads of its range into `db`'s `docs`. */
export async function postgresRange(input: IndexShardInput, db: Database.Database): Promise<PostgresRange> {
  const env = input.database!.env
  const url = process.env[env]
  if (!url) {
    throw new ConfigError(
      `${env} is not set in this worker's environment; set it to the API database's postgres:// URL (for ECS or EC2 workers, in the task definition or launch template, as a secret).`,
    )
  }
  const pg: UserDatabase = await connectUserDatabase(url, 'API', { applicationName: 'refresh index-shard' })
  const fields = input.fields ?? MEDIA_FIELDS
  const id = quoteIdent(input.idColumn ?? 'id')
  const table = qualified(pg.schema, input.table)
  const value = (f: SearchableField) => {
    if (typeof f === 'string') return `t.${quoteIdent(f)}::text`
    if (f.list === undefined) return `t.${quoteIdent(f.column)}::text`
    const item = f.list === true ? `e #>> '{}'` : `e ->> ${literal(f.list)}`
    return `(SELECT string_agg(${item}, ' ') FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.${quoteIdent(f.column)}::jsonb) = 'array' THEN t.${quoteIdent(f.column)}::jsonb ELSE '[]'::jsonb END) AS e)`
  }
  const values = [...fields.searchable.map(value), ...fields.stored.map((c) => `t.${quoteIdent(c)}::text`)]
  const page = `SELECT t.${id}::text AS id, ${values.map((v, k) => `${v} AS f${k}`).join(', ')}
    FROM ${table} AS t WHERE t.${id} >= $1 AND t.${id} < $2 ORDER BY t.${id} LIMIT ${PAGE}`
  const names = fieldColumns(fields)
  // prepared on first use: the caller creates `docs` after connecting
  let insert: Database.Statement | undefined
  const statement = () =>
    (insert ??= db.prepare(
      `INSERT INTO docs (rowid, ${names.map((n) => `"${n}"`).join(', ')}) VALUES (${['?', ...names.map(() => '?')].join(', ')})`,
    ))
  return {
    async count() {
      const { rows } = await pg.client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM ${table} WHERE ${id} >= $1 AND ${id} < $2`,
        [input.lo, input.hi],
      )
      return Number(rows[0]!.n)
    },
    async run(lo, hi) {
      let changes = 0
      for (let from = lo; from < hi; ) {
        const { rows } = await pg.client.query<Record<string, string | null>>(page, [from, hi])
        for (const row of rows) {
          statement().run(BigInt(row.id!), ...names.map((_, k) => row[`f${k}`] ?? null))
        }
        changes += rows.length
        if (rows.length < PAGE) break
        from = Number(BigInt(rows[rows.length - 1]!.id!) + 1n)
      }
      return { changes }
    },
    async close() {
      await pg.client.end().catch(() => {})
    },
  }
}

/** A JSON key as a SQL string literal (a checked plain name: letters, digits, `_`). */
function literal(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new Error(`not a plain field name: ${JSON.stringify(name)}`)
  return `'${name}'`
}
