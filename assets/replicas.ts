import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { z } from 'zod/v4'
import { type AssetDefinition, asset } from '../core/definitions.js'
import { RefreshError } from '../core/errors.js'
import { attachParts, type ReplicaFleet } from './backends.js'
import {
  type BlockOptions,
  blockFields,
  ensureWritableDir,
  isNumber,
  isString,
  type Layout,
  layout,
  resolveDataDir,
  sweepTemps,
  tempPath,
  upstreamField,
  writeJsonAtomic,
} from './layout.js'
import { type Manifest, type ReplicaState, readManifest, readReplica, replicaNames } from './state.js'

export const replicasConfig = z.object({
  /** Read replicas (M); each is a directory that serves one snapshot. */
  replicas: z.number().int().min(1).max(64).default(2),
  /** How long a replica has to pass its readiness check. */
  readinessTimeoutMs: z.number().int().min(1).default(10_000),
  /** Fault injection for tests and drills: the replica (1-based) that fails its check; 0 for none. */
  failReplica: z.number().int().min(0).default(0),
  /** How it fails: `error` (a failed check) or `timeout` (no answer in time). */
  failMode: z.enum(['error', 'timeout']).default('error'),
})

export interface RolloutOptions {
  /** The run (or rollback) rolling out: what it writes under a temporary name carries it. */
  runId: string
  replicas: number
  readinessTimeoutMs: number
  failReplica?: number
  failMode?: 'error' | 'timeout'
  signal?: AbortSignal
  log?: (message: string) => void
}

export interface RolloutResult {
  updated: string[]
  /** The snapshot the first replica served before, if any. */
  previousSnapshot: string | null
}

export function replicaName(n: number): string {
  return `replica-${n}`
}

/**
 * Rolls the replicas onto a snapshot one at a time: each switches, then must pass a readiness
 * check (real queries, document count equal to the manifest's) before the next one moves. On a
 * failure or a timeout every replica switched so far goes back to what it served before, and the
 * error names the replica and the reason. Shared by the `replicas` asset and `promote --rollback`.
 */
export async function rollReplicas(
  paths: Layout,
  snapshot: string,
  o: RolloutOptions,
): Promise<RolloutResult> {
  const manifest = readManifest(paths, snapshot)
  if (!manifest) throw new Error(`snapshot ${snapshot} has no manifest in ${paths.snapshot(snapshot)}`)
  ensureWritableDir(paths.replicas)
  const switched: Array<{ name: string; before: ReplicaState | undefined }> = []
  let previousSnapshot: string | null = null
  for (let n = 1; n <= o.replicas; n++) {
    const name = replicaName(n)
    const dir = paths.replica(name)
    mkdirSync(dir, { recursive: true })
    const before = readReplica(paths, name)
    if (n === 1) previousSnapshot = before?.snapshot ?? null
    try {
      if (o.signal?.aborted) throw o.signal.reason
      linkSnapshot(paths, snapshot, manifest, join(dir, snapshot), o.runId)
      switched.push({ name, before })
      const state: ReplicaState = {
        snapshot,
        previous: before?.snapshot === snapshot ? before.previous : (before?.snapshot ?? null),
        since: new Date().toISOString(),
      }
      writeJsonAtomic(join(dir, 'serving.json'), state, o.runId)
      await withTimeout(
        checkReadiness(
          paths,
          name,
          manifest,
          n === o.failReplica ? (o.failMode ?? 'error') : undefined,
          o.signal,
        ),
        o.readinessTimeoutMs,
        `did not pass its readiness check within ${o.readinessTimeoutMs} ms`,
      )
      o.log?.(`${name} serves ${snapshot} (${manifest.documents} documents)`)
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      for (const s of switched.reverse()) restore(paths, s.name, s.before, o.runId)
      const back = switched.map((s) => `${s.name} -> ${s.before?.snapshot ?? 'nothing'}`).join(', ')
      throw new Error(
        `replica ${name} failed while switching to ${snapshot}: ${reason}; rolled back ${back || 'nothing'}`,
        { cause: error },
      )
    }
  }
  // the rollout stands: each replica keeps its current and previous snapshot linked, nothing older
  for (const { name } of switched) pruneReplica(paths, name)
  return { updated: switched.map((s) => s.name), previousSnapshot }
}

