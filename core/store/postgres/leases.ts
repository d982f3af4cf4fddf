import { type Row, toLease } from '../rows.js'
import type { BackupRecord, Lease } from '../types.js'
import { type Db, statements } from './db.js'

const S = statements('leases', {
  getLease: 'SELECT * FROM leases WHERE name = $1',
  // granted when free, expired or already the holder's: one statement, so one holder at a time
  acquireLease: `INSERT INTO leases AS l (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
       acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE excluded.acquired_at END,
       expires_at = excluded.expires_at
     WHERE l.holder = excluded.holder OR l.expires_at <= $3
     RETURNING *`,
  releaseLease: 'DELETE FROM leases WHERE name = $1 AND holder = $2',
  listLeases: `SELECT * FROM leases WHERE left(name, length($1)) = $1 ORDER BY name`,
  getSetting: 'SELECT value, updated_at FROM settings WHERE key = $1',
  putSetting: `INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
})

/** Named leases, the settings table, the health probe and the last backup's record. */
export class LeasesSql {
  private readonly db: Db

  constructor(db: Db) {
    this.db = db
  }

  async acquireLease(
    name: string,
    holder: string,
    ttlMs: number,
    now: number,
  ): Promise<{ acquired: boolean; lease: Lease }> {
    const granted = await this.db.row<Row>(S.acquireLease, [name, holder, now, now + ttlMs])
    if (granted) return { acquired: true, lease: toLease(granted) }
    const current = await this.getLease(name)
    // released between the two statements: ask again
    if (!current) return this.acquireLease(name, holder, ttlMs, now)
    return { acquired: false, lease: current }
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.db.run(S.releaseLease, [name, holder])
  }

  async getLease(name: string): Promise<Lease | undefined> {
    const row = await this.db.row<Row>(S.getLease, [name])
    return row ? toLease(row) : undefined
  }

  async listLeases(prefix: string): Promise<Lease[]> {
    return (await this.db.rows<Row>(S.listLeases, [prefix])).map(toLease)
  }

  async getSetting(key: string): Promise<{ value: string; updatedAt: number } | undefined> {
    const row = await this.db.row<{ value: string; updated_at: number }>(S.getSetting, [key])
    return row ? { value: row.value, updatedAt: row.updated_at } : undefined
  }

  async putSetting(key: string, value: string, now: number): Promise<void> {
    await this.db.run(S.putSetting, [key, value, now])
  }

  async probeWrite(now: number): Promise<void> {
    await this.putSetting('health_probe', String(now), now)
  }

  async recordBackup(record: BackupRecord): Promise<void> {
    await this.putSetting('last_backup', JSON.stringify(record), record.at)
  }

  async lastBackup(): Promise<BackupRecord | null> {
    const row = await this.getSetting('last_backup')
    return row ? (JSON.parse(row.value) as BackupRecord) : null
  }
}
