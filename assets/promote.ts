import { existsSync, readdirSync, rmSync } from 'node:fs'
import { z } from 'zod/v4'
import type { S3Options } from '../aws/s3.js'
import { type AssetDefinition, asset } from '../core/definitions.js'
import { NonRetriableError, RefreshError } from '../core/errors.js'
import { type AliasStore, attachParts, type BackendContext, type ReplicaFleet } from './backends.js'
import {
  type BlockOptions,
  blockFields,
  ensureWritableDir,
  isString,
  type Layout,
  layout,
  resolveDataDir,
  sweepTemps,
  upstreamField,
} from './layout.js'
import { localReplicas } from './replicas.js'
import { s3AliasStore } from './s3-alias.js'
import { type Alias, type AliasEntry, fileAliasStore, readManifest } from './state.js'

export const promoteConfig = z.object({
  /** Earlier promoted indexes kept for `refresh promote --rollback`; older ones are dropped. */
  keepPrevious: z.number().int().min(0).max(20).default(1),
})

export interface PromoteOptions extends BlockOptions {
  /**
   * Where the `current` alias is kept: the data directory's `current.json` (the default), an S3
   * location (`s3://bucket/prefix/` -> `<prefix>current.json`) or any AliasStore.
   */
  alias?: string | { bucket: string; prefix?: string } | AliasStore
  /** S3 client options for an S3 alias. */
  s3?: S3Options
}

/** The alias store a promote option names (the data directory's file when none). */
export function aliasStoreFor(
  dataDir: string,
  alias: PromoteOptions['alias'],
  s3: S3Options = {},
): AliasStore {
  if (alias === undefined) return fileAliasStore(layout(dataDir).alias)
  if (typeof alias === 'object' && 'read' in alias) return alias
  return s3AliasStore(alias, s3)
}

/**
 * Points the `current` alias at an entry: the alias is replaced whole (a rename, or one
 * PutObject), so a reader sees the old or the new value, never a mix. The old current becomes the
 * first previous. Not a compare-and-swap: the run guards serialize promote and rollback.
 */
export async function promoteEntry(
  store: AliasStore,
  entry: AliasEntry,
  keepPrevious: number,
): Promise<{ alias: Alias; before: Alias | undefined }> {
  const before = await store.read()
  if (before?.current.snapshot === entry.snapshot) return { alias: before, before }
  const previous = before ? [before.current, ...before.previous] : []
  const alias: Alias = { version: 1, current: entry, previous: previous.slice(0, keepPrevious) }
  await store.write(alias, entry.runId)
  return { alias, before }
}

/**
 * Removes index build directories older than the current index that the alias no longer refers
 * to. Newer ones are kept: an index built by a partial run may be waiting for its snapshot
 * (index names sort by the time of the run that built them).
 */
export function dropUnusedIndexes(paths: Layout, alias: Alias): string[] {
  if (!existsSync(paths.indexes)) return []
  const used = new Set([alias.current.index, ...alias.previous.map((e) => e.index)])
  const dropped: string[] = []
  for (const name of readdirSync(paths.indexes)) {
    if (used.has(name) || name.startsWith('.') || name > alias.current.index) continue
    rmSync(paths.index(name), { recursive: true, force: true })
    dropped.push(name)
  }
  return dropped
}

/**
 * `promote`: atomically points the `current` alias at the new index (its snapshot), keeps the
 * previous ones for rollback and drops older indexes. Never retried blindly: a failed promote
 * needs a look, not a second try.
 */
