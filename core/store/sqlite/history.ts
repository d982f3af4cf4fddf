import type Database from 'better-sqlite3'
import { StoreError } from '../../errors.js'
import { HISTORY_TABLES, type HistoryChunk, type HistoryTable, historyOrder } from '../types.js'

const ORDER = historyOrder('rowid')

/** A store's history out and in (`refresh store copy`), table by table, ids kept. */
export class HistorySql {
  private readonly db: Database.Database
  private readonly displayName: string

  constructor(db: Database.Database, displayName: string) {
    this.db = db
    this.displayName = displayName
  }

  /** Reads every history table in one read transaction (a consistent copy while others write). */
  async *export(chunkRows = 5_000): AsyncGenerator<HistoryChunk> {
    this.db.exec('BEGIN')
    try {
      for (const table of HISTORY_TABLES) {
        let rows: Array<Record<string, unknown>> = []
        // table and order come from the constants above, never from input
        for (const row of this.db.prepare(`SELECT * FROM ${table} ORDER BY ${ORDER[table]}`).iterate()) {
          // rows as they are: both stores write and read events the same way (`eventPayload`)
          rows.push(row as Record<string, unknown>)
          if (rows.length >= chunkRows) {
            yield { table, rows }
            rows = []
          }
        }
        if (rows.length > 0) yield { table, rows }
      }
    } finally {
      this.db.exec('COMMIT')
    }
  }

  /** Writes an exported history into this store, which holds no run, in one IMMEDIATE transaction. */
  async import(chunks: AsyncIterable<HistoryChunk>): Promise<Record<HistoryTable, number>> {
    const counts = Object.fromEntries(HISTORY_TABLES.map((t) => [t, 0])) as Record<HistoryTable, number>
    const columns = new Map<HistoryTable, Set<string>>()
    const columnsOf = (table: HistoryTable) => {
      let known = columns.get(table)
      if (!known) {
        known = new Set(
          (this.db.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name),
        )
        columns.set(table, known)
      }
      return known
    }
    this.db.exec('BEGIN IMMEDIATE')
    try {
      const runs = this.db.prepare('SELECT count(*) AS n FROM runs').get() as { n: number }
      if (runs.n > 0) {
        throw new StoreError(
          `the store ${this.displayName} already holds ${runs.n} run(s); copy history only into an empty store.`,
        )
      }
      // settings the new store wrote for itself when it was created give way to the copied ones
      const statements = new Map<string, Database.Statement>()
      for await (const { table, rows } of chunks) {
        if (!HISTORY_TABLES.includes(table)) throw new StoreError(`unknown history table \`${table}\`.`)
        for (const row of rows) {
          const names = Object.keys(row).filter((c) => columnsOf(table).has(c))
          const key = `${table}\u0000${names.join(',')}`
          let insert = statements.get(key)
          if (!insert) {
            const verb = table === 'settings' ? 'INSERT OR REPLACE' : 'INSERT'
            insert = this.db.prepare(
              `${verb} INTO ${table} (${names.map((n) => `"${n}"`).join(', ')}) VALUES (${names.map((n) => `@${n}`).join(', ')})`,
            )
            statements.set(key, insert)
          }
          insert.run(Object.fromEntries(names.map((n) => [n, row[n] ?? null])))
        }
        counts[table] += rows.length
      }
      this.db.exec('COMMIT')
      return counts
    } catch (error) {
      this.db.exec('ROLLBACK')
      throw error
    }
  }
}
