import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { AliasStore } from './backends.js'
import { indexRun, type Layout, readJson, writeJsonAtomic } from './layout.js'

/** One promoted index: the snapshot it is served from and the index it was built as. */
export interface AliasEntry {
  snapshot: string
  index: string
  runId: string
  promotedAt: string
  /** What a replica serving it must hold (written by promote; a rollback checks replicas against it). */
  documents?: number
  /** A word known to be in the index: the query a replica serving it must answer with a hit. */
  probe?: string | null
  /** The index's directory within the snapshot, when the snapshot is a whole volume (EBS). */
  path?: string
}

/** The `current` alias file: replaced as a whole by rename, so readers never see half of it. */
export interface Alias {
  version: 1
  current: AliasEntry
  /** Newest first; what `refresh promote --rollback` goes back to. */
  previous: AliasEntry[]
}

/** What a replica serves (`replicas/<name>/serving.json`). */
export interface ReplicaState {
  snapshot: string
  /** The snapshot it served before, kept linked for a rollback. */
  previous: string | null
  since: string
}

/** The snapshot manifest (`snapshots/<id>/manifest.json`), written after every file. */
export interface Manifest {
  id: string
  index: string
  sourceRun: string
  createdAt: string
  documents: number
  shards: number
  /** A word known to be in the index: readiness checks search for it. */
  probe: string | null
  files: Array<{ name: string; bytes: number; sha256: string }>
}

export function readAlias(paths: Layout): Alias | undefined {
  return readJson<Alias>(paths.alias)
}

/** The `current` alias as a file of the data directory (the default): replaced whole by a rename. */
export function fileAliasStore(file: string): AliasStore {
  return {
    where: file,
    read: async () => readJson<Alias>(file),
    write: async (alias, runId) => writeJsonAtomic(file, alias, runId),
  }
}

export function replicaNames(paths: Layout): string[] {
  if (!existsSync(paths.replicas)) return []
  return readdirSync(paths.replicas, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort(byNumberSuffix)
}

export function readReplica(paths: Layout, name: string): ReplicaState | undefined {
  return readJson<ReplicaState>(join(paths.replica(name), 'serving.json'))
}

export function readManifest(paths: Layout, snapshot: string): Manifest | undefined {
  return readJson<Manifest>(join(paths.snapshot(snapshot), 'manifest.json'))
}

/**
 * The runs the alias still refers to, which retention keeps (`refresh prune`): for the current
 * entry and each previous one (what `refresh promote --rollback` goes back to), the run that
 * promoted it, the run that built its index and, for a snapshot of the data directory, the run
 * that made it (its manifest's `sourceRun`).
 */
export function aliasRuns(alias: Alias, paths: Layout): string[] {
  const runs = new Set<string>()
  for (const entry of [alias.current, ...alias.previous]) {
    runs.add(entry.runId)
    const built = indexRun(entry.index)
    if (built !== undefined) runs.add(built)
    const source = readManifest(paths, entry.snapshot)?.sourceRun
    if (source !== undefined) runs.add(source)
  }
  return [...runs]
}

/** Snapshots that must not be deleted: promoted (current and previous) or served by a replica. */
export function snapshotsInUse(paths: Layout): Set<string> {
  const used = new Set<string>()
  const alias = readAlias(paths)
  if (alias) for (const e of [alias.current, ...alias.previous]) used.add(e.snapshot)
  for (const name of replicaNames(paths)) {
    const state = readReplica(paths, name)
    if (state?.snapshot) used.add(state.snapshot)
    if (state?.previous) used.add(state.previous)
  }
  return used
}

function byNumberSuffix(a: string, b: string): number {
  const n = (s: string) => Number(/(\d+)$/.exec(s)?.[1] ?? Number.NaN)
  const d = n(a) - n(b)
  return Number.isNaN(d) || d === 0 ? a.localeCompare(b) : d
}
