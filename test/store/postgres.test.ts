import pg from 'pg'
import { afterAll, beforeAll } from 'vitest'
import { openStore } from '../../core/store/open.js'
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
})
