/**
 * Two real `refresh daemon --json` processes on one Postgres store with 1,000 sensors on a 1 s
 * interval: ticks per second, ticks evaluated twice, CPU per daemon, and the time from a sensor
 * requesting a run to the run launched. Most sensors skip, each with a reason and a cursor of its
 * own (so that every evaluation is a row of its own: none is folded into the previous one); a few
 * request a keyed run once every few seconds, which the daemon that evaluated them launches as a
 * `refresh launch` process.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { TestPostgres } from './postgres-server.js'

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface DaemonsOptions {
  sensors: number
  /** Of those, how many request a run (each once every `requestEverySeconds`). */
  requesting: number
  requestEverySeconds: number
  /** The second daemon starts this long after the first (a join: half of the sensors move to it). */
  joinAfterSeconds: number
  /** From both daemons sharing the sensors to the measured window. */
  warmupSeconds: number
  seconds: number
}

export interface DaemonsResult {
  options: DaemonsOptions
  /** Ticks with their time in the measured window, per second. */
  ticksPerSecond: number
  /** Per daemon: its pid, ticks it evaluated in the window, its CPU (user + system) as % of one core, RSS at the end. */
  daemons: Array<{ pid: number; ticks: number; cpuPct: number; rssMiB: number }>
  /** Over the whole run: ticks of one sensor in the same 1 s interval beyond the first. */
  duplicates: number
  /** Ticks of a skipping sensor that repeated a cursor (evaluated from the same state twice). */
  cursorRepeats: number
  /** Of those, how many in the measured window; when the first and last were, from the first tick (ms). */
  cursorRepeatsMeasured: number
  cursorRepeatsSpan: [number, number] | null
  /** When the later daemon announced it was starting, from the first tick (ms). */
  secondJoinedAfterMs: number
  /** The shortest time between two ticks of one sensor, and how many were under 900 ms. */
  minGapMs: number
  gapsUnder900: number
  totalTicks: number
  /** Sensor's evaluation start → `run:launched` (ms), and → the run started by its process. */
  launch: number[]
  start: number[]
  runsRequested: number
  runsLaunched: number
  errors: string[]
}

/** The config: `sensors` sensors on a 1 s interval, as an .mjs file (loaded by Node itself). */
function config(o: DaemonsOptions): string {
  return `import { asset, defineConfig, sensor } from 'refresh'

const requesting = ${o.requesting}
const every = ${o.requestEverySeconds}
export default defineConfig({
  assets: [asset({ key: 'a', materialize: () => ({}) })],
  sensors: Array.from({ length: ${o.sensors} }, (_, i) =>
    i < requesting
      ? sensor({
          name: \`r\${i}\`,
          intervalSeconds: 1,
          // a run once every \`every\` seconds, the requesting sensors spread over that window
          evaluate: (ctx) => {
            const window = String(Math.floor((ctx.now.getTime() / 1000 + (i * every) / requesting) / every))
            if (ctx.cursor === window) return { skip: \`by \${process.pid} at \${ctx.now.getTime()}\`, cursor: window }
            return { runs: [{ selection: 'a', runKey: window }], cursor: window }
          },
        })
      : sensor({
          name: \`s\${i}\`,
          intervalSeconds: 1,
          evaluate: (ctx) => ({
            skip: \`by \${process.pid} at \${ctx.now.getTime()}\`,
            cursor: String(Number(ctx.cursor ?? 0) + 1),
          }),
        }),
  ),
})
`
}

interface Daemon {
  child: ChildProcess
  events: Array<Record<string, unknown>>
  stderr: () => string
}

