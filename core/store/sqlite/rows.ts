import type Database from 'better-sqlite3'

/**
 * Prepared statements, each prepared the first time it is used: a process that opens the store
 * for one command (`refresh runs`, one `materialize()`) does not pay for the ones it never runs.
 */
export function statements<K extends string>(
  db: Database.Database,
  sql: Record<K, string>,
): Record<K, Database.Statement> {
  const out = {} as Record<K, Database.Statement>
  for (const key of Object.keys(sql) as K[]) {
    Object.defineProperty(out, key, {
      configurable: true,
      enumerable: true,
      get() {
        const statement = db.prepare(sql[key])
        Object.defineProperty(out, key, { value: statement, enumerable: true })
        return statement
      },
    })
  }
  return out
}
