import { type CronSpec, lastTicks, nextTicks, parseCron } from '../cron.js'
import { ConfigError } from '../errors.js'
import {
  type KeySpace,
  nowMs,
  type PartitionContext,
  PartitionsBase,
  type PartitionsContext,
  type TimeWindow,
} from './definitions.js'
import { PartitionKeyError } from './errors.js'
import {
  DAY,
  formatDate,
  formatDateTime,
  formatOffset,
  HOUR,
  type Wall,
  wallFields,
  wallFrom,
  Zone,
} from './zone.js'

/** Options of `hourlyPartitions`, `dailyPartitions`, `weeklyPartitions` and `monthlyPartitions`. */
export interface TimePartitionsOptions {
  /**
   * The first partition is the first one that starts at or after `start`: a Date (an instant), or
   * a local time in the timezone written `YYYY-MM-DD` or `YYYY-MM-DD-HH:mm`.
   */
  start: string | Date
  /** Exclusive: only partitions that start before `end` exist. Same forms as `start`. */
  end?: string | Date
  /** IANA timezone the partitions follow (days start at local midnight). Default `UTC`. */
  timezone?: string
  /**
   * Partitions past the last closed one: 0 (default) = the last partition is the last that has
   * ended at `now`; 1 = the one in progress exists too; -1 = the last closed one does not yet.
   */
  endOffset?: number
}

export interface WeeklyPartitionsOptions extends TimePartitionsOptions {
  /** The day weeks start on: 0 = Sunday (default, as Dagster) to 6 = Saturday. */
  weekStartsOn?: 0 | 1 | 2 | 3 | 4 | 5 | 6
}

export interface CronPartitionsOptions extends TimePartitionsOptions {
  /** Each tick starts a partition that ends at the next tick (five or six fields, as schedules). */
  cron: string
}

export type TimeCadence = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'cron'

/** A time partitions definition as declared: plain data (structured-cloneable to a worker thread). */
export type TimePartitionsSpec =
  | { cadence: 'hourly' | 'daily' | 'monthly'; options: TimePartitionsOptions }
  | { cadence: 'weekly'; options: WeeklyPartitionsOptions }
  | { cadence: 'cron'; options: CronPartitionsOptions }

/** The definition a spec declares (the same signature as the one it was taken from). */
export function timePartitionsOf(spec: TimePartitionsSpec): TimePartitionsDefinition {
  switch (spec.cadence) {
    case 'hourly':
      return hourlyPartitions(spec.options)
    case 'daily':
      return dailyPartitions(spec.options)
    case 'weekly':
      return weeklyPartitions(spec.options)
    case 'monthly':
      return monthlyPartitions(spec.options)
    case 'cron':
      return cronPartitions(spec.options)
  }
}

/**
 * The arithmetic of one cadence over the integers: partition `i` starts at `boundary(i)` and ends
 * at `boundary(i + 1)`, for any `i` (negative ones lie before the first partition, which mappings
 * with offsets need). Index 0 is the first partition.
 */
interface Calendar {
  readonly keyFormat: string
  boundary(index: number): number
  /** The index whose window holds the instant. */
  indexAt(t: number): number
  format(index: number): string
  /** The index a key names, or why it names none (with an index near what it meant). */
  parse(key: string): { index: number } | { problem: string; near?: number; nearKeys?: string[] }
}

/**
 * Time partitions: consecutive windows following a cadence in a timezone. Key <-> index is
 * arithmetic (hours, local days, weeks, months: O(1)) or a binary search over the cron ticks
 * (O(log n) once the ticks up to the time asked are known); nothing lists every key.
 */
export class TimePartitionsDefinition extends PartitionsBase {
  readonly kind = 'time' as const
  readonly signature: string
  /** Partitions with the same family have the same boundaries (they differ only in start and end). */
  readonly family: string
  readonly keyFormat: string
  /** Partitions that exist whatever the time (`end`); undefined without an end. */
  private readonly endCount: number | undefined

  readonly cadence: TimeCadence
  /** The IANA timezone the windows follow. */
  readonly timezone: string
  /** Partitions past the last closed one (see `TimePartitionsOptions.endOffset`). */
  readonly endOffset: number
  /** How it was declared: plain data that rebuilds it where the config is not loaded (`timePartitionsOf`). */
  readonly spec: TimePartitionsSpec
  private readonly calendar: Calendar

