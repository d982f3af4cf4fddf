/**
 * The table a building block works on, taken from the source itself (SQLite `PRAGMA table_info`)
 * rather than from a constant: its columns, their declared types and its id column. `copy`,
 * `clean` and `reindex` check the columns named in their options against it.
 */
import { ConfigError } from '../core/errors.js'
import { identifier } from '../search/index-shard.js'

export interface ColumnInfo {
  name: string
  /** The declared type (`INTEGER`, `TEXT`, ... or '' when none was declared). */
  type: string
  notNull: boolean
  /** Position in the primary key (1-based), 0 when not part of it. */
  pk: number
}

export interface TableSchema {
  table: string
  columns: ColumnInfo[]
}

/** What `tableSchema` needs of a database (a better-sqlite3 one): kept structural, so the public types do not name the driver. */
export interface SqliteDatabase {
  prepare(sql: string): { all(...params: unknown[]): unknown[] }
}

/** The columns of `table` in the database `db` (`schema` for an attached one), or undefined when there is no such table. */
export function tableSchema(db: SqliteDatabase, table: string, schema = 'main'): TableSchema | undefined {
  const rows = db.prepare(`PRAGMA ${identifier(schema)}.table_info(${identifier(table)})`).all() as Array<{
    name: string
    type: string
    notnull: number
    pk: number
  }>
  if (rows.length === 0) return undefined
  return {
    table,
    columns: rows.map((r) => ({ name: r.name, type: r.type, notNull: r.notnull === 1, pk: r.pk })),
  }
}

/**
 * The id column used to split a table into ranges: `wanted` when given (checked to be a column),
 * else the table's single INTEGER PRIMARY KEY, else a column named `id`.
 */
export function idColumnOf(schema: TableSchema, wanted: string | undefined, where: string): string {
  if (wanted !== undefined) {
    requireColumns(schema, [wanted], where, 'idColumn')
    return wanted
  }
  const pks = schema.columns.filter((c) => c.pk > 0)
  if (pks.length === 1 && /INT/i.test(pks[0]!.type)) return pks[0]!.name
  if (schema.columns.some((c) => c.name === 'id')) return 'id'
  throw configError(
    `${where}: table \`${schema.table}\` has no INTEGER PRIMARY KEY and no \`id\` column to split into id ranges; set \`idColumn\` to one of its integer columns (${names(schema)}).`,
  )
}

/**
 * Every column of `wanted` exists in the table; otherwise a `ConfigError` naming the column, the
 * table, its columns and the option to fix.
 */
export function requireColumns(
  schema: TableSchema,
  wanted: readonly string[],
  where: string,
  option: string,
): void {
  const have = new Set(schema.columns.map((c) => c.name))
  for (const column of wanted) {
    if (!have.has(column)) {
      throw configError(
        `column \`${column}\` (\`${option}\` of ${where}) does not exist in table \`${schema.table}\`; its columns are ${names(schema)}. Fix \`${option}\` in refresh.config.ts.`,
      )
    }
  }
}

/** The column definitions of a copy of `schema` restricted to `columns` (types, NOT NULL, the integer primary key kept). */
export function columnDefinitions(schema: TableSchema, columns: readonly string[]): string {
  const pks = schema.columns.filter((c) => c.pk > 0)
  const byName = new Map(schema.columns.map((c) => [c.name, c]))
  return columns
    .map((name) => {
      const c = byName.get(name)!
      const pk = pks.length === 1 && pks[0]!.name === name && /^INTEGER$/i.test(c.type) ? ' PRIMARY KEY' : ''
      return `${identifier(name)}${c.type ? ` ${c.type}` : ''}${pk}${c.notNull && !pk ? ' NOT NULL' : ''}`
    })
    .join(', ')
}

/**
 * A bad column or rule in the config: the user fixes the config (exit 2 through the CLI), so no
 * retry of the step can help.
 */
export function configError(message: string): ConfigError {
  return Object.assign(new ConfigError(message), { retriable: false })
}

function names(schema: TableSchema): string {
  return schema.columns.map((c) => `\`${c.name}\``).join(', ')
}
