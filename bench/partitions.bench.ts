/**
 * Partitions and backfills on a SQLite store file:
 * - the status of an asset with 1,000,000 hourly partitions and 10,000 scattered gaps, read
 *   (its saved status is current) and after 1,000 new partition events (folded), with the heap
 *   it takes (against 1,000 partitions: memory flat in the number of partitions);
 * - a 10,000-partition backfill of a no-op asset: runs submitted per second (`advanceBackfill`
 *   creating queued runs, each with its partition marked in one transaction);
 * - a 50,000-partition backfill canceled with 1,000 runs queued: time from `cancel` to the last
 *   run ended;
 * - a chain of 365 daily partitions (each reads the day before) backfilled in-process (advance,
 *   then the runs launched as the daemon would, without processes) against 365 single runs.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { advanceBackfill, cancelBackfill, requestBackfill } from '../core/backfills.js'
import { ManualClock } from '../core/clock.js'
import { asset } from '../core/definitions.js'
import { buildGraph, launchRun, materialize } from '../core/materialize.js'
import { partitionStatus } from '../core/partition-status.js'
import { timeWindowMapping } from '../core/partitions/mapping.js'
import { PartitionSubset } from '../core/partitions/subset.js'
import { dailyPartitions, hourlyPartitions } from '../core/partitions/time.js'
import { openStore } from '../core/store/open.js'
import { median } from './lib.js'

const f = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

async function statusFigures(dir: string) {
  const now = Date.UTC(2026, 10, 1)
  const hours = (n: number) => hourlyPartitions({ start: new Date(now - n * 3_600_000), end: new Date(now) })
  const rows: string[] = []
  for (const size of [1_000, 1_000_000]) {
    const def = hours(size)
    const assets = [asset({ key: 'hourly', partitions: def, materialize: () => ({}) })]
    const graph = buildGraph(assets)
    await using store = await openStore(join(dir, `status-${size}.db`))
    // every partition materialized but 1% (scattered gaps), saved as the folded status
    const gaps = Math.max(1, Math.floor(size / 100))
    const ranges: Array<[number, number]> = []
    const step = Math.floor(size / gaps)
    for (let g = 0; g < gaps; g++) ranges.push([g * step, g * step + step - 1])
    const materialized = PartitionSubset.fromRanges(ranges)
    await store.savePartitionStatus(
      {
        asset: 'hourly',
        cursor: await store.maxEventId(),
        version: JSON.stringify([def.signature, [], []]),
        status: { materialized: materialized.toJSON(), failed: [], stale: [] },
        updatedAt: now,
      },
      null,
    )
    // the version partitionStatus computes: save once through it so that the next reads are current
    await partitionStatus(store, graph, 'hourly', now)
    const reads: number[] = []
    global.gc?.()
    const heapBefore = process.memoryUsage().heapUsed
    let result = await partitionStatus(store, graph, 'hourly', now)
    const heapAfter = process.memoryUsage().heapUsed
    for (let i = 0; i < 20; i++) {
      const t = performance.now()
      result = await partitionStatus(store, graph, 'hourly', now)
      reads.push(performance.now() - t)
    }
    // 1,000 new partition events (materializations of gaps) folded by the next read
    const ctx = { now }
    for (let i = 0; i < 10; i++) {
      const keys = Array.from({ length: 100 }, (_, k) =>
        def.keyAt(((i * 100 + k) * step + step - 1) % size, ctx),
      )
      for (const key of keys) {
        await materialize(assets, { store, partition: key, clock: new ManualClock(now) })
      }
    }
    const t = performance.now()
    const folded = await partitionStatus(store, graph, 'hourly', now)
    const foldMs = performance.now() - t
    rows.push(
      `| ${f(size)} | ${f(result.subsets.materialized.rangeCount)} | ${f(median(reads), 2)} | ${f(Math.max(...reads), 2)} | ${f(folded.folded)} | ${f(foldMs, 1)} | ${f(Math.max(0, heapAfter - heapBefore) / 1024, 0)} KiB |`,
    )
  }
  return rows
}

async function submissionFigures(dir: string) {
  const now = Date.UTC(2026, 10, 1)
  const days = (n: number) => dailyPartitions({ start: new Date(now - n * 86_400_000), end: new Date(now) })
  // 10,000 partitions: runs submitted per second
  const def = days(10_000)
  const assets = [asset({ key: 'noop', partitions: def, materialize: () => ({}) })]
  const graph = buildGraph(assets)
  await using store = await openStore(join(dir, 'submit.db'))
  const b = await requestBackfill(store, graph, { selection: 'noop' }, now)
  let t = performance.now()
  let created = 0
  for (;;) {
    const step = await advanceBackfill(store, graph, b.id, now)
    created += step.created.length
    if (step.created.length === 0) break
  }
  const submitMs = performance.now() - t

  // 50,000 partitions, 1,000 runs queued: cancel to the last run ended
  const big = days(50_000)
  const bigAssets = [asset({ key: 'noop', partitions: big, materialize: () => ({}) })]
  const bigGraph = buildGraph(bigAssets)
  await using store2 = await openStore(join(dir, 'cancel.db'))
  const c = await requestBackfill(store2, bigGraph, { selection: 'noop', maxRuns: 1_000 }, now)
  let queued = 0
  while (queued < 1_000) {
    const step = await advanceBackfill(store2, bigGraph, c.id, now)
    if (step.created.length === 0) break
    queued += step.created.length
  }
  t = performance.now()
  await cancelBackfill(store2, c.id, now)
  const ended = await advanceBackfill(store2, bigGraph, c.id, now)
  const cancelMs = performance.now() - t
  const left = (await store2.listRuns({ status: ['queued', 'started'] })).length

  // 10,000 partitions executed (in-process), one per run and 100 per run
  const executed: Record<number, number> = {}
  for (const perRun of [1, 100]) {
    await using s3 = await openStore(join(dir, `exec-${perRun}.db`))
    const e = await requestBackfill(s3, graph, { selection: 'noop', perRun }, now)
    const started = performance.now()
    for (let status = 'requested'; status === 'requested'; ) {
      const step = await advanceBackfill(s3, graph, e.id, now)
      status = step.backfill.status
      for (const runId of step.created)
        await launchRun(assets, runId, { store: s3, clock: new ManualClock(now) })
    }
    executed[perRun] = performance.now() - started
  }
  return { created, submitMs, queued, cancelMs, status: ended.backfill.status, left, executed }
}

async function chainFigures(dir: string) {
  const now = Date.UTC(2026, 10, 1)
  const def = dailyPartitions({ start: new Date(now - 365 * 86_400_000), end: new Date(now) })
  const assets = [
    asset({
      key: 'total',
      deps: ['total'],
      partitions: def,
      partitionMappings: { total: timeWindowMapping({ startOffset: -1, endOffset: -1 }) },
      materialize: (ctx) => ({ total: ((ctx.upstream.total?.total as number | undefined) ?? 0) + 1 }),
    }),
  ]
  const graph = buildGraph(assets)
  const ctx = { now }
  // 365 single runs, one after the other
  await using single = await openStore(join(dir, 'single.db'))
  let t = performance.now()
  for (let i = 0; i < 365; i++) {
    await materialize(assets, { store: single, partition: def.keyAt(i, ctx), clock: new ManualClock(now) })
  }
  const singleMs = performance.now() - t
  // the same as a backfill: advance, launch what it queued, advance...
  await using store = await openStore(join(dir, 'chain.db'))
  const b = await requestBackfill(store, graph, { selection: 'total' }, now)
  t = performance.now()
  let status = 'requested'
  while (status === 'requested') {
    const step = await advanceBackfill(store, graph, b.id, now)
    status = step.backfill.status
    for (const id of step.created) await launchRun(assets, id, { store, clock: new ManualClock(now) })
  }
  const chainMs = performance.now() - t
  const last = await store.latestMaterialization('total', def.keyAt(364, ctx))
  return { singleMs, chainMs, status, total: last?.metadata.total }
}

export default async function partitionsBench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-partitions-'))
  try {
    const status = await statusFigures(dir)
    const s = await submissionFigures(dir)
    const chain = await chainFigures(dir)
    return {
      title: 'Partitions and backfills',
      body: `
**Status of an asset's partitions** (\`refresh partitions ASSET\`, \`partitionStatus\`): hourly partitions, every
one materialized but 1% in scattered gaps, SQLite store file. A read whose saved status is current folds no
event; then 1,000 partitions are materialized (1,000 runs) and the next read folds their events.

| partitions | ranges | read, median (ms) | read, max of 20 (ms) | events folded | read folding them (ms) | heap of one read |
|---:|---:|---:|---:|---:|---:|---:|
${status.join('\n')}

The status is range subsets: its size goes with the number of ranges (the gaps), not the partitions.

**Backfills** (SQLite store file, runs created queued as the daemon's \`advanceBackfill\` does; each run is
created together with its partition's mark in one transaction):

| figure | value |
|---|---:|
| 10,000-partition backfill of a no-op asset: runs submitted | ${f(s.created)} in ${f(s.submitMs / 1000, 2)} s = **${f(s.created / (s.submitMs / 1000))} runs/s** |
| 10,000 partitions backfilled and executed in-process, one per run | ${f(s.executed[1]! / 1000, 1)} s = ${f(10_000 / (s.executed[1]! / 1000))} partitions/s |
| the same with \`--per-run 100\` (100 runs, each receiving a range of 100) | ${f(s.executed[100]! / 1000, 2)} s = **${f(10_000 / (s.executed[100]! / 1000))} partitions/s** |
| 50,000-partition backfill, ${f(s.queued)} runs queued: \`cancel\` to the last run ended | **${f(s.cancelMs)} ms** (${s.status}; ${s.left} runs left queued or started) |
| chain of 365 daily partitions (each reads the day before), backfilled in-process | ${f(chain.chainMs)} ms (${chain.status}, last total ${String(chain.total)}) |
| the same 365 partitions as 365 single runs, one after the other | ${f(chain.singleMs)} ms: the chain takes **${f(chain.chainMs / chain.singleMs, 2)}x** |

In-process: the runs launched by \`launchRun\` as the daemon's launcher would, without a process per run (the
daemon starts \`refresh launch RUN_ID\` per run, about 0.3 s each here; the daemon's loop reacts to a run's end
within its 250 ms interval). The same big backfills through a real daemon, a process per run: "Big backfills
through the daemon" (bench/backfill-daemon-scale.bench.ts).
`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
