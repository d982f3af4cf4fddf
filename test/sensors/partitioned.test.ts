/**
 * Partitioned run requests from schedules and sensors: a partitioned schedule requests the
 * partition that just closed at each tick, keyed by it (DST-correct, once per partition across
 * restarts and catch-ups); sensors request partitions by key and add dynamic partition keys with
 * their tick; a key that does not exist fails the tick naming it; a parked request keeps its
 * partition; a requested run materializes the partition it was requested for.
 */
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../core/clock.js'
import { type AssetContext, asset } from '../../core/definitions.js'
import { errorCode } from '../../core/errors.js'
import { AssetGraph } from '../../core/graph.js'
import { launchRun } from '../../core/materialize.js'
import { dynamicPartitions, staticPartitions } from '../../core/partitions/static.js'
import { dailyPartitions, hourlyPartitions } from '../../core/partitions/time.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { replayParked } from '../../daemon/maintenance.js'
import { schedule, sensor } from '../../sensors/definitions.js'
import { checkInstigatorSelections } from '../../sensors/selections.js'
import { type TickEnv, tickSchedule, tickSensor } from '../../sensors/ticker.js'
import { noop } from '../helpers.js'

const HOUR = 3_600_000

function env(
  store: RunStore,
  assets: ReturnType<typeof noop>[],
  start: string,
): TickEnv & { clock: ManualClock } {
  return { store, graph: AssetGraph.build(assets), runConfig: {}, clock: new ManualClock(Date.parse(start)) }
}

/** The run keys and partitions requested, oldest first. */
async function runsOf(store: RunStore) {
  return (await store.listRuns()).reverse().map((r) => [r.runKey, r.partitionKey])
}

