/**
 * Connections to the user's own Postgres databases (the upstream and the API database of a
 * Postgres refresh), not to the run store: the building blocks (copy, clean, promote-table) and
 * the index workers share how a URL is read, how a connection error becomes a clear message
 * naming the fix, and how passwords are kept out of every message. No SQL here beyond what a
 * caller passes; `pg` is loaded only when a Postgres block runs.
 */
import type pg from 'pg'
import { ConfigError } from './errors.js'
import { importPeer } from './peers.js'
import { checkIdentifier } from './pg-names.js'
import { redactLocation } from './store/open.js'

export { checkIdentifier, qualified, quoteIdent } from './pg-names.js'

/** A connected client to one of the user's databases. */
export interface UserDatabase {
  client: pg.Client
  /** The schema the URL's `?schema=` names (default `public`). */
  schema: string
  /** The URL with its password replaced by `***`, for messages. */
  display: string
  /** The URL as given (never printed). */
  url: string
}

/** The driver, loaded on first use (an optional peer dependency). */
export async function loadPg(usedBy: string): Promise<typeof pg> {
  return (await importPeer('pg', usedBy, () => import('pg'))).default
}

/**
 * Connects to `location` (a `postgres://` URL; `?schema=` names the schema, default `public`).
 * A URL that cannot be read, a wrong password, a missing database and an unreachable server are
 * each a `ConfigError` saying what to fix, with the password redacted.
 */
export async function connectUserDatabase(
  location: string,
  role: string,
  options: { applicationName?: string; driver?: typeof pg; schema?: string } = {},
): Promise<UserDatabase> {
  const display = redactLocation(location)
  let url: URL
  try {
    url = new URL(location)
  } catch {
    throw new ConfigError(
      `the ${role} database URL ${display} cannot be read; write it as postgres://USER:PASSWORD@HOST:5432/DATABASE.`,
    )
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(
      `the ${role} database URL ${display} is not a postgres:// URL; write it as postgres://USER:PASSWORD@HOST:5432/DATABASE.`,
    )
  }
  const schema = checkIdentifier(
    options.schema ?? url.searchParams.get('schema') ?? 'public',
    `the ${role} schema`,
  )
  url.searchParams.delete('schema')
  const driver = options.driver ?? (await loadPg(`the ${role} database`))
  const client = new driver.Client({
    connectionString: url.toString(),
    application_name: options.applicationName ?? 'refresh',
    connectionTimeoutMillis: 10_000,
  })
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (error) {
    await client.end().catch(() => {})
    const code = (error as { code?: unknown })?.code
    const failure = new ConfigError(
      `cannot connect to the ${role} database ${display}: ${scrubError(error, location)}. ${connectFix(error)}`,
    )
    // a wrong password or a missing database stays wrong: no retry of the step helps (a server
    // that does not answer may be restarting: that one the step's retry policy may retry)
    if (code === '28P01' || code === '28000' || code === '3D000') Object.assign(failure, { retriable: false })
    throw failure
  }
  return { client, schema, display, url: location }
}

function connectFix(error: unknown): string {
  const code = (error as { code?: unknown })?.code
  if (code === '28P01' || code === '28000')
    return "Check the URL's user and password (postgres://USER:PASSWORD@HOST:PORT/DATABASE)."
  if (code === '3D000') return "Check the URL's database name (the path after the port)."
  return "Check the URL's host and port, and that the server is running and reachable from here."
}

/** The driver's message with the URLs' passwords (and the URLs themselves) taken out. */
export function scrubError(error: unknown, ...urls: string[]): string {
  let message = error instanceof Error ? error.message : String(error)
  for (const url of urls) {
    try {
      const password = decodeURIComponent(new URL(url).password)
      if (password) message = message.replaceAll(password, '***')
    } catch {
      // an unreadable URL was reported already
    }
    message = message.replaceAll(url, redactLocation(url))
  }
  return message
}

/** A driver's error as a cause that is safe to keep (its message scrubbed, its code kept). */
export function scrubbedError(error: unknown, ...urls: string[]): Error {
  const copy = new Error(scrubError(error, ...urls))
  const code = (error as { code?: unknown })?.code
  if (typeof code === 'string') Object.assign(copy, { code })
  return copy
}

/** A column of a table as the catalog describes it. */
export interface PgColumn {
  name: string
  /** `format_type` of the column: the type as it would be written in a CREATE TABLE. */
  type: string
  notNull: boolean
}

/**
 * The columns of `schema.table` (a table, view, materialized view or foreign table), or
 * undefined when there is none; with `tables`, the names of the schema's tables for a hint.
 */
export async function tableColumns(
  db: UserDatabase,
  table: string,
): Promise<{ columns: PgColumn[] } | { columns: undefined; tables: string[] }> {
  const { rows } = await db.client.query<PgColumn>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull"
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [db.schema, table],
  )
  if (rows.length > 0) return { columns: rows }
  const { rows: tables } = await db.client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1`,
    [db.schema],
  )
  return { columns: undefined, tables: tables.map((t) => t.name) }
}

/** Postgres' integer types: the ones an id column to split into ranges may have. */
export const INTEGER_TYPES: ReadonlySet<string> = new Set(['smallint', 'integer', 'bigint'])
