/**
 * The automation evaluator tick by tick on a real SQLite store, with a manual clock: each
 * condition and operand, composition, partitions (gaps, ranges, DST), restarts and two evaluators
 * without double requests, maintenance mode, guards, switches and backfills in flight. Requested
 * runs are executed in-process (`launchRun`), as the daemon's launcher would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requestBackfill } from '../../core/backfills.js'
import { assetCheck } from '../../core/checks.js'
import { ManualClock } from '../../core/clock.js'
import { type AssetDefinition, asset } from '../../core/definitions.js'
import { buildGraph, launchRun, materialize } from '../../core/materialize.js'
import { timeWindowMapping } from '../../core/partitions/mapping.js'
import { dynamicPartitions } from '../../core/partitions/static.js'
import { PartitionSubset } from '../../core/partitions/subset.js'
import { dailyPartitions, hourlyPartitions } from '../../core/partitions/time.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import {
  and,
  anyDepsInProgress,
  checksPassed,
  eager,
  inProgress,
  missing,
  newlyUpdated,
  not,
  onCron,
  onMissing,
  or,
} from '../../sensors/automation/conditions.js'
import { AUTOMATION_ORIGIN, AutomationEvaluator } from '../../sensors/automation/evaluator.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

const HOUR = 3_600_000
const START = Date.UTC(2026, 0, 12, 1) // a Monday, 01:00 UTC

function source(key: string, partitions?: AssetDefinition['partitions']): AssetDefinition {
  return asset({ key, ...(partitions ? { partitions } : {}), materialize: () => ({}) })
}

function evaluator(store: RunStore, assets: AssetDefinition[], clock: ManualClock, extra = {}) {
  return new AutomationEvaluator({ store, graph: buildGraph(assets), runConfig: {}, clock, ...extra })
}

/** The queued runs automation requested, as `assets@partition`, oldest first. */
async function queued(store: RunStore): Promise<string[]> {
  const runs = await store.listRuns({ status: ['queued'] })
  return runs
    .filter((r) => r.origin === AUTOMATION_ORIGIN)
    .reverse()
    .map((r) => `${r.plan.join(',')}${r.partitionKey === null ? '' : `@${r.partitionKey}`}`)
}

/** Executes every queued run in-process, oldest first. */
async function launchAll(store: RunStore, assets: AssetDefinition[], clock: ManualClock): Promise<void> {
  const runs = await store.listRuns({ status: ['queued'] })
  for (const run of runs.reverse()) await launchRun(assets, run.id, { store, clock })
}

