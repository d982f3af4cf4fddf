import { describe, expect, it } from 'vitest'
import { asset } from '../../core/definitions.js'
import { ConfigError } from '../../core/errors.js'
import { assetFreshness, freshnessOf } from '../../core/freshness.js'
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

  it('takes the latest materialization of any partition for a partitioned asset', () => {
    const states = freshnessOf(
      [
        { key: 'daily', freshness: policy },
        { key: 'plain', freshness: undefined },
      ],
      new Map([['daily', record(10 * HOUR, { asset: 'daily', partitionKey: '2026-01-01' })]]),
      30 * HOUR,
    )
    expect([...states.keys()]).toEqual(['daily'])
    expect(states.get('daily')).toMatchObject({ status: 'fresh', partitionKey: '2026-01-01' })
  })
})