describe('partitioned schedules', () => {
  const berlinDays = dailyPartitions({ start: '2026-03-01', timezone: 'Europe/Berlin' })
  const berlin = [
    noop('events', [], { partitions: berlinDays }),
    noop('summary', ['events'], { partitions: berlinDays }),
  ]

  it('requests the day that just closed, keyed by it, across the spring DST change (Europe/Berlin)', async () => {
    await using store = await openStore(':memory:')
    // 00:30 local on 2026-03-27; the schedule fires at local midnight
    const e = env(store, berlin, '2026-03-26T23:30:00Z')
    const daily = schedule({
      name: 'daily',
      cron: '0 0 * * *',
      timezone: 'Europe/Berlin',
      selection: '*',
      partitioned: true,
      missed: { catchUp: 10 },
    })
    expect(await tickSchedule(daily, e)).toEqual([])
    // day by day over the night the clocks go forward (2026-03-29, a 23-hour day)
    for (let day = 0; day < 4; day++) {
      await e.clock.advance(24 * HOUR)
      await tickSchedule(daily, e)
    }
    expect(await runsOf(store)).toEqual([
      ['2026-03-27', '2026-03-27'],
      ['2026-03-28', '2026-03-28'],
      ['2026-03-29', '2026-03-29'],
      ['2026-03-30', '2026-03-30'],
    ])
    // each tick at local midnight: 23:00Z before the change, 22:00Z after it
    expect((await store.listTicks('daily')).map((t) => new Date(t.tickTime).toISOString()).reverse()).toEqual(
      [
        '2026-03-27T23:00:00.000Z',
        '2026-03-28T23:00:00.000Z',
        '2026-03-29T22:00:00.000Z',
        '2026-03-30T22:00:00.000Z',
      ],
    )
    const run = (await store.listRuns())[0]!
    expect(run).toMatchObject({ origin: 'schedule:daily', status: 'queued', plan: ['events', 'summary'] })
  })

  it('an hourly schedule requests both occurrences of the repeated autumn hour, with two keys (America/New_York)', async () => {
    await using store = await openStore(':memory:')
    const hours = hourlyPartitions({ start: '2026-10-30', timezone: 'America/New_York' })
    const e = env(store, [noop('clicks', [], { partitions: hours })], '2026-11-01T03:30:00Z')
    const hourly = schedule({
      name: 'hourly',
      cron: '0 * * * *',
      timezone: 'America/New_York',
      selection: 'clicks',
      partitioned: true,
      missed: { catchUp: 10 },
    })
    await tickSchedule(hourly, e)
    // the daemon was down from 23:30 EDT to 03:30 EST: every missed tick is caught up, in order
    await e.clock.advance(5 * HOUR)
    const fired = await tickSchedule(hourly, e)
    expect(fired.map((f) => f.tick.status)).toEqual(['success', 'success', 'success', 'success', 'success'])
    const keys = (await runsOf(store)).map(([key]) => key)
    expect(keys).toEqual([
      '2026-10-31-23:00',
      '2026-11-01-00:00',
      '2026-11-01-01:00-04:00',
      '2026-11-01-01:00-05:00',
      '2026-11-01-02:00',
    ])
    expect(new Set(keys).size).toBe(5)
  })

  it('never requests a partition twice: ticks that come to the same partition again are skipped with the run that has it', async () => {
    await using store = await openStore(':memory:')
    // an hourly schedule over daily partitions: every tick of a day asks for the day before
    const e = env(store, berlin, '2026-03-10T10:10:00Z')
    const often = schedule({
      name: 'often',
      cron: '0 * * * *',
      timezone: 'Europe/Berlin',
      selection: 'events',
      partitioned: true,
    })
    await tickSchedule(often, e)
    await e.clock.advance(HOUR)
    const [first] = await tickSchedule(often, e)
    expect(first!.tick.status).toBe('success')
    const runId = first!.tick.runIds[0]!
    await e.clock.advance(HOUR)
    const [second] = await tickSchedule(often, e)
    expect(second!.outcomes).toEqual([{ outcome: 'duplicate', runId }])
    expect(second!.tick).toMatchObject({
      status: 'skipped',
      skipReason: `run key 2026-03-09 already used by run ${runId}`,
    })
    expect(await runsOf(store)).toEqual([['2026-03-09', '2026-03-09']])
  })

  it('a tick before the first partition has closed is skipped with the reason', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, berlin, '2026-02-27T12:00:00Z')
    const daily = schedule({
      name: 'daily',
      cron: '0 6 * * *',
      timezone: 'Europe/Berlin',
      selection: '*',
      partitioned: true,
    })
    await tickSchedule(daily, e)
    await e.clock.advance(24 * HOUR) // 2026-02-28 06:00 local: March has not begun
    const [early] = await tickSchedule(daily, e)
    expect(early!.tick).toMatchObject({ status: 'skipped', runIds: [] })
    expect(early!.tick.skipReason).toMatch(
      /no partition has closed yet at 2026-02-28T05:00:00.000Z \(daily partitions from 2026-03-01/,
    )
    expect(await store.listRuns()).toEqual([])
    await e.clock.advance(2 * 24 * HOUR) // 2026-03-02 06:00 local: 2026-03-01 has closed
    await tickSchedule(daily, e)
    expect(await runsOf(store)).toEqual([['2026-03-01', '2026-03-01']])
  })

  it('config validation: the selection must have partitioned assets of one time definition; the error names the schedule', () => {
    const regions = staticPartitions(['eu', 'us'])
    const graph = AssetGraph.build([
      ...berlin,
      noop('plain'),
      noop('regional', [], { partitions: regions }),
      noop('utc', [], { partitions: dailyPartitions({ start: '2026-03-01' }) }),
    ])
    const check = (selection: string) => () =>
      checkInstigatorSelections(
        [schedule({ name: 'nightly', cron: '0 3 * * *', selection, partitioned: true })],
        graph,
        'refresh.config.ts',
      )
    expect(check('events+')).not.toThrow()
    expect(check('plain')).toThrow(
      /refresh.config.ts: schedule `nightly` is partitioned, but no asset of its selection `plain` is partitioned/,
    )
    expect(check('events,utc')).toThrow(
      /schedule `nightly` is partitioned, but its selection mixes partitions: `events` has daily partitions from 2026-03-01 \(Europe\/Berlin\) and `utc`/,
    )
    expect(check('regional')).toThrow(
      /schedule `nightly` is partitioned, but `regional` has .* not time partitions/,
    )
    let error: unknown
    try {
      check('plain')()
    } catch (e) {
      error = e
    }
    expect(errorCode(error)).toBe('config')
    // a schedule that is not partitioned may select anything, as before
    expect(() =>
      checkInstigatorSelections([schedule({ name: 'all', cron: '0 3 * * *', selection: '*' })], graph, 'x'),
    ).not.toThrow()
  })

  it('a partitioned tick parked during maintenance keeps its partition and is replayed with it', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, berlin, '2026-03-10T10:10:00Z')
    const daily = schedule({
      name: 'daily',
      cron: '0 1 * * *',
      timezone: 'Europe/Berlin',
      selection: '*',
      partitioned: true,
    })
    await tickSchedule(daily, e)
    await store.setMaintenanceOn({ reason: 'deploy', by: 't', since: e.clock.now(), drainTimeoutMs: 0 })
    await e.clock.advance(24 * HOUR)
    const [parked] = await tickSchedule(daily, e)
    expect(parked!.outcomes).toEqual([{ outcome: 'parked', requestId: expect.any(Number) }])
    expect((await store.listParked()).map((p) => [p.runKey, p.partitionKey])).toEqual([
      ['2026-03-10', '2026-03-10'],
    ])
    await store.setMaintenanceOff()
    const [replayed] = await replayParked(e)
    expect(replayed!.outcome.outcome).toBe('created')
    expect(await runsOf(store)).toEqual([['2026-03-10', '2026-03-10']])
  })

  it("the requested run materializes the schedule's partition", async () => {
    await using store = await openStore(':memory:')
    const seen: Array<string | undefined> = []
    const days = dailyPartitions({ start: '2026-03-01', timezone: 'Europe/Berlin' })
    const record = (ctx: AssetContext) => {
      seen.push(`${ctx.key}:${ctx.partition?.key}`)
      return { window: ctx.partition?.window?.start.toISOString() ?? null }
    }
    const assets = [
      asset({ key: 'events', partitions: days, materialize: record }),
      asset({ key: 'summary', deps: ['events'], partitions: days, materialize: record }),
    ]
    const e = { ...env(store, [], '2026-03-29T21:30:00Z'), graph: AssetGraph.build(assets) }
    const daily = schedule({
      name: 'daily',
      cron: '0 0 * * *',
      timezone: 'Europe/Berlin',
      selection: '*',
      partitioned: true,
    })
    await tickSchedule(daily, e)
    await e.clock.advance(HOUR)
    const [fired] = await tickSchedule(daily, e)
    const runId = fired!.tick.runIds[0]!
    expect(await launchRun(assets, runId, { store })).toMatchObject({
      status: 'success',
      partition: '2026-03-29',
    })
    expect(seen).toEqual(['events:2026-03-29', 'summary:2026-03-29'])
    const materialized = await store.latestMaterialization('events')
    expect(materialized).toMatchObject({
      partitionKey: '2026-03-29',
      metadata: { window: '2026-03-28T23:00:00.000Z' },
    })
  })
})

