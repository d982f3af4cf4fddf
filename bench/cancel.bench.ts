/**
 * Cancel latency and responsiveness of the default refresh at 1,000,000 catalog rows, through the
 * real CLI (`refresh run --plain`): the total time and the longest silence of the output of
 * uninterrupted runs; then Ctrl-C sent a third of the way into each step (by the clock: the step's
 * start and duration in the uninterrupted runs, not its `started` line, which a step that holds the
 * event loop prints late), the latency taken from the signal to the run's end in the store; and
 * `refresh cancel` and `refresh pause` once clean has started. With
 * `REFRESH_BENCH_BASELINE=<other checkout>/dist/cli/main.js` the same measurements of that build
 * are interleaved with these, for a before/after table.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { openStore } from '../core/store/open.js'
import { median } from './lib.js'

const ROWS = Number(process.env.REFRESH_BENCH_ROWS ?? 1_000_000)
const REPEATS = Number(process.env.REFRESH_BENCH_REPEATS ?? 3)
const root = join(import.meta.dirname, '..', '..')
const baseline = process.env.REFRESH_BENCH_BASELINE
const builds: Array<{ name: string; cli: string }> = [
  ...(baseline ? [{ name: 'before', cli: baseline }] : []),
  { name: baseline ? 'after' : 'this build', cli: join(root, 'dist', 'cli', 'main.js') },
]
const STEPS = ['catalog', 'copy', 'clean', 'reindex', 'snapshot', 'replicas'] as const

interface Started {
  child: ChildProcess
  /** When it was spawned (Date.now(), the clock of the store's timestamps). */
  spawnedAt: number
  /** Resolves with the first stdout line that matches (rejects if the process exits first). */
  line(pattern: RegExp): Promise<string>
  exited: Promise<void>
  /** The longest time between two chunks of output (ms). */
  longestSilenceMs(): number
}

/** `refresh run [selection] --plain --set catalog.rows=ROWS [...args]` as a child process. */
function startRun(cli: string, cwd: string, selection: string[], args: string[]): Started {
  const spawnedAt = Date.now()
  const child = spawn(
    process.execPath,
    [cli, 'run', ...selection, '--plain', '--set', `catalog.rows=${ROWS}`, ...args],
    { cwd, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let stdout = ''
  let stderr = ''
  let last = performance.now()
  let silence = 0
  let closed = false
  const waiters: Array<() => void> = []
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d: string) => {
    const now = performance.now()
    silence = Math.max(silence, now - last)
    last = now
    stdout += d
    for (const w of waiters.splice(0)) w()
  })
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', () => {
      closed = true
      for (const w of waiters.splice(0)) w()
      resolve()
    })
  })
  const line = async (pattern: RegExp): Promise<string> => {
    for (;;) {
      const hit = stdout.split('\n').find((l) => pattern.test(l))
      if (hit !== undefined) return hit
      if (closed) throw new Error(`the run exited before printing ${pattern}:\n${stdout}\n${stderr}`)
      await new Promise<void>((resolve) => waiters.push(resolve))
    }
  }
  return { child, spawnedAt, line, exited, longestSilenceMs: () => silence }
}

async function runIdOf(started: Started): Promise<string> {
  return /run (\w+) started/.exec(await started.line(/ run \w+ started/))![1]!
}

async function record(cwd: string, runId: string) {
  await using store = await openStore(join(cwd, '.refresh', 'refresh.db'))
  const run = (await store.getRun(runId))!
  const steps = await store.getSteps(runId)
  const events = await store.getEvents(runId, { types: ['run:pausing'] })
  return { run, steps, pausingAt: events[0]?.ts }
}

async function newestRun(cwd: string): Promise<string> {
  await using store = await openStore(join(cwd, '.refresh', 'refresh.db'))
  return (await store.listRuns({ limit: 1 }))[0]!.id
}

/** A CLI command as a child process (not spawnSync: the run's output keeps being read meanwhile). */
function command(args: string[], cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stderr }))
  })
}

type Steps = ReadonlyArray<{ key: string; startedAt: number | null; endedAt: number | null }>

/** Steps that started at or after `ts`. */
function startedAfter(steps: Steps, ts: number): string[] {
  return steps.filter((st) => st.startedAt !== null && st.startedAt >= ts).map((st) => st.key)
}

/** The step that was running at `ts`. */
function runningAt(steps: Steps, ts: number): string {
  const running = steps.find(
    (st) => st.startedAt !== null && st.startedAt <= ts && (st.endedAt === null || st.endedAt >= ts),
  )
  return running?.key ?? 'none'
}

const s = (ms: number) => (ms / 1000).toFixed(2)

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
}

function perBuild<T>(make: () => T): Record<string, T> {
  return Object.fromEntries(builds.map((b) => [b.name, make()]))
}

interface Uninterrupted {
  wallMs: number
  copyMs: number
  cleanMs: number
  silenceMs: number
}

