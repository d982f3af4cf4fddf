/**
 * Maintenance mode: replaying 10,000 parked requests, and turning maintenance on with 10 runs in
 * flight (the time it adds beyond the runs' own time, and the backup).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { systemClock } from '../core/clock.js'
import { AssetGraph } from '../core/graph.js'
import { maintenanceOn, replayParked } from '../daemon/maintenance.js'
import { asset, materialize, openStore } from '../index.js'
import { median } from './lib.js'

const assets = [
  asset({ key: 'copy', materialize: () => ({}) }),
  asset({ key: 'reindex', deps: ['copy'], materialize: () => ({}) }),
]

async function replay(dir: string, count: number): Promise<{ ms: number; perSecond: number }> {
  const store = await openStore(join(dir, `replay-${count}.db`))
  await store.setMaintenanceOn({ reason: 'bench', by: 'bench', since: Date.now(), drainTimeoutMs: 0 })
  for (let i = 0; i < count; i++) {
    await store.requestRun({
      id: `p${i}`,
      selection: 'copy+',
      plan: ['copy', 'reindex'],
      config: {},
      origin: 'sensor:files',
      runKey: `file-${i}`,
      guard: { key: 'files', concurrency: 1, onConflict: 'queue' },
      now: Date.now(),
    })
  }
  await store.setMaintenanceOff()
  const t0 = performance.now()
  const replayed = await replayParked({
    store,
    graph: AssetGraph.build(assets),
    runConfig: {},
    clock: systemClock,
  })
  const ms = performance.now() - t0
  if (replayed.length !== count || replayed.some((r) => r.outcome.outcome !== 'created'))
    throw new Error('replay incomplete')
  await store.close()
  return { ms, perSecond: (count / ms) * 1000 }
}

async function drain(dir: string, runs: number, runMs: number): Promise<{ overhead: number; total: number }> {
  const store = await openStore(join(dir, `drain-${Date.now()}.db`))
  const ends: number[] = []
  const slow = [
    asset({
      key: 'work',
      materialize: () =>
        new Promise((r) =>
          setTimeout(() => {
            ends.push(performance.now())
            r({})
          }, runMs),
        ),
    }),
  ]
  const inFlight = Array.from({ length: runs }, () => materialize(slow, { store }))
  await new Promise((r) => setTimeout(r, 20))
  const t0 = performance.now()
  const result = await maintenanceOn(store, {
    reason: 'bench',
    by: 'bench',
    drainTimeoutMs: 60_000,
    clock: systemClock,
    backupDir: join(dir, 'backups'),
    progress: () => {},
  })
  const drainedAt = performance.now()
  await Promise.all(inFlight)
  if (result.drained.length !== runs) throw new Error(`drained ${result.drained.length} of ${runs}`)
  await store.close()
  return { overhead: drainedAt - Math.max(...ends), total: drainedAt - t0 }
}

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-maint-bench-'))
  try {
    const r = await replay(dir, 10_000)
    const drains = [await drain(dir, 10, 1000), await drain(dir, 10, 1000), await drain(dir, 10, 1000)]
    const f = (n: number, d = 0) =>
      n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
    return {
      title: 'Maintenance mode: replay and drain',
      body: `| measure | result |
|---|---:|
| replay of 10,000 parked requests (each a queued run with its original run key and guard; 200 requests per transaction) | ${f(r.ms)} ms |
| runs created per second by the replay | ${f(r.perSecond)} |
| \`maintenance on\` with 10 runs in flight (1 s each): time from \`on\` to drained and backed up (median of 3) | ${f(median(drains.map((d) => d.total)))} ms |
| of which beyond the runs' own time (drain polling, backup of the store) | ${f(median(drains.map((d) => d.overhead)))} ms |`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