  constructor(
    cadence: TimeCadence,
    timezone: string,
    calendar: Calendar,
    family: string,
    end: number | undefined,
    endOffset: number,
    spec: TimePartitionsSpec,
  ) {
    super()
    this.spec = spec
    this.cadence = cadence
    this.timezone = timezone
    this.calendar = calendar
    this.endOffset = endOffset
    this.family = family
    this.keyFormat = calendar.keyFormat
    if (end !== undefined) {
      const j = calendar.indexAt(end)
      this.endCount = Math.max(0, calendar.boundary(j) === end ? j : j + 1)
    }
    this.signature = `time:${family}:${calendar.format(0)}:${this.endCount ?? ''}:${endOffset}`
  }

  describe(): string {
    return `${this.cadence} partitions from ${this.calendar.format(0)} (${this.timezone})`
  }

  /** The start of the first partition. */
  get start(): Date {
    return new Date(this.calendar.boundary(0))
  }

  size(ctx: PartitionsContext): number {
    // the partition holding `now` has not closed: the ones before it have (negative before the start)
    const closed = this.calendar.indexAt(nowMs(ctx.now))
    const count = Math.max(0, closed + this.endOffset)
    return this.endCount === undefined ? count : Math.min(count, this.endCount)
  }

  keyAt(index: number, ctx: PartitionsContext): string {
    this.checkIndex(index, this.size(ctx))
    return this.calendar.format(index)
  }

  indexOf(key: string, ctx: PartitionsContext): number {
    return this.checkedIndex(key, this.size(ctx), ctx)
  }

  /** The size is computed once, not per key (listing a year of hours). */
  override space(ctx: PartitionsContext): KeySpace {
    const size = this.size(ctx)
    return {
      size,
      keyAt: (index) => {
        this.checkIndex(index, size)
        return this.calendar.format(index)
      },
    }
  }

  protected details(index: number, key: string): PartitionContext {
    return { key, keys: {}, window: this.windowAt(index) }
  }

  /** The window of the partition at an index (any integer: arithmetic, not a lookup). */
  windowAt(index: number): TimeWindow {
    return {
      start: new Date(this.calendar.boundary(index)),
      end: new Date(this.calendar.boundary(index + 1)),
    }
  }

  /** The start instant (ms) of the partition at an index (any integer). */
  boundary(index: number): number {
    return this.calendar.boundary(index)
  }

  /** The index of the partition whose window holds the instant: below 0 before the first one. */
  indexAt(instant: number | Date): number {
    return this.calendar.indexAt(nowMs(instant))
  }

  /** The window a key covers. Checks the key (format, start, `end`), not whether it has closed. */
  partitionWindow(key: string): TimeWindow {
    return this.windowAt(this.checkedIndex(key, this.endCount ?? Number.POSITIVE_INFINITY))
  }

  /**
   * The key of the last partition that has ended at `now` (what a partitioned schedule requests
   * at its tick), whatever `endOffset`; undefined while none has.
   */
  lastClosedPartition(now: number | Date): string | undefined {
    let closed = Math.max(0, this.calendar.indexAt(nowMs(now)))
    if (this.endCount !== undefined) closed = Math.min(closed, this.endCount)
    return closed > 0 ? this.calendar.format(closed - 1) : undefined
  }

  private checkedIndex(key: string, size: number, ctx?: PartitionsContext): number {
    const parsed = this.calendar.parse(key)
    const nearKeys = (i: number): string[] => {
      const out: string[] = []
      for (const k of [i - 1, i, i + 1]) if (k >= 0 && k < size) out.push(this.calendar.format(k))
      if (out.length === 0 && size > 0) out.push(this.calendar.format(i < 0 ? 0 : size - 1))
      return out
    }
    if ('problem' in parsed) {
      const near = parsed.nearKeys ?? (parsed.near === undefined ? [] : nearKeys(parsed.near))
      throw new PartitionKeyError(
        key,
        `${parsed.problem}: keys of ${this.describe()} are written ${this.keyFormat}.`,
        near,
      )
    }
    const { index } = parsed
    if (index < 0) {
      throw new PartitionKeyError(
        key,
        `is before the first of ${this.describe()}.`,
        size > 0 ? [this.calendar.format(0)] : [],
      )
    }
    if (index >= size) {
      if (this.endCount !== undefined && index >= this.endCount) {
        throw new PartitionKeyError(key, `is at or past the end of ${this.describe()}.`, nearKeys(size - 1))
      }
      const at = ctx === undefined ? '' : ` at ${new Date(nowMs(ctx.now)).toISOString()}`
      throw new PartitionKeyError(
        key,
        `does not exist yet${at}: a partition of ${this.describe()} exists once it has ended${this.endOffset ? ` (endOffset ${this.endOffset})` : ''}.`,
        size > 0 ? [this.calendar.format(size - 1)] : [],
      )
    }
    return index
  }
}

