/**
 * The backends behind the building blocks' factories: where `snapshot` keeps snapshots (the data
 * directory, or EBS), where `replicas` runs its replicas (directories served locally, or EC2
 * instances) and where `promote` keeps the `current` alias (a file, or an S3 object). A factory
 * takes one as an option (`snapshot({ backend: ebsSnapshots({...}) })`); the default is the
 * embedded one. The CLI finds a config's fleet and alias through `partsOf` (for
 * `refresh promote --rollback`), so it never has to know which backend a config chose.
 */
import type { AssetDefinition, LogLevel } from '../core/definitions.js'
import type { JsonObject } from '../core/json.js'
import type { TablePromotion } from './postgres-table.js'
import type { Alias } from './state.js'

/** What a backend may do with the step it works for. */
export interface BackendContext {
  runId: string
  /** The asset's key. */
  asset: string
  signal: AbortSignal
  log(message: string, level?: LogLevel): void
  progress(done: number, total: number | null): void
}

/** The index a snapshot is taken of (the upstream `reindex` step's metadata). */
export interface SnapshotInput {
  index: string
  /** The index's directory: its shard files (`*.db`). */
  indexDir: string
  documents: number
}

/** Where snapshots are kept. `create` returns the step's metadata: at least `snapshot`, `index`, `documents`. */
export interface SnapshotBackend {
  readonly name: string
  create(input: SnapshotInput, ctx: BackendContext): Promise<JsonObject & { snapshot: string }>
  /** Stops or removes what an interrupted run of this backend left (crash recovery). */
  recover?(runIds: readonly string[]): Promise<string[]>
}

/** What replicas are rolled onto: a snapshot, its index and what a healthy replica must answer. */
export interface RolloutTarget {
  snapshot: string
  index: string
  documents: number
  /** A word known to be in the index: the real query a replica must answer with a hit. */
  probe: string | null
  /** The index's directory relative to the snapshot's root (an EBS snapshot holds the whole volume). */
  path?: string
}

export interface FleetRollout {
  /** The replicas (directories, instance ids) now serving the target. */
  updated: string[]
  /** What the fleet served before (the first replica's snapshot), if anything. */
  previousSnapshot: string | null
  /** Replicas taken out of service once the new ones passed (old instances terminated). */
  retired?: string[]
}

/** Where read replicas run; a rollout is all or nothing (on failure the old fleet keeps serving). */
export interface ReplicaFleet {
  readonly name: string
  rollout(
    target: RolloutTarget,
    ctx: Omit<BackendContext, 'progress'> & { progress?(done: number, total: number | null): void },
  ): Promise<FleetRollout>
  recover?(runIds: readonly string[]): Promise<string[]>
}

/** Where the `current` alias is kept: replaced whole, so a reader sees the old or the new value. */
export interface AliasStore {
  /** For messages: a file path or an S3 URL. */
  readonly where: string
  read(): Promise<Alias | undefined>
  /** Replaces the alias whole; `runId`, when a run writes it, names what it writes temporarily. */
  write(alias: Alias, runId?: string): Promise<void>
}

interface Parts {
  fleet?: ReplicaFleet
  alias?: AliasStore
  /** A table promotion's rollback (`promoteTable`). */
  table?: TablePromotion
}

const parts = new WeakMap<AssetDefinition, Parts>()

/** Records the backends an asset was built with (the factories call it). */
export function attachParts(definition: AssetDefinition, found: Parts): AssetDefinition {
  parts.set(definition, { ...parts.get(definition), ...found })
  return definition
}

/** The backends a building block was built with, if it is one. */
export function partsOf(definition: AssetDefinition): Parts {
  return parts.get(definition) ?? {}
}
