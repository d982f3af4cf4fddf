import { createHash } from 'node:crypto'
import { createReadStream, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import type { Clock } from '../core/clock.js'
import { resolveRunConfig } from '../core/definitions.js'
import { didYouMean, StoreError } from '../core/errors.js'
import type { AssetGraph } from '../core/graph.js'
import { holdsFor, type RunGuardConfig } from '../core/guards.js'
import { newRunId } from '../core/ids.js'
import { planFromFailure } from '../core/materialize.js'
import { resolveSelection } from '../core/selection.js'
import type { RunStore } from '../core/store/run-store.js'
import type {
  BackupRecord,
  MaintenanceState,
  ParkedReplay,
  ParkedRequest,
  ReplayOutcome,
  RunRequest,
} from '../core/store/types.js'

export interface MaintenanceOnOptions {
  reason: string
  by: string
  /** In-flight runs may finish for this long; then they are canceled and parked to resume from failure. */
  drainTimeoutMs: number
  clock: Clock
  /** Where backups go: each in a folder of its own, named for its time. */
  backupDir: string
  /** A data directory to list in the backup's manifest (with sizes and sha256). */
  dataDir?: string
  /** Progress lines for the operator. */
  progress?: (message: string) => void
  pollMs?: number
}

export interface MaintenanceOnResult {
  alreadyOn: MaintenanceState | null
  /** Runs that finished during the drain. */
  drained: string[]
  /** Runs canceled at the drain timeout and parked to resume from failure. */
  parked: Array<{ runId: string; requestId: number }>
  backup: BackupRecord | null
}

/**
 * Turns maintenance mode on: new runs are parked at once (the gate is read in every run-creating
 * transaction); in-flight runs drain; past the drain timeout they are canceled cleanly and parked
 * as re-executions from failure, so each run is either finished or parked whole. When drained,
 * the store is backed up online with a manifest of the data directory, and the result recorded.
 */
export async function maintenanceOn(
  store: RunStore,
  options: MaintenanceOnOptions,
): Promise<MaintenanceOnResult> {
  const { clock } = options
  const state: MaintenanceState = {
    reason: options.reason,
    by: options.by,
    since: clock.now(),
    drainTimeoutMs: options.drainTimeoutMs,
  }
  if (!(await store.setMaintenanceOn(state))) {
    return { alreadyOn: await store.getMaintenance(), drained: [], parked: [], backup: null }
  }
  const poll = options.pollMs ?? 250
  const inFlight = () => store.listRuns({ status: 'started' })
  const initial = await inFlight()
  if (initial.length > 0) {
    options.progress?.(`draining ${initial.length} run(s): ${initial.map((r) => r.id).join(', ')}`)
  }
  const deadline = clock.now() + options.drainTimeoutMs
  while ((await inFlight()).length > 0 && clock.now() < deadline) await clock.sleep(poll)
  const parked: MaintenanceOnResult['parked'] = []
  const late = await inFlight()
  if (late.length > 0) {
    options.progress?.(`drain timeout: canceling ${late.length} run(s) to park them`)
    for (const run of late) await store.requestCancel(run.id, clock.now())
    // their owners poll for the request several times a second
    const cancelDeadline = clock.now() + 30_000
    const stillStarted = async () => {
      for (const r of late) if ((await store.getRun(r.id))?.status === 'started') return true
      return false
    }
    while ((await stillStarted()) && clock.now() < cancelDeadline) await clock.sleep(poll)
    for (const run of late) {
      if ((await store.getRun(run.id))?.status === 'started')
        await store.abandonRun(
          run.id,
          'canceled',
          'canceled by maintenance mode (drain timeout)',
          clock.now(),
        )
      const requestId = await store.parkForResume((await store.getRun(run.id))!, clock.now())
      parked.push({ runId: run.id, requestId })
    }
  }
  const lateIds = new Set(late.map((r) => r.id))
  const drained = initial.filter((r) => !lateIds.has(r.id)).map((r) => r.id)
  const backup = await backupStore(store, options)
  await store.recordBackup(backup)
  return { alreadyOn: null, drained, parked, backup }
}

/** The default backup hook: an online SQLite backup of the store and a manifest of the data directory. */
async function backupStore(store: RunStore, options: MaintenanceOnOptions): Promise<BackupRecord> {
  const at = options.clock.now()
  const stamp = new Date(at).toISOString().replace(/[:.]/g, '-')
  const dir = join(options.backupDir, stamp)
  try {
    if ((await store.backupTo(dir)) === null)
      return {
        at,
        ok: false,
        location: null,
        detail:
          store.kind === 'postgres'
            ? 'a Postgres store is backed up by its server (pg_dump, RDS snapshots), not by refresh'
            : 'an in-memory store has nothing to back up',
      }
    const files = options.dataDir ? await manifest(options.dataDir) : []
    writeFileSync(
      join(dir, 'manifest.json'),
      `${JSON.stringify({ at: new Date(at).toISOString(), store: store.displayName, dataDir: options.dataDir ?? null, files }, null, 2)}\n`,
    )
    const bytes = files.reduce((n, f) => n + f.bytes, 0)
    return {
      at,
      ok: true,
      location: dir,
      detail: `store backed up; ${files.length} data file(s), ${bytes} bytes listed`,
    }
  } catch (error) {
    return { at, ok: false, location: dir, detail: `backup failed: ${(error as Error).message}` }
  }
}

async function manifest(root: string): Promise<Array<{ path: string; bytes: number; sha256: string }>> {
  const out: Array<{ path: string; bytes: number; sha256: string }> = []
  const walk = async (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name)
      if (entry.isDirectory()) await walk(full)
      else if (entry.isFile())
        out.push({ path: relative(root, full), bytes: statSync(full).size, sha256: await sha256(full) })
    }
  }
  try {
    await walk(root)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  return out
}

