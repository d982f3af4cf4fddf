/**
 * The daemon's HTTP server (`/healthz`, `/readyz`, `/metrics`), in a worker thread of its own: the
 * daemon's loop makes synchronous store calls that wait out a locked store's busy timeout, and
 * the endpoint must answer meanwhile. Store queries run in a second thread (ops-query.ts); each
 * request waits for them at most `timeoutMs`, then answers from the last values it has.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { parentPort, Worker, workerData } from 'node:worker_threads'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { HealthSnapshot, MetricsSnapshot, OpsQueryData, QueryReply, QueryRequest } from './ops-query.js'

export interface HttpWorkerData extends OpsQueryData {
  host: string
  port: number
  /** How long a request waits for the store (default 1000 ms). */
  timeoutMs: number
  /** The daemon loop counts as stalled when its last iteration is older than this. */
  staleAfterMs: number
}

/** What the daemon's thread reports, several times a second while its loop is alive. */
export interface DaemonState {
  holder: string
  /** Several daemons share the store: each is healthy while it holds its own presence lease. */
  shared: boolean
  lastIterationAt: number | undefined
  ready: boolean
}

export type ToHttpWorker = { type: 'state'; state: DaemonState } | { type: 'close' }
export type FromHttpWorker =
  | { type: 'listening'; address: string }
  | { type: 'listen-error'; code: string; message: string }
  | { type: 'closed' }

const data = workerData as HttpWorkerData
const port = parentPort!
const startedAt = Date.now()
let daemon: DaemonState = { holder: '', shared: false, lastIterationAt: undefined, ready: false }

// ---- the query thread ------------------------------------------------------------------------

let nextId = 1
const waiting = new Map<number, (reply: QueryReply) => void>()
/** At most one request of each kind in flight: later callers wait for the same answer. */
const inFlight = new Map<QueryRequest['kind'], Promise<QueryReply>>()
let closing = false
let query = startQuery()

function startQuery(): Worker {
  const worker = new Worker(new URL('./ops-query.js', import.meta.url), {
    workerData: {
      storeLocation: data.storeLocation,
      instigators: data.instigators,
      promoteKey: data.promoteKey,
      freshness: data.freshness,
      probeBusyMs: data.probeBusyMs,
    } satisfies OpsQueryData,
  })
  worker.unref()
  worker.on('message', (reply: QueryReply) => {
    // applied whenever it arrives, even after its request timed out: no step observation is lost
    if (reply.kind === 'metrics') apply(reply.snapshot)
    waiting.get(reply.id)?.(reply)
    waiting.delete(reply.id)
  })
  const fail = (message: string) => {
    for (const [id, done] of waiting) done({ id, kind: 'error', message })
    waiting.clear()
    inFlight.clear()
  }
  worker.on('error', (error) => fail(`query thread failed: ${error.message}`))
  // a query thread that died (a bug, a corrupt file) is replaced: the endpoint keeps answering
  worker.on('exit', (code) => {
    fail(`query thread exited (${code})`)
    if (!closing)
      setTimeout(() => {
        query = startQuery()
      }, 1_000).unref()
  })
  return worker
}

function ask(kind: QueryRequest['kind']): Promise<QueryReply | 'timeout'> {
  let pending = inFlight.get(kind)
  if (!pending) {
    const id = nextId++
    pending = new Promise<QueryReply>((resolve) => waiting.set(id, resolve)).finally(() =>
      inFlight.delete(kind),
    )
    inFlight.set(kind, pending)
    query.postMessage({ id, kind } satisfies QueryRequest)
  }
  return Promise.race([
    pending,
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), data.timeoutMs)),
  ])
}

// ---- metrics ---------------------------------------------------------------------------------

