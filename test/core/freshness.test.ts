import { describe, expect, it } from 'vitest'
import { formatFreshness, freshnessJson } from '../../cli/format.js'
import { ManualClock } from '../../core/clock.js'
import { asset } from '../../core/definitions.js'
import { ConfigError } from '../../core/errors.js'
import { assetFreshness, duePartition, freshnessOf } from '../../core/freshness.js'
import { materialize } from '../../core/materialize.js'
import { staticPartitions } from '../../core/partitions/static.js'
import { dailyPartitions, hourlyPartitions } from '../../core/partitions/time.js'
import { openStore } from '../../core/store/open.js'
import type { MaterializationRecord } from '../../core/store/types.js'
import { noop } from '../helpers.js'

const HOUR = 3_600_000

function record(ts: number, extra: Partial<MaterializationRecord> = {}): MaterializationRecord {
  return { id: 7, asset: 'table', runId: 'r1', attempt: 1, ts, metadata: {}, partitionKey: null, ...extra }
}

describe('asset({ freshness })', () => {
  it('reads a duration string or milliseconds', () => {
    expect(noop('a', [], { freshness: { maxLag: '26h' } }).freshness).toEqual({
      maxLag: '26h',
      maxLagMs: 26 * HOUR,
    })
    expect(noop('b', [], { freshness: { maxLag: 90 * 60_000 } }).freshness).toEqual({
      maxLag: '90m',
      maxLagMs: 90 * 60_000,
    })
    expect(noop('c', [], { freshness: { maxLag: 1500 } }).freshness?.maxLag).toBe('1500ms')
    expect(noop('d').freshness).toBeUndefined()
  })

  it.each([
    [
      '26x',
      /asset `bad` freshness.maxLag "26x": expected a duration like 30d, 12h or 90m .*or a number of milliseconds above 0/,
    ],
    ['', /freshness.maxLag "": expected a duration/],
    ['0h', /freshness.maxLag "0h"/],
    [0, /freshness.maxLag 0: expected a duration/],
    [-5, /freshness.maxLag -5/],
    [1.5, /freshness.maxLag 1.5/],
    [true, /freshness.maxLag is a boolean: expected a duration/],
    [undefined, /freshness.maxLag is missing/],
  ])('refuses maxLag %j with a ConfigError naming the asset and the forms', (maxLag, message) => {
    const declare = () => asset({ key: 'bad', freshness: { maxLag } as never, materialize: () => ({}) })
    expect(declare).toThrow(ConfigError)
    expect(declare).toThrow(message)
  })

  it('refuses an unknown field of freshness', () => {
    expect(() => noop('bad', [], { freshness: { maxLag: '1h', maxAge: '2h' } as never })).toThrow(
      /asset `bad` is invalid: freshness: .*maxAge/,
    )
  })
})

describe('assetFreshness', () => {
  const policy = { maxLag: '26h', maxLagMs: 26 * HOUR }

  it('is fresh up to the lag, stale past it, missing before any materialization', () => {
    const m = record(1_000)
    expect(assetFreshness(policy, m, 1_000 + 26 * HOUR)).toMatchObject({
      status: 'fresh',
      ageMs: 26 * HOUR,
      staleAt: 1_000 + 26 * HOUR,
    })
    expect(assetFreshness(policy, m, 1_001 + 26 * HOUR)).toMatchObject({
      status: 'stale',
      staleSince: 1_000 + 26 * HOUR,
      materializationId: 7,
      runId: 'r1',
    })
    expect(assetFreshness(policy, undefined, 0)).toEqual({ status: 'missing', ...policy })
  })

  it('takes the latest materialization of any partition for an asset not partitioned by time', async () => {
    const latest = new Map([['daily', record(10 * HOUR, { asset: 'daily', partitionKey: '2026-01-01' })]])
    const store = {
      latestMaterializations: async () => latest,
      latestMaterialization: async () => undefined,
    }
    const states = await freshnessOf(
      store,
      [
        { key: 'daily', freshness: policy, partitions: staticPartitions(['2026-01-01', '2026-01-02']) },
        { key: 'plain', freshness: undefined },
      ],
      30 * HOUR,
    )
    expect([...states.keys()]).toEqual(['daily'])
    expect(states.get('daily')).toMatchObject({ status: 'fresh', partitionKey: '2026-01-01' })
  })
})

const at = (iso: string) => Date.parse(iso)

