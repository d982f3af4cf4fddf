/**
 * A chained backfill through a real daemon: 365 daily partitions of an asset that reads its own
 * day before (so each run waits for the one before), launched by `refresh daemon` as one
 * `refresh launch` process per run, against 365 times one run of a partition by hand
 * (`refresh run --partition`, a process each; the median of 15, times 365). The gap is what the
 * daemon adds between two links of the chain: noticing the end (its loop), submitting the next
 * run, and launching its process.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { openStore } from '../core/store/open.js'
import { median } from './lib.js'

const DAYS = Number(process.env.REFRESH_BENCH_CHAIN_DAYS ?? 365)
const ROOT = join(import.meta.dirname, '..', '..')
const CLI = join(ROOT, 'dist', 'cli', 'main.js')

const CONFIG = `import { asset, dailyPartitions, defineConfig, timeWindowMapping } from 'refresh'
const days = dailyPartitions({ start: '2025-01-01', end: '2026-01-01' })
export default defineConfig({
  assets: [
    asset({
      key: 'total',
      deps: ['total'],
      partitions: days,
      partitionMappings: { total: timeWindowMapping({ startOffset: -1, endOffset: -1 }) },
      materialize: (ctx) => ({ total: ((ctx.upstream.total?.total as number | undefined) ?? 0) + 1 }),
    }),
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

export default async function backfillDaemonBench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-chain-'))
  let daemon: ChildProcess | undefined
  try {
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    // one run of a partition, by hand: the median of 15 processes
    const single: number[] = []
    for (let i = 0; i < 15; i++) {
      const t = performance.now()
      const code = await cli(dir, [
        'run',
        'total',
        '--partition',
        `2025-12-${String(i + 1).padStart(2, '0')}`,
        '--plain',
      ])
      if (code !== 0) throw new Error(`refresh run exited ${code}`)
      single.push(performance.now() - t)
    }
    const oneRun = median(single)
    rmSync(join(dir, '.refresh'), { recursive: true, force: true })

    const to = new Date(Date.UTC(2025, 0, DAYS)).toISOString().slice(0, 10)
    if ((await cli(dir, ['backfill', 'total', '--from', '2025-01-01', '--to', to])) !== 0)
      throw new Error('refresh backfill failed')
    const store = await openStore(join(dir, '.refresh', 'refresh.db'))
    const started = performance.now()
    daemon = spawn(process.execPath, [CLI, 'daemon'], { cwd: dir, stdio: 'ignore' })
    let status = 'requested'
    while (status === 'requested') {
      await new Promise((r) => setTimeout(r, 200))
      status = (await store.listBackfills())[0]!.status
    }
    const wall = performance.now() - started
    const last = await store.latestMaterialization('total', to)
    await store.close()
    const f = (n: number, digits = 0) =>
      n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    return {
      title: 'A chained backfill through the daemon',
      body: `
${DAYS} daily partitions of an asset that reads its own day before, so the runs go one at a time: \`refresh backfill\`,
then \`refresh daemon\` (SQLite store file, the default local launcher: a \`refresh launch RUN_ID\` process per run).

| figure | value |
|---|---:|
| the backfill's wall time, from the daemon's start to \`${status}\` (last total ${String(last?.metadata.total)}) | ${f(wall / 1000, 1)} s |
| one run of a partition by hand (\`refresh run --partition\`, a process; median of 15) | ${f(oneRun)} ms |
| ${DAYS} x one run | ${f((DAYS * oneRun) / 1000, 1)} s |
| the backfill against ${DAYS} x one run | **${f(wall / (DAYS * oneRun), 2)}x** |
| per link of the chain, beyond one run | ${f((wall - DAYS * oneRun) / DAYS)} ms |

Each link is: the run's process ends, the daemon's loop (every 250 ms) folds its end and submits the next
partition's run, and launches it as a new process, which loads the config before it runs.
`,
    }
  } finally {
    daemon?.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 500))
    rmSync(dir, { recursive: true, force: true })
  }
}
