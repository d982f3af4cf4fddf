/**
 * Runs of one partition through `materialize()`: the key checked against the selection's
 * partitioned assets, `ctx.partition` (key, dimension keys, window), materializations kept per
 * partition and read back per partition by the assets downstream, unpartitioned assets in a
 * partitioned run, re-execution from failure building the same partition, dynamic partitions
 * read from the store.
 */
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../core/clock.js'
import { type AssetContext, asset } from '../../core/definitions.js'
import { errorCode } from '../../core/errors.js'
import { materialize } from '../../core/materialize.js'
import { multiPartitions } from '../../core/partitions/multi.js'
import { dynamicPartitions, staticPartitions } from '../../core/partitions/static.js'
import { dailyPartitions } from '../../core/partitions/time.js'
import { openStore } from '../../core/store/open.js'

const daily = dailyPartitions({ start: '2026-01-01', timezone: 'Europe/Berlin' })
// the clock: 2026-01-10 12:00 UTC, so 2026-01-01 .. 2026-01-09 exist
const clock = () => new ManualClock(Date.UTC(2026, 0, 10, 12))

function chain(
  seen: Array<{ key: string; partition: AssetContext['partition']; upstream: unknown }>,
  fail?: { asset: string },
) {
  const record = (ctx: AssetContext) =>
    seen.push({ key: ctx.key, partition: ctx.partition, upstream: JSON.parse(JSON.stringify(ctx.upstream)) })
  return [
    asset({
      key: 'events',
      partitions: daily,
      materialize(ctx) {
        record(ctx)
        return { day: ctx.partition!.key, rows: ctx.partition!.key.endsWith('02') ? 2 : 1 }
      },
    }),
    asset({
      key: 'summary',
      deps: ['events'],
      partitions: daily,
      materialize(ctx) {
        record(ctx)
        if (fail?.asset === 'summary') throw new Error('summary is broken')
        return { rows: ctx.upstream.events?.rows ?? null }
      },
    }),
    asset({
      key: 'report',
      deps: ['summary'],
      materialize(ctx) {
        record(ctx)
        return { ok: true }
      },
    }),
  ]
}

