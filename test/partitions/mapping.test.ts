import { describe, expect, it } from 'vitest'
import { asset } from '../../core/definitions.js'
import { ConfigError } from '../../core/errors.js'
import { AssetGraph } from '../../core/graph.js'
import type { PartitionsContext, PartitionsDefinition } from '../../core/partitions/definitions.js'
import {
  allPartitionsMapping,
  identityMapping,
  lastPartitionMapping,
  multiPartitionMapping,
  multiToSingleDimensionMapping,
  type PartitionMapping,
  resolvePartitionMapping,
  staticMapping,
  timeWindowMapping,
} from '../../core/partitions/mapping.js'
import { multiPartitions } from '../../core/partitions/multi.js'
import { dynamicPartitions, staticPartitions } from '../../core/partitions/static.js'
import { PartitionSubset } from '../../core/partitions/subset.js'
import { dailyPartitions, hourlyPartitions } from '../../core/partitions/time.js'

const ctx: PartitionsContext = { now: new Date('2026-02-01T00:00:00Z') }

/** The dep's keys that these keys of the asset need. */
function upstream(
  m: PartitionMapping,
  down: PartitionsDefinition | undefined,
  up: PartitionsDefinition | undefined,
  keys: string[] | 'unpartitioned',
  c = ctx,
): string[] {
  const subset = keys === 'unpartitioned' ? PartitionSubset.range(0, 1) : down!.subsetOf(keys, c)
  const out = m.upstreamFor(subset, down, up, c)
  return up ? up.keysOf(out, c) : out.isEmpty ? [] : ['(unpartitioned)']
}

/** The asset's keys that these keys of the dep affect. */
function downstream(
  m: PartitionMapping,
  up: PartitionsDefinition | undefined,
  down: PartitionsDefinition | undefined,
  keys: string[],
  c = ctx,
): string[] {
  const out = m.downstreamFor(up!.subsetOf(keys, c), up, down, c)
  return down ? down.keysOf(out, c) : out.isEmpty ? [] : ['(unpartitioned)']
}

