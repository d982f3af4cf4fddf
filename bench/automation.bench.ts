/**
 * Declarative automation: what one evaluation tick costs.
 * - 10,000 automated assets (`eager()`) in 100 layers of 100, each reading two assets of the layer
 *   before, all materialized: a tick where nothing changed, and a tick after 1 % of them (100 picked
 *   at random) were materialized again, with the store round trips of each tick counted;
 * - 100 `eager()` assets (10 layers of 10) of 10,000 daily partitions each: the first tick (every
 *   partition missing: 10,000 runs requested in one tick, the cap of 1,000 raised), a tick where nothing changed, and
 *   a tick after one partition of each root was materialized again; heap used after the ticks;
 * - through a real `refresh daemon` (default --automation-interval 5s): from an upstream
 *   materialization by `refresh run` to the start of the eager downstream run it causes.
 * SQLite store in memory for the first two, a file for the daemon.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { ManualClock } from '../core/clock.js'
import { type AssetDefinition, asset } from '../core/definitions.js'
import { buildGraph, materialize } from '../core/materialize.js'
import { dailyPartitions } from '../core/partitions/time.js'
import { openStore } from '../core/store/open.js'
import type { RunStore } from '../core/store/run-store.js'
import { eager } from '../sensors/automation/conditions.js'
import { AutomationEvaluator } from '../sensors/automation/evaluator.js'
import { median } from './lib.js'

const ROOT = join(import.meta.dirname, '..', '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')

/** The store, counting the calls made through it (each one a query or a transaction). */
function counting(store: RunStore): { store: RunStore; calls: () => number; reset: () => void } {
  let calls = 0
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        calls++
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  return {
    store: proxy,
    calls: () => calls,
    reset: () => {
      calls = 0
    },
  }
}

function layered(
  layers: number,
  width: number,
  extra: Partial<Parameters<typeof asset>[0]> = {},
): AssetDefinition[] {
  const out: AssetDefinition[] = []
  for (let l = 0; l < layers; l++) {
    for (let i = 0; i < width; i++) {
      const deps = l === 0 ? [] : [`l${l - 1}_${i}`, `l${l - 1}_${(i + 1) % width}`]
      out.push(asset({ key: `l${l}_${i}`, deps, automation: eager(), materialize: () => ({}), ...extra }))
    }
  }
  return out
}

/** Every queued run canceled (outside the timed part): what was requested no longer stays in progress. */
async function cancelQueued(store: RunStore, now: number): Promise<void> {
  for (const run of await store.listRuns({ status: ['queued'], limit: 100_000 }))
    await store.requestCancel(run.id, now)
}

async function wideGraph() {
  const store = await openStore(':memory:')
  const clock = new ManualClock(Date.UTC(2026, 10, 1))
  const assets = layered(100, 100)
  await materialize(assets, { store, clock, concurrency: 64 })
  const counted = counting(store)
  const ev = new AutomationEvaluator({
    store: counted.store,
    graph: buildGraph(assets),
    runConfig: {},
    clock,
  })
  let t = performance.now()
  await ev.tick()
  const first = performance.now() - t
  const quiet: number[] = []
  let quietCalls = 0
  for (let i = 0; i < 20; i++) {
    counted.reset()
    t = performance.now()
    const r = await ev.tick()
    quiet.push(performance.now() - t)
    quietCalls = counted.calls()
    if (r.requests.length > 0) throw new Error('a quiet tick requested runs')
  }
  const changed: number[] = []
  const calls: number[] = []
  const requested: number[] = []
  let seed = 7
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    return seed / 2 ** 31
  }
  for (let round = 0; round < 5; round++) {
    const picked = new Set<string>()
    while (picked.size < 100) picked.add(assets[Math.floor(random() * assets.length)]!.key)
    await materialize(assets, { store, clock, selection: [...picked] })
    await clock.advance(1000)
    counted.reset()
    t = performance.now()
    const r = await ev.tick()
    changed.push(performance.now() - t)
    calls.push(counted.calls())
    requested.push(r.requests.reduce((n, q) => n + q.assets.length, 0))
    await cancelQueued(store, clock.now())
    await ev.tick()
  }
  await store.close()
  return {
    first,
    quiet: median(quiet),
    quietCalls,
    changed: median(changed),
    calls: Math.max(...calls),
    requested,
  }
}