describe('partitioned runs', () => {
  it('gives each partitioned asset its partition and window; materializations are kept per partition', async () => {
    await using store = await openStore(':memory:')
    const seen: Array<{ key: string; partition: AssetContext['partition']; upstream: unknown }> = []
    const assets = chain(seen)
    const second = await materialize(assets, { store, partition: '2026-01-02', clock: clock() })
    expect(second.status).toBe('success')
    expect(second.partition).toBe('2026-01-02')
    const third = await materialize(assets, { store, partition: '2026-01-03', clock: clock() })
    expect(third.status).toBe('success')
    const events = seen.find((s) => s.key === 'events')!
    expect(events.partition).toEqual({
      key: '2026-01-02',
      keys: {},
      window: { start: new Date('2026-01-01T23:00:00Z'), end: new Date('2026-01-02T23:00:00Z') },
    })
    // the unpartitioned asset of a partitioned run gets no partition, and is materialized unpartitioned
    expect(seen.find((s) => s.key === 'report')!.partition).toBeUndefined()
    expect((await store.latestMaterialization('report'))?.partitionKey).toBeNull()
    expect((await store.latestMaterialization('events', '2026-01-02'))?.metadata).toEqual({
      day: '2026-01-02',
      rows: 2,
    })
    expect((await store.latestMaterialization('events', '2026-01-03'))?.metadata).toEqual({
      day: '2026-01-03',
      rows: 1,
    })
    expect((await store.getRun(second.runId))?.partitionKey).toBe('2026-01-02')
    const start = (await store.getEvents(second.runId, { types: ['run:start'] }))[0]
    expect(start).toMatchObject({ partition: '2026-01-02' })

    // summary alone for 2026-01-02 reads events' materialization of 2026-01-02, not the latest
    seen.length = 0
    const again = await materialize(assets, {
      store,
      selection: 'summary',
      partition: '2026-01-02',
      clock: clock(),
    })
    expect(again.materializations.summary!.metadata).toEqual({ rows: 2 })
    expect((await store.materializedPartitions('summary')).sort()).toEqual(['2026-01-02', '2026-01-03'])
  })

  it('refuses a missing, a needless, a bad or an unknown key, and two definitions in one run, before any run is recorded', async () => {
    await using store = await openStore(':memory:')
    const assets = chain([])
    const c = clock()
    await expect(materialize(assets, { store, clock: c })).rejects.toThrow(
      /`events` is partitioned \(daily partitions .*\): say which partition to run with --partition KEY/,
    )
    await expect(
      materialize(assets, { store, selection: 'report', partition: '2026-01-02', clock: c }),
    ).rejects.toThrow(/--partition 2026-01-02: no asset of the selection \(report\) is partitioned/)
    const bad = materialize(assets, { store, partition: '2026-1-2', clock: c })
    await expect(bad).rejects.toThrow(/2026-1-2.*YYYY-MM-DD/)
    await expect(bad.catch((e: unknown) => errorCode(e))).resolves.toBe('selection')
    await expect(materialize(assets, { store, partition: '2026-01-11', clock: c })).rejects.toThrow(
      /does not exist yet/,
    )
    const other = asset({
      key: 'regions',
      partitions: staticPartitions(['eu', 'us']),
      materialize: () => ({}),
    })
    await expect(
      materialize([...assets, other], { store, selection: ['events', 'regions'], partition: 'eu', clock: c }),
    ).rejects.toThrow(/one run builds one partition, but `events` has daily partitions .* and `regions` has/)
    expect(await store.listRuns()).toEqual([])
  })

  it('re-executes a failed partition run for the same partition, reusing what succeeded', async () => {
    await using store = await openStore(':memory:')
    const seen: Array<{ key: string; partition: AssetContext['partition']; upstream: unknown }> = []
    const failed = await materialize(chain(seen, { asset: 'summary' }), {
      store,
      partition: '2026-01-05',
      clock: clock(),
    })
    expect(failed.status).toBe('failure')
    await expect(
      materialize(chain(seen), { store, fromFailure: failed.runId, partition: '2026-01-06', clock: clock() }),
    ).rejects.toThrow(/built partition 2026-01-05; its re-execution builds it again, not 2026-01-06/)
    seen.length = 0
    const retried = await materialize(chain(seen), { store, fromFailure: failed.runId, clock: clock() })
    expect(retried.status).toBe('success')
    expect(retried.partition).toBe('2026-01-05')
    expect(Object.keys(retried.reused)).toEqual(['events'])
    expect(seen.map((s) => [s.key, s.partition?.key])).toEqual([
      ['summary', '2026-01-05'],
      ['report', undefined],
    ])
    expect((await store.latestMaterialization('summary', '2026-01-05'))?.runId).toBe(retried.runId)
  })

  it('reads dynamic partition keys from the store; multi partitions give each dimension its key', async () => {
    await using store = await openStore(':memory:')
    const customers = dynamicPartitions('customers')
    const seen: Array<AssetContext['partition']> = []
    const assets = [
      asset({
        key: 'invoices',
        partitions: multiPartitions({ region: staticPartitions(['eu', 'us']), customer: customers }),
        materialize: (ctx) => {
          seen.push(ctx.partition)
          return {}
        },
      }),
    ]
    await expect(materialize(assets, { store, partition: 'eu|acme', clock: clock() })).rejects.toThrow(/acme/)
    await store.addDynamicPartitions('customers', ['acme', 'globex'], 1)
    const run = await materialize(assets, { store, partition: 'us|globex', clock: clock() })
    expect(run.status).toBe('success')
    expect(seen[0]).toEqual({ key: 'us|globex', keys: { region: 'us', customer: 'globex' } })
  })
})