describe('eager()', () => {
  it('follows its deps down a chain, and waits for a missing dep', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const built: string[] = []
    const assets = [
      source('raw'),
      asset({
        key: 'clean',
        deps: ['raw'],
        automation: eager(),
        materialize: () => void built.push('clean'),
      }),
      asset({
        key: 'summary',
        deps: ['clean'],
        automation: eager(),
        materialize: () => void built.push('summary'),
      }),
    ]
    const ev = evaluator(store, assets, clock)
    // raw is missing: nothing can run
    expect((await ev.tick()).requests).toEqual([])
    expect(await queued(store)).toEqual([])
    await materialize(assets, { store, selection: 'raw', clock })
    await clock.advance(1000)
    const first = await ev.tick()
    expect(first.requests.map((r) => [r.assets, r.outcome.outcome])).toEqual([[['clean'], 'created']])
    // requested and queued: not again
    expect((await ev.tick()).requests).toEqual([])
    await launchAll(store, assets, clock)
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['summary']])
    await launchAll(store, assets, clock)
    expect((await ev.tick()).requests).toEqual([])
    expect(built).toEqual(['clean', 'summary'])
    // a new raw: the chain follows again
    await materialize(assets, { store, selection: 'raw', clock })
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['clean']])
    await launchAll(store, assets, clock)
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['summary']])
  })

  it('runs assets that are both true in one run, and a missing asset once', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = [
      source('raw'),
      asset({ key: 'a', deps: ['raw'], automation: eager(), materialize: () => ({}) }),
      asset({ key: 'b', deps: ['raw'], automation: eager(), materialize: () => ({}) }),
    ]
    await materialize(assets, { store, selection: 'raw', clock })
    const ev = evaluator(store, assets, clock)
    const tick = await ev.tick()
    expect(tick.requests.map((r) => r.assets)).toEqual([['a', 'b']])
    expect(await queued(store)).toEqual(['a,b'])
  })

  it('does not repeat a request that failed until a dep changes', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    let fail = true
    const assets = [
      source('raw'),
      asset({
        key: 'flaky',
        deps: ['raw'],
        automation: eager(),
        retry: { maxAttempts: 1 },
        materialize: () => {
          if (fail) throw new Error('upstream API down')
        },
      }),
    ]
    await materialize(assets, { store, selection: 'raw', clock })
    const ev = evaluator(store, assets, clock)
    expect((await ev.tick()).requests).toHaveLength(1)
    await launchAll(store, assets, clock)
    expect((await store.listRuns({ status: ['failure'] })).length).toBe(1)
    for (let i = 0; i < 3; i++) {
      await clock.advance(5_000)
      expect((await ev.tick()).requests).toEqual([])
    }
    fail = false
    await materialize(assets, { store, selection: 'raw', clock })
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['flaky']])
  })

  it('evaluates every partition in range, through the mapping, and skips gaps upstream', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(Date.UTC(2026, 0, 20))
    const days = dailyPartitions({ start: '2026-01-01', end: '2026-01-11' })
    const assets = [
      source('events', days),
      asset({
        key: 'daily',
        deps: ['events'],
        partitions: days,
        automation: eager(),
        materialize: () => ({}),
      }),
    ]
    for (const day of ['01', '02', '04', '05', '10']) {
      await materialize(assets, { store, selection: 'events', partition: `2026-01-${day}`, clock })
    }
    const ev = evaluator(store, assets, clock)
    await ev.tick()
    expect(await queued(store)).toEqual([
      'daily@2026-01-01',
      'daily@2026-01-02',
      'daily@2026-01-04',
      'daily@2026-01-05',
      'daily@2026-01-10',
    ])
    const [latest] = await store.automationEvaluations('daily', 1)
    expect(latest).toMatchObject({ trueCount: 5, total: 10 })
    expect(JSON.parse(latest!.tree).partitions).toBe(
      '2026-01-01...2026-01-02, 2026-01-04...2026-01-05, 2026-01-10',
    )
    // the whole true subset is kept with the evaluation (the text shows only 3 ranges)
    expect([...PartitionSubset.fromJSON(JSON.parse(latest!.tree).subset).indices()]).toEqual([0, 1, 3, 4, 9])
    await launchAll(store, assets, clock)
    // an old partition upstream changes: only its partition downstream follows (not only the latest)
    await materialize(assets, { store, selection: 'events', partition: '2026-01-02', clock })
    await ev.tick()
    expect(await queued(store)).toEqual(['daily@2026-01-02'])
  })

  it('runs consecutive partitions together up to backfillPolicy.maxPartitionsPerRun', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(Date.UTC(2026, 0, 20))
    const days = dailyPartitions({ start: '2026-01-01', end: '2026-01-11' })
    const ranges: string[] = []
    const assets = [
      source('events', days),
      asset({
        key: 'daily',
        deps: ['events'],
        partitions: days,
        automation: onMissing(),
        backfillPolicy: { maxPartitionsPerRun: 3 },
        materialize: (ctx) => void ranges.push(ctx.partition!.key),
      }),
    ]
    for (let d = 1; d <= 10; d++) {
      if (d === 6) continue
      await materialize(assets, {
        store,
        selection: 'events',
        partition: `2026-01-${String(d).padStart(2, '0')}`,
        clock,
      })
    }
    const ev = evaluator(store, assets, clock)
    await ev.tick()
    expect(await queued(store)).toEqual([
      'daily@2026-01-01...2026-01-03',
      'daily@2026-01-04...2026-01-05',
      'daily@2026-01-07...2026-01-09',
      'daily@2026-01-10',
    ])
    await launchAll(store, assets, clock)
    expect((await ev.tick()).requests).toEqual([])
    expect(ranges).toHaveLength(4)
  })

  it('gives both occurrences of the repeated autumn hour their own run (DST)', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(Date.UTC(2026, 10, 2, 12))
    // 2026-11-01 in New York: 25 hours, 01:00 twice
    const hours = hourlyPartitions({
      start: '2026-11-01-00:00',
      end: '2026-11-02-00:00',
      timezone: 'America/New_York',
    })
    const assets = [
      source('events', hours),
      asset({
        key: 'hourly',
        deps: ['events'],
        partitions: hours,
        automation: eager(),
        materialize: () => ({}),
      }),
    ]
    const ctx = { now: clock.now() }
    const keys = hours.keys(ctx)
    expect(keys).toHaveLength(25)
    for (const key of keys) await materialize(assets, { store, selection: 'events', partition: key, clock })
    const ev = evaluator(store, assets, clock)
    await ev.tick()
    const runs = await queued(store)
    expect(runs).toHaveLength(25)
    expect(new Set(runs).size).toBe(25)
  })
})

