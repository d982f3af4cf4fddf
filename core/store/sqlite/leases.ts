import type Database from 'better-sqlite3'
import { type Row, toLease } from '../rows.js'
import type { BackupRecord, Lease } from '../types.js'
import { statements } from './rows.js'

/** Named leases (the daemon's), the settings table, the health probe and backups. */
export class LeasesSql {
  private readonly s

  private readonly db: Database.Database

  constructor(db: Database.Database) {
    this.db = db
    this.s = statements(db, {
      getLease: 'SELECT * FROM leases WHERE name = ?',
      upsertLease: `INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
           expires_at = excluded.expires_at`,
      releaseLease: 'DELETE FROM leases WHERE name = ? AND holder = ?',
      listLeases: `SELECT * FROM leases WHERE substr(name, 1, length(@prefix)) = @prefix ORDER BY name`,
      getSetting: 'SELECT value, updated_at FROM settings WHERE key = ?',
      putSetting: `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    })
  }

  /**
   * Takes or renews a named lease. It is granted when free, expired, or already ours; the check
   * and the write are one IMMEDIATE transaction, so two daemons never both hold it.
   */
  acquireLease(
    name: string,
    holder: string,
    ttlMs: number,
    now: number,
  ): { acquired: boolean; lease: Lease } {
    return this.db
      .transaction(() => {
        const current = this.s.getLease.get(name) as Row | undefined
        if (current && current.holder !== holder && (current.expires_at as number) > now) {
          return { acquired: false, lease: toLease(current) }
        }
        const acquiredAt = current && current.holder === holder ? (current.acquired_at as number) : now
        this.s.upsertLease.run(name, holder, acquiredAt, now + ttlMs)
        return { acquired: true, lease: toLease(this.s.getLease.get(name) as Row) }
      })
      .immediate()
  }

  releaseLease(name: string, holder: string): void {
    this.s.releaseLease.run(name, holder)
  }

  getLease(name: string): Lease | undefined {
    const row = this.s.getLease.get(name) as Row | undefined
    return row ? toLease(row) : undefined
  }

  listLeases(prefix: string): Lease[] {
    return (this.s.listLeases.all({ prefix }) as Row[]).map(toLease)
  }

  getSetting(key: string): { value: string; updatedAt: number } | undefined {
    const row = this.s.getSetting.get(key) as { value: string; updated_at: number } | undefined
    return row ? { value: row.value, updatedAt: row.updated_at } : undefined
  }

  putSetting(key: string, value: string, now: number): void {
    this.s.putSetting.run(key, value, now)
  }

  probeWrite(now: number): void {
    this.db.transaction(() => this.s.putSetting.run('health_probe', String(now), now)).immediate()
  }

  recordBackup(record: BackupRecord): void {
    this.putSetting('last_backup', JSON.stringify(record), record.at)
  }

  lastBackup(): BackupRecord | null {
    const row = this.getSetting('last_backup')
    return row ? (JSON.parse(row.value) as BackupRecord) : null
  }
}
