/**
 * The store side of `/metrics` and `/healthz`, run in its own worker thread with its own
 * connections to the store (opened again from its location): a store that answers slowly (a
 * locked SQLite file waits out its busy timeout on the calling thread) delays this thread only,
 * never the HTTP server (which answers from its last values on a timeout) nor the daemon.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { errorCode } from '../core/errors.js'
import { type FreshnessAsset, freshnessOf } from '../core/freshness.js'
import { type TimePartitionsSpec, timePartitionsOf } from '../core/partitions/time.js'
import { openStore } from '../core/store/open.js'
import type { RunStore } from '../core/store/run-store.js'
import type { RunStatus } from '../core/store/types.js'
import { DAEMON_PRESENCE_PREFIX } from '../core/store/types.js'
import { type CronSpec, lastTicks, parseCron } from '../sensors/cron.js'

/** What the daemon tells the query thread about its config. */
export interface OpsInstigator {
  name: string
  kind: 'sensor' | 'schedule'
  defaultStatus: 'on' | 'off'
  intervalSeconds?: number
  cron?: string
  timezone?: string
}

/** An asset's freshness policy, as the query thread takes it. */
export interface OpsFreshness {
  asset: string
  maxLag: string
  maxLagMs: number
  /** A time-partitioned asset's partitions, as declared (rebuilt here): its freshness is per partition. */
  timePartitions?: TimePartitionsSpec
}

export interface OpsQueryData {
  /** The store's location, as `openStore` takes it (it may hold a secret: never printed). */
  storeLocation: string
  instigators: OpsInstigator[]
  /** The asset whose latest materialization is the promoted index, if the config has one. */
  promoteKey?: string
  /** The assets with a freshness policy: stale or not, and how old, on `/metrics`. */
  freshness?: OpsFreshness[]
  /** The write probe's busy timeout: a locked store answers "busy" after this long. */
  probeBusyMs: number
}

/** One collection: current values, plus what happened since the previous one (histogram input). */
export interface MetricsSnapshot {
  at: number
  runs: Record<RunStatus, number>
  /** Steps of runs that ended since the previous collection. */
  steps: Array<{ asset: string; seconds: number | null; retries: number; status: string }>
  sensorLag: Record<string, number>
  /** Failed ticks since the previous collection, per sensor or schedule. */
  tickErrors: Record<string, number>
  scheduleLateness: Record<string, number>
  parked: number
  maintenance: boolean
  lease: { holder: string; expiresAt: number } | null
  pools: Record<string, number>
  promotedAt: number | null
  /** Each asset check by its latest results: failing when one of them (any partition) failed. */
  checks: Array<{ asset: string; check: string; failing: boolean }>
  /** Each asset with a freshness policy: stale (never materialized counts), its latest materialization's age. */
  freshness: Array<{
    asset: string
    stale: boolean
    ageSeconds: number | null
    maxLagSeconds: number
    /** A time-partitioned asset stale because this due partition is not materialized. */
    stalePartition?: string
  }>
}

export interface HealthSnapshot {
  store: { ok: true } | { ok: false; detail: string }
  lease: { holder: string; expiresAt: number } | null
  /** The daemons' presence leases (`daemon/<holder>`): on a shared store each daemon's own. */
  presence: Array<{ holder: string; expiresAt: number }>
}

export type QueryRequest = { id: number; kind: 'metrics' } | { id: number; kind: 'health' }
export type QueryReply =
  | { id: number; kind: 'metrics'; snapshot: MetricsSnapshot }
  | { id: number; kind: 'health'; health: HealthSnapshot }
  | { id: number; kind: 'error'; message: string }

const data = workerData as OpsQueryData
/** The assets with a freshness policy, their time partitions rebuilt once from their specs. */
const freshnessAssets: Array<FreshnessAsset & { freshness: { maxLag: string; maxLagMs: number } }> = (
  data.freshness ?? []
).map((f) => ({
  key: f.asset,
  freshness: { maxLag: f.maxLag, maxLagMs: f.maxLagMs },
  ...(f.timePartitions ? { partitions: timePartitionsOf(f.timePartitions) } : {}),
}))
let reader: Promise<RunStore> | undefined
let writer: Promise<RunStore> | undefined
let eventCursor: number | undefined
let tickCursor: number | undefined
const specs = new Map<string, CronSpec>()
for (const i of data.instigators) {
  if (i.kind === 'schedule' && i.cron) specs.set(i.name, parseCron(i.cron, i.timezone ?? 'UTC'))
}

/** The reading connection, opened on first use (a failed open is tried again next time). */
function store(): Promise<RunStore> {
  reader ??= openStore(data.storeLocation, { readonly: true, busyTimeoutMs: data.probeBusyMs }).catch(
    (error) => {
      reader = undefined
      throw error
    },
  )
  return reader
}