/**
 * Hourly partitions: `YYYY-MM-DD-HH:mm`; the two keys of a repeated hour carry their UTC offset.
 * Each is 60 real minutes from a local hour boundary, so an hour skipped by DST has no partition
 * and a repeated one has two. (In the one zone whose DST shift is 30 minutes, Australia/Lord_Howe,
 * keys after a shift fall on the half hour: still distinct and true to the local time.)
 */
export function hourlyPartitions(options: TimePartitionsOptions): TimePartitionsDefinition {
  const { zone, start, end, endOffset } = checkOptions('hourlyPartitions', options)
  // the first local hour boundary at or after start (zones whose offset is not whole hours, too)
  const into = (((start + zone.offsetAt(start)) % HOUR) + HOUR) % HOUR
  const first = into === 0 ? start : start - into + HOUR
  const calendar: Calendar = {
    keyFormat: '`YYYY-MM-DD-HH:mm` in local time, a repeated hour with its offset (`2026-11-01-01:00-05:00`)',
    boundary: (i) => first + i * HOUR,
    indexAt: (t) => Math.floor((t - first) / HOUR),
    format: (i) => instantKey(zone, first + i * HOUR, false),
    parse(key) {
      const read = readInstantKey(key, zone, false, (t) => instantKey(zone, t, false))
      if ('problem' in read) return read
      const offset = read.instant - first
      if (offset % HOUR !== 0) {
        return { problem: 'is not the start of an hour partition', near: Math.floor(offset / HOUR) }
      }
      return { index: offset / HOUR }
    },
  }
  return new TimePartitionsDefinition('hourly', zone.name, calendar, `hourly:${zone.name}`, end, endOffset, {
    cadence: 'hourly',
    options: { ...options },
  })
}

/** Daily partitions: `YYYY-MM-DD`, from local midnight to local midnight (23 or 25 hours on DST days). */
export function dailyPartitions(options: TimePartitionsOptions): TimePartitionsDefinition {
  const { zone, start, end, endOffset } = checkOptions('dailyPartitions', options)
  const calendar = dayCalendar(zone, firstDay(zone, start), 1, undefined)
  return new TimePartitionsDefinition('daily', zone.name, calendar, `daily:${zone.name}`, end, endOffset, {
    cadence: 'daily',
    options: { ...options },
  })
}

/** Weekly partitions: `YYYY-MM-DD` of the week's first day (Sunday unless `weekStartsOn`). */
export function weeklyPartitions(options: WeeklyPartitionsOptions): TimePartitionsDefinition {
  const { zone, start, end, endOffset } = checkOptions('weeklyPartitions', options, ['weekStartsOn'])
  const weekStartsOn = options.weekStartsOn ?? 0
  if (!Number.isInteger(weekStartsOn) || weekStartsOn < 0 || weekStartsOn > 6) {
    throw new ConfigError(
      `weeklyPartitions: weekStartsOn must be 0 (Sunday) to 6 (Saturday), not ${String(weekStartsOn)}.`,
    )
  }
  let day = firstDay(zone, start)
  day += (weekStartsOn - weekday(day) + 7) % 7
  const calendar = dayCalendar(zone, day, 7, DAY_NAMES[weekStartsOn])
  return new TimePartitionsDefinition(
    'weekly',
    zone.name,
    calendar,
    `weekly:${weekStartsOn}:${zone.name}`,
    end,
    endOffset,
    { cadence: 'weekly', options: { ...options } },
  )
}