const registry = new Registry()
const m = {
  runs: new Gauge({
    name: 'refresh_runs',
    help: 'Runs in the store by status',
    labelNames: ['status'],
    registers: [registry],
  }),
  stepDuration: new Histogram({
    name: 'refresh_step_duration_seconds',
    help: 'Duration of the steps of runs that ended since the exporter started, by asset',
    labelNames: ['asset', 'status'],
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 10_800],
    registers: [registry],
  }),
  retries: new Counter({
    name: 'refresh_step_retries_total',
    help: 'Retries (attempts beyond the first) of steps of runs that ended since the exporter started',
    labelNames: ['asset'],
    registers: [registry],
  }),
  sensorLag: new Gauge({
    name: 'refresh_sensor_tick_lag_seconds',
    help: 'How far past its interval a sensor is (now - last tick - interval; 0 when on time)',
    labelNames: ['sensor'],
    registers: [registry],
  }),
  tickErrors: new Counter({
    name: 'refresh_tick_errors_total',
    help: 'Failed sensor and schedule ticks since the exporter started',
    labelNames: ['instigator'],
    registers: [registry],
  }),
  lateness: new Gauge({
    name: 'refresh_schedule_lateness_seconds',
    help: 'How long ago a schedule tick fell due without firing (0 when none is due)',
    labelNames: ['schedule'],
    registers: [registry],
  }),
  parked: new Gauge({
    name: 'refresh_parked_requests',
    help: 'Run requests parked by maintenance mode',
    registers: [registry],
  }),
  maintenance: new Gauge({
    name: 'refresh_maintenance',
    help: 'Maintenance mode: 1 on, 0 off',
    registers: [registry],
  }),
  lease: new Gauge({
    name: 'refresh_lease_holder',
    help: 'The daemon lease holder (value 1; the label self is true when it is this daemon)',
    labelNames: ['holder', 'self'],
    registers: [registry],
  }),
  pools: new Gauge({
    name: 'refresh_pool_slots_used',
    help: 'Pool slots in use',
    labelNames: ['pool'],
    registers: [registry],
  }),
  promoted: new Gauge({
    name: 'refresh_promoted_index_age_seconds',
    help: 'Age of the promoted index (the latest materialization of the promote asset)',
    registers: [registry],
  }),
  checks: new Gauge({
    name: 'refresh_check_failing',
    help: 'An asset check by its latest results: 1 failing (in any partition), 0 passing',
    labelNames: ['asset', 'check'],
    registers: [registry],
  }),
  assetStale: new Gauge({
    name: 'refresh_asset_stale',
    help: 'An asset with a freshness policy: 1 stale (its latest materialization is older than its max lag, or it has none; time-partitioned: its due partition is not materialized), 0 fresh',
    labelNames: ['asset'],
    registers: [registry],
  }),
  assetStalePartition: new Gauge({
    name: 'refresh_asset_stale_partition',
    help: 'A time-partitioned asset stale because its due partition (the latest closed one whose window ended more than its max lag ago) is not materialized: 1, labeled with that partition',
    labelNames: ['asset', 'partition'],
    registers: [registry],
  }),
  assetAge: new Gauge({
    name: 'refresh_asset_materialization_age_seconds',
    help: 'Age of the latest materialization of an asset with a freshness policy (of any partition; time-partitioned: of its due partition)',
    labelNames: ['asset'],
    registers: [registry],
  }),
  assetMaxLag: new Gauge({
    name: 'refresh_asset_max_lag_seconds',
    help: "An asset's freshness policy: the age past which it is stale",
    labelNames: ['asset'],
    registers: [registry],
  }),
  iteration: new Gauge({
    name: 'refresh_daemon_last_iteration_age_seconds',
    help: 'Seconds since the daemon loop last completed an iteration',
    registers: [registry],
  }),
  stale: new Gauge({
    name: 'refresh_metrics_stale_seconds',
    help: 'Age of the store values served: 0 when fresh; above 0 when the store did not answer within the timeout',
    registers: [registry],
  }),
  timeouts: new Counter({
    name: 'refresh_metrics_timeouts_total',
    help: 'Scrapes answered from the last values because the store did not answer in time',
    registers: [registry],
  }),
}
let lastSnapshotAt: number | undefined

function apply(s: MetricsSnapshot): void {
  lastSnapshotAt = s.at
  for (const [status, n] of Object.entries(s.runs)) m.runs.set({ status }, n)
  for (const step of s.steps) {
    if (step.seconds !== null)
      m.stepDuration.observe({ asset: step.asset, status: step.status }, step.seconds)
    if (step.retries > 0) m.retries.inc({ asset: step.asset }, step.retries)
  }
  m.sensorLag.reset()
  for (const [sensor, lag] of Object.entries(s.sensorLag)) m.sensorLag.set({ sensor }, lag)
  for (const [instigator, n] of Object.entries(s.tickErrors)) m.tickErrors.inc({ instigator }, n)
  m.lateness.reset()
  for (const [schedule, late] of Object.entries(s.scheduleLateness)) m.lateness.set({ schedule }, late)
  m.parked.set(s.parked)
  m.maintenance.set(s.maintenance ? 1 : 0)
  m.lease.reset()
  if (s.lease && s.lease.expiresAt > s.at) {
    m.lease.set({ holder: s.lease.holder, self: String(s.lease.holder === daemon.holder) }, 1)
  }
  m.pools.reset()
  for (const [pool, n] of Object.entries(s.pools)) m.pools.set({ pool }, n)
  m.checks.reset()
  for (const c of s.checks) m.checks.set({ asset: c.asset, check: c.check }, c.failing ? 1 : 0)
  m.assetStale.reset()
  m.assetStalePartition.reset()
  m.assetAge.reset()
  m.assetMaxLag.reset()
  for (const f of s.freshness) {
    m.assetStale.set({ asset: f.asset }, f.stale ? 1 : 0)
    if (f.stalePartition !== undefined)
      m.assetStalePartition.set({ asset: f.asset, partition: f.stalePartition }, 1)
    m.assetMaxLag.set({ asset: f.asset }, f.maxLagSeconds)
    if (f.ageSeconds !== null) m.assetAge.set({ asset: f.asset }, f.ageSeconds)
  }
  if (s.promotedAt === null) registry.removeSingleMetric('refresh_promoted_index_age_seconds')
  else {
    if (!registry.getSingleMetric('refresh_promoted_index_age_seconds')) registry.registerMetric(m.promoted)
    m.promoted.set((s.at - s.promotedAt) / 1000)
  }
}

