import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../core/errors.js'
import { PartitionKeyError } from '../../core/partitions/errors.js'
import {
  cronPartitions,
  dailyPartitions,
  hourlyPartitions,
  monthlyPartitions,
  weeklyPartitions,
} from '../../core/partitions/time.js'

const at = (iso: string) => ({ now: new Date(iso) })
const iso = (d: Date) => d.toISOString().replace('.000Z', 'Z')
const hours = (w: { start: Date; end: Date }) => (w.end.getTime() - w.start.getTime()) / 3_600_000

/** The error a call throws (fails the test when it throws none). */
function thrown(fn: () => unknown): Error {
  try {
    fn()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected an error, none was thrown')
}

describe('hourly partitions across daylight saving', () => {
  it('America/New_York fall back: the repeated hour has two keys, each with its offset', () => {
    const def = hourlyPartitions({ start: '2026-11-01', timezone: 'America/New_York' })
    const ctx = at('2026-11-01T10:00:00Z') // 05:00 EST
    expect(def.keys(ctx)).toEqual([
      '2026-11-01-00:00',
      '2026-11-01-01:00-04:00',
      '2026-11-01-01:00-05:00',
      '2026-11-01-02:00',
      '2026-11-01-03:00',
      '2026-11-01-04:00',
    ])
    expect(iso(def.partitionWindow('2026-11-01-01:00-04:00').start)).toBe('2026-11-01T05:00:00Z')
    expect(iso(def.partitionWindow('2026-11-01-01:00-05:00').start)).toBe('2026-11-01T06:00:00Z')
    expect(def.keys(ctx).map((k) => hours(def.partitionWindow(k)))).toEqual([1, 1, 1, 1, 1, 1])
  })

  it('America/New_York fall back: the plain key of the repeated hour is refused, naming both', () => {
    const def = hourlyPartitions({ start: '2026-11-01', timezone: 'America/New_York' })
    const error = thrown(() => def.indexOf('2026-11-01-01:00', at('2026-11-02T00:00:00Z')))
    expect(error).toBeInstanceOf(PartitionKeyError)
    expect(error.message).toContain('`2026-11-01-01:00` is ambiguous')
    expect((error as PartitionKeyError).nearest).toEqual(['2026-11-01-01:00-04:00', '2026-11-01-01:00-05:00'])
    // an offset on an hour that does not repeat is not a key either: one spelling per partition
    expect(thrown(() => def.indexOf('2026-11-01-03:00-05:00', at('2026-11-02T00:00:00Z'))).message).toContain(
      'carries an offset',
    )
  })

  it('America/New_York spring forward: the missing hour has no key', () => {
    const def = hourlyPartitions({ start: '2026-03-08', timezone: 'America/New_York' })
    const ctx = at('2026-03-08T09:00:00Z') // 05:00 EDT
    expect(def.keys(ctx)).toEqual([
      '2026-03-08-00:00',
      '2026-03-08-01:00',
      '2026-03-08-03:00',
      '2026-03-08-04:00',
    ])
    const error = thrown(() => def.indexOf('2026-03-08-02:00', ctx)) as PartitionKeyError
    expect(error.message).toContain('does not exist in America/New_York')
    expect(error.nearest).toEqual(['2026-03-08-03:00'])
  })

  it('Europe/Berlin: fall back repeats 02:00 (+02:00 then +01:00), spring forward skips 02:00', () => {
    const autumn = hourlyPartitions({ start: '2026-10-25-01:00', timezone: 'Europe/Berlin' })
    expect(autumn.keys(at('2026-10-25T02:00:00Z'))).toEqual([
      '2026-10-25-01:00',
      '2026-10-25-02:00+02:00',
      '2026-10-25-02:00+01:00',
    ])
    const spring = hourlyPartitions({ start: '2026-03-29', timezone: 'Europe/Berlin' })
    expect(spring.keys(at('2026-03-29T02:00:00Z'))).toEqual([
      '2026-03-29-00:00',
      '2026-03-29-01:00',
      '2026-03-29-03:00',
    ])
  })

  it('every key of a year round-trips (8760 keys, all distinct) in a DST zone', () => {
    const def = hourlyPartitions({ start: '2026-01-01', timezone: 'America/New_York' })
    const ctx = at('2027-01-01T05:00:00Z')
    const keys = def.keys(ctx)
    expect(keys).toHaveLength(8760)
    expect(new Set(keys).size).toBe(8760)
    keys.forEach((key, i) => {
      expect(def.indexOf(key, ctx)).toBe(i)
    })
  })

  it('a zone half an hour off UTC has its hours on the local hour', () => {
    const def = hourlyPartitions({ start: '2026-01-01', timezone: 'Asia/Kolkata' })
    expect(def.keys(at('2025-12-31T21:30:00Z'))).toEqual([
      '2026-01-01-00:00',
      '2026-01-01-01:00',
      '2026-01-01-02:00',
    ])
    expect(iso(def.partitionWindow('2026-01-01-00:00').start)).toBe('2025-12-31T18:30:00Z')
  })

  it('index 999,999 (a century on) is arithmetic and round-trips', () => {
    const def = hourlyPartitions({ start: '2000-01-01', timezone: 'Europe/Berlin' })
    const ctx = at('2200-01-01T00:00:00Z')
    const key = def.keyAt(999_999, ctx)
    expect(key).toBe('2114-01-29-15:00') // 2114-01-29T14:00Z, CET
    expect(def.indexOf(key, ctx)).toBe(999_999)
  })
})

describe('daily, weekly and monthly partitions', () => {
  it('daily windows are local days: 23 h when clocks spring forward, 25 h when they fall back', () => {
    const def = dailyPartitions({ start: '2026-03-07', timezone: 'America/New_York' })
    expect(iso(def.partitionWindow('2026-03-07').start)).toBe('2026-03-07T05:00:00Z')
    expect(hours(def.partitionWindow('2026-03-07'))).toBe(24)
    expect(hours(def.partitionWindow('2026-03-08'))).toBe(23)
    expect(hours(def.partitionWindow('2026-11-01'))).toBe(25)
    const berlin = dailyPartitions({ start: '2026-01-01', timezone: 'Europe/Berlin' })
    expect(hours(berlin.partitionWindow('2026-03-29'))).toBe(23)
    expect(hours(berlin.partitionWindow('2026-10-25'))).toBe(25)
    expect(iso(berlin.partitionWindow('2026-10-25').end)).toBe('2026-10-25T23:00:00Z')
  })

  it('a partition exists once it has closed (endOffset 0), one more with endOffset 1', () => {
    const opts = { start: '2026-01-01', timezone: 'UTC' }
    const ctx = at('2026-01-04T12:00:00Z')
    expect(dailyPartitions(opts).keys(ctx)).toEqual(['2026-01-01', '2026-01-02', '2026-01-03'])
    expect(dailyPartitions({ ...opts, endOffset: 1 }).keys(ctx)).toEqual([
      '2026-01-01',
      '2026-01-02',
      '2026-01-03',
      '2026-01-04',
    ])
    expect(dailyPartitions({ ...opts, endOffset: -1 }).keys(ctx)).toEqual(['2026-01-01', '2026-01-02'])
    // before the start, even the partition in progress is not the first one
    expect(dailyPartitions({ ...opts, endOffset: 1 }).size(at('2025-12-30T12:00:00Z'))).toBe(0)
    expect(dailyPartitions({ ...opts, endOffset: 1 }).keys(at('2026-01-01T12:00:00Z'))).toEqual([
      '2026-01-01',
    ])
    // at exactly midnight the day before has just closed
    expect(dailyPartitions(opts).size(at('2026-01-04T00:00:00Z'))).toBe(3)
    expect(dailyPartitions(opts).size(at('2026-01-03T23:59:59Z'))).toBe(2)
  })

  it('end is exclusive and caps the partitions whatever the time', () => {
    const def = dailyPartitions({ start: '2026-01-01', end: '2026-01-10', endOffset: 5 })
    const ctx = at('2030-01-01T00:00:00Z')
    expect(def.size(ctx)).toBe(9)
    expect(def.keys(ctx).at(-1)).toBe('2026-01-09')
    expect(thrown(() => def.indexOf('2026-01-10', ctx)).message).toContain('past the end')
    expect(def.lastClosedPartition(new Date('2030-01-01T00:00:00Z'))).toBe('2026-01-09')
  })

  it('lastClosedPartition is the partition that just ended at now', () => {
    const def = dailyPartitions({ start: '2026-01-01', timezone: 'America/New_York', endOffset: 1 })
    expect(def.lastClosedPartition(new Date('2026-01-01T04:59:59Z'))).toBeUndefined()
    expect(def.lastClosedPartition(new Date('2026-01-02T04:59:59Z'))).toBeUndefined()
    expect(def.lastClosedPartition(new Date('2026-01-02T05:00:00Z'))).toBe('2026-01-01')
    expect(def.lastClosedPartition(Date.parse('2026-03-09T03:59:59Z'))).toBe('2026-03-07')
    expect(def.lastClosedPartition(Date.parse('2026-03-09T04:00:00Z'))).toBe('2026-03-08') // a 23-hour day
  })

  it('a start past midnight begins with the next day; a start that is no date is a ConfigError', () => {
    const def = dailyPartitions({ start: new Date('2026-01-01T00:00:01Z') })
    expect(def.keyAt(0, at('2026-02-01T00:00:00Z'))).toBe('2026-01-02')
    expect(() => dailyPartitions({ start: '2026-13-01' })).toThrow(ConfigError)
    expect(() => dailyPartitions({ start: '2026-01-01', timezone: 'Mars/Olympus' })).toThrow(
      /not an IANA timezone/,
    )
    expect(() => dailyPartitions({ start: '2026-01-02', end: '2026-01-01' })).toThrow(/must come after start/)
  })

  it('monthly partitions follow month lengths (leap February too) and start at a first day', () => {
    const def = monthlyPartitions({ start: '2024-01-15' })
    const ctx = at('2026-04-01T00:00:00Z')
    const keys = def.keys(ctx)
    expect(keys.slice(0, 3)).toEqual(['2024-02-01', '2024-03-01', '2024-04-01'])
    expect(keys.at(-1)).toBe('2026-03-01')
    const days = (key: string) => hours(def.partitionWindow(key)) / 24
    expect([days('2024-02-01'), days('2025-02-01'), days('2025-04-01'), days('2025-12-01')]).toEqual([
      29, 28, 30, 31,
    ])
    const error = thrown(() => def.indexOf('2025-02-15', ctx)) as PartitionKeyError
    expect(error.message).toContain("not a month's first day")
    expect(error.nearest).toContain('2025-02-01')
    // in a DST zone, a month holds its local days: March in Berlin is 31 days less one hour
    const berlin = monthlyPartitions({ start: '2026-01-01', timezone: 'Europe/Berlin' })
    expect(hours(berlin.partitionWindow('2026-03-01'))).toBe(31 * 24 - 1)
    expect(berlin.indexOf('2026-04-01', at('2026-06-01T00:00:00Z'))).toBe(3)
  })

  it('weekly partitions start on Sunday, or on weekStartsOn', () => {
    const sunday = weeklyPartitions({ start: '2026-01-01' }) // a Thursday
    const ctx = at('2026-02-01T00:00:00Z')
    expect(sunday.keys(ctx)).toEqual(['2026-01-04', '2026-01-11', '2026-01-18', '2026-01-25'])
    expect(hours(sunday.partitionWindow('2026-01-04'))).toBe(7 * 24)
    const monday = weeklyPartitions({ start: '2026-01-01', weekStartsOn: 1 })
    expect(monday.keys(ctx)).toEqual(['2026-01-05', '2026-01-12', '2026-01-19'])
    const error = thrown(() => sunday.indexOf('2026-01-12', ctx))
    expect(error.message).toContain('is not a Sunday')
    expect((error as PartitionKeyError).nearest).toEqual(['2026-01-04', '2026-01-11', '2026-01-18'])
  })

  it('keysBetween lists a backfill range; a reversed or unknown key is refused with a clear message', () => {
    const def = dailyPartitions({ start: '2026-01-01' })
    const ctx = at('2026-03-01T00:00:00Z')
    expect(def.keysBetween('2026-01-30', '2026-02-02', ctx)).toEqual([
      '2026-01-30',
      '2026-01-31',
      '2026-02-01',
      '2026-02-02',
    ])
    expect(def.subsetBetween('2026-01-30', '2026-02-02', ctx).size).toBe(4)
    expect(thrown(() => def.keysBetween('2026-02-02', '2026-01-30', ctx)).message).toContain(
      'comes before `2026-02-02`',
    )
    const bad = thrown(() => def.keysBetween('2026/01/30', '2026-02-02', ctx))
    expect(bad.message).toBe(
      'partition key `2026/01/30` is not a date written `YYYY-MM-DD`: keys of daily partitions from 2026-01-01 (UTC) are written `YYYY-MM-DD`.',
    )
    const early = thrown(() => def.indexOf('2025-12-31', ctx)) as PartitionKeyError
    expect(early.message).toContain('is before the first')
    expect(early.nearest).toEqual(['2026-01-01'])
    const future = thrown(() => def.indexOf('2026-03-01', ctx)) as PartitionKeyError
    expect(future.message).toContain('does not exist yet at 2026-03-01T00:00:00.000Z')
    expect(future.nearest).toEqual(['2026-02-28'])
  })

  it('ctx.partition of a time key holds the key and its window', () => {
    const def = dailyPartitions({ start: '2026-01-01', timezone: 'Europe/Berlin' })
    expect(def.partitionContext('2026-01-02', at('2026-02-01T00:00:00Z'))).toEqual({
      key: '2026-01-02',
      keys: {},
      window: { start: new Date('2026-01-01T23:00:00Z'), end: new Date('2026-01-02T23:00:00Z') },
    })
  })
})

describe('cron partitions', () => {
  it('windows run from tick to tick, with DST rules of schedules; keys round-trip', () => {
    const def = cronPartitions({ cron: '0 */6 * * *', start: '2026-03-07', timezone: 'America/New_York' })
    const ctx = at('2026-03-09T00:00:00Z')
    const keys = def.keys(ctx)
    expect(keys).toEqual([
      '2026-03-07-00:00',
      '2026-03-07-06:00',
      '2026-03-07-12:00',
      '2026-03-07-18:00',
      '2026-03-08-00:00',
      '2026-03-08-06:00',
      '2026-03-08-12:00',
    ])
    expect(hours(def.partitionWindow('2026-03-08-00:00'))).toBe(5) // 02:00 does not exist
    keys.forEach((key, i) => {
      expect(def.indexOf(key, ctx)).toBe(i)
    })
    const error = thrown(() => def.indexOf('2026-03-07-07:00', ctx)) as PartitionKeyError
    expect(error.message).toContain('is not a tick of cron `0 */6 * * *`')
    expect(error.nearest).toEqual(['2026-03-07-00:00', '2026-03-07-06:00', '2026-03-07-12:00'])
  })

  it('an expression firing only at midnight has date keys; offsets before the start work', () => {
    const def = cronPartitions({ cron: '0 0 * * 1,4', start: '2026-01-01', timezone: 'UTC' })
    const ctx = at('2026-01-20T00:00:00Z')
    expect(def.keys(ctx)).toEqual(['2026-01-01', '2026-01-05', '2026-01-08', '2026-01-12', '2026-01-15'])
    expect(hours(def.partitionWindow('2026-01-01'))).toBe(4 * 24)
    expect(iso(def.windowAt(-1).start)).toBe('2025-12-29T00:00:00Z')
    expect(def.indexAt(new Date('2025-12-30T00:00:00Z'))).toBe(-1)
    expect(def.indexAt(new Date('2026-01-06T00:00:00Z'))).toBe(1)
    expect(def.lastClosedPartition(new Date('2026-01-20T00:00:00Z'))).toBe('2026-01-15')
  })

  it('a fall-back repeated wall time gets its offset in a cron key too', () => {
    const def = cronPartitions({ cron: '30 * * * *', start: '2026-11-01', timezone: 'America/New_York' })
    const ctx = at('2026-11-01T08:30:00Z')
    expect(def.keys(ctx)).toEqual([
      '2026-11-01-00:30',
      '2026-11-01-01:30-04:00',
      '2026-11-01-01:30-05:00',
      '2026-11-01-02:30',
    ])
  })

  it('an invalid expression is a ConfigError', () => {
    expect(() => cronPartitions({ cron: 'every day', start: '2026-01-01' })).toThrow(ConfigError)
  })
})