/** Monthly partitions: `YYYY-MM-DD` of the month's first day, 28 to 31 local days each. */
export function monthlyPartitions(options: TimePartitionsOptions): TimePartitionsDefinition {
  const { zone, start, end, endOffset } = checkOptions('monthlyPartitions', options)
  const f = wallFields(zone.wallOf(start))
  let startMonth = f.y * 12 + f.m - 1
  if (zone.firstInstantFrom(monthWall(startMonth)) < start) startMonth++
  const boundary = (i: number) => zone.firstInstantFrom(monthWall(startMonth + i))
  const calendar: Calendar = {
    keyFormat: "`YYYY-MM-01` (the month's first day)",
    boundary,
    indexAt: (t) => {
      const w = wallFields(zone.wallOf(t))
      return settle(w.y * 12 + w.m - 1 - startMonth, t, boundary)
    },
    format: (i) => formatDate(monthWall(startMonth + i)),
    parse(key) {
      const wall = readDate(key)
      if (wall === undefined) return { problem: 'is not a date written `YYYY-MM-DD`' }
      const f = wallFields(wall)
      const index = f.y * 12 + f.m - 1 - startMonth
      if (f.d !== 1) return { problem: "is not a month's first day", near: index }
      return { index }
    },
  }
  return new TimePartitionsDefinition(
    'monthly',
    zone.name,
    calendar,
    `monthly:${zone.name}`,
    end,
    endOffset,
    {
      cadence: 'monthly',
      options: { ...options },
    },
  )
}

/**
 * Partitions between consecutive ticks of a cron expression (DST rules of schedules). Keys:
 * `YYYY-MM-DD` when the expression fires only at midnight, else `YYYY-MM-DD-HH:mm` (`:ss` with a
 * seconds field), a repeated wall time carrying its offset. Ticks are computed as far as asked
 * and kept (8 bytes each); key <-> index is then a binary search. Loads cron-parser (~50 ms).
 */
export function cronPartitions(options: CronPartitionsOptions): TimePartitionsDefinition {
  if (typeof options?.cron !== 'string' || options.cron.trim() === '') {
    throw new ConfigError('cronPartitions: give a cron expression, like `cron: "0 */6 * * *"`.')
  }
  const { zone, start, end, endOffset } = checkOptions('cronPartitions', options, ['cron'])
  const spec = parseCron(options.cron, zone.name)
  const calendar = cronCalendar(spec, zone, start)
  return new TimePartitionsDefinition(
    'cron',
    zone.name,
    calendar,
    `cron:${options.cron}:${zone.name}`,
    end,
    endOffset,
    { cadence: 'cron', options: { ...options } },
  )
}

const KNOWN_OPTIONS = ['start', 'end', 'timezone', 'endOffset']
const DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const

function checkOptions(
  fn: string,
  options: TimePartitionsOptions,
  extra: readonly string[] = [],
): { zone: Zone; start: number; end: number | undefined; endOffset: number } {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(`${fn} takes options: \`${fn}({ start: '2026-01-01', timezone: 'UTC' })\`.`)
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.includes(name) && !extra.includes(name)) {
      throw new ConfigError(
        `${fn} has no option \`${name}\`; its options: ${[...KNOWN_OPTIONS, ...extra].join(', ')}.`,
      )
    }
  }
  const timezone = options.timezone ?? 'UTC'
  const zone = Zone.of(timezone)
  if (options.start === undefined) {
    throw new ConfigError(`${fn} needs a start: \`${fn}({ start: '2026-01-01' })\`.`)
  }
  const start = readBound(fn, 'start', options.start, zone)
  const end = options.end === undefined ? undefined : readBound(fn, 'end', options.end, zone)
  if (end !== undefined && end <= start) {
    throw new ConfigError(
      `${fn}: end (${String(options.end)}) must come after start (${String(options.start)}).`,
    )
  }
  const endOffset = options.endOffset ?? 0
  if (!Number.isSafeInteger(endOffset)) {
    throw new ConfigError(
      `${fn}: endOffset must be a whole number (0, 1, -1, ...), not ${String(endOffset)}.`,
    )
  }
  return { zone, start, end, endOffset }
}