describe('onCron()', () => {
  it('runs once per tick, once every dep has updated since it', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START) // 01:00
    const assets = [
      source('raw'),
      asset({ key: 'nightly', deps: ['raw'], automation: onCron('0 3 * * *'), materialize: () => ({}) }),
    ]
    const ev = evaluator(store, assets, clock)
    await materialize(assets, { store, selection: 'raw', clock })
    // before the first tick automation sees: nothing (ticks before it do not count)
    expect((await ev.tick()).requests).toEqual([])
    await clock.advance(2 * HOUR) // 03:00: the tick passed, but raw has not updated since
    expect((await ev.tick()).requests).toEqual([])
    await clock.advance(HOUR) // 04:00: raw lands
    await materialize(assets, { store, selection: 'raw', clock })
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['nightly']])
    await launchAll(store, assets, clock)
    // raw updates again the same day: nothing until the next tick
    await materialize(assets, { store, selection: 'raw', clock })
    await clock.advance(HOUR)
    expect((await ev.tick()).requests).toEqual([])
    await clock.advance(23 * HOUR) // next day 04:00 (the 03:00 tick passed; raw updated at 04:00 yesterday)
    expect((await ev.tick()).requests).toEqual([])
    await materialize(assets, { store, selection: 'raw', clock })
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['nightly']])
  })

  it('fires once on the autumn day whose 01:30 happens twice (DST)', async () => {
    await using store = await openStore(':memory:')
    // 2026-11-01 04:00 UTC = 00:00 EDT in New York
    const clock = new ManualClock(Date.UTC(2026, 10, 1, 4))
    const assets = [
      source('raw'),
      asset({
        key: 'nightly',
        automation: onCron('30 1 * * *', { timezone: 'America/New_York' }),
        materialize: () => ({}),
      }),
    ]
    const ev = evaluator(store, assets, clock)
    await ev.tick()
    let requested = 0
    for (let i = 0; i < 24 * 4; i++) {
      await clock.advance(15 * 60_000)
      requested += (await ev.tick()).requests.length
      await launchAll(store, assets, clock)
    }
    expect(requested).toBe(1)
  })
})

