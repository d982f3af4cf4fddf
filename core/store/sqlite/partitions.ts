import type Database from 'better-sqlite3'
import { toPartitionEvent } from '../rows.js'
import type { PartitionEvent, StoredPartitionStatus } from '../types.js'
import { statements } from './rows.js'

/**
 * Partitions in the store: the keys of dynamic partitions definitions (added and removed at run
 * time, kept in the order they were added), the partition events a status is folded from (read
 * from the events of partitioned runs, after a cursor), and each asset's folded status with its
 * cursor (written compare-and-set, so two readers folding at once never go backwards).
 */
export class PartitionsSql {
  private readonly s

  private readonly db: Database.Database

  constructor(db: Database.Database) {
    this.db = db
    this.s = statements(db, {
      dynamicKeys: 'SELECT partition_key FROM dynamic_partitions WHERE name = ? ORDER BY seq',
      dynamicVersion:
        'SELECT coalesce(max(removed_seq), 0) AS v FROM dynamic_partition_removals WHERE name = ?',
      insertDynamic: `INSERT INTO dynamic_partitions (name, partition_key, added_at) VALUES (?, ?, ?)
         ON CONFLICT (name, partition_key) DO NOTHING`,
      deleteDynamic: 'DELETE FROM dynamic_partitions WHERE name = ? AND partition_key = ?',
      insertRemoval:
        'INSERT INTO dynamic_partition_removals (name, partition_key, removed_at) VALUES (?, ?, ?)',
      events: `SELECT e.id, e.step_key AS asset, r.partition_key, e.type, e.run_id, e.ts
         FROM events e JOIN runs r ON r.id = e.run_id
        WHERE e.id > @after AND e.type IN ('asset:materialized', 'step:failure')
          AND e.step_key IN (SELECT value FROM json_each(@assets))
        ORDER BY e.id LIMIT @limit`,
      allEvents: `SELECT e.id, e.step_key AS asset, r.partition_key, e.type, e.run_id, e.ts
         FROM events e JOIN runs r ON r.id = e.run_id
        WHERE e.id > @after AND e.type IN ('asset:materialized', 'step:failure')
        ORDER BY e.id LIMIT @limit`,
      inFlight: `SELECT DISTINCT s.partition_key FROM steps s JOIN runs r ON r.id = s.run_id
        WHERE s.key = ? AND s.partition_key IS NOT NULL AND r.status IN ('queued', 'started')
          AND s.status IN ('pending', 'running', 'retrying')`,
      materializedKeys: `SELECT DISTINCT partition_key FROM materializations WHERE asset_key = ? AND partition_key IS NOT NULL`,
      getStatus:
        'SELECT asset_key, cursor, version, status, updated_at FROM partition_status WHERE asset_key = ?',
      insertStatus: `INSERT INTO partition_status (asset_key, cursor, version, status, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (asset_key) DO NOTHING`,
      updateStatus: `UPDATE partition_status SET cursor = ?, version = ?, status = ?, updated_at = ?
        WHERE asset_key = ? AND cursor = ?`,
    })
  }

  dynamicPartitionKeys(name: string): string[] {
    return this.s.dynamicKeys.pluck().all(name) as string[]
  }

  /** The number of removals from `name` so far: a status folded over another count is rebuilt. */
  dynamicPartitionsVersion(name: string): number {
    return (this.s.dynamicVersion.get(name) as { v: number }).v
  }

  addDynamicPartitions(name: string, keys: readonly string[], now: number): string[] {
    return this.db.transaction(() => this.addDynamicInTx(name, keys, now)).immediate()
  }

  /** `addDynamicPartitions` inside the caller's transaction (a tick's). */
  addDynamicInTx(name: string, keys: readonly string[], now: number): string[] {
    return keys.filter((k) => this.s.insertDynamic.run(name, k, now).changes > 0)
  }

  removeDynamicPartitions(name: string, keys: readonly string[], now: number): string[] {
    return this.db
      .transaction(() =>
        keys.filter((k) => {
          if (this.s.deleteDynamic.run(name, k).changes === 0) return false
          this.s.insertRemoval.run(name, k, now)
          return true
        }),
      )
      .immediate()
  }

  partitionEvents(after: number, assets: readonly string[] | null, limit: number): PartitionEvent[] {
    const rows = (
      assets === null
        ? this.s.allEvents.all({ after, limit })
        : this.s.events.all({ after, assets: JSON.stringify(assets), limit })
    ) as Array<{
      id: number
      asset: string
      partition_key: string | null
      type: string
      run_id: string
      ts: number
    }>
    return rows.map(toPartitionEvent)
  }

  partitionsInFlight(asset: string): string[] {
    return this.s.inFlight.pluck().all(asset) as string[]
  }

  materializedPartitions(asset: string): string[] {
    return this.s.materializedKeys.pluck().all(asset) as string[]
  }

  getPartitionStatus(asset: string): StoredPartitionStatus | undefined {
    const row = this.s.getStatus.get(asset) as
      | { asset_key: string; cursor: number; version: string; status: string; updated_at: number }
      | undefined
    if (!row) return undefined
    return {
      asset: row.asset_key,
      cursor: row.cursor,
      version: row.version,
      status: JSON.parse(row.status) as StoredPartitionStatus['status'],
      updatedAt: row.updated_at,
    }
  }

  savePartitionStatus(next: StoredPartitionStatus, expectedCursor: number | null): boolean {
    const status = JSON.stringify(next.status)
    if (expectedCursor === null) {
      return (
        this.s.insertStatus.run(next.asset, next.cursor, next.version, status, next.updatedAt).changes > 0
      )
    }
    return (
      this.s.updateStatus.run(next.cursor, next.version, status, next.updatedAt, next.asset, expectedCursor)
        .changes > 0
    )
  }
}
