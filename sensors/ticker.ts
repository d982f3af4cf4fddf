import { z } from 'zod/v4'
import type { Clock } from '../core/clock.js'
import { formatIssues, type LogLevel, resolveRunConfig } from '../core/definitions.js'
import { ConfigError, didYouMean, toErrorInfo } from '../core/errors.js'
import type { AssetGraph } from '../core/graph.js'
import { holdsFor, type RunGuardConfig } from '../core/guards.js'
import { newRunId } from '../core/ids.js'
import { dynamicNames, runPartition } from '../core/partition-runs.js'
import { resolveSelection } from '../core/selection.js'
import { type ReadOnlyStore, type RunStore, readOnlyView } from '../core/store/run-store.js'
import type {
  CommittedTick,
  InstigatorState,
  NewTick,
  RequestOutcome,
  RunGuard,
  RunRequest,
  TickRecord,
} from '../core/store/types.js'
import { lastTicks, nextTicks } from './cron.js'
import type {
  InstigatorDefinition,
  ScheduleDefinition,
  SensorDefinition,
  SensorResult,
  SensorRunRequest,
} from './definitions.js'
import { schedulePartitions } from './selections.js'

/** What evaluating sensors and schedules needs: the store, the asset graph, defaults, time. */
export interface TickEnv {
  store: RunStore
  graph: AssetGraph
  /** Run config per asset from the config file (requests' own config is laid over it). */
  runConfig: Record<string, Record<string, unknown>>
  /** The config's run guards: a requested run holds those its plan falls under. */
  guards?: readonly RunGuardConfig[]
  clock: Clock
  /** Where a sensor's `ctx.log` lines go (the daemon prints them). */
  log?: (name: string, level: LogLevel, message: string) => void
}

export interface TickResult {
  tick: TickRecord
  outcomes: CommittedTick['outcomes']
}

/** Checks what a sensor returned (by hand: this runs for every sensor on every tick). */
function checkResult(raw: unknown): SensorResult {
  const fail = (why: string): never => {
    throw new Error(
      `sensor returned ${JSON.stringify(raw)?.slice(0, 200)}: ${why}; return { runs: [...] } or { skip: 'reason' }`,
    )
  }
  if (typeof raw !== 'object' || raw === null) return fail('not an object')
  const r = raw as Record<string, unknown>
  if (r.cursor !== undefined && r.cursor !== null && typeof r.cursor !== 'string')
    fail('cursor must be a string or null')
  const keys = Object.keys(r).filter((k) => k !== 'cursor' && k !== 'addDynamicPartitions')
  if (keys.length === 1 && keys[0] === 'skip' && r.addDynamicPartitions === undefined) {
    if (typeof r.skip !== 'string') fail('skip must be a string')
    return r as { skip: string; cursor?: string | null }
  }
  if (keys.length !== 1 || keys[0] !== 'runs' || !Array.isArray(r.runs))
    return fail('expected `runs` or `skip`')
  r.runs.forEach((run: unknown, i: number) => {
    const parsed = runRequestSchema.safeParse(run)
    if (!parsed.success) fail(`runs[${i}]: ${formatIssues(parsed.error)}`)
  })
  if (r.addDynamicPartitions !== undefined) {
    const parsed = dynamicPartitionsSchema.safeParse(r.addDynamicPartitions)
    if (!parsed.success) fail(`addDynamicPartitions: ${formatIssues(parsed.error)}`)
  }
  return r as SensorResult
}

const runRequestSchema = z
  .object({
    selection: z.string(),
    runKey: z.string().min(1).optional(),
    config: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
    tags: z.record(z.string(), z.string()).optional(),
    partitionKey: z.string().min(1).optional(),
  })
  .strict()

/** Keys as `refresh partitions add` takes them: `|` joins the dimensions of multi partitions. */
const dynamicPartitionsSchema = z.record(
  z.string(),
  z.array(
    z
      .string()
      .min(1)
      .max(200)
      .refine((k) => !k.includes('|'), 'a partition key cannot contain `|`'),
  ),
)

/** One outcome of a run request, as a short phrase for logs and listings. */
export function describeOutcome(o: RequestOutcome): string {
  switch (o.outcome) {
    case 'created':
      return `created run ${o.runId}`
    case 'duplicate':
      return `run key already used by run ${o.runId}`
    case 'coalesced':
      return `coalesced into pending run ${o.runId}`
    case 'skipped':
      return `skipped (${o.reason})`
    case 'parked':
      return `parked as request #${o.requestId} (maintenance mode)`
  }
}

/** The status in force: the one set at run time, else the definition's default. */
export function effectiveStatus(def: InstigatorDefinition, state: InstigatorState | undefined): 'on' | 'off' {
  return state && state.status !== 'default' ? state.status : def.defaultStatus
}

