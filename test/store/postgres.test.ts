import pg from 'pg'
import { afterAll, beforeAll } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { MIGRATIONS, SCHEMA_VERSION } from '../../core/store/postgres/migrations.js'
import { startPostgres, type TestPostgres } from '../postgres.js'
import { storeContract } from './contract.js'

let server: TestPostgres
beforeAll(async () => {
  server = await startPostgres()
})
afterAll(async () => {
  await server?.stop()
})

/** The Postgres store, on a real server, one schema per test; shared by processes as a URL. */
storeContract('Postgres', {
  shareable: true,
  async fresh() {
    const location = await server.freshUrl()
    return { store: await openStore(location), location }
  },
  async holdWriteLock(location) {
    // another session holding the settings table exclusively: every write of it waits
    const schema = new URL(location).searchParams.get('schema')!
    const client = new pg.Client({ connectionString: server.url })
    await client.connect()
    await client.query('BEGIN')
    await client.query(`LOCK TABLE "${schema}".settings IN ACCESS EXCLUSIVE MODE`)
    return {
      async release() {
        await client.query('ROLLBACK')
        await client.end()
      },
    }
  },
  openAgain: (location) => openStore(location),
  openImpatient: (location) => openStore(location, { busyTimeoutMs: 50 }),
  olderSchemas: {
    // every released schema before the current one, made as that release made it
    versions: Array.from({ length: SCHEMA_VERSION - 1 }, (_, v) => v + 1),
    async create(version) {
      const location = await server.freshUrl()
      const schema = new URL(location).searchParams.get('schema')!
      const client = new pg.Client({ connectionString: server.url })
      await client.connect()
      try {
        await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`)
        await client.query(`SET search_path TO "${schema}"`)
        for (let v = 0; v < version; v++) await client.query(MIGRATIONS[v]!)
        await client.query(
          'CREATE TABLE refresh_schema (version integer NOT NULL, migrated_at bigint NOT NULL)',
        )
        await client.query('INSERT INTO refresh_schema VALUES ($1, 1)', [version])
        await client.query(
          `INSERT INTO runs (id, status, selection, plan, created_at, ended_at) VALUES ('r1', 'success', '*', '["a"]', 1, 2)`,
        )
      } finally {
        await client.end()
      }
      return location
    },
    open: (location) => openStore(location),
  },
})
