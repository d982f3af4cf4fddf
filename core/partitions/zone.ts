import { checkTimezone } from '../cron.js'

export const SECOND = 1000
export const MINUTE = 60 * SECOND
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR

/**
 * A "wall" value is a local calendar time written as if it were UTC: `Date.UTC(y, m - 1, d, h, mi)`
 * of the clock on the wall in the zone. Calendar arithmetic (days, months) happens on walls;
 * a wall becomes an instant through the zone, which is where daylight saving is handled.
 */
export type Wall = number

/** Zones without offset changes: no need to look for any. */
const FIXED_ZONES: ReadonlySet<string> = new Set([
  'UTC',
  'Etc/UTC',
  'GMT',
  'Etc/GMT',
  'Etc/Universal',
  'Etc/Zulu',
])

interface YearOffsets {
  /** The offset (local = utc + offset, in ms) at the year's first instant (UTC). */
  readonly first: number
  /** Every offset change in the year: the instant it takes effect and the new offset. */
  readonly changes: ReadonlyArray<{ readonly at: number; readonly offset: number }>
}

/**
 * An IANA timezone's offsets, computed with `Intl.DateTimeFormat` once per UTC year and kept:
 * sampling every 6 hours finds each change, bisection finds its second. After that, an offset is
 * a lookup among the year's (usually two) changes, so converting millions of keys stays cheap.
 */
export class Zone {
  private static readonly zones = new Map<string, Zone>()
  private readonly years = new Map<number, YearOffsets>()
  private readonly format: Intl.DateTimeFormat

  readonly name: string

  private constructor(name: string) {
    this.name = name
    this.format = new Intl.DateTimeFormat('en-US', {
      timeZone: name,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
  }

  /** The zone named `name`; a `ConfigError` when it is not an IANA timezone. */
  static of(name: string): Zone {
    let zone = Zone.zones.get(name)
    if (!zone) {
      checkTimezone(name)
      zone = new Zone(name)
      Zone.zones.set(name, zone)
    }
    return zone
  }

  /** The offset from UTC at an instant, in ms (local = utc + offset). */
  offsetAt(t: number): number {
    const year = this.yearOffsets(new Date(t).getUTCFullYear())
    let offset = year.first
    for (const change of year.changes) {
      if (change.at > t) break
      offset = change.offset
    }
    return offset
  }

  /** The wall clock at an instant. */
  wallOf(t: number): Wall {
    return t + this.offsetAt(t)
  }

  /** The instants at which the wall clock shows `wall`, ascending: none in a gap, two in a repeat. */
  instantsOf(wall: Wall): number[] {
    const candidates = new Set([this.offsetAt(wall - DAY), this.offsetAt(wall), this.offsetAt(wall + DAY)])
    return [...candidates]
      .map((offset) => wall - offset)
      .filter((t) => this.offsetAt(t) === wall - t)
      .sort((a, b) => a - b)
  }

  /**
   * The first instant at which the wall clock shows `wall` or later: the wall time itself (its
   * first occurrence when it repeats), or the end of the gap when clocks skip over it.
   */
  firstInstantFrom(wall: Wall): number {
    const instants = this.instantsOf(wall)
    if (instants.length > 0) return instants[0]!
    // in a gap: the wall is reached through the change that skips it
    const before = this.offsetAt(wall - DAY)
    const after = this.offsetAt(wall + DAY)
    return this.changeBetween(wall - after, wall - before) ?? wall - before
  }

  /** The first offset change in (a, b], if any. */
  private changeBetween(a: number, b: number): number | undefined {
    for (let y = new Date(a).getUTCFullYear(); y <= new Date(b).getUTCFullYear(); y++) {
      for (const change of this.yearOffsets(y).changes) if (change.at > a && change.at <= b) return change.at
    }
    return undefined
  }

  private yearOffsets(year: number): YearOffsets {
    let found = this.years.get(year)
    if (found) return found
    const start = Date.UTC(year, 0, 1)
    const end = Date.UTC(year + 1, 0, 1)
    const first = this.intlOffset(start)
    if (FIXED_ZONES.has(this.name)) {
      found = { first, changes: [] }
      this.years.set(year, found)
      return found
    }
    const changes: Array<{ at: number; offset: number }> = []
    let previous = first
    let at = start
    // no zone has changed its offset twice within 6 hours
    for (let t = start + 6 * HOUR; at < end; t += 6 * HOUR) {
      const probe = Math.min(t, end)
      const offset = this.intlOffset(probe)
      if (offset !== previous) {
        let lo = Math.floor(at / SECOND)
        let hi = Math.floor(probe / SECOND)
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2)
          if (this.intlOffset(mid * SECOND) === previous) lo = mid
          else hi = mid
        }
        changes.push({ at: hi * SECOND, offset })
        previous = offset
      }
      at = probe
    }
    // a change exactly at the year's end belongs to the next year
    found = { first, changes: changes.filter((c) => c.at < end) }
    this.years.set(year, found)
    return found
  }

  private intlOffset(t: number): number {
    const p: Record<string, number> = {}
    for (const part of this.format.formatToParts(t))
      if (part.type !== 'literal') p[part.type] = Number(part.value)
    const wall = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!)
    return wall - Math.floor(t / SECOND) * SECOND
  }
}

/** Fields of a wall value. */
export function wallFields(wall: Wall): {
  y: number
  m: number
  d: number
  h: number
  mi: number
  s: number
} {
  const date = new Date(wall)
  return {
    y: date.getUTCFullYear(),
    m: date.getUTCMonth() + 1,
    d: date.getUTCDate(),
    h: date.getUTCHours(),
    mi: date.getUTCMinutes(),
    s: date.getUTCSeconds(),
  }
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0')

/** `YYYY-MM-DD` of a wall value. */
export function formatDate(wall: Wall): string {
  const f = wallFields(wall)
  return `${pad(f.y, 4)}-${pad(f.m)}-${pad(f.d)}`
}

/** `YYYY-MM-DD-HH:mm`, with `:ss` when `seconds`. */
export function formatDateTime(wall: Wall, seconds = false): string {
  const f = wallFields(wall)
  return `${formatDate(wall)}-${pad(f.h)}:${pad(f.mi)}${seconds ? `:${pad(f.s)}` : ''}`
}

/** `+HH:MM` / `-HH:MM` of an offset in ms. */
export function formatOffset(offset: number): string {
  const sign = offset < 0 ? '-' : '+'
  const minutes = Math.round(Math.abs(offset) / MINUTE)
  return `${sign}${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`
}

/** A wall value from calendar fields (years 1000-9999), or undefined when they name no real date (2026-02-30). */
export function wallFrom(y: number, m: number, d: number, h = 0, mi = 0, s = 0): Wall | undefined {
  if (y < 1000 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59)
    return undefined
  const wall = Date.UTC(y, m - 1, d, h, mi, s)
  const f = wallFields(wall)
  return f.y === y && f.m === m && f.d === d ? wall : undefined
}