describe('operands and composition', () => {
  it('onMissing() fills in a missing asset once, when its deps are there', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = [
      source('raw'),
      asset({ key: 'once', deps: ['raw'], automation: onMissing(), materialize: () => ({}) }),
    ]
    const ev = evaluator(store, assets, clock)
    expect((await ev.tick()).requests).toEqual([])
    await materialize(assets, { store, selection: 'raw', clock })
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['once']])
    await launchAll(store, assets, clock)
    await materialize(assets, { store, selection: 'raw', clock })
    // not missing any more: a new raw does not run it
    expect((await ev.tick()).requests).toEqual([])
  })

  it('and, or, not of missing(), inProgress(), anyDepsInProgress(), newlyUpdated()', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = [
      source('raw'),
      source('other'),
      // runs when raw was just updated or it is missing, unless a dep or itself is in progress
      asset({
        key: 'mix',
        deps: ['raw'],
        automation: and(or(missing(), newlyUpdated()), not(anyDepsInProgress()), not(inProgress())),
        materialize: () => ({}),
      }),
    ]
    const ev = evaluator(store, assets, clock)
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['mix']])
    await launchAll(store, assets, clock)
    // newlyUpdated() is true for the tick that sees mix's own materialization
    const after = await ev.tick()
    expect(after.requests.map((r) => r.assets)).toEqual([['mix']])
    await launchAll(store, assets, clock)
    const [latest] = await store.automationEvaluations('mix', 1)
    const tree = JSON.parse(latest!.tree)
    expect(tree.label).toBe('and(or(missing(), newlyUpdated()), not(anyDepsInProgress()), not(inProgress()))')
    expect(tree.children.map((c: { label: string; trueCount: number }) => [c.label, c.trueCount])).toEqual([
      ['or(missing(), newlyUpdated())', 1],
      ['not(anyDepsInProgress())', 1],
      ['not(inProgress())', 1],
    ])
    // a run of raw in progress: held
    const runId = 'r-raw-in-progress'
    await store.requestRun({
      id: runId,
      selection: 'raw',
      plan: ['raw'],
      config: {},
      tags: {},
      origin: 'manual',
      now: clock.now(),
    })
    await materialize(assets, { store, selection: 'mix', clock })
    // mix was just updated (newlyUpdated) but raw is in progress
    expect((await ev.tick()).requests).toEqual([])
    const [held] = await store.automationEvaluations('mix', 1)
    expect(JSON.parse(held!.tree).children[1]).toMatchObject({
      label: 'not(anyDepsInProgress())',
      trueCount: 0,
    })
  })

  it("checksPassed() is true once the latest result of each of the asset's checks passed", async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    let rows = 0
    const checks = [assetCheck({ asset: 'table', name: 'not_empty', evaluate: () => ({ passed: rows > 0 }) })]
    const assets = [
      asset({ key: 'table', automation: and(newlyUpdated(), checksPassed()), materialize: () => ({ rows }) }),
    ]
    const ev = evaluator(store, assets, clock, { checks: new Map([['table', ['not_empty']]]) })
    expect((await ev.tick()).requests).toEqual([])
    await materialize(assets, { store, selection: 'table', checks, clock })
    expect((await ev.tick()).requests).toEqual([])
    const [failed] = await store.automationEvaluations('table', 1)
    expect(JSON.parse(failed!.tree).children.map((c: { trueCount: number }) => c.trueCount)).toEqual([1, 0])
    rows = 5
    await materialize(assets, { store, selection: 'table', checks, clock })
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['table']])
  })
})

