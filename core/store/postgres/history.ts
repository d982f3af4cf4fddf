import type pg from 'pg'
import { StoreError } from '../../errors.js'
import { HISTORY_TABLES, type HistoryChunk, type HistoryTable, historyOrder } from '../types.js'
import { type Db, isConnectionError, translate } from './db.js'
import { quoteIdent } from './migrations.js'

const ORDER = historyOrder('seq')

/** Tables whose key is handed out by a sequence (and that column): moved past the copied keys afterwards. */
const SEQUENCED: ReadonlyArray<readonly [HistoryTable, string]> = [
  ['events', 'id'],
  ['materializations', 'id'],
  ['check_results', 'id'],
  ['ticks', 'id'],
  ['parked_requests', 'id'],
  ['dynamic_partitions', 'seq'],
  ['dynamic_partition_removals', 'removed_seq'],
  ['automation_evaluations', 'id'],
]

/** A store's history out and in (`refresh store copy`), table by table, ids kept. */
export class HistorySql {
  private readonly db: Db
  private readonly displayName: string

  constructor(db: Db, displayName: string) {
    this.db = db
    this.displayName = displayName
  }

  /**
   * Reads every history table through a cursor in one REPEATABLE READ transaction: a consistent
   * copy while others go on writing, in chunks, never the whole table in memory.
   */
  async *export(chunkRows = 5_000): AsyncGenerator<HistoryChunk> {
    const { client, release } = await this.db.acquire()
    let broken: Error | undefined
    let open = false
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      open = true
      for (const table of HISTORY_TABLES) {
        // table and order come from the constants above, never from input
        await client.query(
          `DECLARE history NO SCROLL CURSOR FOR SELECT * FROM ${quoteIdent(table)} ORDER BY ${ORDER[table]}`,
        )
        for (;;) {
          const { rows } = await client.query(`FETCH ${Math.max(1, Math.floor(chunkRows))} FROM history`)
          if (rows.length === 0) break
          if (table === 'runs') for (const r of rows) delete r.seq
          yield { table, rows }
        }
        await client.query('CLOSE history')
      }
      const gate = await client.query('SELECT state FROM maintenance_gate WHERE id = 1')
      const state = gate.rows[0]?.state as string | null | undefined
      if (state) {
        const since = (JSON.parse(state) as { since?: number }).since ?? Date.now()
        yield { table: 'settings', rows: [{ key: 'maintenance', value: state, updated_at: since }] }
      }
    } catch (error) {
      if (isConnectionError(error)) broken = error as Error
      throw translate(error, this.displayName)
    } finally {
      if (open && !broken) await client.query('COMMIT').catch(() => {})
      release(broken)
    }
  }

  /**
   * Writes an exported history into this store, which holds no run, in one transaction that first
   * locks the runs table against writers: nothing is half-copied, and nothing slips in between the
   * emptiness check and the copy. Sequences are then moved past the copied ids.
   */
  import(chunks: AsyncIterable<HistoryChunk>): Promise<Record<HistoryTable, number>> {
    return this.db.session(async (client) => {
      const counts = Object.fromEntries(HISTORY_TABLES.map((t) => [t, 0])) as Record<HistoryTable, number>
      await client.query('BEGIN')
      try {
        await client.query('LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE')
        const { rows } = await client.query('SELECT count(*)::int AS n FROM runs')
        if (rows[0].n > 0) {
          throw new StoreError(
            `the store ${this.displayName} already holds ${rows[0].n} run(s); copy history only into an empty store.`,
          )
        }
        const columns = await tableColumns(client)
        for await (const { table, rows: batch } of chunks) {
          if (!HISTORY_TABLES.includes(table)) throw new StoreError(`unknown history table \`${table}\`.`)
          const known = columns.get(table)!
          let rows = batch
          if (table === 'settings') {
            const gate = rows.find((r) => r.key === 'maintenance')
            if (gate) await client.query('UPDATE maintenance_gate SET state = $1 WHERE id = 1', [gate.value])
            rows = rows.filter((r) => r.key !== 'maintenance')
          }
          if (rows.length > 0) {
            const names = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((c) => known.has(c))
            const list = names.map(quoteIdent).join(', ')
            const conflict =
              table === 'settings'
                ? ' ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at'
                : ''
            await client.query(
              `INSERT INTO ${quoteIdent(table)} (${list})
               SELECT ${list} FROM json_populate_recordset(NULL::${quoteIdent(table)}, $1::json) WITH ORDINALITY AS x
               ORDER BY x.ordinality${conflict}`,
              [JSON.stringify(rows)],
            )
          }
          counts[table] += batch.length
        }
        for (const [table, column] of SEQUENCED) {
          await client.query(
            `SELECT setval(pg_get_serial_sequence($1, $2), greatest((SELECT max(${quoteIdent(column)}) FROM ${quoteIdent(table)}), 1))`,
            [table, column],
          )
        }
        await client.query('COMMIT')
        return counts
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw error
      }
    })
  }
}

async function tableColumns(client: pg.PoolClient): Promise<Map<HistoryTable, Set<string>>> {
  const { rows } = await client.query(
    `SELECT table_name, column_name FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = ANY($1::text[])`,
    [HISTORY_TABLES],
  )
  const out = new Map<HistoryTable, Set<string>>(HISTORY_TABLES.map((t) => [t, new Set<string>()]))
  for (const r of rows) out.get(r.table_name as HistoryTable)!.add(r.column_name as string)
  // a run's place in the queue is its position in the copy, not a copied number
  out.get('runs')!.delete('seq')
  return out
}
