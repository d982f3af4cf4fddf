/**
 * Big backfills through a real daemon (`refresh daemon`, a `refresh launch RUN_ID` process per run,
 * SQLite store file), where bench/partitions.bench.ts measures the same backfills in-process:
 *   (a) a 50,000-partition backfill of a no-op asset with `--max-runs` high enough that runs are
 *       started and many more queued when `refresh backfill cancel ID` is run: the time from that
 *       command's start to the last of its runs ended (none left queued or started);
 *   (b) a 10,000-partition backfill with `--per-run 100` (100 runs of 100 partitions each), from the
 *       daemon's start to `completed`: partitions per second.
 * The daemon's own `--max-runs` bounds the processes at once (this machine has 2 cores, shared).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { backfillProgress } from '../core/backfills.js'
import { openStore } from '../core/store/open.js'
import type { RunStore } from '../core/store/run-store.js'
import { median } from './lib.js'

const ROOT = join(import.meta.dirname, '..', '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
/** Processes the daemon runs at once. */
const DAEMON_RUNS = Number(process.env.REFRESH_BENCH_DAEMON_RUNS ?? 6)
/** The cancel backfill's own --max-runs: its runs in flight (started and queued) at once. */
const CANCEL_MAX_RUNS = 500

// 50,000 hours from 2020-01-01 (UTC: no repeated or skipped hour)
const CONFIG = `import { asset, defineConfig, hourlyPartitions } from 'refresh'
const hours = hourlyPartitions({ start: '2020-01-01-00:00', end: new Date(Date.UTC(2020, 0, 1) + 50_000 * 3_600_000) })
export default defineConfig({
  assets: [asset({ key: 'noop', partitions: hours, materialize: () => ({}) })],
})
`

function cli(dir: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'] })
    let stdout = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, stdout }))
  })
}

async function requestBackfill(dir: string, args: string[]): Promise<string> {
  const r = await cli(dir, ['backfill', 'noop', ...args, '--json'])
  if (r.code !== 0) throw new Error(`refresh backfill exited ${r.code}`)
  return (JSON.parse(r.stdout) as { id: string }).id
}

function startDaemon(dir: string): ChildProcess {
  return spawn(process.execPath, [CLI, 'daemon', '--max-runs', String(DAEMON_RUNS)], {
    cwd: dir,
    stdio: 'ignore',
  })
}

async function stopDaemon(daemon: ChildProcess): Promise<void> {
  if (daemon.exitCode !== null) return
  const closed = new Promise((r) => daemon.on('close', r))
  daemon.kill('SIGTERM')
  await closed
}