describe('requests, restarts and the rest of the world', () => {
  const world = () => [
    source('raw'),
    asset({ key: 'clean', deps: ['raw'], automation: eager(), materialize: () => ({}) }),
  ]

  it('never requests twice across a restart, nor when the commit did not happen', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = world()
    await materialize(assets, { store, selection: 'raw', clock })
    // an evaluator that dies in its commit: nothing of its tick is kept
    const failing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'commitAutomationTick') return async () => Promise.reject(new Error('connection lost'))
        return Reflect.get(target, prop, receiver)
      },
    })
    await expect(evaluator(failing, assets, clock).tick()).rejects.toThrow('connection lost')
    expect(await queued(store)).toEqual([])
    // the next evaluator requests it once; a restarted one does not again
    expect((await evaluator(store, assets, clock).tick()).requests).toHaveLength(1)
    expect((await evaluator(store, assets, clock).tick()).requests).toEqual([])
    expect(await queued(store)).toEqual(['clean'])
  })

  it('of two evaluators, one commits each tick; the other reloads', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = world()
    const a = evaluator(store, assets, clock)
    const b = evaluator(store, assets, clock)
    await a.tick()
    await b.tick()
    await materialize(assets, { store, selection: 'raw', clock })
    const [ra, rb] = await Promise.all([a.tick(), b.tick()])
    expect([ra.requests.length, rb.requests.length].sort()).toEqual([0, 1])
    expect(ra.conflict || rb.conflict).toBe(true)
    expect((await b.tick()).requests).toEqual([])
    expect((await a.tick()).requests).toEqual([])
    expect(await queued(store)).toEqual(['clean'])
  })

  it('parks its requests in maintenance mode, once, and they replay when it ends', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = world()
    await materialize(assets, { store, selection: 'raw', clock })
    await store.setMaintenanceOn({ reason: 'deploy', by: 'ops@host', since: clock.now(), drainTimeoutMs: 0 })
    const ev = evaluator(store, assets, clock)
    expect((await ev.tick()).requests.map((r) => r.outcome.outcome)).toEqual(['parked'])
    expect((await ev.tick()).requests).toEqual([])
    expect(await store.countParked()).toBe(1)
    await store.setMaintenanceOff()
    const { replayParked } = await import('../../daemon/maintenance.js')
    const replayed = await replayParked({ store, graph: buildGraph(assets), runConfig: {}, clock })
    expect(replayed.map((r) => r.outcome.outcome)).toEqual(['created'])
    expect(await queued(store)).toEqual(['clean'])
    expect((await ev.tick()).requests).toEqual([])
  })

  it("holds the config's run guards: its runs wait for a free slot", async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = world()
    await materialize(assets, { store, selection: 'raw', clock })
    const guards = [{ name: 'writers', selection: 'clean', concurrency: 1 }]
    // another run of clean holds the guard's one slot
    await store.requestRun({
      id: 'r-holder',
      selection: 'clean',
      plan: ['clean'],
      config: {},
      tags: {},
      origin: 'manual',
      holds: [{ key: 'writers', limit: 1 }],
      now: clock.now(),
    })
    expect(await store.claimQueuedRun('r-holder', { pid: process.pid, host: 'h' }, clock.now())).toBe(true)
    const ev = evaluator(store, assets, clock, { guards })
    // clean is in progress (the holder): eager waits
    expect((await ev.tick()).requests).toEqual([])
    await store.finishRun('r-holder', 'failure', clock.now())
    const tick = await ev.tick()
    expect(tick.requests).toHaveLength(1)
    const runId = (tick.requests[0]!.outcome as { runId: string }).runId
    expect(await store.runHolds(runId)).toEqual([{ key: 'writers', limit: 1 }])
  })

  it('does nothing for an asset switched off, or with everything off, and resumes when on', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = world()
    await materialize(assets, { store, selection: 'raw', clock })
    const ev = evaluator(store, assets, clock)
    await store.setAutomationStatus('clean', 'off', clock.now())
    expect((await ev.tick()).requests).toEqual([])
    await store.setAutomationStatus('clean', 'default', clock.now())
    await store.setAutomationStatus(null, 'off', clock.now())
    expect((await ev.tick()).requests).toEqual([])
    await store.setAutomationStatus(null, 'on', clock.now())
    expect((await ev.tick()).requests.map((r) => r.assets)).toEqual([['clean']])
  })

  it('leaves the partitions of a backfill in flight to the backfill', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(Date.UTC(2026, 0, 20))
    const days = dailyPartitions({ start: '2026-01-01', end: '2026-01-06' })
    const assets = [
      source('events', days),
      asset({
        key: 'daily',
        deps: ['events'],
        partitions: days,
        automation: eager(),
        materialize: () => ({}),
      }),
    ]
    for (const d of ['01', '02', '03', '04', '05']) {
      await materialize(assets, { store, selection: 'events', partition: `2026-01-${d}`, clock })
    }
    await requestBackfill(
      store,
      buildGraph(assets),
      { selection: 'daily', from: '2026-01-02', to: '2026-01-04' },
      clock.now(),
    )
    await evaluator(store, assets, clock).tick()
    expect(await queued(store)).toEqual(['daily@2026-01-01', 'daily@2026-01-05'])
  })

  it('keeps an evaluation only when it changed, with the runs it requested', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const assets = world()
    const ev = evaluator(store, assets, clock)
    await ev.tick()
    await materialize(assets, { store, selection: 'raw', clock })
    const tick = await ev.tick()
    await ev.tick()
    await ev.tick()
    const kept = await store.automationEvaluations('clean')
    expect(kept.map((e) => e.trueCount)).toEqual([0, 1, 0])
    expect(kept[1]!.runIds).toEqual([(tick.requests[0]!.outcome as { runId: string }).runId])
  })
})

