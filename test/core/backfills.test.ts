/**
 * Backfills driven step by step (`advanceBackfill`, what the daemon calls each loop), their runs
 * launched in-process as the daemon's launcher would (`launchRun`): runs created as capacity
 * frees, each partition once, completion with failures and with assets that return nothing, a
 * chain of a self-dependent asset launched in order with what follows a failure skipped, cancel,
 * retry of what did not succeed, and two drivers at once creating each run once.
 */
import { describe, expect, it } from 'vitest'
import {
  advanceBackfill,
  BACKFILL_TAG,
  backfillActivity,
  backfillProgress,
  cancelBackfill,
  requestBackfill,
  retryBackfill,
} from '../../core/backfills.js'
import { ManualClock } from '../../core/clock.js'
import { type AssetDefinition, asset } from '../../core/definitions.js'
import { buildGraph, launchRun } from '../../core/materialize.js'
import { timeWindowMapping } from '../../core/partitions/mapping.js'
import { dailyPartitions } from '../../core/partitions/time.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'

const days = dailyPartitions({ start: '2026-01-01', end: '2026-01-11' }) // 10 partitions
const NOW = Date.UTC(2026, 1, 1)

/** Launches every queued run of the store in-process (the daemon's launcher, without processes). */
async function launchQueued(store: RunStore, assets: AssetDefinition[]): Promise<string[]> {
  const queued = await store.listRuns({ status: ['queued'] })
  for (const run of queued.reverse()) await launchRun(assets, run.id, { store, clock: new ManualClock(NOW) })
  return queued.map((r) => r.partitionKey!)
}