async function partitioned() {
  const store = await openStore(':memory:')
  const now = Date.UTC(2026, 10, 1)
  const clock = new ManualClock(now)
  const start = new Date(now - 10_000 * 86_400_000).toISOString().slice(0, 10)
  const days = dailyPartitions({ start, end: '2026-11-01' })
  if (days.size({ now }) !== 10_000) throw new Error(`expected 10,000 partitions, got ${days.size({ now })}`)
  const assets = layered(10, 10, { partitions: days })
  const counted = counting(store)
  const ev = new AutomationEvaluator({
    store: counted.store,
    graph: buildGraph(assets),
    runConfig: {},
    clock,
    // every missing partition of the roots requested in one tick (the default caps a tick at 1,000 runs)
    maxRequestsPerTick: 20_000,
  })
  let t = performance.now()
  const firstTick = await ev.tick()
  const first = performance.now() - t
  await cancelQueued(store, clock.now())
  await ev.tick()
  const quiet: number[] = []
  for (let i = 0; i < 10; i++) {
    t = performance.now()
    await ev.tick()
    quiet.push(performance.now() - t)
  }
  // one old partition of each root materialized again
  const changed: number[] = []
  const calls: number[] = []
  for (let round = 0; round < 3; round++) {
    const key = days.keyAt(1000 + round * 997, { now })
    await materialize(assets, {
      store,
      clock,
      selection: assets.slice(0, 10).map((a) => a.key),
      partition: key,
    })
    counted.reset()
    t = performance.now()
    await ev.tick()
    changed.push(performance.now() - t)
    calls.push(counted.calls())
    await cancelQueued(store, clock.now())
    await ev.tick()
  }
  const heapMb = process.memoryUsage().heapUsed / 2 ** 20
  const stateKb =
    (await store.automationState()).assets.reduce((n, a) => n + (a.state?.length ?? 0), 0) / 1024
  await store.close()
  return {
    first,
    firstRequested: firstTick.requests.length,
    quiet: median(quiet),
    changed: median(changed),
    calls: Math.max(...calls),
    heapMb,
    stateKb,
  }
}

const DAEMON_CONFIG = `import { asset, defineConfig, eager } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'raw', materialize: () => ({}) }),
    asset({ key: 'clean', deps: ['raw'], automation: eager(), materialize: () => ({}) }),
  ],
})
`

function cli(dir: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, stdio: 'ignore' })
    child.on('error', reject)
    child.on('close', (code) => resolve(code ?? 1))
  })
}

async function latency() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-automation-'))
  let daemon: ChildProcess | undefined
  try {
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    writeFileSync(join(dir, 'refresh.config.ts'), DAEMON_CONFIG)
    daemon = spawn(process.execPath, [CLI, 'daemon'], { cwd: dir, stdio: 'ignore' })
    const store = await openStore(join(dir, '.refresh', 'refresh.db'))
    const samples: number[] = []
    const requests: number[] = []
    try {
      for (let i = 0; i < 10; i++) {
        if ((await cli(dir, ['run', 'raw', '--plain'])) !== 0) throw new Error('refresh run raw failed')
        const raw = await store.latestMaterialization('raw')
        let requested: number | undefined
        for (;;) {
          const runs = await store.listRuns({ limit: 5 })
          const follow = runs.find((r) => r.origin === 'automation' && r.createdAt >= raw!.ts)
          if (follow && requested === undefined) requested = follow.createdAt - raw!.ts
          if (
            follow &&
            follow.startedAt !== null &&
            (await store.latestMaterialization('clean'))?.runId === follow.id
          ) {
            samples.push(follow.startedAt - raw!.ts)
            requests.push(requested!)
            break
          }
          await new Promise((r) => setTimeout(r, 20))
        }
      }
    } finally {
      await store.close()
    }
    return { median: median(samples), max: Math.max(...samples), requested: median(requests) }
  } finally {
    daemon?.kill('SIGTERM')
    if (daemon) await new Promise((r) => daemon!.on('close', r))
    rmSync(dir, { recursive: true, force: true })
  }
}

export default async function automationBench() {
  const wide = await wideGraph()
  const parts = await partitioned()
  const lag = await latency()
  const ms = (n: number) => `${n.toFixed(n < 10 ? 2 : 0)} ms`
  const body = [
    'One tick of the automation evaluator (`AutomationEvaluator.tick()`, what the daemon runs every',
    '`--automation-interval`), on a SQLite store in memory; store round trips counted through a proxy.',
    '',
    '| graph | first tick (loads, evaluates all) | tick, nothing changed | round trips | tick, 1 % changed | round trips |',
    '|---|---:|---:|---:|---:|---:|',
    `| 10,000 eager assets, 100 layers | ${ms(wide.first)} | ${ms(wide.quiet)} | ${wide.quietCalls} | ${ms(wide.changed)} (${Math.min(...wide.requested)}-${Math.max(...wide.requested)} assets requested, in one run) | ${wide.calls} |`,
    `| 100 eager assets x 10,000 daily partitions | ${ms(parts.first)} (${parts.firstRequested} runs requested) | ${ms(parts.quiet)} | | ${ms(parts.changed)} (1 partition of each root) | ${parts.calls} |`,
    '',
    `100 x 10,000: the state the evaluator keeps (and persists) for the 100 assets is ${parts.stateKb.toFixed(0)} KiB (subsets are ranges`,
    `of partitions, not lists); the whole bench process's heap after these ticks, ${parts.heapMb.toFixed(0)} MiB, includes the store and its 10,000 runs.`,
    '',
    `Through a real \`refresh daemon\` (default interval 5 s): from \`refresh run raw\`'s materialization to the start of the`,
    `eager downstream run it caused: median ${ms(lag.median)}, max ${ms(lag.max)} over 10. Of the median, ${ms(lag.requested)} to the run's`,
    'request (the loop notices the new event and evaluates); the rest is the `refresh launch` process starting and claiming it.',
  ].join('\n')
  return { title: 'Declarative automation: tick cost and latency', body }
}