/**
 * Evaluates a sensor once and commits the tick: its requests become queued runs (run keys and
 * guards checked atomically), its cursor advances, all in one transaction. A sensor that throws,
 * returns something malformed or runs past its timeout records a failed tick and keeps its cursor.
 */
export async function tickSensor(def: SensorDefinition, env: TickEnv): Promise<TickResult> {
  const [committed] = await env.store.commitTicks([await evaluateSensor(def, env)])
  return committed!
}

/**
 * Evaluates a sensor and builds its tick without writing anything, so that a daemon can evaluate
 * many sensors concurrently and commit their ticks together.
 */
export async function evaluateSensor(
  def: SensorDefinition,
  env: TickEnv,
  known?: { state: InstigatorState | undefined },
): Promise<NewTick> {
  const { clock } = env
  const startedAt = clock.now()
  const controller = new AbortController()
  const timer = new AbortController()
  const timedOut = clock.sleep(def.timeoutSeconds * 1000, timer.signal).then(
    () => {
      controller.abort(new Error(`sensor evaluation timed out after ${def.timeoutSeconds} s`))
      throw controller.signal.reason
    },
    () => new Promise<never>(() => {}),
  )
  // the timeout runs from the start, whatever the store takes to answer
  const state = known ? known.state : await env.store.getInstigator(def.name)
  const base = { instigator: def.name, kind: 'sensor' as const, tickTime: startedAt, startedAt }
  const done = (t: Omit<NewTick, 'instigator' | 'kind' | 'tickTime' | 'startedAt' | 'endedAt'>): NewTick => ({
    ...base,
    endedAt: clock.now(),
    ...t,
  })
  try {
    const raw = await Promise.race([
      Promise.resolve().then(() =>
        def.evaluate({
          name: def.name,
          cursor: state?.cursor ?? null,
          store: sensorView(env.store),
          now: new Date(startedAt),
          signal: controller.signal,
          log: (message, level = 'info') => env.log?.(def.name, level, String(message)),
        }),
      ),
      timedOut,
    ])
    const result = checkResult(raw)
    const cursor = result.cursor === undefined ? undefined : result.cursor
    if ('skip' in result) return done({ status: 'skipped', skipReason: result.skip, cursor })
    const added = result.addDynamicPartitions
    if (added) checkDynamicNames(env.graph, Object.keys(added))
    const partitions = dynamicKeysWith(env.store, added)
    const requests: RunRequest[] = []
    for (const r of result.runs)
      requests.push(await buildRequest(env, r, `sensor:${def.name}`, def.guard, partitions))
    const withAdded = added ? { addDynamicPartitions: added } : {}
    if (requests.length === 0)
      return done({ status: 'skipped', skipReason: 'no runs requested', cursor, ...withAdded })
    return done({ status: 'success', requests, cursor, ...withAdded })
  } catch (error) {
    return done({ status: 'failure', error: toErrorInfo(error) })
  } finally {
    timer.abort()
  }
}

/**
 * Fires a schedule's due ticks, if any: ticks after both the last one fired and the moment the
 * schedule was turned on, up to now. Missed ticks follow the schedule's policy (only the latest,
 * or up to N of the most recent, oldest first). Each tick's time is its run key, so no tick ever
 * launches twice, whatever restarts happen.
 */
export async function tickSchedule(def: ScheduleDefinition, env: TickEnv): Promise<TickResult[]> {
  const { store, clock } = env
  const now = clock.now()
  // first sight records the schedule as on from now: it never fires for earlier times
  const state =
    (await store.getInstigator(def.name)) ?? (await store.ensureInstigator(def.name, 'schedule', now))
  if (effectiveStatus(def, state) === 'off') return []
  const after = Math.max(
    state.cursor === null ? Number.NEGATIVE_INFINITY : Number(state.cursor),
    state.enabledAt ?? now,
  )
  const count = def.missed === 'latest' ? 1 : def.missed.catchUp
  const due = lastTicks(def.spec, after, now, count)
  const results: TickResult[] = []
  for (const tickTime of due) {
    let tick: Parameters<typeof commit>[1]
    try {
      // a partitioned schedule asks for the partition that just closed, keyed by it: a restart or
      // a catch-up that comes to the same partition again finds its key used
      const partitions = def.partitioned ? schedulePartitions(def, env.graph) : undefined
      const partitionKey = partitions?.lastClosedPartition(tickTime)
      if (partitions && partitionKey === undefined) {
        tick = {
          def,
          startedAt: now,
          tickTime,
          status: 'skipped',
          skipReason: `no partition has closed yet at ${new Date(tickTime).toISOString()} (${partitions.describe()})`,
          cursor: String(tickTime),
        }
        results.push(await commit(env, tick))
        continue
      }
      const request = await buildRequest(
        env,
        {
          selection: def.selection,
          runKey: partitionKey ?? new Date(tickTime).toISOString(),
          config: def.config,
          tags: def.tags,
          ...(partitionKey === undefined ? {} : { partitionKey }),
        },
        `schedule:${def.name}`,
        def.guard,
        env.store,
      )
      // parked during maintenance under the same missed-tick policy
      request.parkKeep = count
      tick = {
        def,
        startedAt: now,
        tickTime,
        status: 'success',
        requests: [request],
        cursor: String(tickTime),
      }
    } catch (error) {
      // a tick that cannot be requested (the selection no longer resolves) is recorded, not retried forever
      tick = {
        def,
        startedAt: now,
        tickTime,
        status: 'failure',
        error: toErrorInfo(error),
        cursor: String(tickTime),
      }
    }
    results.push(await commit(env, tick))
  }
  return results
}

