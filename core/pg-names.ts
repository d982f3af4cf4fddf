/** Names in the user's Postgres databases: checked plain identifiers, quoted for SQL (no driver needed). */
import { ConfigError } from './errors.js'

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/** A plain identifier (letters, digits, `_`), checked, or a `ConfigError` naming what it is. */
export function checkIdentifier(name: string, what: string): string {
  if (!IDENTIFIER.test(name)) {
    throw new ConfigError(
      `${what} ${JSON.stringify(name)} is not a plain Postgres name; use letters, digits and underscores (at most 63, not starting with a digit).`,
    )
  }
  return name
}

/** An identifier quoted for SQL (any name read from the catalog, or one checked by `checkIdentifier`). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** `"schema"."name"`. */
export function qualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`
}
