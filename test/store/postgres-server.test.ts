/**
 * What only a Postgres store has: a server to reach and log in to, a schema it owns, migrations
 * raced by several processes, a server that restarts under a running run, a bounded pool, and a
 * password that must never show.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { asset } from '../../core/definitions.js'
import { errorCode } from '../../core/errors.js'
import { materialize } from '../../core/materialize.js'
import { openStore, redactLocation } from '../../core/store/open.js'
import type { PostgresStore } from '../../core/store/postgres/store.js'
import { DIST_INDEX, exec } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

let server: TestPostgres
beforeAll(async () => {
  server = await startPostgres({ embedded: true })
})
afterAll(async () => {
  await server?.stop()
})

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure')
    },
    (e: unknown) => e as Error,
  )

describe('the Postgres store: locations and secrets', () => {
  it('prints a location with its password replaced, in URLs and parameters alike', () => {
    expect(redactLocation('postgres://app:s3cr%40t@db.internal:5432/refresh?schema=ops')).toBe(
      'postgres://app:***@db.internal:5432/refresh?schema=ops',
    )
    expect(redactLocation('postgresql://db/refresh?user=app&password=hunter2')).toBe(
      'postgresql://db/refresh?user=app&password=***',
    )
    expect(redactLocation('postgres://app@db/refresh')).toBe('postgres://app@db/refresh')
    expect(redactLocation('/var/lib/refresh/refresh.db')).toBe('/var/lib/refresh/refresh.db')
  })

  it('opens by URL; its display name hides the password', async () => {
    await using store = await openStore(await server.freshUrl())
    expect(store.kind).toBe('postgres')
    expect(store.displayName).toContain(':***@')
    expect(store.displayName).not.toContain(server.password)
    expect(await store.schemaVersion()).toBeGreaterThan(0)
  })

  it('a wrong password, an unreachable server, a missing database: clear store errors without the password', async () => {
    const wrong = new URL(server.url)
    wrong.password = 'not-the-password'
    const refused = await failure(openStore(wrong.toString()))
    expect(errorCode(refused)).toBe('store')
    expect(refused.message).toMatch(/refused the login .* check the user and password in the store URL/)
    expect(refused.message).not.toContain('not-the-password')

    const closed = new URL(server.url)
    closed.port = '1'
    const unreachable = await failure(openStore(closed.toString()))
    expect(errorCode(unreachable)).toBe('store')
    expect(unreachable.message).toMatch(
      /cannot reach the store postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\//,
    )
    expect(unreachable.message).not.toContain(server.password)

    const missing = new URL(server.url)
    missing.pathname = '/no_such_db'
    const noDb = await failure(openStore(missing.toString()))
    expect(noDb.message).toMatch(/names a database that does not exist .*createdb/)
    expect(noDb.message).not.toContain(server.password)

    const badSchema = new URL(server.url)
    badSchema.searchParams.set('schema', 'a; DROP TABLE x')
    expect((await failure(openStore(badSchema.toString()))).message).toMatch(/is not a plain name/)
    const badPool = new URL(server.url)
    badPool.searchParams.set('pool_size', '0')
    expect((await failure(openStore(badPool.toString()))).message).toMatch(/pool_size=0 .* whole number/)
  })

  it('refuses, untouched, a schema holding other tables and a store of a newer schema', async () => {
    const other = await server.freshUrl('other')
    const schema = new URL(other).searchParams.get('schema')!
    await server.sql(`CREATE TABLE "${schema}".customers (id int)`)
    const foreign = await failure(openStore(other))
    expect(foreign.message).toMatch(/holds other tables but no refresh store; it was left untouched/)
    expect(await server.sql(`SELECT to_regclass('"${schema}".runs') AS t`)).toEqual([{ t: null }])

    const newer = await server.freshUrl('newer')
    await (await openStore(newer)).close()
    const newerSchema = new URL(newer).searchParams.get('schema')!
    await server.sql(`UPDATE "${newerSchema}".refresh_schema SET version = 999`)
    expect((await failure(openStore(newer))).message).toMatch(
      /written by a newer version of refresh \(schema 999; this version knows up to \d+\); it was left untouched/,
    )
  })

  it('several processes creating the same new store at once migrate it once', async () => {
    const location = await server.freshUrl('race')
    const script = `import { openStore } from ${JSON.stringify(DIST_INDEX)}
const store = await openStore(process.argv[1])
process.stdout.write(String(await store.schemaVersion()))
await store.close()`
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        exec(process.execPath, ['--input-type=module', '-e', script, location], { timeoutMs: 30_000 }),
      ),
    )
    for (const r of results) expect(r.code, r.stderr).toBe(0)
    const versions = new Set(results.map((r) => r.stdout))
    expect(versions.size).toBe(1)
    const schema = new URL(location).searchParams.get('schema')!
    expect(await server.sql(`SELECT count(*)::int AS n FROM "${schema}".refresh_schema`)).toEqual([{ n: 1 }])
  })
})

describe('the Postgres store under load and across a restart', () => {
  it('keeps connections within the pool size while many steps write at once', async () => {
    const location = `${await server.freshUrl('pool')}&pool_size=3&application_name=refresh-pool-test`
    await using store = (await openStore(location)) as unknown as PostgresStore
    let peak = 0
    let serverPeak = 0
    const assets = Array.from({ length: 40 }, (_, i) =>
      asset({
        key: `a${i}`,
        pool: 'db',
        async materialize() {
          peak = Math.max(peak, store.connections)
          const [row] = await server.sql<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'refresh-pool-test'`,
          )
          serverPeak = Math.max(serverPeak, row!.n)
          await new Promise((r) => setTimeout(r, 5))
          return { i }
        },
      }),
    )
    const result = await materialize(assets, { store, concurrency: 16, pools: { db: 8 } })
    expect(result.status).toBe('success')
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(3)
    expect(serverPeak).toBeLessThanOrEqual(3)
  })

  it('a run goes on across a server restart, with no event lost or written twice', async () => {
    const location = await server.freshUrl('restart')
    await using store = await openStore(location, { reconnectMs: 60_000 })
    const steps = 12
    const assets = Array.from({ length: steps }, (_, i) =>
      asset({
        key: `s${i}`,
        deps: i === 0 ? [] : [`s${i - 1}`],
        async materialize() {
          await new Promise((r) => setTimeout(r, 150))
          return { step: i }
        },
      }),
    )
    const running = materialize(assets, { store })
    await new Promise((r) => setTimeout(r, 500))
    await server.halt()
    await new Promise((r) => setTimeout(r, 1_200))
    await server.resume()
    const result = await running
    expect(result.status).toBe('success')
    const events = await store.getEvents(result.runId)
    const count = (type: string) => events.filter((e) => e.type === type).length
    expect(count('run:start')).toBe(1)
    expect(count('run:end')).toBe(1)
    expect(count('step:start')).toBe(steps)
    expect(count('step:success')).toBe(steps)
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length)
    expect((await store.materializationsForRun(result.runId)).length).toBe(steps)
    expect((await store.getSteps(result.runId)).every((s) => s.status === 'succeeded')).toBe(true)
  })

  it('a store whose server stays down past the reconnect window fails with a store error, then works again', async () => {
    const location = await server.freshUrl('down')
    await using store = await openStore(location, { reconnectMs: 300 })
    await store.createRun({ id: 'r', selection: '*', plan: ['a'], config: {}, status: 'queued', now: 1 })
    await server.halt()
    try {
      const down = await failure(store.getRun('r'))
      expect(errorCode(down)).toBe('store')
      expect(down.message).toMatch(/cannot reach the store/)
      expect(down.message).not.toContain(server.password)
    } finally {
      await server.resume()
    }
    expect((await store.getRun('r'))?.status).toBe('queued')
  })
})