function thrown(fn: () => unknown): Error {
  try {
    fn()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected an error, none was thrown')
}

function random(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const daily = dailyPartitions({ start: '2026-01-01' })
const region = staticPartitions(['us', 'eu', 'ap'])

describe('mappings between partitions', () => {
  it('identity: the same key; between days with different starts, the same day', () => {
    expect(upstream(identityMapping(), daily, daily, ['2026-01-05'])).toEqual(['2026-01-05'])
    const later = dailyPartitions({ start: '2026-01-10' })
    expect(upstream(identityMapping(), later, daily, ['2026-01-10', '2026-01-11'])).toEqual([
      '2026-01-10',
      '2026-01-11',
    ])
    expect(downstream(identityMapping(), daily, later, ['2026-01-05', '2026-01-12'])).toEqual(['2026-01-12'])
  })

  it('all partitions: an unpartitioned asset needs every partition, and any of them affects it', () => {
    expect(upstream(allPartitionsMapping(), undefined, daily, 'unpartitioned')).toHaveLength(31)
    expect(downstream(allPartitionsMapping(), daily, undefined, ['2026-01-03'])).toEqual(['(unpartitioned)'])
    expect(downstream(allPartitionsMapping(), daily, undefined, [])).toEqual([])
  })

  it('time window "yesterday": each day needs the day before; the first day needs nothing', () => {
    const yesterday = timeWindowMapping({ startOffset: -1, endOffset: -1 })
    expect(upstream(yesterday, daily, daily, ['2026-01-05', '2026-01-06', '2026-01-09'])).toEqual([
      '2026-01-04',
      '2026-01-05',
      '2026-01-08',
    ])
    expect(upstream(yesterday, daily, daily, ['2026-01-01'])).toEqual([])
    expect(downstream(yesterday, daily, daily, ['2026-01-04'])).toEqual(['2026-01-05'])
    // the last day's successor does not exist yet: nothing
    expect(downstream(yesterday, daily, daily, ['2026-01-31'])).toEqual([])
    const window = timeWindowMapping({ startOffset: -2, endOffset: 0 })
    expect(upstream(window, daily, daily, ['2026-01-05'])).toEqual(['2026-01-03', '2026-01-04', '2026-01-05'])
    expect(downstream(window, daily, daily, ['2026-01-05'])).toEqual([
      '2026-01-05',
      '2026-01-06',
      '2026-01-07',
    ])
    expect(() => timeWindowMapping({ startOffset: 0, endOffset: -1 })).toThrow(ConfigError)
  })

  it('time window between cadences: a New York day needs its 23 hours on the spring-forward day', () => {
    const tz = 'America/New_York'
    const days = dailyPartitions({ start: '2026-03-07', timezone: tz })
    const hourly = hourlyPartitions({ start: '2026-03-07', timezone: tz })
    const c = { now: new Date('2026-03-11T00:00:00Z') }
    const needed = upstream(timeWindowMapping(), days, hourly, ['2026-03-08'], c)
    expect(needed).toHaveLength(23)
    expect(needed[0]).toBe('2026-03-08-00:00')
    expect(needed[2]).toBe('2026-03-08-03:00')
    expect(
      downstream(timeWindowMapping(), hourly, days, ['2026-03-08-23:00', '2026-03-09-00:00'], c),
    ).toEqual(['2026-03-08', '2026-03-09'])
  })

  it('time window with offsets agrees with overlapping windows checked one by one', () => {
    const down = dailyPartitions({ start: '2026-01-03', timezone: 'Europe/Berlin' })
    const up = hourlyPartitions({ start: '2026-01-01', timezone: 'Europe/Berlin' })
    const m = timeWindowMapping({ startOffset: -1, endOffset: 0 })
    const c = { now: new Date('2026-01-20T00:00:00Z') }
    const next = random(3)
    const upKeys = up.keys(c)
    for (let round = 0; round < 20; round++) {
      const chosen = down.keys(c).filter(() => next() < 0.3)
      const expected = new Set<string>()
      for (const key of chosen) {
        const i = down.indexOf(key, c)
        const from = down.windowAt(i - 1).start.getTime()
        const until = down.windowAt(i).end.getTime()
        for (const u of upKeys) {
          const w = up.partitionWindow(u)
          if (w.start.getTime() < until && w.end.getTime() > from) expected.add(u)
        }
      }
      expect(upstream(m, down, up, chosen, c)).toEqual(upKeys.filter((k) => expected.has(k)))
    }
  })

  it('last partition: every partition of the asset needs the dep last one', () => {
    expect(upstream(lastPartitionMapping(), region, daily, ['us', 'eu'])).toEqual(['2026-01-31'])
    expect(downstream(lastPartitionMapping(), daily, region, ['2026-01-31'])).toEqual(['us', 'eu', 'ap'])
    expect(downstream(lastPartitionMapping(), daily, region, ['2026-01-30'])).toEqual([])
  })

  it('static mapping: upstream key -> downstream keys, both ways', () => {
    const continents = staticPartitions(['americas', 'europe-asia'])
    const m = staticMapping({ us: 'americas', eu: 'europe-asia', ap: 'europe-asia' })
    expect(upstream(m, continents, region, ['europe-asia'])).toEqual(['eu', 'ap'])
    expect(downstream(m, region, continents, ['us'])).toEqual(['americas'])
    expect(m.check(continents, region)).toBeUndefined()
    expect(staticMapping({ uk: 'europe-asia' }).check(continents, region)).toContain(
      'the dep has no partition `uk`',
    )
  })

  it('multi to one dimension: a multi partition needs its day; a day affects every region of it', () => {
    const multi = multiPartitions({ date: daily, region })
    const m = multiToSingleDimensionMapping({ dimension: 'date' })
    expect(upstream(m, multi, daily, ['2026-01-02|eu', '2026-01-02|ap', '2026-01-07|us'])).toEqual([
      '2026-01-02',
      '2026-01-07',
    ])
    expect(downstream(m, daily, multi, ['2026-01-02'])).toEqual([
      '2026-01-02|us',
      '2026-01-02|eu',
      '2026-01-02|ap',
    ])
    // and the other way round: a daily asset on a multi dep needs every region of its day
    expect(upstream(m, daily, multi, ['2026-01-03'])).toEqual([
      '2026-01-03|us',
      '2026-01-03|eu',
      '2026-01-03|ap',
    ])
    expect(downstream(m, multi, daily, ['2026-01-03|eu'])).toEqual(['2026-01-03'])
    // on the static dimension
    const byRegion = multiToSingleDimensionMapping({ dimension: 'region' })
    expect(downstream(byRegion, region, multi, ['eu'])).toHaveLength(31)
    expect(upstream(byRegion, multi, region, ['2026-01-05|ap', '2026-01-09|us'])).toEqual(['us', 'ap'])
  })

  it('per dimension on three dimensions: yesterday on the date, identity on the others', () => {
    const shard = staticPartitions(['0', '1'])
    const multi = multiPartitions({ region, date: daily, shard })
    const m = multiPartitionMapping({ date: timeWindowMapping({ startOffset: -1, endOffset: -1 }) })
    expect(m.check(multi, multi)).toBeUndefined()
    expect(upstream(m, multi, multi, ['eu|2026-01-05|1', 'us|2026-01-01|0'])).toEqual(['eu|2026-01-04|1'])
    expect(downstream(m, multi, multi, ['ap|2026-01-10|0'])).toEqual(['ap|2026-01-11|0'])
    // a dimension of the dep that the asset lacks: every key of it
    const smaller = multiPartitions({ region, date: daily })
    expect(upstream(multiPartitionMapping(), smaller, multi, ['us|2026-01-03'])).toEqual([
      'us|2026-01-03|0',
      'us|2026-01-03|1',
    ])
  })

  it('range-based multi mappings agree with mapping partitions one at a time (random subsets)', () => {
    const shard = staticPartitions(['0', '1', '2'])
    const multi = multiPartitions({ region, date: daily, shard })
    const single = multiToSingleDimensionMapping({ dimension: 'date' })
    const perDim = multiPartitionMapping({ date: timeWindowMapping({ startOffset: -2, endOffset: 0 }) })
    const size = multi.size(ctx)
    const next = random(11)
    for (let round = 0; round < 20; round++) {
      const indices = [...Array(size).keys()].filter(() => next() < 0.2)
      const subset = PartitionSubset.fromIndices(indices)
      const oneByOne = (f: (s: PartitionSubset) => PartitionSubset) =>
        indices.reduce((acc, i) => acc.union(f(PartitionSubset.range(i, i + 1))), PartitionSubset.empty)
      for (const [m, up] of [
        [perDim, multi],
        [single, daily],
      ] as const) {
        const whole = m.upstreamFor(subset, multi, up, ctx)
        expect(whole.equals(oneByOne((s) => m.upstreamFor(s, multi, up, ctx)))).toBe(true)
        const back = m.downstreamFor(whole.intersect(PartitionSubset.range(0, 40)), up, multi, ctx)
        expect(
          back.equals(
            [...whole.intersect(PartitionSubset.range(0, 40)).indices()].reduce(
              (acc, i) => acc.union(m.downstreamFor(PartitionSubset.range(i, i + 1), up, multi, ctx)),
              PartitionSubset.empty,
            ),
          ),
        ).toBe(true)
      }
    }
  })

  it('a million hourly partitions map to their days through ranges, not key lists', () => {
    const start = '1990-01-01'
    const hourly = hourlyPartitions({ start })
    const days = dailyPartitions({ start })
    const c = { now: new Date('2110-01-01T00:00:00Z') }
    // every hour of 1,000,000 but a gap of one hour every ~1000
    let hours = PartitionSubset.all(1_000_000)
    for (let i = 500; i < 1_000_000; i += 1009) hours = hours.remove(i)
    const needed = timeWindowMapping().downstreamFor(hours, hourly, days, c)
    // 1,000,000 hours = 41,666 days and 16 hours: every day touched
    expect(needed.equals(PartitionSubset.all(41_667))).toBe(true)
    const back = timeWindowMapping().upstreamFor(PartitionSubset.range(10, 12), days, hourly, c)
    expect(back.equals(PartitionSubset.range(240, 288))).toBe(true)
  })
})

describe('mappings checked when the graph is built', () => {
  const noop = () => undefined
  const build = (...assets: Parameters<typeof asset>[0][]) => AssetGraph.build(assets.map((a) => asset(a)))

  it('defaults: identity, time windows, all partitions for an unpartitioned asset, the one matching dimension', () => {
    const multi = multiPartitions({ date: daily, region })
    const graph = build(
      { key: 'raw', partitions: daily, materialize: noop },
      { key: 'hourly_raw', partitions: hourlyPartitions({ start: '2026-01-01' }), materialize: noop },
      { key: 'clean', deps: ['raw', 'hourly_raw'], partitions: daily, materialize: noop },
      { key: 'by_region', deps: ['clean'], partitions: multi, materialize: noop },
      { key: 'report', deps: ['by_region'], materialize: noop },
    )
    expect(graph.partitionMapping('clean', 'raw')?.kind).toBe('identity')
    expect(graph.partitionMapping('clean', 'hourly_raw')?.kind).toBe('time-window')
    expect(graph.partitionMapping('by_region', 'clean')?.describe()).toBe(
      "multiToSingleDimensionMapping({ dimension: 'date' })",
    )
    expect(graph.partitionMapping('report', 'by_region')?.kind).toBe('all')
  })

  it('partitions that no default relates: a ConfigError naming both assets and the fix', () => {
    const error = thrown(() =>
      build(
        { key: 'regions', partitions: region, materialize: noop },
        { key: 'daily_report', deps: ['regions'], partitions: daily, materialize: noop },
      ),
    )
    expect(error).toBeInstanceOf(ConfigError)
    expect(error.message).toContain(
      'asset `daily_report` (daily partitions from 2026-01-01 (UTC)) depends on `regions`',
    )
    expect(error.message).toContain("partitionMappings: { 'regions': ... }")
    // with an explicit mapping it builds
    expect(() =>
      build(
        { key: 'regions', partitions: region, materialize: noop },
        {
          key: 'daily_report',
          deps: ['regions'],
          partitions: daily,
          partitionMappings: { regions: allPartitionsMapping() },
          materialize: noop,
        },
      ),
    ).not.toThrow()
  })

  it('a mapping to an unpartitioned dep, a wrong kind, an unknown dimension: ConfigErrors naming both', () => {
    const unpartitioned = thrown(() =>
      build(
        { key: 'catalog', materialize: noop },
        {
          key: 'daily',
          deps: ['catalog'],
          partitions: daily,
          partitionMappings: { catalog: lastPartitionMapping() },
          materialize: noop,
        },
      ),
    )
    expect(unpartitioned).toBeInstanceOf(ConfigError)
    expect(unpartitioned.message).toContain('depends on `catalog`, which is not partitioned')
    expect(unpartitioned.message).toContain('remove `catalog` from `daily`')

    const wrongKind = thrown(() =>
      build(
        { key: 'regions', partitions: region, materialize: noop },
        {
          key: 'days',
          deps: ['regions'],
          partitions: daily,
          partitionMappings: { regions: timeWindowMapping({ startOffset: -1, endOffset: -1 }) },
          materialize: noop,
        },
      ),
    )
    expect(wrongKind.message).toContain('asset `days`')
    expect(wrongKind.message).toContain('`regions`')
    expect(wrongKind.message).toContain('relates two time partitioned assets')

    const unknownDimension = thrown(() =>
      build(
        { key: 'days', partitions: daily, materialize: noop },
        {
          key: 'grid',
          deps: ['days'],
          partitions: multiPartitions({ date: daily, region }),
          partitionMappings: { days: multiToSingleDimensionMapping({ dimension: 'dat' }) },
          materialize: noop,
        },
      ),
    )
    expect(unknownDimension).toBeInstanceOf(ConfigError)
    expect(unknownDimension.message).toContain('asset `grid`')
    expect(unknownDimension.message).toContain('depends on `days`')
    expect(unknownDimension.message).toContain('no dimension `dat`. Did you mean `date`?')
  })

  it('a mapping for a key that is not a dep is refused by asset()', () => {
    expect(() =>
      asset({
        key: 'b',
        deps: ['a'],
        partitions: daily,
        partitionMappings: { aa: identityMapping() },
        materialize: noop,
      }),
    ).toThrow(/maps the partitions of `aa`, which is not one of its deps. Did you mean `a`\?/)
    expect(() =>
      // biome-ignore lint/suspicious/noExplicitAny: a wrong value, as a config file could hold
      asset({ key: 'b', partitions: { start: '2026-01-01' } as any, materialize: noop }),
    ).toThrow(/partitions: must be a partitions definition/)
  })

  it('resolvePartitionMapping: an unpartitioned dep needs none', () => {
    expect(
      resolvePartitionMapping(
        { key: 'b', partitions: daily },
        { key: 'a', partitions: undefined },
        undefined,
      ),
    ).toBe(undefined)
  })
})

describe('mappings with an inner mapping, dynamic partitions', () => {
  it('multi to one dimension with a time window: each date|region needs the day before', () => {
    const multi = multiPartitions({ date: daily, region })
    const m = multiToSingleDimensionMapping({
      dimension: 'date',
      mapping: timeWindowMapping({ startOffset: -1, endOffset: -1 }),
    })
    expect(m.check(multi, daily)).toBeUndefined()
    expect(upstream(m, multi, daily, ['2026-01-05|us', '2026-01-09|eu'])).toEqual([
      '2026-01-04',
      '2026-01-08',
    ])
    expect(downstream(m, daily, multi, ['2026-01-04'])).toEqual([
      '2026-01-05|us',
      '2026-01-05|eu',
      '2026-01-05|ap',
    ])
    // with the wrong partitions inside: the check says why
    expect(m.check(multi, region)).toContain('relates two time partitioned assets')
  })

  it('dynamic partitions of one name map by identity; static x dynamic multi partitions by dimension', () => {
    const customers = dynamicPartitions('customers')
    const c = { now: 0, dynamic: () => ['acme', 'globex', 'initech'] }
    expect(upstream(identityMapping(), customers, customers, ['globex'], c)).toEqual(['globex'])
    expect(identityMapping().check(customers, dynamicPartitions('vendors'))).toContain(
      'their partitions differ',
    )
    const multi = multiPartitions({ region, customer: customers })
    expect(multi.keys(c).slice(0, 4)).toEqual(['us|acme', 'eu|acme', 'ap|acme', 'us|globex'])
    const m = multiToSingleDimensionMapping({ dimension: 'customer' })
    expect(downstream(m, customers, multi, ['initech'], c)).toEqual([
      'us|initech',
      'eu|initech',
      'ap|initech',
    ])
  })
})