describe('sensors requesting partitions', () => {
  const providers = dynamicPartitions('providers')
  const days = dailyPartitions({ start: '2026-03-01' })
  const assets = [noop('ingest', [], { partitions: providers }), noop('daily', [], { partitions: days })]

  it('a request names its partition: the run is queued with it', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, assets, '2026-03-10T12:00:00Z')
    const s = sensor({
      name: 'days',
      evaluate: () => ({
        runs: [{ selection: 'daily', runKey: 'd-2026-03-05', partitionKey: '2026-03-05' }],
      }),
    })
    const { tick } = await tickSensor(s, e)
    expect(tick.status).toBe('success')
    expect(await store.getRun(tick.runIds[0]!)).toMatchObject({
      partitionKey: '2026-03-05',
      runKey: 'd-2026-03-05',
    })
  })

  it('adds dynamic partition keys with its tick, and may request them in the same tick', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, assets, '2026-03-10T12:00:00Z')
    const s = sensor({
      name: 'new_providers',
      evaluate: () => ({
        addDynamicPartitions: { providers: ['flickr', 'met'] },
        runs: [{ selection: 'ingest', runKey: 'met', partitionKey: 'met' }],
        cursor: '2',
      }),
    })
    const { tick } = await tickSensor(s, e)
    expect(tick).toMatchObject({ status: 'success', cursor: '2' })
    expect(await store.dynamicPartitionKeys('providers')).toEqual(['flickr', 'met'])
    expect((await store.getRun(tick.runIds[0]!))?.partitionKey).toBe('met')
    // keys alone, no run: added, and the tick says it launched nothing
    const only = sensor({
      name: 'only_keys',
      evaluate: () => ({ addDynamicPartitions: { providers: ['smk'] }, runs: [] }),
    })
    expect((await tickSensor(only, e)).tick).toMatchObject({
      status: 'skipped',
      skipReason: 'no runs requested',
    })
    expect(await store.dynamicPartitionKeys('providers')).toEqual(['flickr', 'met', 'smk'])
  })

  it('a key that does not exist fails the tick naming it; nothing is added or requested, the cursor stays', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, assets, '2026-03-10T12:00:00Z')
    const bad = sensor({
      name: 'bad',
      evaluate: () => ({
        addDynamicPartitions: { providers: ['flickr'] },
        runs: [{ selection: 'ingest', partitionKey: 'nope' }],
        cursor: 'moved',
      }),
    })
    const { tick } = await tickSensor(bad, e)
    expect(tick.status).toBe('failure')
    expect(tick.error?.message).toMatch(/nope/)
    expect(tick.cursor).toBeNull()
    expect(await store.dynamicPartitionKeys('providers')).toEqual([])
    expect(await store.listRuns()).toEqual([])
    const future = sensor({
      name: 'future',
      evaluate: () => ({ runs: [{ selection: 'daily', partitionKey: '2026-04-01' }] }),
    })
    const failed = await tickSensor(future, e)
    expect(failed.tick.status).toBe('failure')
    expect(failed.tick.error?.message).toMatch(/2026-04-01/)
    const unknown = sensor({
      name: 'unknown',
      evaluate: () => ({ addDynamicPartitions: { customers: ['a'] }, runs: [] }),
    })
    const third = await tickSensor(unknown, e)
    expect(third.tick.status).toBe('failure')
    expect(third.tick.error?.message).toMatch(
      /no asset has dynamic partitions named `customers` \(the graph's: providers\)/,
    )
  })

  it('a malformed partition key or dynamic partitions field fails the tick', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, assets, '2026-03-10T12:00:00Z')
    const s = sensor({
      name: 'malformed',
      evaluate: () => ({ runs: [], addDynamicPartitions: { providers: 'flickr' } }) as never,
    })
    const { tick } = await tickSensor(s, e)
    expect(tick.status).toBe('failure')
    expect(tick.error?.message).toMatch(/addDynamicPartitions/)
    const piped = sensor({
      name: 'piped',
      evaluate: () => ({ runs: [], addDynamicPartitions: { providers: ['a|b'] } }),
    })
    const second = await tickSensor(piped, e)
    expect(second.tick.status).toBe('failure')
    expect(second.tick.error?.message).toMatch(/cannot contain `\|`/)
    expect(await store.dynamicPartitionKeys('providers')).toEqual([])
  })
})
