/**
 * One of the claiming processes of `bench/postgres-claims.ts`: a daemon's launch path without
 * the processes it would start. It announces itself as a live daemon (its presence lease), then
 * from `startAt` claims queued runs with `claimLaunches` (as the daemon's loop does) and starts
 * each claimed run with `claimQueuedRun` (as `refresh launch` does first), the runs of a claim
 * concurrently, until the queue stays empty.
 * Usage: node dist/bench/postgres-claimer.js <store-url> <holder> <batch> <startAt>; prints one
 * JSON line: the ids it claimed and started, when its first and last run started, its peak
 * connections (`PostgresStore.connections`).
 */
import { hostname } from 'node:os'
import { DAEMON_PRESENCE_PREFIX } from '../core/store/types.js'
import { openStore } from '../index.js'

const [location, holder, batchArg, startArg] = process.argv.slice(2)
if (!location || !holder || !batchArg || !startArg) {
  throw new Error('usage: postgres-claimer.js <store-url> <holder> <batch> <startAt>')
}
const batch = Number(batchArg)
const store = await openStore(location, { busyTimeoutMs: 30_000 })
const pooled = store as unknown as { connections: number }
await store.acquireLease(`${DAEMON_PRESENCE_PREFIX}${holder}`, holder, 120_000, Date.now())
let peakConnections = pooled.connections
const sampler = setInterval(() => {
  peakConnections = Math.max(peakConnections, pooled.connections)
}, 5)
const claimed: string[] = []
const started: string[] = []
const refused: string[] = []
let claims = 0
let lastStartAt = 0
await new Promise((r) => setTimeout(r, Math.max(0, Number(startArg) - Date.now())))
const owner = { pid: process.pid, host: hostname() }
for (let empty = 0; empty < 3; ) {
  const runs = await store.claimLaunches(holder, batch, Date.now())
  claims++
  if (runs.length === 0) {
    empty++
    await new Promise((r) => setTimeout(r, 20))
    continue
  }
  empty = 0
  for (const run of runs) claimed.push(run.id)
  await Promise.all(
    runs.map(async (run) => {
      if (await store.claimQueuedRun(run.id, owner, Date.now())) {
        started.push(run.id)
        lastStartAt = Date.now()
      } else {
        refused.push(run.id)
      }
    }),
  )
}
clearInterval(sampler)
await store.releaseLease(`${DAEMON_PRESENCE_PREFIX}${holder}`, holder)
await store.close()
process.stdout.write(
  `${JSON.stringify({ holder, claimed, started, refused, claims, lastStartAt, peakConnections })}\n`,
)