describe('partitions: chains and dynamic keys', () => {
  it('fills a self-dependent chain day by day, each once its day before is in', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(Date.UTC(2026, 0, 20))
    const days = dailyPartitions({ start: '2026-01-01', end: '2026-01-06' })
    const order: string[] = []
    const assets = [
      asset({
        key: 'total',
        deps: ['total'],
        partitions: days,
        partitionMappings: { total: timeWindowMapping({ startOffset: -1, endOffset: -1 }) },
        automation: eager(),
        materialize: (ctx) => void order.push(ctx.partition!.key),
      }),
    ]
    const ev = evaluator(store, assets, clock)
    for (let i = 0; i < 8; i++) {
      await ev.tick()
      await launchAll(store, assets, clock)
    }
    expect(order).toEqual(['2026-01-01', '2026-01-02', '2026-01-03', '2026-01-04', '2026-01-05'])
  })

  it('follows keys added to dynamic partitions, and starts over when one is removed', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(START)
    const customers = dynamicPartitions('customers')
    const built: string[] = []
    const assets = [
      source('orders', customers),
      asset({
        key: 'invoices',
        deps: ['orders'],
        partitions: customers,
        automation: eager(),
        materialize: (ctx) => void built.push(ctx.partition!.key),
      }),
    ]
    await store.addDynamicPartitions('customers', ['acme', 'globex', 'initech'], clock.now())
    for (const key of ['acme', 'globex', 'initech']) {
      await materialize(assets, { store, selection: 'orders', partition: key, clock })
    }
    const ev = evaluator(store, assets, clock)
    await ev.tick()
    await launchAll(store, assets, clock)
    expect(built.sort()).toEqual(['acme', 'globex', 'initech'])
    await store.removeDynamicPartitions('customers', ['acme'], clock.now())
    await store.addDynamicPartitions('customers', ['umbrella'], clock.now())
    await materialize(assets, { store, selection: 'orders', partition: 'umbrella', clock })
    await ev.tick()
    // the indices moved: what was built is read again from the store, nothing runs twice
    expect(await queued(store)).toEqual(['invoices@umbrella'])
  })
})

describe('on a Postgres store', () => {
  let server: TestPostgres
  beforeAll(async () => {
    server = await startPostgres()
  }, 60_000)
  afterAll(async () => {
    await server?.stop()
  })

  it('follows a chain, parks in maintenance mode, and of two evaluators one commits', async () => {
    await using store = await openStore(await server.freshUrl('automation'))
    const clock = new ManualClock(START)
    const assets = [
      source('raw'),
      asset({ key: 'clean', deps: ['raw'], automation: eager(), materialize: () => ({}) }),
      asset({ key: 'summary', deps: ['clean'], automation: eager(), materialize: () => ({}) }),
    ]
    const a = evaluator(store, assets, clock)
    const b = evaluator(store, assets, clock)
    await a.tick()
    await b.tick()
    await materialize(assets, { store, selection: 'raw', clock })
    const [ra, rb] = await Promise.all([a.tick(), b.tick()])
    expect([ra.requests.length, rb.requests.length].sort()).toEqual([0, 1])
    await launchAll(store, assets, clock)
    await store.setMaintenanceOn({ reason: 'deploy', by: 'ops@host', since: clock.now(), drainTimeoutMs: 0 })
    expect((await a.tick()).requests.map((r) => [r.assets, r.outcome.outcome])).toEqual([
      [['summary'], 'parked'],
    ])
    expect((await b.tick()).requests).toEqual([])
    expect(await store.countParked()).toBe(1)
    // the evaluation that parked its request is kept (a parked request has no run yet)
    const kept = await store.automationEvaluations('summary', 5)
    expect(kept.find((e) => e.trueCount === 1 && e.runIds.length === 0)).toBeDefined()
  }, 60_000)
})