async function metrics(res: ServerResponse): Promise<void> {
  const reply = await ask('metrics')
  const now = Date.now()
  if (reply === 'timeout' || reply.kind !== 'metrics') {
    m.timeouts.inc()
    m.stale.set((now - (lastSnapshotAt ?? startedAt)) / 1000)
  } else {
    m.stale.set(0)
  }
  if (daemon.lastIterationAt !== undefined) m.iteration.set((now - daemon.lastIterationAt) / 1000)
  const body = await registry.metrics()
  res.writeHead(200, { 'content-type': registry.contentType })
  res.end(body)
}

// ---- health ----------------------------------------------------------------------------------

async function healthz(res: ServerResponse): Promise<void> {
  const reply = await ask('health')
  const now = Date.now()
  const checks: Record<string, { ok: boolean; detail: string }> = {}
  let health: HealthSnapshot | undefined
  if (reply === 'timeout') {
    checks.store = { ok: false, detail: `store busy: no answer within ${data.timeoutMs} ms` }
  } else if (reply.kind === 'error') {
    checks.store = { ok: false, detail: `store unreadable: ${reply.message}` }
  } else if (reply.kind === 'health') {
    health = reply.health
    checks.store = health.store.ok
      ? { ok: true, detail: 'writable' }
      : { ok: false, detail: health.store.detail }
  }
  if (health?.presence && daemon.shared) {
    // every daemon works on a shared store: healthy while its own presence lease is held
    const own = health.presence.find((p) => p.holder === daemon.holder && p.expiresAt > now)
    const alive = health.presence.filter((p) => p.expiresAt > now).length
    const leader = health.lease && health.lease.expiresAt > now ? health.lease.holder : 'nobody'
    checks.lease = own
      ? {
          ok: true,
          detail: `alive as ${daemon.holder}, one of ${alive} daemon(s); the daemon lease is held by ${leader}`,
        }
      : { ok: false, detail: `this daemon's presence lease is not held (${daemon.holder})` }
  } else if (health) {
    const lease = health.lease
    checks.lease =
      lease && lease.holder === daemon.holder && lease.expiresAt > now
        ? { ok: true, detail: `held by this daemon (${daemon.holder})` }
        : {
            ok: false,
            detail:
              lease && lease.expiresAt > now
                ? `held by another daemon: ${lease.holder}`
                : 'nobody holds the lease',
          }
  } else {
    checks.lease = { ok: false, detail: 'unknown: the store did not answer' }
  }
  const age = daemon.lastIterationAt === undefined ? undefined : now - daemon.lastIterationAt
  checks.loop =
    age !== undefined && age <= data.staleAfterMs
      ? { ok: true, detail: `last iteration ${age} ms ago` }
      : {
          ok: false,
          detail:
            age === undefined
              ? 'no iteration completed yet'
              : `ticks stalled: last iteration ${Math.round(age / 1000)} s ago (limit ${Math.round(data.staleAfterMs / 1000)} s)`,
        }
  const failing = Object.entries(checks)
    .filter(([, c]) => !c.ok)
    .map(([name]) => name)
  json(res, failing.length === 0 ? 200 : 503, {
    status: failing.length === 0 ? 'ok' : 'failing',
    failing,
    checks,
  })
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(`${JSON.stringify(body)}\n`)
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'only GET' })
  if (path === '/healthz') return healthz(res)
  if (path === '/readyz') {
    return daemon.ready
      ? json(res, 200, { status: 'ready' })
      : json(res, 503, { status: 'starting', detail: 'the daemon has not completed its first iteration' })
  }
  if (path === '/metrics') return metrics(res)
  json(res, 404, { error: `no such endpoint ${path}; try /healthz, /readyz or /metrics` })
}

const server = createServer((req, res) => {
  handle(req, res).catch((error: Error) => {
    if (!res.headersSent) json(res, 500, { error: error.message })
    else res.end()
  })
})
server.on('error', (error: NodeJS.ErrnoException) => {
  port.postMessage({
    type: 'listen-error',
    code: error.code ?? 'unknown',
    message: error.message,
  } satisfies FromHttpWorker)
})
server.listen(data.port, data.host, () => {
  const address = server.address()
  const text = typeof address === 'object' && address ? `${address.address}:${address.port}` : String(address)
  port.postMessage({ type: 'listening', address: text } satisfies FromHttpWorker)
})
// collect once at start, so a first scrape under a locked store has values to serve
void ask('metrics')

port.on('message', (message: ToHttpWorker) => {
  if (message.type === 'state') daemon = message.state
  else {
    closing = true
    server.close(() => {
      void query.terminate().then(() => port.postMessage({ type: 'closed' } satisfies FromHttpWorker))
    })
    server.closeAllConnections()
  }
})
