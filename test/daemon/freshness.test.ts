import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../core/clock.js'
import type { AssetDefinition } from '../../core/definitions.js'
import { materialize } from '../../core/materialize.js'
import { staticPartitions } from '../../core/partitions/static.js'
import { dailyPartitions } from '../../core/partitions/time.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { AlertWatcher } from '../../daemon/alerts.js'
import { noop, tempDir } from '../helpers.js'

const HOUR = 3_600_000
const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r))
})

async function webhook(): Promise<{ url: string; calls: Array<Record<string, unknown>> }> {
  const calls: Array<Record<string, unknown>> = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (d) => {
      body += d
    })
    req.on('end', () => {
      calls.push(JSON.parse(body) as Record<string, unknown>)
      res.writeHead(200).end()
    })
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, calls }
}

/** A watcher as the daemon makes it, over the assets of the config. */
function watcher(store: RunStore, url: string, assets: readonly AssetDefinition[]): AlertWatcher {
  return new AlertWatcher({ store, config: { webhook: { url } }, assets })
}

async function poll(w: AlertWatcher, clock: ManualClock): Promise<void> {
  await w.poll(clock.now())
  await w.drain()
  // what a delivery took out of the outbox is saved by the next poll
  await w.poll(clock.now())
  await w.drain()
}