export default async function bench() {
  // per build: a project whose catalog (the default seed) is generated once and then reused, and
  // one where each run generates a catalog of a new seed
  const projects = perBuild(() => mkdtempSync(join(tmpdir(), 'refresh-bench-cancel-')))
  const fresh = perBuild(() => mkdtempSync(join(tmpdir(), 'refresh-bench-cancel-fresh-')))
  try {
    for (const dir of [...Object.values(projects), ...Object.values(fresh)]) {
      writeFileSync(join(dir, 'refresh.config.ts'), readFileSync(join(root, 'refresh.config.ts'), 'utf8'))
    }
    for (const b of builds) {
      const r = startRun(b.cli, projects[b.name]!, ['catalog'], [])
      await r.exited
    }
    const loadBefore = loadavg()
    const generated = perBuild((): number[] => [])
    const runs = perBuild((): Uninterrupted[] => [])
    // per build and step: when it started after the spawn, and how long it took (ms)
    const timings = perBuild(() => new Map<string, Array<{ start: number; duration: number }>>())
    const timing = (build: string, step: string, start: number, duration: number) => {
      const list = timings[build]!.get(step) ?? []
      list.push({ start, duration })
      timings[build]!.set(step, list)
    }
    let seed = 100
    for (let i = 0; i < REPEATS; i++) {
      for (const b of builds) {
        const cwd = projects[b.name]!
        // a catalog of a new seed is generated, as on a first run
        spawnSync('sync', [])
        const gen = startRun(b.cli, fresh[b.name]!, ['catalog'], ['--set', `catalog.seed=${seed++}`])
        const genId = await runIdOf(gen)
        await gen.exited
        const g = await record(fresh[b.name]!, genId)
        const cat = g.steps.find((st) => st.key === 'catalog')
        if (g.run.status !== 'success' || !cat?.startedAt || !cat.endedAt)
          throw new Error(`${b.name}: refresh run catalog ended ${g.run.status}`)
        generated[b.name]!.push(cat.endedAt - cat.startedAt)
        timing(b.name, 'catalog', cat.startedAt - gen.spawnedAt, cat.endedAt - cat.startedAt)

        // the whole refresh, its catalog (rows and seed of the default config) reused
        spawnSync('sync', [])
        const t = performance.now()
        const r = startRun(b.cli, cwd, [], [])
        const id = await runIdOf(r)
        await r.exited
        const wallMs = performance.now() - t
        const { run, steps } = await record(cwd, id)
        if (run.status !== 'success') throw new Error(`${b.name}: the refresh ended ${run.status}`)
        const took = (key: string) => {
          const st = steps.find((x) => x.key === key)!
          return st.endedAt! - st.startedAt!
        }
        for (const st of steps) {
          if (st.key !== 'catalog') timing(b.name, st.key, st.startedAt! - r.spawnedAt, took(st.key))
        }
        runs[b.name]!.push({
          wallMs,
          copyMs: took('copy'),
          cleanMs: took('clean'),
          silenceMs: r.longestSilenceMs(),
        })
        process.stdout.write(
          `  ${b.name} repeat ${i + 1}: ${s(wallMs)} s (catalog generated in ${s(generated[b.name]!.at(-1)!)} s)\n`,
        )
      }
    }

    // Ctrl-C a third of the way into each step (by the clock)
    type Latency = { status: string; ms: number; running: string; after: string[] }
    const latency = new Map<string, Record<string, Latency>>()
    for (const step of STEPS) {
      const row: Record<string, Latency> = {}
      for (const b of builds) {
        const cwd = step === 'catalog' ? fresh[b.name]! : projects[b.name]!
        const into = median(timings[b.name]!.get(step)!.map((x) => x.start + x.duration / 3))
        const args = step === 'catalog' ? ['--set', `catalog.seed=${seed++}`] : []
        const r = startRun(b.cli, cwd, [], args)
        await new Promise((resolve) => setTimeout(resolve, r.spawnedAt + into - Date.now()))
        const sentAt = Date.now()
        r.child.kill('SIGINT')
        const id = await runIdOf(r)
        await r.exited
        const { run, steps } = await record(cwd, id)
        // a short step may be over before the signal lands: the run then ends as it would have
        row[b.name] = {
          status: run.status,
          ms: run.endedAt! - sentAt,
          running: runningAt(steps, sentAt),
          after: startedAfter(steps, sentAt),
        }
        process.stdout.write(`  ${b.name} Ctrl-C in ${step}: ${s(run.endedAt! - sentAt)} s\n`)
      }
      latency.set(step, row)
    }

    // `refresh cancel` and `refresh pause` from another process, a quarter into clean by the clock
    // (the command's own start-up adds to that); the run's id from the store, not its output
    const remote = new Map<string, Record<string, { ms: number; status: string; after: string[] }>>()
    for (const verb of ['cancel', 'pause'] as const) {
      const row: Record<string, { ms: number; status: string; after: string[] }> = {}
      for (const b of builds) {
        const cwd = projects[b.name]!
        const into = median(timings[b.name]!.get('clean')!.map((x) => x.start + x.duration / 4))
        const r = startRun(b.cli, cwd, [], [])
        await new Promise((resolve) => setTimeout(resolve, r.spawnedAt + into - Date.now()))
        const id = await newestRun(cwd)
        const sentAt = Date.now()
        const args = verb === 'cancel' ? [b.cli, verb, id, '--no-wait'] : [b.cli, verb, id]
        const asked = await command(args, cwd)
        if (asked.code !== 0) throw new Error(`${b.name}: refresh ${verb} failed: ${asked.stderr}`)
        await r.exited
        const { run, steps, pausingAt } = await record(cwd, id)
        // a pause request's time is not kept: the moment the command was started stands for it;
        // a pause takes effect when the run sees it (the running step finishes, no other starts)
        const requestedAt = verb === 'cancel' ? run.cancelRequestedAt! : sentAt
        const effective = verb === 'cancel' ? run.endedAt! : pausingAt!
        row[b.name] = {
          ms: effective - requestedAt,
          status: run.status,
          after: startedAfter(steps, requestedAt),
        }
        process.stdout.write(
          `  ${b.name} refresh ${verb} in clean: ${run.status}, ${s(effective - requestedAt)} s\n`,
        )
      }
      remote.set(verb, row)
    }
    const loadAfter = loadavg()

    const names = builds.map((b) => b.name)
    const head = `| | ${names.join(' | ')} |\n|---|${names.map(() => '---|').join('')}`
    const then = (after: string[]) =>
      after.length ? `then started: ${after.join(', ')}` : 'nothing started after'
    const latencyRows = STEPS.map((step) => {
      const row = latency.get(step)!
      const cells = names.map((n) => {
        const l = row[n]!
        const ms = `${l.ms < 1000 ? s(l.ms) : `**${s(l.ms)}**`} s`
        return `${l.status} ${ms} (sent in ${l.running}; ${then(l.after)})`
      })
      return `| Ctrl-C a third into \`${step}\` | ${cells.join(' | ')} |`
    })
    const remoteRows = (['cancel', 'pause'] as const).map((verb) => {
      const row = remote.get(verb)!
      const cells = names.map((n) => {
        const l = row[n]!
        const what = verb === 'cancel' ? 'ended' : 'seen'
        return `${what} ${s(l.ms)} s after the request, run ${l.status} (${then(l.after)})`
      })
      return `| \`refresh ${verb}\` in \`clean\` | ${cells.join(' | ')} |`
    })
    const med = (n: string, pick: (u: Uninterrupted) => number) => s(median(runs[n]!.map(pick)))
    const totalRows = [
      `| catalog generated (new seed) | ${names.map((n) => `${s(median(generated[n]!))} s`).join(' | ')} |`,
      `| copy | ${names.map((n) => `${med(n, (u) => u.copyMs)} s`).join(' | ')} |`,
      `| clean | ${names.map((n) => `${med(n, (u) => u.cleanMs)} s`).join(' | ')} |`,
      `| whole refresh, catalog reused (process wall time) | ${names.map((n) => `**${med(n, (u) => u.wallMs)} s**`).join(' | ')} |`,
      `| longest silence of the output in that run | ${names.map((n) => `${med(n, (u) => u.silenceMs)} s`).join(' | ')} |`,
    ]
    return {
      title: 'Cancel latency: Ctrl-C, `refresh cancel` and `refresh pause` in each step at 1,000,000 rows',
      body: `
The default config (\`refresh.config.ts\`) with \`--set catalog.rows=${ROWS}\`, through the real CLI
(\`refresh run --plain\`).${baseline ? ' "before" is the build of the parent commit (catalog, copy and clean in one synchronous call each), "after" this one (in slices that yield), measured interleaved.' : ''}

Uninterrupted runs, median of ${REPEATS}:

${head}
${totalRows.join('\n')}

Ctrl-C is sent a third of the way into the step by the clock (from the step's start and duration in
the runs above; the step running when it was sent is named); the latency runs from the signal to
the run's end in the store. \`refresh cancel\` and \`refresh pause\` are started a quarter of the way
into clean by the clock; the time runs from the request (its time in the store; for a pause, when the command
was started) to the run's end (cancel) or to the run seeing it (pause, \`run:pausing\`; the running
step then finishes). "then started": steps that started after the signal or request. Target: within
1 s.

${head}
${latencyRows.join('\n')}
${remoteRows.join('\n')}

The machine is shared with other work: load average ${loadBefore} before, ${loadAfter} after (2 CPUs).
`,
    }
  } finally {
    for (const dir of [...Object.values(projects), ...Object.values(fresh)])
      rmSync(dir, { recursive: true, force: true })
  }
}
