import { join } from 'node:path'
import Database from 'better-sqlite3'
import { openStore } from '../../core/store/open.js'
import { APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION } from '../../core/store/sqlite/migrations.js'
import { tempDir } from '../helpers.js'
import { storeContract } from './contract.js'

/** The SQLite store, on a file shared by several processes. */
storeContract('SQLite file', {
  shareable: true,
  async fresh() {
    const location = join(tempDir(), 'refresh.db')
    return { store: await openStore(location), location }
  },
  async holdWriteLock(location) {
    const db = new Database(location)
    db.exec('BEGIN IMMEDIATE')
    return {
      async release() {
        db.exec('ROLLBACK')
        db.close()
      },
    }
  },
  openAgain: (location) => openStore(location),
  openImpatient: (location) => openStore(location, { busyTimeoutMs: 50 }),
  olderSchemas: {
    // every released schema before the current one (an empty, never-migrated file: store.test.ts)
    versions: Array.from({ length: SCHEMA_VERSION - 1 }, (_, v) => v + 1),
    async create(version) {
      const location = join(tempDir(), `v${version}.db`)
      const db = new Database(location)
      for (let v = 0; v < version; v++) db.exec(MIGRATIONS[v]!)
      db.pragma(`application_id = ${APPLICATION_ID}`)
      db.pragma(`user_version = ${version}`)
      db.prepare(
        `INSERT INTO runs (id, status, selection, plan, created_at, ended_at) VALUES ('r1', 'success', '*', '["a"]', 1, 2)`,
      ).run()
      db.close()
      return location
    },
    open: (location) => openStore(location),
  },
})

/** The SQLite store in memory: what `materialize()` uses by default in tests. */
storeContract('SQLite :memory:', {
  shareable: false,
  async fresh() {
    return { store: await openStore(':memory:'), location: null }
  },
})