/** The runs of a backfill not ended yet, by status. */
async function live(store: RunStore, id: string): Promise<{ queued: number; started: number }> {
  const runs = (await store.listRuns({ status: ['queued', 'started', 'paused'] })).filter(
    (r) => r.tags['refresh/backfill'] === id,
  )
  const started = runs.filter((r) => r.status === 'started').length
  return { started, queued: runs.length - started }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function cancelFigures(dir: string) {
  const id = await requestBackfill(dir, ['--max-runs', String(CANCEL_MAX_RUNS)])
  const store = await openStore(join(dir, '.refresh', 'refresh.db'))
  const daemon = startDaemon(dir)
  try {
    // the daemon in full swing (runs ended already), and a run started at the moment of the cancel
    // (a no-op run is \`started\` only between its process claiming it and its end: a short while)
    let before = { queued: 0, started: 0 }
    let done = 0
    const deadline = performance.now() + 60_000
    while (before.started < 1 || done < 20) {
      if (performance.now() > deadline)
        throw new Error(`no runs going after 60 s: ${JSON.stringify(before)}, ${done} partitions done`)
      await sleep(5)
      before = await live(store, id)
      done = backfillProgress((await store.getBackfill(id))!.state).succeeded.size
    }
    const doneBefore = (await store.getBackfill(id))!
    const t0 = performance.now()
    const canceled = await cli(dir, ['backfill', 'cancel', id])
    const command = performance.now() - t0
    if (canceled.code !== 0) throw new Error(`refresh backfill cancel exited ${canceled.code}`)
    let left = await live(store, id)
    while (left.queued + left.started > 0) {
      await sleep(10)
      left = await live(store, id)
    }
    const lastEnded = performance.now() - t0
    let status = (await store.getBackfill(id))!.status
    while (status === 'canceling') {
      await sleep(10)
      status = (await store.getBackfill(id))!.status
    }
    const statusAt = performance.now() - t0
    const runs = (await store.listRuns()).filter((r) => r.tags['refresh/backfill'] === id)
    return {
      before,
      succeededBefore: backfillProgress(doneBefore.state).succeeded.size,
      command,
      lastEnded,
      statusAt,
      status,
      runs: runs.length,
      canceledRuns: runs.filter((r) => r.status === 'canceled').length,
    }
  } finally {
    await stopDaemon(daemon)
    await store.close()
  }
}

async function perRunFigures(dir: string) {
  const id = await requestBackfill(dir, [
    '--from',
    '2020-01-01-00:00',
    '--to',
    '2021-02-20-15:00',
    '--per-run',
    '100',
  ])
  const store = await openStore(join(dir, '.refresh', 'refresh.db'))
  const total = (await store.getBackfill(id))!
  const started = performance.now()
  const daemon = startDaemon(dir)
  try {
    let b = total
    while (b.status === 'requested') {
      await sleep(100)
      b = (await store.getBackfill(id))!
    }
    const wall = performance.now() - started
    const runs = (await store.listRuns()).filter((r) => r.tags['refresh/backfill'] === id)
    const p = backfillProgress(b.state)
    return {
      wall,
      status: b.status,
      partitions: p.target.size,
      succeeded: p.succeeded.size,
      runs: runs.length,
    }
  } finally {
    await stopDaemon(daemon)
    await store.close()
  }
}

export default async function backfillDaemonScaleBench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-daemon-scale-'))
  try {
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    const loadBefore = loadavg()[0]!
    const cancel = await cancelFigures(dir)
    rmSync(join(dir, '.refresh'), { recursive: true, force: true })
    const perRun = await perRunFigures(dir)
    // what one of those runs costs by hand: a process building 100 partitions (median of 5)
    const byHand: number[] = []
    for (let i = 0; i < 5; i++) {
      const t = performance.now()
      const r = await cli(dir, [
        'run',
        'noop',
        '--partition',
        '2021-03-01-00:00...2021-03-05-03:00',
        '--plain',
      ])
      if (r.code !== 0) throw new Error(`refresh run exited ${r.code}`)
      byHand.push(performance.now() - t)
    }
    const oneRun = median(byHand)
    const loadAfter = loadavg()[0]!
    const f = (n: number, digits = 0) =>
      n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    return {
      title: 'Big backfills through the daemon',
      body: `
Through a real \`refresh daemon\` (SQLite store file, the default local launcher: a \`refresh launch RUN_ID\`
process per run, at most ${DAEMON_RUNS} at once with the daemon's \`--max-runs ${DAEMON_RUNS}\`), a no-op asset with 50,000
hourly partitions; the in-process figures of the same backfills are under "Partitions and backfills".
Load average (1 min) when the bench started and ended: ${f(loadBefore, 1)} and ${f(loadAfter, 1)} (the machine is shared:
other processes than the bench's own count in it).

| figure | value |
|---|---:|
| (a) 50,000-partition backfill, \`--max-runs ${CANCEL_MAX_RUNS}\`: runs when \`refresh backfill cancel\` starts | ${f(cancel.before.started)} started, ${f(cancel.before.queued)} queued (${f(cancel.succeededBefore)} partitions done) |
| (a) the \`refresh backfill cancel ID\` command (a process) | ${f(cancel.command)} ms |
| (a) from the cancel command's start to the last of its runs ended (none left queued or started) | **${f(cancel.lastEnded)} ms** |
| (a) from the cancel command's start to the backfill \`${cancel.status}\` (the daemon's loop folds the ends) | ${f(cancel.statusAt)} ms |
| (a) runs of the backfill in all / ended \`canceled\` | ${f(cancel.runs)} / ${f(cancel.canceledRuns)} |
| (b) 10,000-partition backfill, \`--per-run 100\`: ${f(perRun.runs)} runs, from the daemon's start to \`${perRun.status}\` | ${f(perRun.wall / 1000, 1)} s (${f(perRun.succeeded)} of ${f(perRun.partitions)} succeeded) |
| (b) partitions per second through the daemon | **${f(perRun.partitions / (perRun.wall / 1000))} partitions/s** |
| (b) one run of 100 partitions by hand (\`refresh run --partition FIRST...LAST\`, a process; median of 5) | ${f(oneRun)} ms |
| (b) ${f(perRun.runs)} x one run, one after the other | ${f((perRun.runs * oneRun) / 1000, 1)} s |

The cancel dequeues the queued runs (each ends \`canceled\` in the command itself) and asks the started ones
to cancel; a started run's process notices within its heartbeat, or finishes its no-op first. With
\`--per-run 100\` each process materializes 100 partitions, so the process cost (starting Node, loading the
config, opening the store: most of a run's time and CPU) is paid once per 100 partitions; on 2 shared cores
the runs are CPU-bound, so ${DAEMON_RUNS} at once gain far less than ${DAEMON_RUNS}x over one after the other. The cancel
closes the queued runs 500 to a transaction (\`RunStore.abandonRuns\`), competing with the daemon and its
launch processes for the store file and the CPUs; most of its time is its own process starting and
loading the config, and it varies with the load (one transaction per queued run took 2.4 to 5.1 s).
`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
