/**
 * The refresh building blocks end to end: `refresh run` of the default chain at 1,000,000 catalog
 * records, per step and in total, beside the floor (bench/refresh-floor.ts: the same SQL and
 * file work in one process with no engine). Peak memory is the resident set of the whole process
 * tree (the CLI and its shard workers), sampled every 50 ms from /proc.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { median } from './lib.js'

const ROWS = Number(process.env.REFRESH_BENCH_ROWS ?? 1_000_000)
const REPEATS = Number(process.env.REFRESH_BENCH_REPEATS ?? 3)
const root = join(import.meta.dirname, '..', '..')
const cli = join(root, 'dist', 'cli', 'main.js')
const floorScript = join(import.meta.dirname, 'refresh-floor.js')
const STEPS = ['catalog', 'copy', 'clean', 'reindex', 'snapshot', 'replicas', 'promote'] as const

const config = (
  rows: number,
) => `import { catalog, clean, copy, defineConfig, localProcessRunner, promote, reindex, replicas, snapshot } from 'refresh'
const dataDir = new URL('./.refresh/data/', import.meta.url)
export default defineConfig({
  assets: [
    catalog({ dataDir }), copy({ dataDir }), clean({ dataDir }),
    reindex({ dataDir, shards: 4, runner: localProcessRunner() }),
    snapshot({ dataDir }), replicas({ dataDir }), promote({ dataDir }),
  ],
  config: { catalog: { rows: ${rows} } },
})
`

interface Measured {
  wallMs: number
  peakTreeRssMb: number
  peakProcessRssMb: number
  stdout: string
}

/** Runs a node script as a child, sampling the RSS of its process tree. */
function measure(args: string[], cwd: string): Promise<Measured> {
  // each measured process starts with no dirty pages of the one before still being written back
  spawnSync('sync', [])
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    let peakTree = 0
    let peakOne = 0
    const sample = () => {
      let sum = 0
      for (const pid of tree(child.pid!)) {
        const kb = rssKb(pid)
        sum += kb
        peakOne = Math.max(peakOne, kb)
      }
      peakTree = Math.max(peakTree, sum)
    }
    const timer = setInterval(sample, 50)
    child.on('error', reject)
    child.on('close', (code) => {
      clearInterval(timer)
      if (code !== 0) return reject(new Error(`${args.join(' ')} exited ${code}: ${stderr}`))
      resolve({
        wallMs: performance.now() - started,
        peakTreeRssMb: Math.round(peakTree / 1024),
        peakProcessRssMb: Math.round(peakOne / 1024),
        stdout,
      })
    })
  })
}

function tree(pid: number): number[] {
  const out = [pid]
  for (let i = 0; i < out.length; i++) {
    try {
      const children = readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8').trim()
      if (children) out.push(...children.split(' ').map(Number))
    } catch {
      // the process ended between two reads
    }
  }
  return out
}

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

/** Step durations from the JSON event stream of `refresh run --json`. */
function stepTimes(stdout: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const e = JSON.parse(line) as { type: string; step?: string; durationMs?: number }
    if (e.type === 'step:success' && e.step) out[e.step] = e.durationMs!
    if (e.type === 'run:end') out.run = e.durationMs!
  }
  return out
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
}

const s = (ms: number) => (ms / 1000).toFixed(2)

