import { createRequire } from 'node:module'
import { ConfigError } from './errors.js'

/**
 * Cron ticks in an IANA timezone, with exact daylight-saving rules (cron-parser parses the
 * expression; the calendar walk is ours, because the rules below are the contract):
 * - a wall time that does not exist (spring forward) fires once, at the first instant that exists
 *   after it (the end of the gap);
 * - a fixed wall time that occurs twice (fall back) fires once, at its first occurrence;
 * - an expression whose hour field is a wildcard (`*`, `*\/n`) fires at every real hour: both
 *   occurrences of a repeated hour, and nothing for an hour that does not exist.
 */
export interface CronSpec {
  readonly expression: string
  readonly timezone: string
  readonly seconds: readonly number[]
  readonly minutes: readonly number[]
  readonly hours: readonly number[]
  readonly daysOfMonth: ReadonlyArray<number | 'L'>
  readonly months: ReadonlySet<number>
  readonly daysOfWeek: ReadonlySet<number>
  readonly domRestricted: boolean
  readonly dowRestricted: boolean
  readonly wildcardHour: boolean
}

type CronParser = typeof import('cron-parser').CronExpressionParser
let parser: CronParser | undefined

/** cron-parser (and luxon under it) cost ~50 ms to load: only configs with schedules pay it. */
function cronParser(): CronParser {
  parser ??= (createRequire(import.meta.url)('cron-parser') as typeof import('cron-parser'))
    .CronExpressionParser
  return parser
}

export function parseCron(expression: string, timezone: string): CronSpec {
  checkTimezone(timezone)
  let fields: ReturnType<CronParser['parse']>['fields']
  try {
    fields = cronParser().parse(expression, { tz: timezone }).fields
  } catch (cause) {
    throw new ConfigError(
      `cron \`${expression}\` is invalid: ${(cause as Error).message}. Write five fields (minute hour day month weekday), for example \`0 3 * * *\`.`,
      { cause },
    )
  }
  const parts = expression.trim().split(/\s+/)
  const hourField = parts.length === 6 ? parts[2] : parts.length === 5 ? parts[1] : undefined
  const numbers = (values: readonly unknown[], name: string): number[] =>
    values.map((v) => {
      if (typeof v !== 'number') {
        throw new ConfigError(
          `cron \`${expression}\`: \`${String(v)}\` in the ${name} field is not supported here.`,
        )
      }
      return v
    })
  const dom = fields.dayOfMonth.values.map((v) =>
    v === 'L' ? ('L' as const) : numbers([v], 'day-of-month')[0]!,
  )
  return {
    expression,
    timezone,
    seconds: numbers(fields.second.values, 'second'),
    minutes: numbers(fields.minute.values, 'minute'),
    hours: numbers(fields.hour.values, 'hour'),
    daysOfMonth: dom,
    months: new Set(numbers(fields.month.values, 'month')),
    daysOfWeek: new Set(numbers(fields.dayOfWeek.values, 'day-of-week').map((d) => d % 7)),
    domRestricted: !fields.dayOfMonth.isWildcard,
    dowRestricted: !fields.dayOfWeek.isWildcard,
    // macros like @daily have no text fields: their hour is fixed
    wildcardHour: hourField?.startsWith('*') === true,
  }
}

export function checkTimezone(timezone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone })
  } catch {
    throw new ConfigError(
      `timezone \`${timezone}\` is not an IANA timezone; write one like \`UTC\` or \`America/Chicago\`.`,
    )
  }
}

/** Tick instants (ms) in `(after, until]`, ascending, at most `limit` of them. */
export function ticksBetween(
  spec: CronSpec,
  after: number,
  until: number,
  limit = Number.POSITIVE_INFINITY,
): number[] {
  const out: number[] = []
  const tz = spec.timezone
  // walk local calendar days from the day of `after` (a day early, for offsets) to the day of `until`
  let day = localDate(after - DAY, tz)
  const last = localDate(until + DAY, tz)
  while (compareDate(day, last) <= 0 && out.length < limit) {
    if (matchesDay(spec, day)) {
      const instants = new Set<number>()
      // the local day's instants lie within [midnight - 14 h, midnight + 36 h] whatever the zone;
      // one offset at both ends means no transition that day (they are months apart): no checks
      const midnight = Date.UTC(day.y, day.m - 1, day.d)
      const offset = offsetAt(midnight - 14 * HOUR, tz)
      const uniform = offset === offsetAt(midnight + 36 * HOUR, tz)
      for (const hour of spec.hours) {
        for (const minute of spec.minutes) {
          for (const second of spec.seconds) {
            if (uniform) instants.add(midnight + ((hour * 60 + minute) * 60 + second) * 1000 - offset)
            else for (const t of wallToInstants(day, hour, minute, second, spec, tz)) instants.add(t)
          }
        }
      }
      for (const t of [...instants].sort((a, b) => a - b)) {
        if (t > after && t <= until) {
          out.push(t)
          if (out.length >= limit) break
        }
      }
    }
    day = nextDate(day)
  }
  return out
}