/**
 * Gives the replica the snapshot's files: hard links (a snapshot is immutable), else copies, made
 * under a temporary name and renamed into place once all are there, so a replica never holds a
 * half-copied snapshot. One it already holds whole is kept.
 */
function linkSnapshot(
  paths: Layout,
  snapshot: string,
  manifest: Manifest,
  target: string,
  runId: string,
): void {
  if (existsSync(target)) return
  const partial = tempPath(target, runId)
  rmSync(partial, { recursive: true, force: true })
  mkdirSync(partial, { recursive: true })
  try {
    for (const name of [...manifest.files.map((f) => f.name), 'manifest.json']) {
      const from = join(paths.snapshot(snapshot), name)
      const to = join(partial, name)
      try {
        linkSync(from, to)
      } catch {
        // another file system (EXDEV) or no hard links: a plain copy serves the same bytes
        copyFileSync(from, to)
      }
    }
    renameSync(partial, target)
  } catch (error) {
    rmSync(partial, { recursive: true, force: true })
    throw error
  }
}

function restore(paths: Layout, name: string, before: ReplicaState | undefined, runId: string): void {
  const file = join(paths.replica(name), 'serving.json')
  if (before) writeJsonAtomic(file, before, runId)
  else rmSync(file, { force: true })
}

function pruneReplica(paths: Layout, name: string): void {
  const state = readReplica(paths, name)
  const keep = new Set([state?.snapshot, state?.previous].filter(Boolean))
  const dir = paths.replica(name)
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    // a temporary name may be another run's rollout in progress: recovery sweeps those of dead runs
    if (entry.isDirectory() && !keep.has(entry.name) && !entry.name.startsWith('.'))
      rmSync(join(dir, entry.name), { recursive: true, force: true })
  }
}

/**
 * The readiness check: open what the replica serves, count the documents (must equal the
 * manifest) and run a real full-text query for the manifest's probe word (must hit).
 */
export async function checkReadiness(
  paths: Layout,
  name: string,
  manifest: Manifest,
  inject?: 'error' | 'timeout',
  signal?: AbortSignal,
): Promise<void> {
  if (inject === 'timeout') await sleep(2 ** 31 - 1, undefined, { signal, ref: false })
  if (inject === 'error') throw new Error('readiness check failed (injected by replicas.failReplica)')
  const state = readReplica(paths, name)
  if (!state) throw new Error('serves nothing (no serving.json)')
  let documents = 0
  let hits = 0
  for (const file of manifest.files) {
    await sleep(0) // lets a timeout or a cancel interrupt between shards
    const path = join(paths.replica(name), state.snapshot, file.name)
    let db: Database.Database
    try {
      db = new Database(path, { readonly: true, fileMustExist: true })
    } catch (cause) {
      throw new Error(`cannot open ${path}: ${(cause as Error).message}`, { cause })
    }
    try {
      documents += (db.prepare('SELECT count(*) AS n FROM docs').get() as { n: number }).n
      if (manifest.probe) {
        hits += (
          db
            .prepare('SELECT count(*) AS n FROM (SELECT rowid FROM docs WHERE docs MATCH ? LIMIT 1)')
            .get(`"${manifest.probe}"`) as { n: number }
        ).n
      }
    } finally {
      db.close()
    }
  }
  if (documents !== manifest.documents) {
    throw new Error(
      `serves ${documents} documents but the manifest of ${manifest.id} says ${manifest.documents}`,
    )
  }
  if (manifest.probe && hits === 0) throw new Error(`a query for "${manifest.probe}" found nothing`)
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  const timer = new AbortController()
  try {
    return await Promise.race([
      promise,
      sleep(ms, undefined, { signal: timer.signal, ref: false }).then(() => {
        throw new Error(message)
      }),
    ])
  } finally {
    timer.abort()
  }
}

/**
 * The local replicas (directories of the data directory) as a ReplicaFleet, for
 * `refresh promote --rollback` and any caller that only knows the contract. `replicas` is the
 * replica count (default: the replicas there are now).
 */