/** `start` or `end`: a Date, or a local time in the zone (the first instant it shows that time). */
function readBound(fn: string, name: string, value: string | Date, zone: Zone): number {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new ConfigError(`${fn}: ${name} is an invalid Date.`)
    return value.getTime()
  }
  const m =
    typeof value === 'string'
      ? /^(\d{4})-(\d{2})-(\d{2})(?:[-T ](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(value.trim())
      : null
  const wall = m ? wallFrom(+m[1]!, +m[2]!, +m[3]!, +(m[4] ?? 0), +(m[5] ?? 0), +(m[6] ?? 0)) : undefined
  if (wall === undefined) {
    throw new ConfigError(
      `${fn}: ${name} \`${String(value)}\` is not a date; write \`YYYY-MM-DD\` or \`YYYY-MM-DD-HH:mm\` (local to the timezone, ${zone.name}) or pass a Date.`,
    )
  }
  return zone.firstInstantFrom(wall)
}

/** Daily and weekly: `unit` local days from a first day (a day number: wall / DAY). */
function dayCalendar(zone: Zone, startDay: number, unit: number, weekStart: string | undefined): Calendar {
  const boundary = (i: number) => zone.firstInstantFrom((startDay + i * unit) * DAY)
  return {
    keyFormat: weekStart ? `\`YYYY-MM-DD\` (a ${weekStart}, the week's first day)` : '`YYYY-MM-DD`',
    boundary,
    indexAt: (t) => settle(Math.floor((Math.floor(zone.wallOf(t) / DAY) - startDay) / unit), t, boundary),
    format: (i) => formatDate((startDay + i * unit) * DAY),
    parse(key) {
      const wall = readDate(key)
      if (wall === undefined) return { problem: 'is not a date written `YYYY-MM-DD`' }
      const days = wall / DAY - startDay
      if (days % unit !== 0) return { problem: `is not a ${weekStart}`, near: Math.floor(days / unit) }
      return { index: days / unit }
    },
  }
}

/** The local day of an instant, or the next one when the instant is past that day's start. */
function firstDay(zone: Zone, start: number): number {
  const day = Math.floor(zone.wallOf(start) / DAY)
  return zone.firstInstantFrom(day * DAY) < start ? day + 1 : day
}

/** 0 = Sunday; day 0 (1970-01-01) was a Thursday. */
function weekday(day: number): number {
  return (((day + 4) % 7) + 7) % 7
}

function monthWall(month: number): Wall {
  return Date.UTC(Math.floor(month / 12), ((month % 12) + 12) % 12, 1)
}

/**
 * Corrects an index guessed from the local calendar: a local day can start before or after its
 * midnight (a gap or a repeat at midnight), so the guess may be one off.
 */
function settle(guess: number, t: number, boundary: (i: number) => number): number {
  let i = guess
  while (t < boundary(i)) i--
  while (t >= boundary(i + 1)) i++
  return i
}

function readDate(key: string): Wall | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(key)
  return m ? wallFrom(+m[1]!, +m[2]!, +m[3]!) : undefined
}

/**
 * The key of an instant: its local date and time, and, when that wall time occurs twice (the
 * hour repeated when clocks fall back), the offset in effect, so both occurrences have a key.
 */
export function instantKey(zone: Zone, t: number, seconds: boolean): string {
  const offset = zone.offsetAt(t)
  const wall = t + offset
  const label = formatDateTime(wall, seconds)
  return zone.instantsOf(wall).length > 1 ? `${label}${formatOffset(offset)}` : label
}

/** Reads what `instantKey` writes; refuses a wall time that does not exist or is ambiguous. */
function readInstantKey(
  key: string,
  zone: Zone,
  seconds: boolean,
  keyOf: (t: number) => string,
): { instant: number } | { problem: string; nearKeys?: string[] } {
  const pattern = seconds
    ? /^(\d{4})-(\d{2})-(\d{2})-(\d{2}):(\d{2}):(\d{2})([+-]\d{2}:\d{2})?$/
    : /^(\d{4})-(\d{2})-(\d{2})-(\d{2}):(\d{2})()([+-]\d{2}:\d{2})?$/
  const m = pattern.exec(key)
  const wall = m ? wallFrom(+m[1]!, +m[2]!, +m[3]!, +m[4]!, +m[5]!, +(m[6] || 0)) : undefined
  const written = seconds ? '`YYYY-MM-DD-HH:mm:ss`' : '`YYYY-MM-DD-HH:mm`'
  if (m === null || wall === undefined) return { problem: `is not a local time written ${written}` }
  const suffix = m[7]
  const instants = zone.instantsOf(wall)
  if (instants.length === 0) {
    const after = zone.firstInstantFrom(wall)
    return {
      problem: `does not exist in ${zone.name}: clocks skip that time (they go from ${formatDateTime(after - 1 + zone.offsetAt(after - 1), seconds)} to ${formatDateTime(zone.wallOf(after), seconds)})`,
      nearKeys: [keyOf(after)],
    }
  }
  if (instants.length > 1) {
    const both = instants.map((t) => keyOf(t))
    if (suffix === undefined) {
      return {
        problem: `is ambiguous: that time occurs twice in ${zone.name} (clocks fall back); write it with its offset, \`${both[0]}\` (the first) or \`${both[1]}\` (the second)`,
        nearKeys: both,
      }
    }
    const found = instants.find((t) => formatOffset(zone.offsetAt(t)) === suffix)
    if (found === undefined) {
      return {
        problem: `has an offset (${suffix}) that ${zone.name} does not have at that time`,
        nearKeys: both,
      }
    }
    return { instant: found }
  }
  if (suffix !== undefined) {
    return {
      problem: 'carries an offset, which only the keys of a repeated hour do',
      nearKeys: [keyOf(instants[0]!)],
    }
  }
  return { instant: instants[0]! }
}

