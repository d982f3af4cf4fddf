import { createHash } from 'node:crypto'
import { createReadStream, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import type { Clock } from '../core/clock.js'
import { resolveRunConfig } from '../core/definitions.js'
import { didYouMean, StoreError } from '../core/errors.js'
import type { AssetGraph } from '../core/graph.js'
import { holdsFor, type RunGuardConfig } from '../core/guards.js'
import { newRunId } from '../core/ids.js'
import { planFromFailure } from '../core/materialize.js'
import { resolveSelection } from '../core/selection.js'
import type { SqliteStore } from '../core/store/sqlite.js'
import type {
  BackupRecord,
  MaintenanceState,
  ParkedRequest,
  RequestOutcome,
  RunRequest,
} from '../core/store/types.js'

export interface MaintenanceOnOptions {
  reason: string
  by: string
  /** In-flight runs may finish for this long; then they are canceled and parked to resume from failure. */
  drainTimeoutMs: number
  clock: Clock
  /** Where the backup goes (default: `backups/` beside the store). */
  backupDir?: string
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
  store: SqliteStore,
  options: MaintenanceOnOptions,
): Promise<MaintenanceOnResult> {
  const { clock } = options
  const state: MaintenanceState = {
    reason: options.reason,
    by: options.by,
    since: clock.now(),
    drainTimeoutMs: options.drainTimeoutMs,
  }
  if (!store.setMaintenanceOn(state)) {
    return { alreadyOn: store.getMaintenance(), drained: [], parked: [], backup: null }
  }
  const poll = options.pollMs ?? 250
  const inFlight = () => store.listRuns({ status: 'started' })
  const initial = inFlight()
  if (initial.length > 0) {
    options.progress?.(`draining ${initial.length} run(s): ${initial.map((r) => r.id).join(', ')}`)
  }
  const deadline = clock.now() + options.drainTimeoutMs
  while (inFlight().length > 0 && clock.now() < deadline) await clock.sleep(poll)
  const parked: MaintenanceOnResult['parked'] = []
  const late = inFlight()
  if (late.length > 0) {
    options.progress?.(`drain timeout: canceling ${late.length} run(s) to park them`)
    for (const run of late) store.requestCancel(run.id, clock.now())
    // their owners poll for the request several times a second
    const cancelDeadline = clock.now() + 30_000
    while (late.some((r) => store.getRun(r.id)?.status === 'started') && clock.now() < cancelDeadline) {
      await clock.sleep(poll)
    }
    for (const run of late) {
      const now = store.getRun(run.id)!
      if (now.status === 'started')
        store.abandonRun(run.id, 'canceled', 'canceled by maintenance mode (drain timeout)', clock.now())
      parked.push({ runId: run.id, requestId: store.parkForResume(store.getRun(run.id)!, clock.now()) })
    }
  }
  const lateIds = new Set(late.map((r) => r.id))
  const drained = initial.filter((r) => !lateIds.has(r.id)).map((r) => r.id)
  const backup = await backupStore(store, options)
  store.recordBackup(backup)
  return { alreadyOn: null, drained, parked, backup }
}

/** The default backup hook: an online SQLite backup of the store and a manifest of the data directory. */
async function backupStore(store: SqliteStore, options: MaintenanceOnOptions): Promise<BackupRecord> {
  const at = options.clock.now()
  if (store.isMemory)
    return { at, ok: false, location: null, detail: 'an in-memory store has nothing to back up' }
  const stamp = new Date(at).toISOString().replace(/[:.]/g, '-')
  const dir = join(options.backupDir ?? join(store.path, '..', 'backups'), stamp)
  try {
    mkdirSync(dir, { recursive: true })
    await store.backupTo(join(dir, 'refresh.db'))
    const files = options.dataDir ? await manifest(options.dataDir) : []
    writeFileSync(
      join(dir, 'manifest.json'),
      `${JSON.stringify({ at: new Date(at).toISOString(), store: store.path, dataDir: options.dataDir ?? null, files }, null, 2)}\n`,
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
  store: SqliteStore
  graph: AssetGraph
  runConfig: Record<string, Record<string, unknown>>
  clock: Clock
  guards?: readonly RunGuardConfig[]
}

export interface Replayed {
  parked: ParkedRequest
  outcome: RequestOutcome | { outcome: 'failed'; reason: string }
}

/**
 * Turns maintenance mode off and replays the parked requests: once each, in arrival order, with
 * their original run keys, against the config in force now. Throws when maintenance is not on.
 */
export function maintenanceOff(env: ReplayEnv): { state: MaintenanceState; replayed: Replayed[] } {
  const state = env.store.setMaintenanceOff()
  if (!state) {
    throw new StoreError(
      'maintenance mode is not on; nothing changed. `refresh maintenance status` shows the gate.',
    )
  }
  return { state, replayed: replayParked(env) }
}

/**
 * Replays every pending parked request (a daemon also calls this, which finishes a replay that a
 * crash interrupted). Each request is requested and marked replayed in one transaction.
 */
export function replayParked(env: ReplayEnv): Replayed[] {
  const out: Replayed[] = []
  for (;;) {
    const batch = env.store.replayParked((parked) => requestFromParked(env, parked), env.clock.now())
    if (batch.length === 0) return out
    out.push(...batch)
  }
}

function requestFromParked(env: ReplayEnv, parked: ParkedRequest): RunRequest {
  const { graph } = env
  const suggest = (key: string) => didYouMean(key, graph.assets.keys())
  const base = {
    id: newRunId(env.clock.now()),
    origin: parked.origin,
    tags: { ...parked.tags, 'refresh/replayed': String(parked.id) },
    now: env.clock.now(),
    ...(parked.runKey === null ? {} : { runKey: parked.runKey }),
    ...(parked.guard === null ? {} : { guard: parked.guard }),
  }
  if (parked.parentRunId !== null) {
    const plan = planFromFailure(env.store, graph, parked.parentRunId, env.clock)
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
