/**
 * Reading an index shard of any fields: the `docs` table's columns as the shard itself declares
 * them, which of them are searchable, a ranked search, and a word known to be in it. What
 * `refresh query`, `refresh serve` and the snapshot's probe word read; nothing here writes.
 */
import type Database from 'better-sqlite3'

import type { HitFields, SearchHit } from './hits.js'

export type { HitFields, SearchHit } from './hits.js'

/** The keys of `SearchHit` that are not fields. */
const RESERVED = new Set(['id', 'score'])

/** A column name quoted for SQL (the names come from the shard's own schema). */
function quote(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** The hit key of each column: its name, or `field_<name>` when that is `id` or `score`. */
function hitKeys(columns: readonly string[]): string[] {
  const taken = new Set(columns)
  return columns.map((column) => {
    if (!RESERVED.has(column)) return column
    let key = `field_${column}`
    while (taken.has(key) || RESERVED.has(key)) key = `field_${key}`
    taken.add(key)
    return key
  })
}

/** The columns of a shard's `docs` table, split into searchable (indexed) and stored (UNINDEXED). */
export interface DocsColumns {
  searchable: string[]
  stored: string[]
}

/**
 * The columns of the shard's `docs` table, in order, and which are searchable. Which are
 * searchable comes from the shard's `shard_meta` (`searchable`, written at build); for a shard
 * built before that, from the `UNINDEXED` marks of its `CREATE VIRTUAL TABLE` statement; if that
 * cannot be read, `title` when there is one (the media index), else every column.
 */
export function docsColumns(db: Database.Database): DocsColumns {
  const all = (db.prepare('PRAGMA table_info(docs)').all() as Array<{ name: string }>).map((c) => c.name)
  if (all.length === 0) throw new Error(`${db.name} has no \`docs\` table; is it an index shard?`)
  const searchable = recordedSearchable(db) ?? declaredSearchable(db, all)
  const chosen = searchable?.filter((c) => all.includes(c))
  const indexed = chosen?.length ? new Set(chosen) : new Set(all.includes('title') ? ['title'] : all)
  return {
    searchable: all.filter((c) => indexed.has(c)),
    stored: all.filter((c) => !indexed.has(c)),
  }
}

/** The searchable columns `shard_meta` records, or undefined for a shard that does not. */
function recordedSearchable(db: Database.Database): string[] | undefined {
  const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'shard_meta'").get()
  if (!hasMeta) return undefined
  const row = db.prepare("SELECT value FROM shard_meta WHERE key = 'searchable'").get() as
    | { value: unknown }
    | undefined
  if (typeof row?.value !== 'string') return undefined
  try {
    const parsed: unknown = JSON.parse(row.value)
    return Array.isArray(parsed) && parsed.every((c) => typeof c === 'string') ? parsed : undefined
  } catch {
    return undefined
  }
}

/** The columns the FTS5 statement of `docs` declares without `UNINDEXED`, or undefined if it cannot be read. */
function declaredSearchable(db: Database.Database, columns: readonly string[]): string[] | undefined {
  const row = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'docs'").get() as
    | { sql: string | null }
    | undefined
  const sql = row?.sql
  if (!sql) return undefined
  const open = sql.indexOf('(')
  const close = sql.lastIndexOf(')')
  if (open < 0 || close <= open) return undefined
  const searchable: string[] = []
  for (const arg of splitArgs(sql.slice(open + 1, close))) {
    const m = /^\s*(?:"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]|([A-Za-z_][A-Za-z0-9_]*))\s*(.*)$/s.exec(arg)
    if (!m) continue
    const rest = m[5] ?? ''
    if (rest.startsWith('=')) continue // an option (tokenize = ...), not a column
    const name = m[1]?.replaceAll('""', '"') ?? m[2] ?? m[3] ?? m[4]!
    if (!columns.includes(name)) continue
    if (!/\bUNINDEXED\b/i.test(rest)) searchable.push(name)
  }
  return searchable
}

/** Splits a declaration's arguments on the commas outside quotes. */
function splitArgs(text: string): string[] {
  const args: string[] = []
  let current = ''
  let quoteChar: string | null = null
  for (const ch of text) {
    if (quoteChar) {
      if (ch === quoteChar) quoteChar = null
    } else if (ch === '"' || ch === "'" || ch === '`') {
      quoteChar = ch
    } else if (ch === '[') {
      quoteChar = ']'
    } else if (ch === ',') {
      args.push(current)
      current = ''
      continue
    }
    current += ch
  }
  args.push(current)
  return args
}

/** The shard's fields as hit keys (see `SearchHit` for `id` and `score`). */
export function hitFields(columns: DocsColumns): HitFields {
  const keys = hitKeys([...columns.searchable, ...columns.stored])
  return {
    searchable: keys.slice(0, columns.searchable.length),
    stored: keys.slice(columns.searchable.length),
  }
}

/**
 * The best `limit` hits of one shard for an FTS5 query (already made from text, see
 * `toFtsQuery`), best first, with every field the shard holds, and those fields as hit keys.
 */
export function searchShard(
  db: Database.Database,
  ftsQuery: string,
  limit: number,
): { hits: SearchHit[]; fields: HitFields } {
  const columns = docsColumns(db)
  const names = [...columns.searchable, ...columns.stored]
  const keys = hitKeys(names)
  const select = names.map((c, i) => (c === keys[i] ? quote(c) : `${quote(c)} AS ${quote(keys[i]!)}`))
  const hits = db
    .prepare(
      `SELECT rowid AS id, ${[...select, 'bm25(docs) AS score'].join(', ')}
       FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT ?`,
    )
    .all(ftsQuery, limit) as SearchHit[]
  return { hits, fields: hitFields(columns) }
}

/** The documents a probe word is looked for in, per searchable column. */
const PROBE_DOCUMENTS = 50

/**
 * A word known to be in the shard (readiness checks search for it): the first word of the first
 * searchable column that has one among the first documents, lower-cased; null for an empty shard.
 * For the media index, the first word of the first title.
 */
export function probeWord(db: Database.Database): string | null {
  for (const column of docsColumns(db).searchable) {
    const values = db
      .prepare(`SELECT ${quote(column)} AS v FROM docs WHERE ${quote(column)} IS NOT NULL LIMIT ?`)
      .pluck()
      .all(PROBE_DOCUMENTS) as unknown[]
    for (const value of values) {
      const word = String(value).match(/[\p{L}\p{N}]+/u)?.[0]
      if (word) return word.toLowerCase()
    }
  }
  return null
}