export function promote(options: PromoteOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  const from = options.upstream ?? 'replicas'
  const store = aliasStoreFor(dataDir, options.alias, options.s3)
  const local = options.alias === undefined
  const definition = asset({
    ...blockFields('promote', options, dataDir, { deps: [from], retry: { maxAttempts: 1 } }),
    description: 'the `current` alias pointed at the new index; the previous kept for rollback',
    config: promoteConfig,
    ...(local ? sweepTemps(() => [dataDir]) : {}),
    async materialize(ctx) {
      const snapshot = upstreamField(ctx, from, 'snapshot', isString)
      const manifest = readManifest(paths, snapshot)
      const up = ctx.upstream[from] ?? {}
      // a snapshot kept elsewhere (EBS) has no local manifest: its upstream metadata says what it holds
      if (!manifest && (local || typeof up.index !== 'string')) {
        throw new NonRetriableError(
          `snapshot ${snapshot} is gone from ${paths.snapshot(snapshot)}; run \`refresh run snapshot+\` to make a new one.`,
        )
      }
      const index = manifest?.index ?? (up.index as string)
      const documents = manifest?.documents ?? (typeof up.documents === 'number' ? up.documents : undefined)
      const probe = manifest ? manifest.probe : typeof up.probe === 'string' ? up.probe : null
      const path = typeof up.path === 'string' ? up.path : undefined
      if (local) ensureWritableDir(dataDir)
      const { alias, before } = await promoteEntry(
        store,
        {
          snapshot,
          index,
          runId: ctx.runId,
          promotedAt: new Date().toISOString(),
          documents,
          probe,
          ...(path === undefined ? {} : { path }),
        },
        ctx.config.keepPrevious,
      )
      const dropped = dropUnusedIndexes(paths, alias)
      ctx.log(
        `current -> ${index} (${snapshot}) in ${store.where}${before ? `; previous ${before.current.index}` : ''}`,
      )
      return {
        alias: store.where,
        index,
        snapshot,
        documents: documents ?? null,
        previous: before && before.current.snapshot !== snapshot ? before.current.index : null,
        dropped,
      }
    },
  })
  return attachParts(definition, { alias: store })
}

export interface RollbackResult {
  from: AliasEntry
  to: AliasEntry
  replicas: string[]
}

export interface RollbackOptions {
  readinessTimeoutMs?: number
  /** Where the alias is (default: the data directory's `current.json`). */
  alias?: AliasStore
  /**
   * The replicas to roll back (default: the data directory's replica directories, checked as in
   * a local rollout). A fleet's rollout is all or nothing, like the `replicas` step's.
   */
  fleet?: ReplicaFleet
  signal?: AbortSignal
  log?(message: string): void
  /** Names the rollback in the fleet's tags and logs (default `rollback-<time>`). */
  runId?: string
}

/**
 * `refresh promote --rollback`: the replicas go back to the previous snapshot (each checked, as in
 * a rollout), then the alias points at it. The index rolled back from is dropped from the alias.
 */
export async function rollbackPromotion(
  dataDir: string,
  options: RollbackOptions = {},
): Promise<RollbackResult> {
  const paths = layout(dataDir)
  const store = options.alias ?? fileAliasStore(paths.alias)
  const alias = await store.read()
  if (!alias) {
    const where = options.alias ? store.where : dataDir
    throw new RefreshError('promote', `nothing is promoted in ${where}; run \`refresh run\` first.`)
  }
  const to = alias.previous[0]
  if (!to) {
    throw new RefreshError(
      'promote',
      `${store.where} has no previous index to roll back to (current is ${alias.current.index}); a second \`refresh run\` keeps one.`,
    )
  }
  // the replicas go back first, checked as in a rollout: the local directories by default
  const fleet = options.fleet ?? localReplicas(dataDir, { readinessTimeoutMs: options.readinessTimeoutMs })
  const manifest = readManifest(paths, to.snapshot)
  const documents = to.documents ?? manifest?.documents
  if (documents === undefined) {
    throw new RefreshError(
      'promote',
      `the previous entry of ${store.where} (${to.snapshot}) does not say how many documents it holds and ${paths.snapshots} has no manifest of it, so its replicas cannot be checked; it cannot be rolled back to.`,
    )
  }
  const ctx: Parameters<ReplicaFleet['rollout']>[1] = {
    runId: options.runId ?? `rollback-${new Date().toISOString().replace(/[-:.]/g, '')}`,
    asset: 'promote',
    signal: options.signal ?? new AbortController().signal,
    log: (m) => options.log?.(m),
  } satisfies Omit<BackendContext, 'progress'>
  const { updated } = await fleet.rollout(
    {
      snapshot: to.snapshot,
      index: to.index,
      documents,
      probe: to.probe ?? manifest?.probe ?? null,
      ...(to.path === undefined ? {} : { path: to.path }),
    },
    ctx,
  )
  await store.write({ version: 1, current: to, previous: alias.previous.slice(1) } satisfies Alias)
  return { from: alias.current, to, replicas: updated }
}