export function localReplicas(
  dataDir: string,
  options: { replicas?: number; readinessTimeoutMs?: number } = {},
): ReplicaFleet {
  const paths = layout(dataDir)
  return {
    name: 'local',
    async rollout(target, ctx) {
      if (!readManifest(paths, target.snapshot)) {
        throw new RefreshError(
          'replicas',
          `the snapshot ${target.snapshot} is gone from ${paths.snapshots}; it cannot be rolled out (or back) to.`,
        )
      }
      const count = options.replicas ?? replicaNames(paths).length
      if (count === 0) return { updated: [], previousSnapshot: null }
      return rollReplicas(paths, target.snapshot, {
        runId: ctx.runId,
        replicas: count,
        readinessTimeoutMs: options.readinessTimeoutMs ?? 10_000,
        signal: ctx.signal,
        log: (m) => ctx.log(m),
      })
    },
  }
}

export interface ReplicasOptions extends BlockOptions {
  /**
   * Where the replicas run (for example `ec2Replicas({...})`); default the local replicas of the
   * data directory. A fleet has its own replica count: the `replicas` config field is for the local ones.
   */
  fleet?: ReplicaFleet
}

/** `replicas`: M read replicas rolled onto the new snapshot one at a time, rolled back on failure. */
export function replicas(options: ReplicasOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  const from = options.upstream ?? 'snapshot'
  const fleet = options.fleet
  if (fleet) return attachParts(fleetReplicas(options, fleet, dataDir, from), { fleet })
  const definition = asset({
    ...blockFields('replicas', options, dataDir, { deps: [from], retry: { maxAttempts: 1 } }),
    description: 'read replicas rolled onto the snapshot one at a time, each checked by real queries',
    config: replicasConfig,
    ...sweepTemps(() => [paths.replicas, ...replicaNames(paths).map((name) => paths.replica(name))]),
    async materialize(ctx) {
      const snapshot = upstreamField(ctx, from, 'snapshot', isString)
      const index = upstreamField(ctx, from, 'index', isString)
      const result = await rollReplicas(paths, snapshot, {
        ...ctx.config,
        runId: ctx.runId,
        signal: ctx.signal,
        log: (m) => ctx.log(m),
      })
      return {
        snapshot,
        index,
        replicas: ctx.config.replicas,
        updated: result.updated,
        previousSnapshot: result.previousSnapshot,
        dir: paths.replicas,
      }
    },
  })
  return attachParts(definition, { fleet: localReplicas(dataDir) })
}

/** `replicas` over a fleet: the upstream snapshot's metadata is the rollout's target. */
function fleetReplicas(options: ReplicasOptions, fleet: ReplicaFleet, dataDir: string, from: string) {
  return asset({
    ...blockFields('replicas', options, dataDir, {
      deps: [from],
      retry: { maxAttempts: 1 },
      tags: { fleet: fleet.name },
    }),
    description: `read replicas (${fleet.name}) rolled onto the snapshot batch by batch, each checked by real queries`,
    config: replicasConfig,
    ...(fleet.recover ? { recover: (runIds: readonly string[]) => fleet.recover!(runIds) } : {}),
    async materialize(ctx) {
      const up = ctx.upstream[from]
      const snapshot = upstreamField(ctx, from, 'snapshot', isString)
      const index = upstreamField(ctx, from, 'index', isString)
      const documents = upstreamField(ctx, from, 'documents', isNumber)
      const probe = typeof up?.probe === 'string' ? up.probe : null
      const path = typeof up?.path === 'string' ? up.path : undefined
      const result = await fleet.rollout(
        { snapshot, index, documents, probe, ...(path === undefined ? {} : { path }) },
        {
          runId: ctx.runId,
          asset: ctx.key,
          signal: ctx.signal,
          log: (m, level) => ctx.log(m, level),
          progress: (done, total) => ctx.progress(done, total ?? undefined),
        },
      )
      return {
        snapshot,
        index,
        // what a replica of this snapshot must answer, kept by promote for a later rollback
        documents,
        probe,
        ...(path === undefined ? {} : { path }),
        fleet: fleet.name,
        replicas: result.updated.length,
        updated: result.updated,
        previousSnapshot: result.previousSnapshot,
        retired: result.retired ?? [],
      }
    },
  })
}