describe('freshness alerts (a real store file, a local webhook, a manual clock)', () => {
  it('asset_stale once per stale period, asset_fresh when materialized, and again on the next period', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const clock = new ManualClock()
    const table = noop('table', [], { freshness: { maxLag: '26h' } })
    const other = noop('other')
    const first = await materialize([table, other], { store, clock })
    expect(first.status).toBe('success')
    const w = watcher(store, hook.url, [table, other])

    await clock.advance(26 * HOUR)
    await poll(w, clock)
    expect(hook.calls).toEqual([])

    await clock.advance(1)
    await poll(w, clock)
    expect(hook.calls.map((c) => [c.event, c.asset])).toEqual([['asset_stale', 'table']])
    expect(hook.calls[0]!.text).toMatch(
      new RegExp(
        `asset table is stale: last materialized 26h ago in run ${first.runId}, more than the max lag 26h`,
      ),
    )
    expect(hook.calls[0]!.commands).toEqual(['refresh assets', 'refresh run table'])

    // still stale, hours later: not again
    await clock.advance(5 * HOUR)
    await poll(w, clock)
    expect(hook.calls).toHaveLength(1)

    // a restarted daemon (a new watcher on the same store) does not report the period again
    const restarted = watcher(store, hook.url, [table, other])
    await poll(restarted, clock)
    expect(hook.calls).toHaveLength(1)

    const second = await materialize([table], { store, clock })
    await poll(restarted, clock)
    expect(hook.calls.map((c) => [c.event, c.asset, c.runId])).toEqual([
      ['asset_stale', 'table', null],
      ['asset_fresh', 'table', second.runId],
    ])

    await clock.advance(26 * HOUR + 1)
    await poll(restarted, clock)
    expect(hook.calls.map((c) => c.event)).toEqual(['asset_stale', 'asset_fresh', 'asset_stale'])
    expect(hook.calls[2]!.text).toMatch(`in run ${second.runId}`)
  })

  it('reports an asset never materialized once, and a materialization already too old as a new period', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const clock = new ManualClock()
    const table = noop('table', [], { freshness: { maxLag: 60_000 } })
    const w = watcher(store, hook.url, [table])
    await poll(w, clock)
    await poll(w, clock)
    expect(hook.calls.map((c) => [c.event, c.asset])).toEqual([['asset_stale', 'table']])
    expect(hook.calls[0]!.text).toMatch('asset table is stale: never materialized (max lag 1m)')

    // a run that took longer than the lag: its materialization is stale as it lands
    await materialize([table], { store, clock })
    await clock.advance(60_001)
    await poll(w, clock)
    expect(hook.calls.map((c) => c.event)).toEqual(['asset_stale', 'asset_stale'])
  })

  it('a partitioned asset is fresh while any partition was materialized within the lag', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const clock = new ManualClock()
    const byProvider = noop('by_provider', [], {
      partitions: staticPartitions(['flickr', 'wikimedia']),
      freshness: { maxLag: '1h' },
    })
    const w = watcher(store, hook.url, [byProvider])
    expect((await materialize([byProvider], { store, clock, partition: 'flickr' })).status).toBe('success')
    await clock.advance(HOUR - 1)
    expect((await materialize([byProvider], { store, clock, partition: 'wikimedia' })).status).toBe('success')
    // flickr is 1h + 1 old, wikimedia 1 ms old: fresh
    await clock.advance(2)
    await poll(w, clock)
    expect(hook.calls).toEqual([])
    await clock.advance(HOUR)
    await poll(w, clock)
    expect(hook.calls.map((c) => [c.event, c.asset])).toEqual([['asset_stale', 'by_provider']])
    expect(hook.calls[0]!.text).toMatch('(partition wikimedia)')
    expect(hook.calls[0]!.commands).toEqual(['refresh assets', 'refresh partitions by_provider'])
  })

  it('a time-partitioned asset is stale per partition: its due partition named, once per partition', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    // 2026-01-01T00:00Z; the first day ends at 01-02 00:00 and is due past 02:00
    const clock = new ManualClock()
    const daily = noop('daily', [], {
      partitions: dailyPartitions({ start: '2026-01-01' }),
      freshness: { maxLag: '2h' },
    })
    const w = watcher(store, hook.url, [daily])
    // materialized recently, by another partition: the due one is what counts
    await clock.advance(26 * HOUR)
    expect((await materialize([daily], { store, clock, partition: '2026-01-01' })).status).toBe('success')
    await clock.advance(24 * HOUR + 1)
    await poll(w, clock)
    expect(hook.calls.map((c) => [c.event, c.asset, c.partition])).toEqual([
      ['asset_stale', 'daily', '2026-01-02'],
    ])
    expect(hook.calls[0]!.text).toMatch(
      'asset daily is stale: partition 2026-01-02 is not materialized 2h after its window ended, more than the max lag 2h',
    )
    expect(hook.calls[0]!.commands).toEqual(['refresh assets', 'refresh run daily --partition 2026-01-02'])

    // still the same partition missing, hours later, and after a restart: not again
    await clock.advance(5 * HOUR)
    await poll(w, clock)
    await poll(watcher(store, hook.url, [daily]), clock)
    expect(hook.calls).toHaveLength(1)

    const run = await materialize([daily], { store, clock, partition: '2026-01-02' })
    await poll(w, clock)
    expect(hook.calls.map((c) => [c.event, c.runId])).toEqual([
      ['asset_stale', null],
      ['asset_fresh', run.runId],
    ])
    expect(hook.calls[1]!.text).toMatch('(partition 2026-01-02)')

    // the next day falls due unmaterialized: a new period, naming it; then the day after, another
    await clock.advance(24 * HOUR)
    await poll(w, clock)
    await clock.advance(24 * HOUR)
    await poll(w, clock)
    expect(hook.calls.map((c) => [c.event, c.partition ?? null])).toEqual([
      ['asset_stale', '2026-01-02'],
      ['asset_fresh', null],
      ['asset_stale', '2026-01-03'],
      ['asset_stale', '2026-01-04'],
    ])
  })

  it('forgets the period of an asset that lost its policy, without an alert', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const clock = new ManualClock()
    const strict = noop('table', [], { freshness: { maxLag: '1m' } })
    await poll(watcher(store, hook.url, [strict]), clock)
    expect(hook.calls).toHaveLength(1)
    await poll(watcher(store, hook.url, [noop('table')]), clock)
    expect(hook.calls).toHaveLength(1)
    // the policy back: a new period, reported
    await poll(watcher(store, hook.url, [strict]), clock)
    expect(hook.calls.map((c) => c.event)).toEqual(['asset_stale', 'asset_stale'])
  })
})

describe('freshness alerts across daemons taking turns with the lease', () => {
  it('a watcher that gets the lease back goes on from the periods the other one reported', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const clock = new ManualClock()
    const table = noop('table', [], { freshness: { maxLag: '1h' } })
    await materialize([table], { store, clock })
    const a = watcher(store, hook.url, [table])
    const b = watcher(store, hook.url, [table])
    await clock.advance(HOUR + 1)
    await poll(a, clock)
    // b holds the lease now: the period a reported is not reported again
    await poll(b, clock)
    expect(hook.calls.map((c) => c.event)).toEqual(['asset_stale'])
    await materialize([table], { store, clock })
    await poll(b, clock)
    await clock.advance(HOUR + 1)
    await poll(b, clock)
    expect(hook.calls.map((c) => c.event)).toEqual(['asset_stale', 'asset_fresh', 'asset_stale'])
    // a takes the lease back: b reported this period already
    await poll(a, clock)
    expect(hook.calls).toHaveLength(3)
  })
})
