import { z } from 'zod/v4'
import { stopsDownstream } from '../core/checks.js'
import { formatIssues, type LogLevel } from '../core/definitions.js'
import { ConfigError } from '../core/errors.js'
import { parseSelection } from '../core/selection.js'
import type { ReadOnlyStore } from '../core/store/run-store.js'
import type { RunGuard, RunRecord, RunRequestSpec, RunStatus } from '../core/store/types.js'
import { type CronSpec, nextTicks, parseCron } from './cron.js'

/**
 * What a sensor asks for: a run of a selection, optionally keyed (a key runs once per sensor),
 * with run config per asset laid over the config file's.
 */
export type SensorRunRequest = Pick<RunRequestSpec, 'selection' | 'runKey' | 'tags' | 'partitionKey'> & {
  config?: Record<string, Record<string, unknown>>
}

export type SensorResult =
  | {
      runs: SensorRunRequest[]
      cursor?: string | null
      /**
       * Keys to add to dynamic partitions definitions (by name), committed with the tick and
       * before its requests, which may name them.
       */
      addDynamicPartitions?: Record<string, string[]>
    }
  | { skip: string; cursor?: string | null }

export interface SensorContext {
  readonly name: string
  /** The cursor the previous successful tick left (null at first). */
  readonly cursor: string | null
  /** Read access to runs, materializations and ticks: a view with no writing method at all. */
  readonly store: ReadOnlyStore
  readonly now: Date
  /** Aborted when the evaluation runs past its timeout. */
  readonly signal: AbortSignal
  log(message: string, level?: LogLevel): void
}

/** A guard as declared on a sensor or schedule; `key` defaults to the sensor or schedule name. */
export interface GuardSpec {
  concurrency: number
  onConflict: RunGuard['onConflict']
  key?: string
}

export type DefaultStatus = 'on' | 'off'

export interface SensorDefinition {
  readonly kind: 'sensor'
  readonly name: string
  readonly intervalSeconds: number
  readonly timeoutSeconds: number
  readonly defaultStatus: DefaultStatus
  readonly guard: RunGuard | undefined
  readonly description: string | undefined
  /** Selections known before any tick (`whenMaterialized`'s asset and launch), checked by validation. */
  readonly selections?: ReadonlyArray<{ field: string; selection: string }>
  evaluate(ctx: SensorContext): Promise<SensorResult> | SensorResult
}

export interface ScheduleDefinition {
  readonly kind: 'schedule'
  readonly name: string
  readonly cron: string
  readonly timezone: string
  readonly selection: string
  /** Missed ticks while no daemon ran: only the latest, or up to N (the most recent), oldest first. */
  readonly missed: 'latest' | { catchUp: number }
  readonly defaultStatus: DefaultStatus
  readonly config: Record<string, Record<string, unknown>> | undefined
  readonly tags: Record<string, string>
  readonly guard: RunGuard | undefined
  /**
   * Each tick requests the partition of the selection's time-partitioned assets that has just
   * closed at the tick time, keyed by the partition key.
   */
  readonly partitioned: boolean
  readonly spec: CronSpec
}

export type InstigatorDefinition = SensorDefinition | ScheduleDefinition

const NAME = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_.-]*$/,
    'must be letters, digits, `_`, `-`, `.`, starting with a letter or `_`',
  )
const guardSchema = z
  .object({
    concurrency: z.number().int().min(1),
    onConflict: z.enum(['coalesce', 'skip', 'queue']),
    key: NAME.optional(),
  })
  .strict()
const selectionSchema = z.string().superRefine((value, ctx) => {
  try {
    parseSelection(value)
  } catch (error) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (error as Error).message })
  }
})
const runConfigSchema = z.record(z.string(), z.record(z.string(), z.unknown()))

const sensorSchema = z
  .object({
    name: NAME,
    intervalSeconds: z.number().positive().max(86_400).default(30),
    timeoutSeconds: z.number().positive().max(3_600).default(60),
    defaultStatus: z.enum(['on', 'off']).default('on'),
    guard: guardSchema.optional(),
    description: z.string().optional(),
    evaluate: z.custom<SensorDefinition['evaluate']>((v) => typeof v === 'function', 'must be a function'),
  })
  .strict()

function toGuard(name: string, guard: z.infer<typeof guardSchema> | undefined): RunGuard | undefined {
  return guard
    ? { key: guard.key ?? name, concurrency: guard.concurrency, onConflict: guard.onConflict }
    : undefined
}

function parse<T>(schema: z.ZodType<T, unknown>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value)
  if (!parsed.success) throw new ConfigError(`${what} is invalid: ${formatIssues(parsed.error)}`)
  return parsed.data
}