describe('backfills', () => {
  it('submits runs as capacity frees, each partition once, and completes', async () => {
    await using store = await openStore(':memory:')
    const built: string[] = []
    const assets = [
      asset({ key: 'events', partitions: days, materialize: (ctx) => void built.push(ctx.partition!.key) }),
    ]
    const graph = buildGraph(assets)
    const b = await requestBackfill(
      store,
      graph,
      { selection: 'events', from: '2026-01-02', to: '2026-01-09', maxRuns: 3 },
      NOW,
    )
    expect(backfillProgress(b.state).target.size).toBe(8)
    let rounds = 0
    for (;;) {
      const step = await advanceBackfill(store, graph, b.id, NOW)
      if (step.backfill.status !== 'requested') {
        expect(step.backfill.status).toBe('completed')
        break
      }
      expect(step.created.length).toBeLessThanOrEqual(3)
      // a second call before anything ended creates nothing more: 3 in flight is the limit
      expect((await advanceBackfill(store, graph, b.id, NOW)).created).toEqual([])
      await launchQueued(store, assets)
      rounds++
    }
    expect(rounds).toBe(3)
    expect(built.sort()).toEqual(['02', '03', '04', '05', '06', '07', '08', '09'].map((d) => `2026-01-${d}`))
    const runs = await store.listRuns()
    expect(runs.every((r) => r.tags[BACKFILL_TAG] === b.id && r.status === 'success')).toBe(true)
    const done = (await store.getBackfill(b.id))!
    expect(backfillProgress(done.state).succeeded.size).toBe(8)
    expect(done.endedAt).toBe(NOW)
  })

  it('ends failed when a partition fails; retry targets only what did not succeed', async () => {
    await using store = await openStore(':memory:')
    let broken = '2026-01-03'
    const assets = [
      asset({
        key: 'events',
        partitions: days,
        materialize(ctx) {
          if (ctx.partition!.key === broken) throw new Error(`no data for ${broken}`)
        },
      }),
    ]
    const graph = buildGraph(assets)
    const b = await requestBackfill(
      store,
      graph,
      { selection: 'events', from: '2026-01-01', to: '2026-01-05' },
      NOW,
    )
    await advanceBackfill(store, graph, b.id, NOW)
    await launchQueued(store, assets)
    const ended = await advanceBackfill(store, graph, b.id, NOW)
    expect(ended.backfill.status).toBe('failed')
    const p = backfillProgress(ended.backfill.state)
    expect(p.succeeded.size).toBe(4)
    expect(p.failed.size).toBe(1)
    broken = 'none'
    const retry = await retryBackfill(store, graph, b.id, NOW)
    expect(retry.spec.tags['refresh/retry-of']).toBe(b.id)
    expect(backfillProgress(retry.state).target.size).toBe(1)
    await advanceBackfill(store, graph, retry.id, NOW)
    expect(await launchQueued(store, assets)).toEqual(['2026-01-03'])
    expect((await advanceBackfill(store, graph, retry.id, NOW)).backfill.status).toBe('completed')
  })

  it('runs a self-dependent chain in order; what follows a failure is skipped, not attempted', async () => {
    await using store = await openStore(':memory:')
    const order: Array<[string, unknown]> = []
    const assets = [
      asset({
        key: 'balance',
        deps: ['balance'],
        partitions: days,
        partitionMappings: { balance: timeWindowMapping({ startOffset: -1, endOffset: -1 }) },
        materialize(ctx) {
          const before = (ctx.upstream.balance?.total as number | undefined) ?? 0
          order.push([ctx.partition!.key, ctx.upstream.balance?.total ?? null])
          if (ctx.partition!.key === '2026-01-07') throw new Error('ledger missing')
          return { total: before + 1 }
        },
      }),
    ]
    const graph = buildGraph(assets)
    const b = await requestBackfill(store, graph, { selection: 'balance' }, NOW)
    for (let i = 0; i < 20; i++) {
      const step = await advanceBackfill(store, graph, b.id, NOW)
      if (step.backfill.status !== 'requested') break
      // one at a time: each day needs the day before
      expect(step.created.length).toBeLessThanOrEqual(1)
      await launchQueued(store, assets)
    }
    const done = (await store.getBackfill(b.id))!
    expect(done.status).toBe('failed')
    expect(order.map(([k]) => k)).toEqual([1, 2, 3, 4, 5, 6, 7].map((d) => `2026-01-0${d}`))
    // each day read the day before's total
    expect(order.map(([, t]) => t)).toEqual([null, 1, 2, 3, 4, 5, 6])
    const p = backfillProgress(done.state)
    expect([p.succeeded.size, p.failed.size, p.skipped.size]).toEqual([6, 1, 3])
  })

  it('re-executes a run that a crash interrupted, from failure, as a child run of the same partition', async () => {
    await using store = await openStore(':memory:')
    const assets = [asset({ key: 'events', partitions: days, materialize: () => ({}) })]
    const graph = buildGraph(assets)
    const b = await requestBackfill(store, graph, { selection: 'events', partitions: ['2026-01-04'] }, NOW)
    const [first] = (await advanceBackfill(store, graph, b.id, NOW)).created
    // its process starts it, then dies: recovery closes it as interrupted
    const { hostname } = await import('node:os')
    expect(await store.claimQueuedRun(first!, { pid: 2 ** 22 + 12_345, host: hostname() }, NOW)).toBe(true)
    expect((await store.recoverInterruptedRuns({ now: NOW + 1 })).map((r) => r.runId)).toEqual([first])
    const step = await advanceBackfill(store, graph, b.id, NOW)
    expect(step.backfill.status).toBe('requested')
    expect(step.created).toHaveLength(1)
    const child = (await store.getRun(step.created[0]!))!
    expect(child).toMatchObject({ parentRunId: first, partitionKey: '2026-01-04', status: 'queued' })
    await launchQueued(store, assets)
    const done = await advanceBackfill(store, graph, b.id, NOW)
    expect(done.backfill.status).toBe('completed')
    expect(backfillProgress(done.backfill.state).succeeded.size).toBe(1)
    expect(backfillProgress(done.backfill.state).failed.size).toBe(0)
  })

  it('runs several partitions per run: each run receives its range, each partition is materialized', async () => {
    await using store = await openStore(':memory:')
    const ranges: Array<[string | undefined, string | undefined, number, unknown]> = []
    const assets = [
      asset({
        key: 'total',
        deps: ['total'],
        partitions: days,
        partitionMappings: { total: timeWindowMapping({ startOffset: -1, endOffset: -1 }) },
        materialize(ctx) {
          const range = ctx.partition!.range
          ranges.push([range?.from, range?.to, range?.keys.length ?? 1, ctx.upstream.total?.total ?? null])
          return {
            total: ((ctx.upstream.total?.total as number | undefined) ?? 0) + (range?.keys.length ?? 1),
          }
        },
      }),
    ]
    const graph = buildGraph(assets)
    const b = await requestBackfill(store, graph, { selection: 'total', perRun: 4 }, NOW)
    expect(b.spec.perRun).toBe(4)
    for (let i = 0; i < 10; i++) {
      const step = await advanceBackfill(store, graph, b.id, NOW)
      if (step.backfill.status !== 'requested') break
      await launchQueued(store, assets)
    }
    expect((await store.getBackfill(b.id))!.status).toBe('completed')
    // 4 + 4 + 2 partitions, in order, each range reading the total the one before left
    expect(ranges).toEqual([
      ['2026-01-01', '2026-01-04', 4, null],
      ['2026-01-05', '2026-01-08', 4, 4],
      ['2026-01-09', '2026-01-10', 2, 8],
    ])
    expect((await store.latestMaterialization('total', '2026-01-07'))?.metadata).toEqual({ total: 8 })
    const runs = await store.listRuns()
    expect(runs.map((r) => r.partitionKey).sort()).toEqual([
      '2026-01-01...2026-01-04',
      '2026-01-05...2026-01-08',
      '2026-01-09...2026-01-10',
    ])
    const { partitionStatus } = await import('../../core/partition-status.js')
    const status = await partitionStatus(store, graph, 'total', NOW)
    expect(status.subsets.materialized.size).toBe(10)
    expect(status.subsets.missing.size).toBe(0)
  })

  it("caps partitions per run by each asset's backfillPolicy", async () => {
    await using store = await openStore(':memory:')
    const assets = [
      asset({
        key: 'events',
        partitions: days,
        backfillPolicy: { maxPartitionsPerRun: 3 },
        materialize: () => ({}),
      }),
    ]
    const graph = buildGraph(assets)
    expect((await requestBackfill(store, graph, { selection: 'events' }, NOW)).spec.perRun).toBe(3)
    expect((await requestBackfill(store, graph, { selection: 'events', perRun: 2 }, NOW)).spec.perRun).toBe(2)
    const capped = await requestBackfill(store, graph, { selection: 'events', perRun: 100 }, NOW)
    expect(capped.spec.perRun).toBe(3)
    expect((await advanceBackfill(store, graph, capped.id, NOW)).created).toHaveLength(4)
    await expect(requestBackfill(store, graph, { selection: 'events', perRun: 0 }, NOW)).rejects.toThrow(
      /--per-run 0/,
    )
  })

  it("waits for a run's status when its run:end event is in before it", async () => {
    await using store = await openStore(':memory:')
    const assets = [asset({ key: 'events', partitions: days, materialize: () => ({}) })]
    const graph = buildGraph(assets)
    const b = await requestBackfill(store, graph, { selection: 'events', partitions: ['2026-01-02'] }, NOW)
    const [runId] = (await advanceBackfill(store, graph, b.id, NOW)).created
    const { hostname } = await import('node:os')
    await store.claimQueuedRun(runId!, { pid: process.pid, host: hostname() }, NOW)
    // the executor's run:end is committed, the run's status not yet
    await store.write({
      events: [
        {
          type: 'run:end',
          runId: runId!,
          ts: NOW,
          status: 'success',
          durationMs: 1,
          succeeded: 1,
          failed: 0,
          skipped: 0,
          canceled: 0,
        },
      ],
      steps: [],
      attempts: [],
      materializations: [],
    })
    const between = await advanceBackfill(store, graph, b.id, NOW)
    expect(between.backfill.status).toBe('requested')
    expect(backfillProgress(between.backfill.state).failed.size).toBe(0)
    await store.finishRun(runId!, 'success', NOW)
    const after = await advanceBackfill(store, graph, b.id, NOW)
    expect(after.backfill.status).toBe('completed')
  })

  it('tells its partitions in flight apart, running and queued, a run of several counting each (backfillActivity)', async () => {
    await using store = await openStore(':memory:')
    const assets = [asset({ key: 'events', partitions: days, materialize: () => ({}) })]
    const graph = buildGraph(assets)
    const b = await requestBackfill(store, graph, { selection: 'events', perRun: 3, maxRuns: 2 }, NOW)
    const { created } = await advanceBackfill(store, graph, b.id, NOW)
    expect(created).toHaveLength(2)
    let backfill = (await store.getBackfill(b.id))!
    expect(await backfillActivity(store, graph, backfill, NOW)).toEqual({
      running: 0,
      queued: 6,
      recent: [
        expect.objectContaining({ partitionKey: '2026-01-04...2026-01-06', status: 'queued' }),
        expect.objectContaining({ partitionKey: '2026-01-01...2026-01-03', status: 'queued' }),
      ],
    })
    // the first run's process claims it: its 3 partitions are running
    const first = (await store.listRuns({ status: ['queued'] })).find((r) =>
      r.partitionKey?.startsWith('2026-01-01'),
    )!
    expect(await store.claimQueuedRun(first.id, { pid: process.pid, host: 'h' }, NOW)).toBe(true)
    backfill = (await store.getBackfill(b.id))!
    const activity = await backfillActivity(store, graph, backfill, NOW, 1)
    expect(activity).toMatchObject({ running: 3, queued: 3 })
    expect(activity.recent).toHaveLength(1)
    // the runs of another backfill are neither counted nor listed
    const other = await requestBackfill(
      store,
      graph,
      { selection: 'events', partitions: ['2026-01-10'] },
      NOW,
    )
    expect((await advanceBackfill(store, graph, other.id, NOW)).created).toHaveLength(1)
    const later = await backfillActivity(store, graph, backfill, NOW)
    expect(later).toMatchObject({ running: 3, queued: 3 })
    const ours = new Set(
      (await store.listRuns()).filter((r) => r.tags[BACKFILL_TAG] === b.id).map((r) => r.id),
    )
    expect(later.recent.map((r) => ours.has(r.runId))).toEqual([true, true])
  })

  it('cancel dequeues its queued runs and ends canceled', async () => {
    await using store = await openStore(':memory:')
    const assets = [asset({ key: 'events', partitions: days, materialize: () => ({}) })]
    const graph = buildGraph(assets)
    const b = await requestBackfill(store, graph, { selection: 'events', maxRuns: 4 }, NOW)
    expect((await advanceBackfill(store, graph, b.id, NOW)).created).toHaveLength(4)
    expect((await cancelBackfill(store, b.id.slice(0, 10), NOW)).status).toBe('canceling')
    expect(await store.listRuns({ status: ['queued'] })).toEqual([])
    const ended = await advanceBackfill(store, graph, b.id, NOW)
    expect(ended.backfill.status).toBe('canceled')
    const p = backfillProgress(ended.backfill.state)
    expect([p.succeeded.size, p.failed.size, p.skipped.size]).toEqual([0, 4, 6])
    expect((await store.listRuns({ status: ['canceled'] })).length).toBe(4)
  })

  it('two drivers at once create each run once', async () => {
    await using store = await openStore(':memory:')
    const assets = [asset({ key: 'events', partitions: days, materialize: () => ({}) })]
    const graph = buildGraph(assets)
    const b = await requestBackfill(store, graph, { selection: 'events' }, NOW)
    await Promise.all([advanceBackfill(store, graph, b.id, NOW), advanceBackfill(store, graph, b.id, NOW)])
    const runs = await store.listRuns()
    expect(runs.length).toBe(10)
    expect(new Set(runs.map((r) => r.partitionKey)).size).toBe(10)
  })

  it('refuses unpartitioned assets, bad keys and an empty target before recording anything', async () => {
    await using store = await openStore(':memory:')
    const assets = [
      asset({ key: 'events', partitions: days, materialize: () => ({}) }),
      asset({ key: 'report', deps: ['events'], materialize: () => ({}) }),
    ]
    const graph = buildGraph(assets)
    await expect(requestBackfill(store, graph, { selection: 'events+' }, NOW)).rejects.toThrow(
      /`report` is not partitioned/,
    )
    await expect(
      requestBackfill(store, graph, { selection: 'events', from: '2026-01-05', to: '2026-01-02' }, NOW),
    ).rejects.toThrow(/comes before `2026-01-05`/)
    await expect(
      requestBackfill(store, graph, { selection: 'events', from: '2026-01-05' }, NOW),
    ).rejects.toThrow(/both --from and --to/)
    await expect(
      requestBackfill(store, graph, { selection: 'events', partitions: ['2026-02-30'] }, NOW),
    ).rejects.toThrow(/2026-02-30/)
    expect(await store.listBackfills()).toEqual([])
  })
})