describe('duePartition (time partitions: the latest closed one whose window ended more than the lag ago)', () => {
  const TWO_HOURS = 2 * HOUR
  const days = dailyPartitions({ start: '2026-01-01' })

  it('is none before the first window closed and the lag passed, then the latest such', () => {
    expect(duePartition(days, TWO_HOURS, at('2026-01-01T12:00:00Z'))).toBeUndefined()
    // 2026-01-01 ended at 01-02 00:00: due strictly after 02:00
    expect(duePartition(days, TWO_HOURS, at('2026-01-02T02:00:00Z'))).toBeUndefined()
    expect(duePartition(days, TWO_HOURS, at('2026-01-02T02:00:00.001Z'))).toEqual({
      key: '2026-01-01',
      deadline: at('2026-01-02T02:00:00Z'),
      nextDeadline: at('2026-01-03T02:00:00Z'),
    })
    // 2026-01-02 has closed but is within its lag: 2026-01-01 is still the one due
    expect(duePartition(days, TWO_HOURS, at('2026-01-03T01:00:00Z'))?.key).toBe('2026-01-01')
    expect(duePartition(days, TWO_HOURS, at('2026-01-03T03:00:00Z'))?.key).toBe('2026-01-02')
    // a lag longer than a window: the due partition trails by more than one
    expect(duePartition(days, 50 * HOUR, at('2026-01-05T01:00:00Z'))?.key).toBe('2026-01-01')
  })

  it('respects endOffset, an end, and the timezone of the windows', () => {
    const late = dailyPartitions({ start: '2026-01-01', endOffset: -1 })
    // 2026-01-02 has closed and its lag passed, but with endOffset -1 it does not exist yet
    expect(duePartition(late, TWO_HOURS, at('2026-01-03T03:00:00Z'))).toEqual({
      key: '2026-01-01',
      deadline: at('2026-01-02T02:00:00Z'),
      nextDeadline: at('2026-01-04T00:00:00Z'),
    })
    // endOffset 1 makes the open partition exist, not closed: it is never the one due
    const early = dailyPartitions({ start: '2026-01-01', endOffset: 1 })
    expect(duePartition(early, TWO_HOURS, at('2026-01-03T03:00:00Z'))?.key).toBe('2026-01-02')
    const ended = dailyPartitions({ start: '2026-01-01', end: '2026-01-03' })
    expect(duePartition(ended, TWO_HOURS, at('2026-02-01T00:00:00Z'))).toEqual({
      key: '2026-01-02',
      deadline: at('2026-01-03T02:00:00Z'),
      nextDeadline: null,
    })
    // Paris days end at 23:00 UTC in winter
    const paris = dailyPartitions({ start: '2026-01-01', timezone: 'Europe/Paris' })
    expect(duePartition(paris, TWO_HOURS, at('2026-01-02T01:00:00.001Z'))?.key).toBe('2026-01-01')
    const hours = hourlyPartitions({ start: '2026-01-01-00:00' })
    expect(duePartition(hours, 30 * 60_000, at('2026-01-01T05:40:00Z'))?.key).toBe('2026-01-01-04:00')
  })
})

describe('freshnessOf: per partition for a time-partitioned asset (a real store, a manual clock)', () => {
  it('is stale naming the due partition until it is materialized, with one store read per asset', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(at('2026-01-01T00:00:00Z'))
    const daily = noop('daily', [], {
      partitions: dailyPartitions({ start: '2026-01-01' }),
      freshness: { maxLag: '2h' },
    })
    const reads: string[] = []
    const counted = {
      latestMaterializations: () => {
        reads.push('all')
        return store.latestMaterializations()
      },
      latestMaterialization: (asset: string, partition?: string) => {
        reads.push(`${asset}:${partition}`)
        return store.latestMaterialization(asset, partition)
      },
    }
    // nothing due yet, nothing materialized: today's rule (never materialized)
    expect((await freshnessOf(counted, [daily], clock.now())).get('daily')).toEqual({
      status: 'missing',
      maxLag: '2h',
      maxLagMs: 2 * HOUR,
    })
    expect(reads).toEqual(['all'])

    await clock.advance(26 * HOUR + 1)
    reads.length = 0
    expect((await freshnessOf(counted, [daily], clock.now())).get('daily')).toEqual({
      status: 'partition_missing',
      maxLag: '2h',
      maxLagMs: 2 * HOUR,
      partitionKey: '2026-01-01',
      staleSince: at('2026-01-02T02:00:00Z'),
    })
    expect(reads).toEqual(['daily:2026-01-01'])

    const run = await materialize([daily], { store, clock, partition: '2026-01-01' })
    expect(run.status).toBe('success')
    expect((await freshnessOf(counted, [daily], clock.now())).get('daily')).toMatchObject({
      status: 'fresh',
      partitionKey: '2026-01-01',
      runId: run.runId,
      staleAt: at('2026-01-03T02:00:00Z'),
    })

    // the next day falls due: stale again, naming it, although 2026-01-01 was materialized an hour ago
    await clock.advance(24 * HOUR)
    const next = (await freshnessOf(counted, [daily], clock.now())).get('daily')
    expect(next).toMatchObject({ status: 'partition_missing', partitionKey: '2026-01-02' })
    expect(formatFreshness(next!, clock.now())).toBe(
      'STALE for 1 ms: partition 2026-01-02 not materialized (max lag 2h)',
    )
    expect(freshnessJson(next!)).toMatchObject({
      status: 'stale',
      reason: 'partition_missing',
      partition: '2026-01-02',
    })
    // another partition materialized again does not stand for the due one
    await materialize([daily], { store, clock, partition: '2026-01-01' })
    expect((await freshnessOf(counted, [daily], clock.now())).get('daily')).toMatchObject({
      status: 'partition_missing',
      partitionKey: '2026-01-02',
    })
    // a day later 2026-01-03 is due: the period is that partition's, whatever became of 2026-01-02
    await clock.advance(24 * HOUR)
    expect((await freshnessOf(counted, [daily], clock.now())).get('daily')).toMatchObject({
      status: 'partition_missing',
      partitionKey: '2026-01-03',
    })
  })
})