/** A sensor: evaluated every `intervalSeconds` with a persisted cursor; returns run requests or a skip reason. */
export function sensor(spec: {
  name: string
  intervalSeconds?: number
  timeoutSeconds?: number
  defaultStatus?: DefaultStatus
  guard?: GuardSpec
  description?: string
  evaluate(ctx: SensorContext): Promise<SensorResult> | SensorResult
}): SensorDefinition {
  const s = parse(sensorSchema, spec, `sensor \`${spec?.name ?? '?'}\``)
  return Object.freeze({
    kind: 'sensor' as const,
    name: s.name,
    intervalSeconds: s.intervalSeconds,
    timeoutSeconds: s.timeoutSeconds,
    defaultStatus: s.defaultStatus,
    guard: toGuard(s.name, s.guard),
    description: s.description,
    evaluate: s.evaluate,
  })
}

/**
 * Launches `launch` after `asset` materializes in a run that did not also materialize the
 * launched assets after it (a partial run, a retry). The cursor is the last materialization id
 * seen; all new materializations in one tick make one request, keyed by the newest one.
 */
export function whenMaterialized(
  asset: string,
  options: {
    name: string
    launch: string
    guard?: GuardSpec
    intervalSeconds?: number
    defaultStatus?: DefaultStatus
    config?: Record<string, Record<string, unknown>>
  },
): SensorDefinition {
  const launch = parse(selectionSchema, options?.launch, `sensor \`${options?.name ?? '?'}\`: launch`)
  const launchRoots = rootsOf(launch)
  const selections = [
    { field: 'watched asset', selection: asset },
    { field: 'launch', selection: launch },
  ]
  return withSelections(selections, {
    name: options.name,
    intervalSeconds: options.intervalSeconds ?? 1,
    defaultStatus: options.defaultStatus,
    guard: options.guard,
    description: `when \`${asset}\` materializes, launch \`${launch}\``,
    async evaluate(ctx) {
      const after = ctx.cursor === null ? 0 : Number(ctx.cursor)
      const newest = await ctx.store.latestMaterialization(asset)
      if (!newest || newest.id <= after) return { skip: `no new materialization of ${asset}` }
      // a materialization a blocking check failed on is not launched on: its run stopped what is
      // downstream of it on purpose (a retry of that run makes it again and checks it again)
      const stopped = (await ctx.store.checkResultsOfRun(newest.runId)).find(
        (c) => c.asset === asset && !c.passed && stopsDownstream(c),
      )
      if (stopped) {
        return {
          skip: `${asset} of run ${newest.runId} failed its blocking check ${stopped.check}; not launching ${launch} on it`,
          cursor: String(newest.id),
        }
      }
      // already covered: every launched root was materialized after this materialization
      const latest = await ctx.store.latestMaterializations()
      const stale = launchRoots.some((root) => (latest.get(root)?.id ?? 0) < newest.id)
      if (!stale) {
        return {
          skip: `${launchRoots.join(', ')} already materialized after ${asset}`,
          cursor: String(newest.id),
        }
      }
      return {
        runs: [{ selection: launch, runKey: `${asset}:${newest.id}`, config: options.config }],
        cursor: String(newest.id),
      }
    },
  })
}

function withSelections(
  selections: SensorDefinition['selections'],
  options: Parameters<typeof sensor>[0],
): SensorDefinition {
  return Object.freeze({ ...sensor(options), selections })
}

/** The plain keys a selection names (`snapshot+` -> snapshot), the assets whose age matters. */
function rootsOf(selection: string): string[] {
  return parseSelection(selection).flatMap((t) => (t.kind === 'key' ? [t.key] : []))
}

/**
 * A sensor on run outcomes, for alerting hooks: `notify` is called once for each run that ends
 * in one of `status`, in order, across daemon restarts (the cursor is the last run id handled).
 */
