/**
 * Retention: what a run of the default refresh leaves in the store (events per run, bytes per
 * event and per run, from SQLite's `dbstat`), and `refresh prune` of 1,000,000 events: total time,
 * the longest single batch transaction (the longest the prune holds the write lock), and how long
 * another writer waited on the store meanwhile, for several batch sizes.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import Database from 'better-sqlite3'
import type { RunEvent } from '../core/events.js'
import { DEFAULT_PRUNE_BATCH, prunePolicy, pruneStore, readRetention } from '../core/retention.js'
import { openStore } from '../core/store/open.js'
import type { RunStore } from '../core/store/run-store.js'
import type { StoredEvent } from '../core/store/types.js'
import { median } from './lib.js'

const EVENTS = Number(process.env.REFRESH_BENCH_PRUNE_EVENTS ?? 1_000_000)
const SAMPLE_RUNS = 5
const BATCHES = [500, DEFAULT_PRUNE_BATCH, 10_000]
const DAY = 86_400_000
const root = join(import.meta.dirname, '..', '..')
const cli = join(root, 'dist', 'cli', 'main.js')

const CONFIG = `import { catalog, clean, copy, defineConfig, localProcessRunner, promote, reindex, replicas, snapshot } from 'refresh'
const dataDir = new URL('./.refresh/data/', import.meta.url)
export default defineConfig({
  assets: [
    catalog({ dataDir }), copy({ dataDir }), clean({ dataDir }),
    reindex({ dataDir, shards: 4, runner: localProcessRunner() }),
    snapshot({ dataDir }), replicas({ dataDir }), promote({ dataDir }),
  ],
  config: { catalog: { rows: 100000 } },
})
`

interface TableSize {
  bytes: number
  rows: number
}

/** Bytes on disk (pages, with their free space) of each table and its indexes, from `dbstat`. */
function tableSizes(file: string): Map<string, TableSize> {
  const db = new Database(file, { readonly: true })
  try {
    const objects = db
      .prepare(`SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')`)
      .all() as Array<{
      name: string
      tbl_name: string
    }>
    const pages = new Map(
      (
        db.prepare('SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name').all() as Array<{
          name: string
          bytes: number
        }>
      ).map((r) => [r.name, r.bytes]),
    )
    const out = new Map<string, TableSize>()
    for (const o of objects) {
      const entry = out.get(o.tbl_name) ?? { bytes: 0, rows: 0 }
      entry.bytes += pages.get(o.name) ?? 0
      out.set(o.tbl_name, entry)
    }
    for (const [table, entry] of out) {
      if (table.startsWith('sqlite_')) continue
      entry.rows = (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n
    }
    return out
  } finally {
    db.close()
  }
}

/** The default refresh (100,000 catalog records) run a few times through the CLI: what each run stores. */
function sampleRuns(dir: string): string {
  mkdirSync(dir)
  // the CLI binds the config's 'refresh' to this package
  writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
  for (let i = 0; i < SAMPLE_RUNS; i++) {
    const r = spawnSync(process.execPath, [cli, 'run', '--plain'], { cwd: dir, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`refresh run failed: ${r.stdout}\n${r.stderr}`)
  }
  return join(dir, '.refresh', 'refresh.db')
}

/** Fills a store with old finished runs, each with the events of a real run, until `EVENTS` events. */
async function fill(store: RunStore, template: readonly StoredEvent[], plan: string[]): Promise<number> {
  const runs = Math.ceil(EVENTS / template.length)
  let written = 0
  for (let i = 0; i < runs; i++) {
    const id = `old-${String(i).padStart(6, '0')}`
    const endedAt = Date.now() - 60 * DAY + i * 1_000
    const events = template.slice(0, Math.min(template.length, EVENTS - written)).map(({ id: _, ...e }) => ({
      ...e,
      runId: id,
      ts: endedAt - 1_000,
    })) as RunEvent[]
    await store.createRun({
      id,
      selection: '*',
      plan,
      config: {},
      status: 'started',
      owner: { pid: 1, host: 'bench' },
      now: endedAt - 2_000,
    })
    await store.write({
      events,
      steps: plan.map((key) => ({
        runId: id,
        key,
        status: 'succeeded' as const,
        attempts: 1,
        startedAt: endedAt - 1_500,
        endedAt: endedAt - 1_000,
        error: null,
        reason: null,
      })),
      attempts: plan.map((step) => ({
        runId: id,
        step,
        attempt: 1,
        status: 'succeeded' as const,
        startedAt: endedAt - 1_500,
        endedAt: endedAt - 1_000,
        error: null,
      })),
      materializations: plan.map((asset) => ({
        asset,
        runId: id,
        attempt: 1,
        ts: endedAt - 1_000,
        metadata: { rows: 100_000 },
        partitionKey: null,
      })),
    })
    await store.finishRun(id, 'success', endedAt)
    written += events.length
  }
  // one run of today: it holds the latest materializations and the newest event, and stays
  const today = Date.now()
  await store.createRun({
    id: 'today',
    selection: '*',
    plan,
    config: {},
    status: 'started',
    owner: { pid: 1, host: 'bench' },
    now: today,
  })
  await store.write({
    events: [{ type: 'log', runId: 'today', ts: today, step: null, level: 'info', message: 'today' }],
    steps: [],
    attempts: [],
    materializations: plan.map((asset) => ({
      asset,
      runId: 'today',
      attempt: 1,
      ts: today,
      metadata: {},
      partitionKey: null,
    })),
  })
  await store.finishRun('today', 'success', today)
  return runs
}

/**
 * Another writer on the store during a prune (a worker thread with its own connection, as a run
 * or a daemon in another process would be): a short write every 10 ms; its longest wait.
 */
function otherWriter(file: string): {
  stop(): Promise<{ writes: number; maxWaitMs: number; medianWaitMs: number }>
} {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads')
     ;(async () => {
       const { openStore } = await import(workerData.open)
       const store = await openStore(workerData.file)
       let stop = false
       parentPort.on('message', () => { stop = true })
       const waits = []
       while (!stop) {
         const t = performance.now()
         await store.probeWrite(Date.now())
         waits.push(performance.now() - t)
         await new Promise((r) => setTimeout(r, 10))
       }
       await store.close()
       parentPort.postMessage(waits)
     })()`,
    { eval: true, workerData: { file, open: new URL('../core/store/open.js', import.meta.url).href } },
  )
  return {
    stop: () =>
      new Promise((resolve, reject) => {
        worker.once('message', (waits: number[]) => {
          void worker.terminate()
          resolve({ writes: waits.length, maxWaitMs: Math.max(...waits), medianWaitMs: median(waits) })
        })
        worker.once('error', reject)
        worker.postMessage('stop')
      }),
  }
}

const f = (n: number, d = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
const mb = (bytes: number) => f(bytes / 2 ** 20, 1)

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-prune-bench-'))
  try {
    // ---- what a run stores --------------------------------------------------------------------
    const sample = sampleRuns(join(dir, 'sample'))
    let template: StoredEvent[]
    let plan: string[]
    {
      await using store = await openStore(sample)
      const runs = await store.listRuns()
      template = await store.getEvents(runs[0]!.id)
      plan = runs[0]!.plan
    }
    const sizes = tableSizes(sample)
    const events = sizes.get('events')!
    const perRunTables = ['runs', 'steps', 'attempts', 'events', 'materializations', 'run_holds']
    const perRun = perRunTables.reduce((sum, t) => sum + (sizes.get(t)?.bytes ?? 0), 0) / SAMPLE_RUNS
    const byType = new Map<string, { n: number; bytes: number }>()
    for (const e of template) {
      const { id: _, ...event } = e
      const entry = byType.get(e.type) ?? { n: 0, bytes: 0 }
      entry.n++
      entry.bytes += Buffer.byteLength(JSON.stringify(event))
      byType.set(e.type, entry)
    }

    // ---- prune of EVENTS events ----------------------------------------------------------------
    const base = join(dir, 'base.db')
    let runs: number
    const t0 = performance.now()
    {
      await using store = await openStore(base)
      runs = await fill(store, template, plan)
    }
    const fillMs = performance.now() - t0
    const baseBytes = statSync(base).size
    const retention = readRetention('30d', undefined)
    const loadBefore = f(loadavg()[0]!, 1)
    const loadAfter = () => f(loadavg()[0]!, 1)
    const rows: string[] = []
    let dryRunMs = 0
    for (const batchSize of BATCHES) {
      const file = join(dir, `prune-${batchSize}.db`)
      copyFileSync(base, file)
      await using store = await openStore(file)
      const policy = prunePolicy(retention, Date.now(), [])
      const d0 = performance.now()
      const planned = await store.pruneCandidates(policy)
      dryRunMs = Math.max(dryRunMs, performance.now() - d0)
      if (planned.events.count !== EVENTS)
        throw new Error(`planned ${planned.events.count} events, not ${EVENTS}`)
      const batchMs: number[] = []
      const writer = otherWriter(file)
      await new Promise((r) => setTimeout(r, 100))
      const result = await pruneStore(store, policy, { batchSize, onBatch: (_b, ms) => batchMs.push(ms) })
      const waited = await writer.stop()
      if (result.deleted.events !== EVENTS || result.deleted.runs !== runs)
        throw new Error(`pruned ${JSON.stringify(result.deleted)}`)
      const p99 = [...batchMs].sort((a, b) => a - b)[Math.floor(batchMs.length * 0.99)]!
      rows.push(
        `| ${f(batchSize)}${batchSize === DEFAULT_PRUNE_BATCH ? ' (default)' : ''} | ${f(result.durationMs / 1000, 1)} s | ${f(result.batches)} | ${f(median(batchMs), 1)} / ${f(p99, 1)} / ${f(result.longestBatchMs, 1)} ms | ${f(waited.medianWaitMs, 1)} / ${f(waited.maxWaitMs, 1)} ms (${f(waited.writes)} writes) |`,
      )
      rmSync(file, { force: true })
    }

    return {
      title: 'Retention: bytes per event and per run, and pruning 1,000,000 events (SQLite)',
      body: `What a run of the default refresh (7 steps, 100,000 catalog records, 4 index shards) stores, from
SQLite's \`dbstat\` (pages on disk, each table with its indexes) after ${SAMPLE_RUNS} runs:

| measure | SQLite |
|---|---:|
| events per run | ${f(events.rows / SAMPLE_RUNS)} |
| bytes per event (the \`events\` table and its index) | ${f(events.bytes / events.rows)} |
| bytes of events per run | ${f(events.bytes / SAMPLE_RUNS)} |
| bytes per run (runs, steps, attempts, events, materializations, holds) | ${f(perRun)} |
| a run every 5 minutes for a day (288 runs) | ${mb(perRun * 288)} MB |

The row of an event keeps its run, time, type and step in columns and the rest of the event as JSON. Before that
payload left out what the columns hold (it was the whole event), runs of the same refresh (48 events each) took 360 bytes per
event, 17,203 bytes of events and 31,949 bytes in all per run (measured 2026-11-25 on the same machine).

Events of one run by type, and the size of each as JSON (the whole event, as \`refresh logs --json\` gives it):

| type | events | bytes of JSON each (mean) |
|---|---:|---:|
${[...byType.entries()]
  .sort((a, b) => b[1].n - a[1].n)
  .map(([type, e]) => `| \`${type}\` | ${e.n} | ${f(e.bytes / e.n)} |`)
  .join('\n')}

\`refresh prune --older-than 30d\` of ${f(EVENTS)} events: ${f(runs)} finished runs of 60 days ago, each with
the ${template.length} events of a real run above (and its ${plan.length} steps, attempts and materializations), in a
${mb(baseBytes)} MB store (filled in ${f(fillMs / 1000, 1)} s). \`pruneStore\` loops \`store.pruneBatch\` (one IMMEDIATE
transaction each) and waits as long as each batch took before the next, so other writers get their turn. Meanwhile
another connection (a worker thread) writes a settings row every 10 ms, as a run or a daemon would; its wait is the
time from asking for the write lock to having written. The dry run (\`pruneCandidates\`, counts with oldest and newest
per kind) took ${f(dryRunMs)} ms.

A batch's time is that of its \`pruneBatch\` call: the transaction (the write lock held), and the WAL checkpoint
SQLite runs after some commits (it copies pages to the database file and syncs it without holding the write lock).
The longest times are those with a checkpoint, or with the process descheduled: the machine is shared (load average
${loadBefore} before the prunes, ${loadAfter()} after, on ${cpus().length} CPUs), so the other writer's wait is the figure to read for
"never holds a long lock".

| batch (events per transaction) | prune, total | batches | one batch: median / p99 / longest | other writer's wait: median / longest |
|---|---:|---:|---:|---:|
${rows.join('\n')}

A pruned SQLite file keeps its size (the freed pages are reused by new runs); \`VACUUM\` would give them back, but it
rewrites the whole file under one lock, so \`refresh prune\` does not run it.`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
