import { toPartitionEvent } from '../rows.js'
import type { PartitionEvent, StoredPartitionStatus } from '../types.js'
import { type Conn, type Db, statements } from './db.js'

const S = statements('partitions', {
  dynamicKeys: 'SELECT partition_key FROM dynamic_partitions WHERE name = $1 ORDER BY seq',
  dynamicVersion: 'SELECT coalesce(max(removed_seq), 0) AS v FROM dynamic_partition_removals WHERE name = $1',
  // one statement per call: the keys not there yet, added in order
  addDynamic: `INSERT INTO dynamic_partitions (name, partition_key, added_at)
     SELECT $1, k, $3 FROM unnest($2::text[]) WITH ORDINALITY AS u(k, ord) ORDER BY ord
     ON CONFLICT (name, partition_key) DO NOTHING RETURNING partition_key`,
  removeDynamic: `WITH gone AS (
       DELETE FROM dynamic_partitions WHERE name = $1 AND partition_key = ANY($2::text[]) RETURNING partition_key
     )
     INSERT INTO dynamic_partition_removals (name, partition_key, removed_at)
     SELECT $1, partition_key, $3 FROM gone RETURNING partition_key`,
  events: `SELECT e.id, e.step_key AS asset, r.partition_key, e.type, e.run_id, e.ts
     FROM events e JOIN runs r ON r.id = e.run_id
    WHERE e.id > $1 AND e.type IN ('asset:materialized', 'step:failure') AND e.step_key = ANY($2::text[])
    ORDER BY e.id LIMIT $3`,
  allEvents: `SELECT e.id, e.step_key AS asset, r.partition_key, e.type, e.run_id, e.ts
     FROM events e JOIN runs r ON r.id = e.run_id
    WHERE e.id > $1 AND e.type IN ('asset:materialized', 'step:failure')
    ORDER BY e.id LIMIT $2`,
  inFlight: `SELECT DISTINCT s.partition_key FROM steps s JOIN runs r ON r.id = s.run_id
    WHERE s.key = $1 AND s.partition_key IS NOT NULL AND r.status IN ('queued', 'started')
      AND s.status IN ('pending', 'running', 'retrying')`,
  materializedKeys: `SELECT DISTINCT partition_key FROM materializations WHERE asset_key = $1 AND partition_key IS NOT NULL`,
  getStatus:
    'SELECT asset_key, cursor, version, status, updated_at FROM partition_status WHERE asset_key = $1',
  insertStatus: `INSERT INTO partition_status (asset_key, cursor, version, status, updated_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (asset_key) DO NOTHING`,
  updateStatus: `UPDATE partition_status SET cursor = $2, version = $3, status = $4, updated_at = $5
    WHERE asset_key = $1 AND cursor = $6`,
})

/** Dynamic partitions, partition events and folded partition statuses (see the SQLite twin). */
export class PartitionsSql {
  private readonly db: Db

  constructor(db: Db) {
    this.db = db
  }

  async dynamicPartitionKeys(name: string): Promise<string[]> {
    return (await this.db.rows<{ partition_key: string }>(S.dynamicKeys, [name])).map((r) => r.partition_key)
  }

  async dynamicPartitionsVersion(name: string): Promise<number> {
    return Number((await this.db.row<{ v: number | string }>(S.dynamicVersion, [name]))?.v ?? 0)
  }

  addDynamicPartitions(name: string, keys: readonly string[], now: number): Promise<string[]> {
    return this.addDynamicInTx(this.db, name, keys, now)
  }

  /** `addDynamicPartitions` on the caller's connection (a tick's transaction). */
  async addDynamicInTx(c: Conn, name: string, keys: readonly string[], now: number): Promise<string[]> {
    const added = new Set(
      (await c.rows<{ partition_key: string }>(S.addDynamic, [name, [...new Set(keys)], now])).map(
        (r) => r.partition_key,
      ),
    )
    return [...new Set(keys)].filter((k) => added.has(k))
  }

  async removeDynamicPartitions(name: string, keys: readonly string[], now: number): Promise<string[]> {
    const removed = new Set(
      (await this.db.rows<{ partition_key: string }>(S.removeDynamic, [name, [...new Set(keys)], now])).map(
        (r) => r.partition_key,
      ),
    )
    return [...new Set(keys)].filter((k) => removed.has(k))
  }

  async partitionEvents(
    after: number,
    assets: readonly string[] | null,
    limit: number,
  ): Promise<PartitionEvent[]> {
    const rows = await this.db.rows<{
      id: number
      asset: string
      partition_key: string | null
      type: string
      run_id: string
      ts: number
    }>(
      assets === null ? S.allEvents : S.events,
      assets === null ? [after, limit] : [after, [...assets], limit],
    )
    return rows.map(toPartitionEvent)
  }

  async partitionsInFlight(asset: string): Promise<string[]> {
    return (await this.db.rows<{ partition_key: string }>(S.inFlight, [asset])).map((r) => r.partition_key)
  }

  async materializedPartitions(asset: string): Promise<string[]> {
    return (await this.db.rows<{ partition_key: string }>(S.materializedKeys, [asset])).map(
      (r) => r.partition_key,
    )
  }

  async getPartitionStatus(asset: string): Promise<StoredPartitionStatus | undefined> {
    const row = await this.db.row<{
      asset_key: string
      cursor: number | string
      version: string
      status: string
      updated_at: number | string
    }>(S.getStatus, [asset])
    if (!row) return undefined
    return {
      asset: row.asset_key,
      cursor: Number(row.cursor),
      version: row.version,
      status: JSON.parse(row.status) as StoredPartitionStatus['status'],
      updatedAt: Number(row.updated_at),
    }
  }

  async savePartitionStatus(next: StoredPartitionStatus, expectedCursor: number | null): Promise<boolean> {
    const status = JSON.stringify(next.status)
    if (expectedCursor === null) {
      return (
        (await this.db.run(S.insertStatus, [next.asset, next.cursor, next.version, status, next.updatedAt])) >
        0
      )
    }
    return (
      (await this.db.run(S.updateStatus, [
        next.asset,
        next.cursor,
        next.version,
        status,
        next.updatedAt,
        expectedCursor,
      ])) > 0
    )
  }
}