function startDaemon(dir: string, url: string, name: string): Daemon {
  const where = new URL(url)
  where.searchParams.set('application_name', name)
  const child = spawn(process.execPath, [CLI, 'daemon', '--json', '--grace-seconds', '10'], {
    cwd: dir,
    env: { ...process.env, REFRESH_STORE: where.toString() },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const events: Array<Record<string, unknown>> = []
  let partial = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n')
    partial = lines.pop()!
    for (const line of lines) if (line.trim()) events.push(JSON.parse(line) as Record<string, unknown>)
  })
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8_000)
  })
  return { child, events, stderr: () => stderr }
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime + stime, in clock ticks (100/s)
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))!
  return Number(line.split(/\s+/)[1]) / 1024
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Runs two daemons on the empty store `url` (a schema on `server`) in the project folder `dir`. */
export async function twoDaemons(
  server: TestPostgres,
  url: string,
  dir: string,
  o: DaemonsOptions,
): Promise<DaemonsResult> {
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  writeFileSync(join(dir, 'refresh.config.mjs'), config(o))
  const schema = new URL(url).searchParams.get('schema')!
  const sql = <T extends Record<string, unknown>>(text: string, values?: unknown[]) =>
    server.sql<T>(text.replaceAll('$schema', `"${schema}"`), values)
  const daemons = [startDaemon(dir, url, 'refresh-bench-daemon-1')]
  try {
    // the first alone, evaluating every sensor; then the second joins and takes half of them over
    const deadline = Date.now() + 60_000
    while (!daemons[0]!.events.some((e) => e.event === 'daemons:changed')) {
      if (Date.now() > deadline || daemons[0]!.child.exitCode !== null) {
        throw new Error(`the first daemon did not start: ${daemons[0]!.stderr()}`)
      }
      await sleep(100)
    }
    await sleep(o.joinAfterSeconds * 1000)
    daemons.push(startDaemon(dir, url, 'refresh-bench-daemon-2'))
    while (
      !daemons.every((d) =>
        d.events.some((e) => e.event === 'daemons:changed' && (e.daemons as string[]).length === 2),
      )
    ) {
      if (Date.now() > deadline || daemons.some((d) => d.child.exitCode !== null)) {
        throw new Error(`the daemons did not start: ${daemons.map((d) => d.stderr()).join('\n')}`)
      }
      await sleep(100)
    }
    await sleep(o.warmupSeconds * 1000)
    const pids = daemons.map((d) => d.child.pid!)
    const cpu0 = pids.map(cpuSeconds)
    const t0 = Date.now()
    const p0 = performance.now()
    await sleep(o.seconds * 1000)
    const cpu1 = pids.map(cpuSeconds)
    const t1 = Date.now()
    const wall = (performance.now() - p0) / 1000
    const rss = pids.map(rssMiB)
    // let the last requested runs launch and start before stopping
    await sleep(3_000)
    const byPid = await sql<{ pid: string | null; n: number }>(
      `SELECT substring(skip_reason from '^by (\\d+) at') AS pid, count(*)::int AS n FROM $schema.ticks
        WHERE tick_time >= $1 AND tick_time < $2 GROUP BY 1`,
      [t0, t1],
    )
    const windowTicks = byPid.reduce((n, r) => n + r.n, 0)
    const [dup] = await sql<{ n: number }>(
      `SELECT coalesce(sum(c - 1), 0)::int AS n FROM (
         SELECT count(*) AS c FROM $schema.ticks GROUP BY instigator, tick_time / 1000 HAVING count(*) > 1) d`,
    )
    const [repeats] = await sql<{ n: number; measured: number; first: number | null; last: number | null }>(
      `SELECT coalesce(sum(c - 1), 0)::int AS n, count(*) FILTER (WHERE last >= $1)::int AS measured,
              min(last)::float8 AS first, max(last)::float8 AS last FROM (
         SELECT count(*) AS c, max(tick_time) AS last FROM $schema.ticks WHERE instigator LIKE 's%'
          GROUP BY instigator, cursor HAVING count(*) > 1) d`,
      [t0],
    )
    const [began] = await sql<{ at: number }>(`SELECT min(tick_time)::float8 AS at FROM $schema.ticks`)
    const joined = daemons[1]!.events.find((e) => e.event === 'starting')?.ts as number
    const [gaps] = await sql<{ min: number | null; under: number; total: number }>(
      `SELECT min(gap)::int AS min, count(*) FILTER (WHERE gap < 900)::int AS under,
              (SELECT count(*)::int FROM $schema.ticks) AS total
         FROM (SELECT tick_time - lag(tick_time) OVER (PARTITION BY instigator ORDER BY tick_time) AS gap
                 FROM $schema.ticks) g WHERE gap IS NOT NULL`,
    )
    const requested = await sql<{ id: string; tick_time: number; started_at: number | null }>(
      `SELECT r.id, t.tick_time::float8 AS tick_time, r.started_at::float8 AS started_at
         FROM $schema.runs r JOIN $schema.ticks t ON t.run_ids::jsonb ? r.id
        WHERE t.tick_time >= $1 AND t.tick_time < $2`,
      [t0, t1],
    )
    const launchedAt = new Map<string, number>()
    for (const d of daemons)
      for (const e of d.events)
        if (e.event === 'run:launched') launchedAt.set(e.runId as string, e.ts as number)
    const launch: number[] = []
    const start: number[] = []
    for (const r of requested) {
      const at = launchedAt.get(r.id)
      if (at !== undefined) launch.push(at - r.tick_time)
      if (r.started_at !== null) start.push(r.started_at - r.tick_time)
    }
    const errors = daemons.flatMap((d) =>
      d.events.filter((e) => e.level === 'error').map((e) => String(e.message)),
    )
    return {
      options: o,
      ticksPerSecond: windowTicks / ((t1 - t0) / 1000),
      daemons: pids.map((pid, i) => ({
        pid,
        ticks: byPid.find((r) => r.pid === String(pid))?.n ?? 0,
        cpuPct: (100 * (cpu1[i]! - cpu0[i]!)) / wall,
        rssMiB: rss[i]!,
      })),
      duplicates: dup!.n,
      cursorRepeats: repeats!.n,
      cursorRepeatsMeasured: repeats!.measured,
      cursorRepeatsSpan:
        repeats!.first === null ? null : [repeats!.first - began!.at, repeats!.last! - began!.at],
      secondJoinedAfterMs: joined - began!.at,
      minGapMs: gaps!.min ?? 0,
      gapsUnder900: gaps!.under,
      totalTicks: gaps!.total,
      launch,
      start,
      runsRequested: requested.length,
      runsLaunched: launchedAt.size,
      errors,
    }
  } finally {
    await Promise.all(
      daemons.map(async (d) => {
        if (d.child.exitCode !== null || d.child.signalCode !== null) return
        const exited = new Promise((r) => d.child.once('close', r))
        d.child.kill('SIGTERM')
        await Promise.race([exited, sleep(20_000).then(() => d.child.kill('SIGKILL'))])
        await exited
      }),
    )
  }
}