async function collect(): Promise<MetricsSnapshot> {
  const s = await store()
  const now = Date.now()
  // incremental: the exporter's histograms start at its own start (Prometheus counters do)
  eventCursor ??= await s.maxEventId()
  tickCursor ??= await s.maxTickId()
  const steps: MetricsSnapshot['steps'] = []
  for (;;) {
    const ends = await s.runEndsAfter(eventCursor, 500)
    for (const end of ends) {
      for (const step of await s.getSteps(end.runId)) {
        if (step.status === 'pending' || step.status === 'skipped') continue
        const seconds =
          step.startedAt !== null && step.endedAt !== null ? (step.endedAt - step.startedAt) / 1000 : null
        steps.push({ asset: step.key, seconds, retries: Math.max(0, step.attempts - 1), status: step.status })
      }
      eventCursor = end.eventId
    }
    if (ends.length < 500) break
  }
  const tickErrors: Record<string, number> = {}
  for (;;) {
    const ticks = await s.ticksAfter(tickCursor, 1000)
    for (const t of ticks) {
      if (t.status === 'failure') tickErrors[t.instigator] = (tickErrors[t.instigator] ?? 0) + 1
      tickCursor = t.id
    }
    if (ticks.length < 1000) break
  }
  const states = new Map((await s.listInstigators()).map((st) => [st.name, st]))
  const sensorLag: Record<string, number> = {}
  const scheduleLateness: Record<string, number> = {}
  for (const def of data.instigators) {
    const st = states.get(def.name)
    const status = st?.status === 'on' || st?.status === 'off' ? st.status : def.defaultStatus
    if (status === 'off') continue
    if (def.kind === 'sensor') {
      if (st?.lastTickAt == null) continue
      sensorLag[def.name] = Math.max(0, now - st.lastTickAt - (def.intervalSeconds ?? 30) * 1000) / 1000
    } else {
      const spec = specs.get(def.name)
      if (!spec || !st) continue
      const after = Math.max(
        st.cursor === null ? Number.NEGATIVE_INFINITY : Number(st.cursor),
        st.enabledAt ?? now,
      )
      const due = lastTicks(spec, after, now, 1)[0]
      scheduleLateness[def.name] = due === undefined ? 0 : (now - due) / 1000
    }
  }
  const pools: Record<string, number> = {}
  for (const slot of await s.poolUsage()) pools[slot.pool] = (pools[slot.pool] ?? 0) + 1
  const lease = await s.getLease('daemon')
  const checks = new Map<string, { asset: string; check: string; failing: boolean }>()
  for (const r of await s.latestCheckResults()) {
    const key = `${r.asset}\u0000${r.check}`
    const seen = checks.get(key)
    checks.set(key, { asset: r.asset, check: r.check, failing: (seen?.failing ?? false) || !r.passed })
  }
  const freshness: MetricsSnapshot['freshness'] = []
  if (freshnessAssets.length > 0) {
    const states = await freshnessOf(s, freshnessAssets, now)
    for (const a of freshnessAssets) {
      const state = states.get(a.key)!
      freshness.push({
        asset: a.key,
        stale: state.status !== 'fresh',
        ageSeconds:
          state.status === 'missing' || state.status === 'partition_missing' ? null : state.ageMs / 1000,
        maxLagSeconds: a.freshness.maxLagMs / 1000,
        ...(state.status === 'partition_missing' ? { stalePartition: state.partitionKey } : {}),
      })
    }
  }
  return {
    at: now,
    runs: await s.countRuns(),
    steps,
    sensorLag,
    tickErrors,
    scheduleLateness,
    parked: await s.countParked(),
    maintenance: (await s.getMaintenance()) !== null,
    lease: lease ? { holder: lease.holder, expiresAt: lease.expiresAt } : null,
    pools,
    promotedAt: data.promoteKey ? ((await s.latestMaterialization(data.promoteKey))?.ts ?? null) : null,
    checks: [...checks.values()],
    freshness,
  }
}

async function health(): Promise<HealthSnapshot> {
  let storeCheck: HealthSnapshot['store'] = { ok: true }
  try {
    writer ??= openStore(data.storeLocation, { busyTimeoutMs: data.probeBusyMs }).catch((error) => {
      writer = undefined
      throw error
    })
    await (await writer).probeWrite(Date.now())
  } catch (error) {
    storeCheck = {
      ok: false,
      detail:
        errorCode(error) === 'store-busy'
          ? 'store busy: another process holds its write lock'
          : `store not writable: ${(error as Error).message}`,
    }
  }
  let lease: HealthSnapshot['lease'] = null
  let presence: HealthSnapshot['presence'] = []
  try {
    const s = await store()
    const l = await s.getLease('daemon')
    lease = l ? { holder: l.holder, expiresAt: l.expiresAt } : null
    presence = (await s.listLeases(DAEMON_PRESENCE_PREFIX)).map((p) => ({
      holder: p.holder,
      expiresAt: p.expiresAt,
    }))
  } catch {
    // unreadable: reported as no lease held
  }
  return { store: storeCheck, lease, presence }
}

parentPort!.on('message', async (request: QueryRequest) => {
  let reply: QueryReply
  try {
    reply =
      request.kind === 'metrics'
        ? { id: request.id, kind: 'metrics', snapshot: await collect() }
        : { id: request.id, kind: 'health', health: await health() }
  } catch (error) {
    reply = { id: request.id, kind: 'error', message: (error as Error).message }
  }
  parentPort!.postMessage(reply)
})