export default async function bench() {
  const dir = mkdtempSync(join(tmpdir(), 'refresh-bench-'))
  try {
    writeFileSync(join(dir, 'refresh.config.ts'), config(ROWS))
    // the catalog is upstream data, not part of a refresh: generate it once, reuse it after
    const generate = await measure([cli, 'run', 'catalog', '--json'], dir)
    const catalogFile = join(dir, '.refresh', 'data', 'catalog.db')

    const loadBefore = loadavg()
    const runs: Array<{ steps: Record<string, number>; m: Measured }> = []
    const floors: Array<{ ms: Record<string, number>; documents: number; m: Measured }> = []
    for (let i = 0; i < REPEATS; i++) {
      const f = await measure([floorScript, catalogFile, join(dir, 'floor')], dir)
      floors.push({ ...(JSON.parse(f.stdout) as { ms: Record<string, number>; documents: number }), m: f })
      const r = await measure([cli, 'run', '--json'], dir)
      runs.push({ steps: stepTimes(r.stdout), m: r })
      process.stdout.write(`  repeat ${i + 1}: refresh ${s(r.wallMs)} s, floor ${s(f.wallMs)} s\n`)
    }
    const med = (pick: (i: number) => number | undefined) =>
      median(Array.from({ length: REPEATS }, (_, i) => pick(i) ?? 0))
    const floorOf: Record<string, string> = {
      copy: 'copy',
      clean: 'clean',
      reindex: 'reindex',
      snapshot: 'snapshot',
    }
    const rows: string[] = []
    for (const step of STEPS) {
      const ours = med((i) => runs[i]!.steps[step])
      const floorKey = floorOf[step]
      const floor = floorKey ? med((i) => floors[i]!.ms[floorKey]) : undefined
      rows.push(
        `| ${step} | ${s(ours)} | ${floor === undefined ? '-' : s(floor)} | ${floor ? `${(ours / floor).toFixed(2)}x` : '-'} |`,
      )
    }
    const engineRun = med((i) => runs[i]!.steps.run)
    const floorWork = med((i) => floors[i]!.ms.total)
    const refreshWall = med((i) => runs[i]!.m.wallMs)
    const floorWall = med((i) => floors[i]!.m.wallMs)
    rows.push(
      `| **run (engine's own clock)** | **${s(engineRun)}** | **${s(floorWork)}** | **${(engineRun / floorWork).toFixed(2)}x** |`,
    )
    rows.push(
      `| **process wall time** | **${s(refreshWall)}** | **${s(floorWall)}** | **${(refreshWall / floorWall).toFixed(2)}x** |`,
    )
    const peakTree = Math.max(...runs.map((r) => r.m.peakTreeRssMb))
    const peakOne = Math.max(...runs.map((r) => r.m.peakProcessRssMb))
    const floorPeak = Math.max(...floors.map((f) => f.m.peakTreeRssMb))
    const documents = floors[0]!.documents
    const loadAfter = loadavg()
    const indexFiles = readdirSync(join(dir, '.refresh', 'data', 'snapshots'))
    return {
      title: 'Refresh building blocks: `refresh run` at 1,000,000 records vs the floor',
      body: `
The default chain (4 shards on a pool of local worker processes, 2 replicas) over a generated
catalog of ${ROWS.toLocaleString('en-US')} records (${documents.toLocaleString('en-US')} left after clean), median of ${REPEATS} runs,
each beside a run of the floor: the same copy, clean, FTS5 build and file copy done directly
with better-sqlite3 in one process, with no engine, store, worker processes, checksums or replicas
(\`bench/refresh-floor.ts\`). The catalog is generated once beforehand (${s(generate.wallMs)} s for
\`refresh run catalog\`), so in the measured runs \`catalog\` only checks that it is current.

| step | refresh run (s) | floor (s) | ratio |
|---|---:|---:|---:|
${rows.join('\n')}

Target: total at most 1.5x the floor; the parallel reindex faster than the floor's single-process build.
Peak memory (resident set, sampled every 50 ms): the whole \`refresh run\` process tree at most
**${peakTree} MB** (largest single process ${peakOne} MB); the floor ${floorPeak} MB. Target: under 1 GiB.
Snapshots kept in the data directory at the end: ${indexFiles.length} (keep 3).
The machine is shared with other work: load average ${loadBefore} before the measured runs,
${loadAfter} after (2 CPUs); single runs of a step vary by up to 2x, hence the medians.
`,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