/** Cron ticks, computed forward (and backward, for offsets before the start) as far as asked. */
function cronCalendar(spec: CronSpec, zone: Zone, start: number): Calendar {
  const dateOnly =
    spec.hours.length === 1 &&
    spec.hours[0] === 0 &&
    spec.minutes.length === 1 &&
    spec.minutes[0] === 0 &&
    spec.seconds.length === 1 &&
    spec.seconds[0] === 0
  const seconds = !(spec.seconds.length === 1 && spec.seconds[0] === 0)
  const ahead: number[] = [] // ticks >= start, ascending: index i
  const behind: number[] = [] // ticks < start, descending: index -1 - i
  const extendAhead = (): void => {
    const from = ahead.length > 0 ? ahead[ahead.length - 1]! : start - 1
    const more = nextTicks(spec, from, Math.max(256, ahead.length))
    if (more.length === 0)
      throw new ConfigError(`cron \`${spec.expression}\` has no tick after ${new Date(from).toISOString()}.`)
    ahead.push(...more)
  }
  const extendBehind = (): void => {
    const until = (behind.length > 0 ? behind[behind.length - 1]! : start) - 1
    const more = lastTicks(spec, until - 8 * 366 * DAY, until, Math.max(256, behind.length))
    if (more.length === 0)
      throw new ConfigError(
        `cron \`${spec.expression}\` has no tick before ${new Date(until).toISOString()}.`,
      )
    behind.push(...more.reverse())
  }
  const boundary = (i: number): number => {
    if (i >= 0) {
      while (ahead.length <= i) extendAhead()
      return ahead[i]!
    }
    while (behind.length < -i) extendBehind()
    return behind[-i - 1]!
  }
  const indexAt = (t: number): number => {
    if (boundary(0) <= t) {
      while (ahead[ahead.length - 1]! <= t) extendAhead()
      return lastAtOrBefore(ahead, t)
    }
    while (behind[behind.length - 1] === undefined || behind[behind.length - 1]! > t) extendBehind()
    // behind is descending: the first tick at or before t
    let lo = 0
    let hi = behind.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (behind[mid]! <= t) hi = mid
      else lo = mid + 1
    }
    return -lo - 1
  }
  const format = (i: number): string => {
    const t = boundary(i)
    return dateOnly ? formatDate(zone.wallOf(t)) : instantKey(zone, t, seconds)
  }
  return {
    keyFormat: dateOnly ? '`YYYY-MM-DD`' : seconds ? '`YYYY-MM-DD-HH:mm:ss`' : '`YYYY-MM-DD-HH:mm`',
    boundary,
    indexAt,
    format,
    parse(key) {
      let instant: number
      if (dateOnly) {
        const wall = readDate(key)
        if (wall === undefined) return { problem: 'is not a date written `YYYY-MM-DD`' }
        instant = zone.firstInstantFrom(wall)
      } else {
        const read = readInstantKey(key, zone, seconds, (t) => instantKey(zone, t, seconds))
        if ('problem' in read) return read
        instant = read.instant
      }
      const index = indexAt(instant)
      if (boundary(index) !== instant) {
        return { problem: `is not a tick of cron \`${spec.expression}\``, near: index }
      }
      return { index }
    },
  }
}

/** The largest i with sorted[i] <= t (sorted ascending, sorted[0] <= t). */
function lastAtOrBefore(sorted: readonly number[], t: number): number {
  let lo = 0
  let hi = sorted.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (sorted[mid]! <= t) lo = mid
    else hi = mid - 1
  }
  return lo
}