/** The next time a schedule is due after `now` (for listings and the daemon's sleep). */
export function nextScheduleTick(def: ScheduleDefinition, now: number): number | undefined {
  return nextTicks(def.spec, now, 1)[0]
}

/** The names of dynamic partitions definitions a sensor adds keys to must be some asset's. */
function checkDynamicNames(graph: AssetGraph, names: readonly string[]): void {
  const known = new Set(
    [...graph.assets.values()].flatMap((a) => (a.partitions ? dynamicNames(a.partitions) : [])),
  )
  for (const name of names) {
    if (!known.has(name)) {
      const hint = known.size > 0 ? ` (the graph's: ${[...known].join(', ')})` : ' (the graph has none)'
      throw new ConfigError(
        `addDynamicPartitions: no asset has dynamic partitions named \`${name}\`${hint}; name the definition given to dynamicPartitions({ name }).`,
      )
    }
  }
}

/** The store's dynamic partition keys, with those a tick adds (checked as if already added). */
function dynamicKeysWith(
  store: RunStore,
  added: Record<string, readonly string[]> | undefined,
): Pick<RunStore, 'dynamicPartitionKeys'> {
  if (!added) return store
  return {
    async dynamicPartitionKeys(name) {
      const keys = await store.dynamicPartitionKeys(name)
      const extra = (added[name] ?? []).filter((k) => !keys.includes(k))
      return [...keys, ...new Set(extra)]
    },
  }
}

async function buildRequest(
  env: TickEnv,
  r: SensorRunRequest,
  origin: string,
  guard: RunGuard | undefined,
  partitions: Pick<RunStore, 'dynamicPartitionKeys'>,
): Promise<RunRequest> {
  const plan = env.graph.sort(resolveSelection(env.graph, r.selection))
  // a key that does not exist fails the tick naming it, not the run later
  if (r.partitionKey !== undefined)
    await runPartition(env.graph, plan, r.partitionKey, partitions, env.clock.now())
  const merged: Record<string, Record<string, unknown>> = {}
  for (const [key, value] of Object.entries(env.runConfig)) merged[key] = { ...value }
  for (const [key, value] of Object.entries(r.config ?? {}))
    merged[key] = { ...(merged[key] ?? {}), ...value }
  const config = resolveRunConfig(env.graph.assets, plan, merged, (key) =>
    didYouMean(key, env.graph.assets.keys()),
  )
  const request: RunRequest = {
    id: newRunId(env.clock.now()),
    selection: r.selection,
    plan,
    config,
    tags: r.tags,
    origin,
    now: env.clock.now(),
  }
  if (r.runKey !== undefined) request.runKey = r.runKey
  if (r.partitionKey !== undefined) request.partitionKey = r.partitionKey
  if (guard !== undefined) request.guard = guard
  const holds = holdsFor(env.graph, env.guards ?? [], plan)
  if (holds.length > 0) request.holds = holds
  return request
}

async function commit(
  env: TickEnv,
  t: {
    def: InstigatorDefinition
    startedAt: number
    tickTime?: number
    status: TickRecord['status']
    skipReason?: string
    error?: TickRecord['error']
    cursor?: string | null
    requests?: RunRequest[]
  },
): Promise<TickResult> {
  const [committed] = await env.store.commitTicks([
    {
      instigator: t.def.name,
      kind: t.def.kind,
      tickTime: t.tickTime ?? t.startedAt,
      startedAt: t.startedAt,
      endedAt: env.clock.now(),
      status: t.status,
      skipReason: t.skipReason,
      error: t.error ?? undefined,
      cursor: t.cursor,
      requests: t.requests,
    },
  ])
  return committed!
}

/** One read-only view per store, handed to every sensor evaluation. */
const views = new WeakMap<RunStore, ReadOnlyStore>()
function sensorView(store: RunStore): ReadOnlyStore {
  let view = views.get(store)
  if (!view) {
    view = readOnlyView(store)
    views.set(store, view)
  }
  return view
}
