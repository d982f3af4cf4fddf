/**
 * Retention on Postgres: `pruneStore` (what `refresh prune --yes` and the daemon run) over
 * 1,000,000 events of old runs, on a real server: total time, the longest batch transaction (the
 * longest any row the prune deletes stays locked), and what a writer doing a run's work meanwhile
 * (a batch of events, as the executor writes them) waited: the prune holds no lock such a writer
 * needs, so its writes should not notice.
 */
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { DEFAULT_PRUNE_BATCH, pruneStore } from '../core/retention.js'
import { openStore } from '../core/store/open.js'
import type { HistoryChunk, PrunePolicy } from '../core/store/types.js'
import { median } from './lib.js'
import { startPostgres } from './postgres-server.js'

const EVENTS = Number(process.env.REFRESH_BENCH_PRUNE_EVENTS ?? 1_000_000)
const EVENTS_PER_RUN = 53
const STEPS_PER_RUN = 7
const DAY = 86_400_000
const CHUNK = 5_000

/** An old store's history, generated: runs that ended 40 days ago and more, with their rows. */
async function* history(runs: number, now: number): AsyncGenerator<HistoryChunk> {
  const ended = (i: number) => now - 40 * DAY - (runs - i) * 60_000
  const id = (i: number) => `old-${String(i).padStart(7, '0')}`
  const chunked = async function* (
    table: HistoryChunk['table'],
    rows: () => Generator<Record<string, unknown>>,
  ) {
    let batch: Array<Record<string, unknown>> = []
    for (const row of rows()) {
      batch.push(row)
      if (batch.length >= CHUNK) {
        yield { table, rows: batch }
        batch = []
      }
    }
    if (batch.length > 0) yield { table, rows: batch }
  }
  yield* chunked('runs', function* () {
    for (let i = 0; i < runs; i++) {
      const end = ended(i)
      yield {
        id: id(i),
        status: 'success',
        selection: '*',
        plan: JSON.stringify(Array.from({ length: STEPS_PER_RUN }, (_, s) => `step${s}`)),
        origin: 'schedule:nightly',
        created_at: end - 60_000,
        started_at: end - 60_000,
        ended_at: end,
      }
    }
  })
  yield* chunked('steps', function* () {
    for (let i = 0; i < runs; i++) {
      for (let s = 0; s < STEPS_PER_RUN; s++) {
        yield {
          run_id: id(i),
          key: `step${s}`,
          plan_index: s,
          status: 'succeeded',
          attempts: 1,
          started_at: ended(i) - 50_000,
          ended_at: ended(i) - 1_000,
        }
      }
    }
  })
  yield* chunked('events', function* () {
    let n = 0
    for (let i = 0; i < runs; i++) {
      for (let e = 0; e < EVENTS_PER_RUN; e++) {
        n++
        yield {
          id: n,
          run_id: id(i),
          ts: ended(i) - 50_000 + e,
          type: 'step:progress',
          step_key: `step${e % STEPS_PER_RUN}`,
          payload: JSON.stringify({ done: e * 1_000, total: 100_000 }),
        }
      }
    }
  })
  yield* chunked('materializations', function* () {
    for (let i = 0; i < runs; i++) {
      yield {
        id: i + 1,
        asset_key: 'step6',
        run_id: id(i),
        attempt: 1,
        ts: ended(i) - 1_000,
        metadata: JSON.stringify({ rows: 100_000 }),
      }
    }
  })
}

export default async function prunePostgresBench() {
  const server = await startPostgres({ embedded: true })
  try {
    const url = await server.freshUrl('prune')
    const store = await openStore(url)
    const writer = await openStore(url)
    const now = Date.now()
    const runs = Math.ceil(EVENTS / EVENTS_PER_RUN)
    const loadStarted = performance.now()
    await store.importHistory(history(runs, now))
    const loadSeconds = (performance.now() - loadStarted) / 1000
    const policy: PrunePolicy = {
      endedBefore: now - 30 * DAY,
      failedEndedBefore: now - 30 * DAY,
      keepRunIds: [],
    }
    const dryStarted = performance.now()
    const plan = await store.pruneCandidates(policy)
    const dryMs = performance.now() - dryStarted

    // a run writing its events meanwhile: how long each of its batches takes while the prune runs
    await writer.createRun({
      id: 'live',
      selection: '*',
      plan: ['a'],
      config: {},
      status: 'started',
      now,
      owner: { pid: process.pid, host: 'bench' },
    })
    const writes: number[] = []
    let pruning = true
    const writing = (async () => {
      let ts = now
      while (pruning) {
        const t0 = performance.now()
        await writer.write({
          events: Array.from({ length: 20 }, () => ({
            type: 'log' as const,
            runId: 'live',
            ts: ++ts,
            step: 'a',
            level: 'info' as const,
            message: 'working',
          })),
          steps: [],
          attempts: [],
          materializations: [],
        })
        writes.push(performance.now() - t0)
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    const batchMs: number[] = []
    const result = await pruneStore(store, policy, {
      batchSize: DEFAULT_PRUNE_BATCH,
      onBatch: (_batch, ms) => batchMs.push(ms),
    })
    pruning = false
    await writing
    const size = await server.sql<{ bytes: string }>(
      `SELECT pg_total_relation_size('"${new URL(url).searchParams.get('schema')}".events')::text AS bytes`,
    )
    await writer.close()
    await store.close()
    const sorted = [...batchMs].sort((a, b) => a - b)
    const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? 0
    const ws = [...writes].sort((a, b) => a - b)
    const f = (n: number, digits = 0) =>
      n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    return {
      title: 'Retention on Postgres: pruning 1,000,000 events',
      body: `
A Postgres store (the embedded test server, \`fsync=off\`) holding ${f(plan.events.count)} events of ${f(plan.runs.count)} runs that ended 40 days ago and more
(${EVENTS_PER_RUN} events and ${STEPS_PER_RUN} steps each, loaded with \`importHistory\` in ${f(loadSeconds, 1)} s), pruned with
\`--older-than 30d\` by \`pruneStore\` (what \`refresh prune --yes\` and the daemon run), batch size ${f(DEFAULT_PRUNE_BATCH)}.
Meanwhile a run wrote a batch of 20 events every 5 ms on another connection. Load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' / ')} after.

| | |
|---|---:|
| dry run (\`pruneCandidates\`: what would go, one snapshot) | ${f(dryMs)} ms |
| prune, total | **${f(result.durationMs / 1000, 1)} s** (${f(result.deleted.events)} events, ${f(result.deleted.runs)} runs, ${f(result.deleted.steps)} steps, ${f(result.deleted.materializations)} materializations) |
| batches | ${f(result.batches)} |
| batch transaction: median / p99 / longest (the longest any deleted row stays locked) | ${f(median(batchMs), 1)} / ${f(p99, 1)} / **${f(result.longestBatchMs, 1)} ms** |
| the writer's batches during the prune: median / longest (${f(writes.length)} writes) | ${f(median(writes), 2)} / ${f(ws.at(-1) ?? 0, 1)} ms |
| events table on disk after (freed space is reused; \`VACUUM\` runs as autovacuum) | ${f(Number(size[0]!.bytes) / 2 ** 20, 1)} MiB |

Each batch deletes its rows in one short transaction and locks nothing but them: a writer's
transactions never wait for the prune (Postgres row locks, no table lock), unlike SQLite's single
writer, where another writer waits for at most one batch. The newest materialization of \`step6\`
is kept with its run, as the rules say (${f(plan.runs.count)} of ${f(runs)} runs are prunable).
`,
    }
  } finally {
    await server.stop()
  }
}