function sha256(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject)
  })
}

export interface ReplayEnv {
  store: RunStore
  graph: AssetGraph
  runConfig: Record<string, Record<string, unknown>>
  clock: Clock
  guards?: readonly RunGuardConfig[]
}

export interface Replayed {
  parked: ParkedRequest
  outcome: ReplayOutcome
}

/**
 * Turns maintenance mode off and replays the parked requests: once each, in arrival order, with
 * their original run keys, against the config in force now. Throws when maintenance is not on.
 */
export async function maintenanceOff(
  env: ReplayEnv,
): Promise<{ state: MaintenanceState; replayed: Replayed[] }> {
  const state = await env.store.setMaintenanceOff()
  if (!state) {
    throw new StoreError(
      'maintenance mode is not on; nothing changed. `refresh maintenance status` shows the gate.',
    )
  }
  return { state, replayed: await replayParked(env) }
}

/**
 * Replays every pending parked request (a daemon also calls this, which finishes a replay that a
 * crash interrupted), in arrival order, a batch at a time: each batch is built against the config
 * in force now, then requested and marked replayed atomically by the store.
 */
export async function replayParked(env: ReplayEnv): Promise<Replayed[]> {
  const out: Replayed[] = []
  for (;;) {
    const pending = await env.store.listParked({ pending: true, limit: 200 })
    if (pending.length === 0) return out
    const replays: ParkedReplay[] = []
    for (const parked of pending) {
      try {
        replays.push({ parkedId: parked.id, request: await requestFromParked(env, parked) })
      } catch (error) {
        // a request that no longer resolves (its asset was removed) is reported, not retried forever
        replays.push({ parkedId: parked.id, failed: (error as Error).message })
      }
    }
    const batch = await env.store.replayParked(replays, env.clock.now())
    // nothing replayed: the gate went on again (or another replayer took them all)
    if (batch.length === 0) return out
    out.push(...batch)
  }
}

async function requestFromParked(env: ReplayEnv, parked: ParkedRequest): Promise<RunRequest> {
  const { graph } = env
  const suggest = (key: string) => didYouMean(key, graph.assets.keys())
  const base = {
    id: newRunId(env.clock.now()),
    origin: parked.origin,
    tags: { ...parked.tags, 'refresh/replayed': String(parked.id) },
    now: env.clock.now(),
    ...(parked.runKey === null ? {} : { runKey: parked.runKey }),
    ...(parked.guard === null ? {} : { guard: parked.guard }),
    ...(parked.partitionKey === null ? {} : { partitionKey: parked.partitionKey }),
  }
  if (parked.parentRunId !== null) {
    const plan = await planFromFailure(env.store, graph, parked.parentRunId, env.clock)
    const config = resolveRunConfig(graph.assets, plan.keys, parked.config, suggest)
    return {
      ...base,
      selection: plan.selection,
      plan: plan.keys,
      config,
      parentRunId: plan.parentRunId,
      reused: plan.reused,
      holds: holdsFor(graph, env.guards ?? [], plan.keys),
    }
  }
  const plan = graph.sort(resolveSelection(graph, parked.selection))
  const merged: Record<string, Record<string, unknown>> = {}
  for (const [key, value] of Object.entries(env.runConfig)) merged[key] = { ...value }
  for (const [key, value] of Object.entries(parked.config))
    merged[key] = { ...(merged[key] ?? {}), ...(value as object) }
  return {
    ...base,
    selection: parked.selection,
    plan,
    config: resolveRunConfig(graph.assets, plan, merged, suggest),
    holds: holdsFor(graph, env.guards ?? [], plan),
  }
}
