/**
 * Core engine: materialize() of no-op DAGs with a file-backed store (full persistence), and
 * planning alone at 100,000 assets. Layers of 10 assets, each depending on two of the layer
 * before, as in the issue's 200-asset DAG (20 layers x 10).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import {
  type AssetDefinition,
  asset,
  buildGraph,
  materialize,
  openStore,
  resolveSelection,
} from '../index.js'
import { median } from './lib.js'

const WIDTH = 10

function layeredDag(count: number): AssetDefinition[] {
  const assets: AssetDefinition[] = []
  for (let i = 0; i < count; i++) {
    const layer = Math.floor(i / WIDTH)
    const col = i % WIDTH
    const deps =
      layer === 0 ? [] : [`a${(layer - 1) * WIDTH + col}`, `a${(layer - 1) * WIDTH + ((col + 1) % WIDTH)}`]
    assets.push(asset({ key: `a${i}`, deps, materialize: () => ({ i }) }))
  }
  return assets
}

interface Row {
  assets: number
  runs: number
  ms: number
  perAsset: number
  events: number
  eventsPerSecond: number
}

async function measure(count: number, repeats: number, dir: string): Promise<Row> {
  const assets = layeredDag(count)
  const times: number[] = []
  let events = 0
  for (let r = 0; r < repeats; r++) {
    const file = join(dir, `bench-${count}-${r}.db`)
    const t0 = performance.now()
    const result = await materialize(assets, { store: file })
    const ms = performance.now() - t0
    if (result.status !== 'success') throw new Error(`bench run failed: ${result.status}`)
    times.push(ms)
    const store = await openStore(file)
    events = await store.countEvents(result.runId)
    await store.close()
  }
  const ms = median(times)
  return {
    assets: count,
    runs: repeats,
    ms,
    perAsset: ms / count,
    events,
    eventsPerSecond: (events / ms) * 1000,
  }
}

/** A 10-asset chain: the fixed cost of one whole run, measured three ways (median of `runs`). */
async function chain(dir: string, runs: number) {
  const assets = Array.from({ length: 10 }, (_, i) =>
    asset({ key: `c${i}`, deps: i === 0 ? [] : [`c${i - 1}`], materialize: () => ({ i }) }),
  )
  const file = join(dir, 'chain.db')
  await (await openStore(file)).close()
  const timed = async (fn: () => Promise<unknown>) => {
    const times: number[] = []
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now()
      await fn()
      times.push(performance.now() - t0)
    }
    return median(times)
  }
  // by path: opens the existing file (identity and schema checked), runs, closes it
  const byPath = await timed(() => materialize(assets, { store: file }))
  const openClose = await timed(async () => (await openStore(file)).close())
  const opened = await openStore(file)
  const byStore = await timed(() => materialize(assets, { store: opened }))
  const events = await opened.countEvents((await opened.listRuns({ limit: 1 }))[0]!.id)
  // where one run's fixed cost goes: the store calls it makes (each write call is one transaction)
  const calls = new Map<string, number>()
  const counting = new Proxy(opened, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        calls.set(String(key), (calls.get(String(key)) ?? 0) + 1)
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  await materialize(assets, { store: counting })
  const t0 = performance.now()
  for (let i = 0; i < runs; i++) resolveSelection(buildGraph(assets), '*')
  const planning = (performance.now() - t0) / runs
  await opened.close()
  const memory = await timed(() => materialize(assets, { store: ':memory:' }))
  const memoryStore = await openStore(':memory:')
  const memoryOpened = await timed(() => materialize(assets, { store: memoryStore }))
  await memoryStore.close()
  return { byPath, openClose, byStore, memory, memoryOpened, events, calls, planning }
}

function planOnly(count: number): { build: number; plan: number } {
  const assets = layeredDag(count)
  const t0 = performance.now()
  const graph = buildGraph(assets)
  const t1 = performance.now()
  const selected = resolveSelection(graph, '*')
  const plan = graph.sort(selected)
  const t2 = performance.now()
  if (plan.length !== count) throw new Error(`plan has ${plan.length} steps, expected ${count}`)
  return { build: t1 - t0, plan: t2 - t1 }
}

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-'))
  try {
    // warm up the JIT and the SQLite binding once
    await measure(200, 1, dir)
    const rows = [await measure(200, 7, dir), await measure(1_000, 5, dir), await measure(10_000, 3, dir)]
    await chain(dir, 20)
    const c = await chain(dir, 200)
    const planTimes = [1, 2, 3].map(() => planOnly(100_000))
    const build = median(planTimes.map((p) => p.build))
    const plan = median(planTimes.map((p) => p.plan))
    const f = (n: number, d = 1) =>
      n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
    const table = [
      '| assets | runs | wall time (median) | per asset | events written | events per second |',
      '|---:|---:|---:|---:|---:|---:|',
      ...rows.map(
        (r) =>
          `| ${r.assets.toLocaleString('en-US')} | ${r.runs} | ${f(r.ms)} ms | ${f(r.perAsset, 3)} ms | ${r.events.toLocaleString('en-US')} | ${f(r.eventsPerSecond, 0)} |`,
      ),
    ].join('\n')
    const growth = rows[2]!.perAsset / rows[0]!.perAsset
    return {
      title: 'Core engine: materialize() with a file-backed store',
      body: `No-op assets in layers of ${WIDTH}, each depending on two of the layer before; default concurrency; a new
store file per run, WAL, every event, step, attempt and materialization persisted (events written in
one transaction per turn of the event loop).

${table}

A 10-asset chain, one whole \`materialize()\` (median of 200 runs after 20 warm-up runs; ${c.events} events per run):

| store | one run |
|---|---:|
| a file, given by path (opened, checked, closed by the run) | ${f(c.byPath, 2)} ms |
| of which opening and closing the file alone | ${f(c.openClose, 2)} ms |
| a file, opened once and passed as a \`RunStore\` | ${f(c.byStore, 2)} ms |
| \`:memory:\`, given by name (a new in-memory store per run, schema created) | ${f(c.memory, 2)} ms |
| \`:memory:\`, opened once and passed | ${f(c.memoryOpened, 2)} ms |

- Where one run's fixed cost goes, on a store already open: ${[...c.calls].map(([k, n]) => `${n} \`${k}\``).join(', ')} (each \`write\` is one transaction; the run's own rows and events go in ${c.calls.get('write') ?? 0} batched transactions, plus one to create the run and one to finish it); checking the graph and planning take ${f(c.planning, 3)} ms. Opening a store file by path adds the identity and schema check and the pragmas (statements are prepared on first use); closing it after a run adds SQLite's checkpoint of the write-ahead log into the file.

- Per-asset cost from 200 to 10,000 assets grows ${f(growth, 2)}x (linear cost would be 1.00x).
- Planning alone at 100,000 assets: building and checking the graph ${f(build, 0)} ms, selecting
  \`*\` and ordering the plan ${f(plan, 0)} ms (median of 3).
- Reference (from the issue): Dagster 1.1.7 on this kind of machine, 138 ms per asset in-process
  with its SQLite store on the 200-asset DAG; the target here is at most 1 ms per asset at 1,000.`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