/** The next `count` ticks after `after`. */
export function nextTicks(spec: CronSpec, after: number, count: number): number[] {
  const out: number[] = []
  let from = after
  // a year at a time: any valid expression fires at least once in four years (Feb 29)
  for (let i = 0; i < 8 && out.length < count; i++) {
    const until = from + 366 * DAY
    out.push(...ticksBetween(spec, from, until, count - out.length))
    from = until
  }
  return out
}

/**
 * The last `count` ticks in `(after, until]`, ascending. Searches back in growing windows, so a
 * minutely schedule switched back on after months costs no more than a few days of ticks.
 */
export function lastTicks(spec: CronSpec, after: number, until: number, count: number): number[] {
  if (until <= after || count <= 0) return []
  for (let window = HOUR; ; window *= 8) {
    const from = Math.max(after, until - window)
    const ticks = ticksBetween(spec, from, until)
    if (ticks.length >= count || from === after) return ticks.slice(-count)
  }
}

const HOUR = 3_600_000
const DAY = 24 * HOUR

interface LocalDate {
  y: number
  m: number
  d: number
}

function matchesDay(spec: CronSpec, day: LocalDate): boolean {
  if (!spec.months.has(day.m)) return false
  const lastDay = new Date(Date.UTC(day.y, day.m, 0)).getUTCDate()
  const domMatch = spec.daysOfMonth.some((v) => (v === 'L' ? day.d === lastDay : v === day.d))
  const dowMatch = spec.daysOfWeek.has(new Date(Date.UTC(day.y, day.m - 1, day.d)).getUTCDay())
  // cron: with both fields restricted, either may match; otherwise the restricted one decides
  if (spec.domRestricted && spec.dowRestricted) return domMatch || dowMatch
  if (spec.domRestricted) return domMatch
  if (spec.dowRestricted) return dowMatch
  return true
}

/** The instants at which a wall time occurs in `tz`, under the rules above. */
function wallToInstants(
  day: LocalDate,
  hour: number,
  minute: number,
  second: number,
  spec: CronSpec,
  tz: string,
): number[] {
  const wall = Date.UTC(day.y, day.m - 1, day.d, hour, minute, second)
  const candidates = new Set([offsetAt(wall - DAY, tz), offsetAt(wall + DAY, tz), offsetAt(wall, tz)])
  const valid = [...candidates]
    .map((offset) => wall - offset)
    .filter((t) => offsetAt(t, tz) === wall - t)
    .sort((a, b) => a - b)
  if (valid.length === 0) {
    // in a spring-forward gap: a fixed time fires at the gap's end; a wildcard hour just does not exist
    return spec.wildcardHour ? [] : [gapEnd(wall, tz)]
  }
  return spec.wildcardHour ? valid : [valid[0]!]
}

/** The instant a gap containing the wall time ends (the transition), found by bisection. */
function gapEnd(wall: number, tz: string): number {
  const before = offsetAt(wall - DAY, tz)
  // bisect whole seconds: transitions happen on a second
  let lo = Math.floor((wall - before - DAY) / 1000) // surely before the transition
  let hi = Math.ceil((wall - before + DAY) / 1000) // surely after
  const start = offsetAt(lo * 1000, tz)
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if (offsetAt(mid * 1000, tz) === start) lo = mid
    else hi = mid
  }
  return hi * 1000
}

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
    formatters.set(tz, f)
  }
  return f
}

function parts(t: number, tz: string): { y: number; m: number; d: number; h: number; mi: number; s: number } {
  const out: Record<string, number> = {}
  for (const p of formatter(tz).formatToParts(t)) if (p.type !== 'literal') out[p.type] = Number(p.value)
  return { y: out.year!, m: out.month!, d: out.day!, h: out.hour!, mi: out.minute!, s: out.second! }
}

/** The zone's offset from UTC at an instant, in ms (local = utc + offset). */
function offsetAt(t: number, tz: string): number {
  const p = parts(t, tz)
  const seconds = Math.floor(t / 1000) * 1000
  return Date.UTC(p.y, p.m - 1, p.d, p.h, p.mi, p.s) - seconds
}

function localDate(t: number, tz: string): LocalDate {
  const p = parts(t, tz)
  return { y: p.y, m: p.m, d: p.d }
}

function nextDate(day: LocalDate): LocalDate {
  const next = new Date(Date.UTC(day.y, day.m - 1, day.d + 1))
  return { y: next.getUTCFullYear(), m: next.getUTCMonth() + 1, d: next.getUTCDate() }
}

function compareDate(a: LocalDate, b: LocalDate): number {
  return a.y - b.y || a.m - b.m || a.d - b.d
}