export function onRunStatus(options: {
  name: string
  status: RunStatus | RunStatus[]
  notify(run: RunRecord, ctx: SensorContext): Promise<void> | void
  intervalSeconds?: number
  defaultStatus?: DefaultStatus
}): SensorDefinition {
  const statuses = new Set(Array.isArray(options.status) ? options.status : [options.status])
  return sensor({
    name: options.name,
    intervalSeconds: options.intervalSeconds ?? 5,
    defaultStatus: options.defaultStatus,
    description: `notify on runs ending ${[...statuses].join(' or ')}`,
    async evaluate(ctx) {
      // cursor: the end time of the last run handled and the ids that ended at that same ms
      const cursor =
        ctx.cursor === null ? null : (JSON.parse(ctx.cursor) as { endedAt: number; ids: string[] })
      if (cursor === null) {
        // first evaluation: alert from now on, not on history (runs that ended this very ms included)
        const endedAt = ctx.now.getTime()
        const ids = (await ctx.store.runsEndedAfter([...statuses], endedAt))
          .filter((r) => r.endedAt === endedAt)
          .map((r) => r.id)
        return { skip: 'started watching run outcomes', cursor: JSON.stringify({ endedAt, ids }) }
      }
      const fresh = (await ctx.store.runsEndedAfter([...statuses], cursor.endedAt)).filter(
        (r) => !(r.endedAt === cursor.endedAt && cursor.ids.includes(r.id)),
      )
      for (const run of fresh) await options.notify(run, ctx)
      if (fresh.length === 0) return { skip: 'no run reached that status' }
      const endedAt = fresh.at(-1)!.endedAt!
      const ids = fresh.filter((r) => r.endedAt === endedAt).map((r) => r.id)
      const next = { endedAt, ids: endedAt === cursor.endedAt ? [...cursor.ids, ...ids] : ids }
      return { runs: [], cursor: JSON.stringify(next) }
    },
  })
}

const scheduleSchema = z
  .object({
    name: NAME,
    cron: z.string().min(1),
    timezone: z.string().default('UTC'),
    selection: selectionSchema.default('*'),
    missed: z
      .union([z.literal('latest'), z.object({ catchUp: z.number().int().min(1).max(1000) }).strict()])
      .default('latest'),
    defaultStatus: z.enum(['on', 'off']).default('on'),
    config: runConfigSchema.optional(),
    tags: z.record(z.string(), z.string()).default({}),
    guard: guardSchema.optional(),
    partitioned: z.boolean().default(false),
  })
  .strict()

/**
 * A cron schedule in an IANA timezone; each tick launches at most once, ever (its time is the run
 * key). `partitioned: true`: each tick requests the partition that just closed, keyed by it.
 */
export function schedule(spec: {
  name: string
  cron: string
  timezone?: string
  selection?: string
  missed?: 'latest' | { catchUp: number }
  defaultStatus?: DefaultStatus
  config?: Record<string, Record<string, unknown>>
  tags?: Record<string, string>
  guard?: GuardSpec
  partitioned?: boolean
}): ScheduleDefinition {
  const s = parse(scheduleSchema, spec, `schedule \`${spec?.name ?? '?'}\``)
  let cron: CronSpec
  try {
    cron = parseCron(s.cron, s.timezone)
  } catch (error) {
    throw new ConfigError(`schedule \`${s.name}\`: ${(error as Error).message}`)
  }
  return Object.freeze({
    kind: 'schedule' as const,
    name: s.name,
    cron: s.cron,
    timezone: s.timezone,
    selection: s.selection,
    missed: s.missed,
    defaultStatus: s.defaultStatus,
    config: s.config,
    tags: s.tags,
    guard: toGuard(s.name, s.guard),
    partitioned: s.partitioned,
    spec: cron,
  })
}

/** The next `count` tick times of a cron expression after `after`, with the DST rules of schedules. */
export function scheduleTicks(
  cron: string,
  options: { timezone?: string; after?: Date; count?: number } = {},
): Date[] {
  const spec = parseCron(cron, options.timezone ?? 'UTC')
  return nextTicks(spec, (options.after ?? new Date()).getTime(), options.count ?? 1).map((t) => new Date(t))
}

/** Checks a config's sensors and schedules: each made by these functions, names unique. */
export function checkInstigators(
  sensors: unknown[],
  schedules: unknown[],
  source: string,
): InstigatorDefinition[] {
  const all: InstigatorDefinition[] = []
  sensors.forEach((s, i) => {
    if ((s as SensorDefinition)?.kind !== 'sensor') {
      throw new ConfigError(
        `${source}: sensors[${i}] is not a sensor; make it with sensor({...}) or whenMaterialized(...).`,
      )
    }
    all.push(s as SensorDefinition)
  })
  schedules.forEach((s, i) => {
    if ((s as ScheduleDefinition)?.kind !== 'schedule') {
      throw new ConfigError(`${source}: schedules[${i}] is not a schedule; make it with schedule({...}).`)
    }
    all.push(s as ScheduleDefinition)
  })
  const seen = new Set<string>()
  for (const d of all) {
    if (seen.has(d.name)) {
      throw new ConfigError(
        `${source}: the name \`${d.name}\` is used by two sensors or schedules; names must be unique.`,
      )
    }
    seen.add(d.name)
  }
  return all
}
