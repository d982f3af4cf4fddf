import { describe, expect, it } from 'vitest'
import { lastTicks, parseCron } from '../../sensors/cron.js'
import { scheduleTicks } from '../../sensors/definitions.js'

const iso = (dates: Date[]) => dates.map((d) => d.toISOString().replace('.000Z', 'Z'))
const ticks = (cron: string, timezone: string, after: string, count: number) =>
  iso(scheduleTicks(cron, { timezone, after: new Date(after), count }))

describe('schedule ticks across daylight saving', () => {
  // America/Chicago 2026: spring forward Mar 8 02:00 CST -> 03:00 CDT; fall back Nov 1 02:00 CDT -> 01:00 CST
  it('Chicago spring forward: a wall time in the gap fires once, at the first instant after it', () => {
    expect(ticks('30 2 * * *', 'America/Chicago', '2026-03-07T00:00:00Z', 3)).toEqual([
      '2026-03-07T08:30:00Z', // 02:30 CST
      '2026-03-08T08:00:00Z', // 02:30 does not exist: 03:00 CDT
      '2026-03-09T07:30:00Z', // 02:30 CDT
    ])
  })
  it('Chicago spring forward: several times in the gap still fire once', () => {
    expect(ticks('*/15 2 * * *', 'America/Chicago', '2026-03-08T00:00:00Z', 2)).toEqual([
      '2026-03-08T08:00:00Z',
      '2026-03-09T07:00:00Z',
    ])
  })
  it('Chicago fall back: a repeated fixed wall time fires once, at its first occurrence', () => {
    expect(ticks('30 1 * * *', 'America/Chicago', '2026-10-31T00:00:00Z', 3)).toEqual([
      '2026-10-31T06:30:00Z',
      '2026-11-01T06:30:00Z', // 01:30 CDT; not again at 01:30 CST
      '2026-11-02T07:30:00Z',
    ])
  })
  it('Chicago: a wildcard hour fires every real hour across both transitions', () => {
    expect(ticks('0 * * * *', 'America/Chicago', '2026-11-01T04:30:00Z', 5)).toEqual([
      '2026-11-01T05:00:00Z', // 00:00 CDT
      '2026-11-01T06:00:00Z', // 01:00 CDT
      '2026-11-01T07:00:00Z', // 01:00 CST
      '2026-11-01T08:00:00Z', // 02:00 CST
      '2026-11-01T09:00:00Z',
    ])
    expect(ticks('30 * * * *', 'America/Chicago', '2026-03-08T07:00:00Z', 3)).toEqual([
      '2026-03-08T07:30:00Z', // 01:30 CST
      '2026-03-08T08:30:00Z', // 03:30 CDT: the 02:xx hour does not exist
      '2026-03-08T09:30:00Z',
    ])
  })
  // Europe/London 2026: spring forward Mar 29 01:00 GMT -> 02:00 BST; fall back Oct 25 02:00 BST -> 01:00 GMT
  it('London spring forward and fall back', () => {
    expect(ticks('30 1 * * *', 'Europe/London', '2026-03-28T00:00:00Z', 3)).toEqual([
      '2026-03-28T01:30:00Z', // 01:30 GMT
      '2026-03-29T01:00:00Z', // 01:30 does not exist: 02:00 BST
      '2026-03-30T00:30:00Z', // 01:30 BST
    ])
    expect(ticks('30 1 * * *', 'Europe/London', '2026-10-24T00:00:00Z', 3)).toEqual([
      '2026-10-24T00:30:00Z',
      '2026-10-25T00:30:00Z', // first 01:30 (BST) only
      '2026-10-26T01:30:00Z',
    ])
    expect(ticks('0 3 * * *', 'Europe/London', '2026-03-28T12:00:00Z', 2)).toEqual([
      '2026-03-29T02:00:00Z',
      '2026-03-30T02:00:00Z',
    ])
  })
  it('handles day-of-week, day-of-month (either matches), last day of month, and macros', () => {
    expect(ticks('0 9 * * 1-5', 'UTC', '2026-11-20T10:00:00Z', 2)).toEqual([
      '2026-11-23T09:00:00Z',
      '2026-11-24T09:00:00Z',
    ])
    expect(ticks('0 0 1 * 0', 'UTC', '2026-11-27T00:00:00Z', 3)).toEqual([
      '2026-11-29T00:00:00Z', // Sunday
      '2026-12-01T00:00:00Z', // 1st
      '2026-12-06T00:00:00Z', // Sunday
    ])
    expect(ticks('0 0 L * *', 'UTC', '2027-02-01T00:00:00Z', 2)).toEqual([
      '2027-02-28T00:00:00Z',
      '2027-03-31T00:00:00Z',
    ])
    expect(ticks('@daily', 'Asia/Tokyo', '2026-11-23T00:00:00Z', 1)).toEqual(['2026-11-23T15:00:00Z'])
    expect(ticks('0 0 29 2 *', 'UTC', '2026-01-01T00:00:00Z', 1)).toEqual(['2028-02-29T00:00:00Z'])
  })
  it('finds the last ticks of a long window without walking all of it', () => {
    const spec = parseCron('* * * * *', 'UTC')
    const until = Date.parse('2026-11-23T12:00:30Z')
    const after = Date.parse('2026-01-01T00:00:00Z')
    expect(iso(lastTicks(spec, after, until, 2).map((t) => new Date(t)))).toEqual([
      '2026-11-23T11:59:00Z',
      '2026-11-23T12:00:00Z',
    ])
  })
  it('rejects bad expressions and timezones with a clear message', () => {
    expect(() => scheduleTicks('61 * * * *')).toThrow(/cron `61 \* \* \* \*` is invalid/)
    expect(() => scheduleTicks('0 3 * * *', { timezone: 'Mars/Olympus' })).toThrow(/not an IANA timezone/)
  })
})
