/**
 * CLI start-up: whole-process wall time of `refresh run --plain` on a config of 6 no-op assets
 * against `node -e 0` on the same machine, and of `refresh runs` with 10,000 runs in the store.
 * Also which heavy packages each command loads (traced with trace-modules.js): ink and react
 * must load only for the terminal view.
 */
import { spawnSync } from 'node:child_process'
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { newRunId } from '../core/ids.js'
import { openStore } from '../core/store/open.js'
import { median } from './lib.js'
import { packagesIn } from './loaded-packages.js'

const here = import.meta.dirname
const CLI = join(here, '..', 'cli', 'main.js')
const TRACE = join(here, 'trace-modules.js')
const REPEAT = 15
const RUNS = 10_000
const HEAVY = ['ink', 'react', 'zod', 'jiti', 'graphology', 'better-sqlite3', 'commander']

const CONFIG = `import { asset, defineConfig } from 'refresh'
const noop = (key, deps = []) => asset({ key, deps, materialize: () => ({}) })
export default defineConfig({
  assets: [noop('a'), noop('b', ['a']), noop('c', ['a']), noop('d', ['b']), noop('e', ['b', 'c']), noop('f', ['d', 'e'])],
})
`

function wall(args: string[], cwd: string): number {
  const start = performance.now()
  const r = spawnSync(process.execPath, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
  const ms = performance.now() - start
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  return ms
}

function timed(args: string[], cwd: string, repeat = REPEAT): { median: number; min: number } {
  wall(args, cwd) // warm the file cache
  const times = Array.from({ length: repeat }, () => wall(args, cwd))
  return { median: median(times), min: Math.min(...times) }
}

function loaded(args: string[], cwd: string, cli = true): Set<string> {
  const trace = join(cwd, 'trace.txt')
  rmSync(trace, { force: true })
  const r = spawnSync(process.execPath, ['--import', TRACE, ...(cli ? [CLI] : []), ...args], {
    cwd,
    env: { ...process.env, REFRESH_TRACE_MODULES: trace },
    stdio: 'ignore',
  })
  if (r.status !== 0) throw new Error(`traced ${args.join(' ')} exited ${r.status}`)
  return packagesIn(readFileSync(trace, 'utf8'))
}

/** 10,000 finished runs, one in seven failed at a step, written through the store's own API. */
async function fillStore(file: string): Promise<void> {
  await using store = await openStore(file)
  const t0 = Date.now() - RUNS * 60_000
  const plan = ['a', 'b', 'c', 'd', 'e', 'f']
  for (let i = 0; i < RUNS; i++) {
    const now = t0 + i * 60_000
    const id = newRunId(now)
    await store.createRun({ id, status: 'started', selection: '*', plan, config: {}, now })
    const failed = i % 7 === 0
    await store.write({
      events: [],
      steps: plan.map((key, k) => ({
        runId: id,
        key,
        status: failed && k === 3 ? 'failed' : failed && k > 3 ? 'skipped' : 'succeeded',
        attempts: 1,
        startedAt: now + k,
        endedAt: now + k + 1,
        error: failed && k === 3 ? { name: 'Error', message: 'boom' } : null,
        reason: failed && k > 3 ? 'd' : null,
      })),
      attempts: [],
      materializations: [],
    })
    await store.finishRun(id, failed ? 'failure' : 'success', now + 10)
  }
}

export default async function () {
  const load = loadavg()[0]!
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-cli-'))
  try {
    // a plain .mjs config imports 'refresh' natively: link the package in, as an install would
    mkdirSync(join(dir, 'node_modules'))
    symlinkSync(join(here, '..', '..'), join(dir, 'node_modules', 'refresh'), 'dir')
    const config = join(dir, 'refresh.config.mjs')
    writeFileSync(config, CONFIG)
    const node = timed(['-e', '0'], dir)
    const run = timed([CLI, 'run', '--plain', '--config', config], dir)
    const help = timed([CLI, '--help'], dir)

    const storeFile = join(dir, 'many.db')
    const fillStart = performance.now()
    await fillStore(storeFile)
    const fillMs = performance.now() - fillStart
    const runs = timed([CLI, 'runs', '--store', storeFile], dir)
    const failures = timed([CLI, 'runs', '--store', storeFile, '--status', 'failure', '--limit', '100'], dir)
    const many = timed([CLI, 'runs', '--store', storeFile, '--limit', '1000'], dir)

    const configTs = join(dir, 'refresh.config.ts')
    writeFileSync(configTs, CONFIG.replace('(key, deps = [])', '(key: string, deps: string[] = [])'))
    const runTs = timed([CLI, 'run', '--plain'], dir)

    // what each command module costs every start-up, since main.ts registers them all
    const commandsDir = join(here, '..', 'cli', 'commands')
    const perCommand = readdirSync(commandsDir)
      .filter((f) => f.endsWith('.js'))
      .map((f) => {
        const url = pathToFileURL(join(commandsDir, f)).href
        const t = timed(['--input-type=module', '-e', `await import(${JSON.stringify(url)})`], dir, 7)
        const set = loaded(['--input-type=module', '-e', `await import(${JSON.stringify(url)})`], dir, false)
        return { name: f.replace(/\.js$/, ''), ms: t.median - node.median, set }
      })
      .sort((a, b) => b.ms - a.ms)
    const commander = timed(
      ['--input-type=module', '-e', "await import('commander')"],
      join(here, '..', '..'),
      7,
    )

    const traces = [
      ['refresh --help', loaded(['--help'], dir)],
      ['refresh run --plain (6 assets)', loaded(['run', '--plain'], dir)],
      [`refresh runs (${RUNS.toLocaleString('en')} runs)`, loaded(['runs', '--store', storeFile], dir)],
    ] as const

    const ms = (n: number) => `${Math.round(n)} ms`
    const ratio = run.median / node.median
    const body = [
      `Whole-process wall time, median of ${REPEAT} runs after one warm-up (min in brackets); 1-minute load average when the section started: ${load.toFixed(1)} on ${cpus().length} CPUs (other work on the machine shows up in the medians).`,
      '',
      '| command | median | vs `node -e 0` | target |',
      '|---|---:|---:|---|',
      `| \`node -e 0\` | ${ms(node.median)} (${ms(node.min)}) | 1.0x | |`,
      `| \`refresh --help\` | ${ms(help.median)} (${ms(help.min)}) | ${(help.median / node.median).toFixed(1)}x | |`,
      `| \`refresh run --plain\`, 6 no-op assets, \`.mjs\` config | ${ms(run.median)} (${ms(run.min)}) | **${ratio.toFixed(1)}x** | <= 6x: ${ratio <= 6 ? 'met' : 'NOT met'} |`,
      `| \`refresh run --plain\`, 6 no-op assets, \`.ts\` config (jiti on Node 20) | ${ms(runTs.median)} (${ms(runTs.min)}) | ${(runTs.median / node.median).toFixed(1)}x | |`,
      `| \`refresh runs\` (20 newest of ${RUNS.toLocaleString('en')}) | ${ms(runs.median)} (${ms(runs.min)}) | ${(runs.median / node.median).toFixed(1)}x | < 200 ms: ${runs.median < 200 ? 'met' : 'NOT met'} |`,
      `| \`refresh runs --status failure --limit 100\` | ${ms(failures.median)} (${ms(failures.min)}) | ${(failures.median / node.median).toFixed(1)}x | |`,
      `| \`refresh runs --limit 1000\` | ${ms(many.median)} (${ms(many.min)}) | ${(many.median / node.median).toFixed(1)}x | |`,
      '',
      `For scale: Dagster 1.1.7 took 2.7 s for the same 6-asset run as a whole process (figure from the issue). The store of ${RUNS.toLocaleString('en')} runs (6 steps each) was written through the store API in ${ms(fillMs)}; \`refresh runs\` reads the page of runs and their failed steps in two queries (\`listRuns\`, \`failedSteps\`), without loading the config.`,
      '',
      'Packages each command loads (traced through the ESM loader; CommonJS `require`s inside a package are not listed):',
      '',
      `| command | ${HEAVY.join(' | ')} |`,
      `|---|${HEAVY.map(() => ':-:').join('|')}|`,
      ...traces.map(
        ([name, set]) => `| \`${name}\` | ${HEAVY.map((p) => (set.has(p) ? 'loaded' : '-')).join(' | ')} |`,
      ),
      '',
      'ink and react load only for the terminal view (a TTY without `--plain`/`--json`), through a dynamic `import()` in `cli/execute.ts`.',
      '',
      `\`cli/main.ts\` registers every command, so each command module is loaded at every start-up: what a module imports at its top is paid by \`refresh --help\` and \`refresh runs\` too. Cost of importing each module alone in a fresh process (median wall time minus \`node -e 0\`; shared dependencies are counted in each, commander alone costs ${ms(commander.median - node.median)}):`,
      '',
      '| cli/commands/ | import cost | heavy packages at its top |',
      '|---|---:|---|',
      ...perCommand.map(
        (c) =>
          `| ${c.name} | ${ms(c.ms)} | ${HEAVY.filter((p) => p !== 'commander' && c.set.has(p)).join(', ') || '-'} |`,
      ),
    ].join('\n')
    return { title: 'CLI start-up', body }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
