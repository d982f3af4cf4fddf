/**
 * Claim throughput on Postgres: queued runs claimed and started by several processes at once,
 * each doing a daemon's launch path (bench/postgres-claimer.ts); how many runs leave the queue
 * per second, and whether any run was claimed or started twice.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { openStore } from '../index.js'

export interface ClaimResult {
  runs: number
  claimers: number
  batch: number
  /** From the common start to the last run started. */
  seconds: number
  perSecond: number
  /** Runs per claimer (started). */
  perClaimer: number[]
  /** Claim calls made in all (each a transaction). */
  claims: number
  /** Run ids handed to more than one claimer by `claimLaunches`. */
  claimedTwice: number
  /** Run ids `claimQueuedRun` started more than once. */
  startedTwice: number
  /**
   * `claimQueuedRun` calls that returned false: the run's row was locked for a moment (by another
   * claimer's scan), so it stayed queued, claimed by the same claimer, which got it again.
   */
  refused: number
  /** Runs `claimLaunches` gave back to the claimer that had claimed them before (after a refusal). */
  reclaimed: number
  /** What the store says after: started and still queued. */
  storeStarted: number
  storeQueued: number
  /** Peak `PostgresStore.connections` per claimer. */
  peakConnections: number[]
  enqueueSeconds: number
}

interface ClaimerOutput {
  holder: string
  claimed: string[]
  started: string[]
  refused: string[]
  claims: number
  lastStartAt: number
  peakConnections: number
}

const CLAIMER = join(import.meta.dirname, 'postgres-claimer.js')

/** Queues `runs` runs on an empty store at `url`, then lets `claimers` processes claim them. */
export async function claimThroughput(
  url: string,
  runs: number,
  claimers: number,
  batch: number,
): Promise<ClaimResult> {
  const t0 = Date.now()
  {
    const where = new URL(url)
    where.searchParams.set('application_name', 'refresh-bench-enqueue')
    await using store = await openStore(where.toString())
    const ids = Array.from({ length: runs }, (_, i) => `run-${String(i).padStart(6, '0')}`)
    // requested as a sensor's runs are: queued, each in its own transaction; four at a time
    for (let i = 0; i < ids.length; i += 4) {
      await Promise.all(
        ids.slice(i, i + 4).map((id, k) =>
          store.requestRun({
            id,
            selection: 'a',
            plan: ['a'],
            config: {},
            origin: 'bench',
            now: t0 + i + k,
          }),
        ),
      )
    }
  }
  const enqueueSeconds = (Date.now() - t0) / 1000
  const startAt = Date.now() + 3_000
  const outputs = await Promise.all(
    Array.from({ length: claimers }, (_, k) => {
      const where = new URL(url)
      where.searchParams.set('application_name', `refresh-bench-claimer-${k + 1}`)
      return runClaimer([where.toString(), `claimer-${k + 1}`, String(batch), String(startAt)])
    }),
  )
  const claimedBy = new Map<string, number>()
  const startedBy = new Map<string, number>()
  for (const o of outputs) {
    for (const id of new Set(o.claimed)) claimedBy.set(id, (claimedBy.get(id) ?? 0) + 1)
    for (const id of o.started) startedBy.set(id, (startedBy.get(id) ?? 0) + 1)
  }
  const twice = (m: Map<string, number>) => [...m.values()].filter((n) => n > 1).length
  const last = Math.max(...outputs.map((o) => o.lastStartAt))
  const seconds = (last - startAt) / 1000
  await using store = await openStore(url)
  const counts = await store.countRuns()
  return {
    runs,
    claimers,
    batch,
    seconds,
    perSecond: startedBy.size / seconds,
    perClaimer: outputs.map((o) => o.started.length),
    claims: outputs.reduce((n, o) => n + o.claims, 0),
    claimedTwice: twice(claimedBy),
    startedTwice: twice(startedBy),
    refused: outputs.reduce((n, o) => n + o.refused.length, 0),
    reclaimed: outputs.reduce((n, o) => n + o.claimed.length - new Set(o.claimed).size, 0),
    storeStarted: counts.started ?? 0,
    storeQueued: counts.queued ?? 0,
    peakConnections: outputs.map((o) => o.peakConnections),
    enqueueSeconds,
  }
}

function runClaimer(args: string[]): Promise<ClaimerOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLAIMER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`claimer ${args[1]} exited ${code}: ${stderr}`))
      else resolve(JSON.parse(stdout) as ClaimerOutput)
    })
  })
}
