import { existsSync, readdirSync, rmSync } from 'node:fs'
import { z } from 'zod'
import { type AssetDefinition, asset } from '../core/definitions.js'
import { NonRetriableError, RefreshError } from '../core/errors.js'
import {
  type BlockOptions,
  blockTags,
  ensureWritableDir,
  isString,
  type Layout,
  layout,
  resolveDataDir,
  upstreamField,
  writeJsonAtomic,
} from './layout.js'
import { rollReplicas } from './replicas.js'
import { type Alias, type AliasEntry, readAlias, readManifest, replicaNames } from './state.js'

export const promoteConfig = z.object({
  /** Earlier promoted indexes kept for `refresh promote --rollback`; older ones are dropped. */
  keepPrevious: z.number().int().min(0).max(20).default(1),
})

/**
 * Points the `current` alias at an entry: the alias file is replaced whole by a rename, so a
 * reader sees the old or the new value, never a mix. The old current becomes the first previous.
 */
export function promoteEntry(paths: Layout, entry: AliasEntry, keepPrevious: number): Alias {
  const before = readAlias(paths)
  if (before?.current.snapshot === entry.snapshot) return before
  const previous = before ? [before.current, ...before.previous] : []
  const alias: Alias = { version: 1, current: entry, previous: previous.slice(0, keepPrevious) }
  writeJsonAtomic(paths.alias, alias)
  return alias
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
export function promote(options: BlockOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  const from = options.upstream ?? 'replicas'
  return asset({
    key: options.key ?? 'promote',
    deps: [from],
    group: options.group ?? 'refresh',
    tags: blockTags('promote', dataDir),
    description: 'the `current` alias pointed at the new index; the previous kept for rollback',
    config: promoteConfig,
    retry: options.retry ?? { maxAttempts: 1 },
    timeoutMs: options.timeoutMs,
    async materialize(ctx) {
      const snapshot = upstreamField(ctx.upstream, from, 'snapshot', isString)
      const manifest = readManifest(paths, snapshot)
      if (!manifest) {
        throw new NonRetriableError(
          `snapshot ${snapshot} is gone from ${paths.snapshot(snapshot)}; run \`refresh run snapshot+\` to make a new one.`,
        )
      }
      ensureWritableDir(dataDir)
      const before = readAlias(paths)
      const alias = promoteEntry(
        paths,
        { snapshot, index: manifest.index, runId: ctx.runId, promotedAt: new Date().toISOString() },
        ctx.config.keepPrevious,
      )
      const dropped = dropUnusedIndexes(paths, alias)
      ctx.log(
        `current -> ${manifest.index} (${snapshot})${before ? `; previous ${before.current.index}` : ''}`,
      )
      return {
        alias: paths.alias,
        index: manifest.index,
        snapshot,
        documents: manifest.documents,
        previous: before && before.current.snapshot !== snapshot ? before.current.index : null,
        dropped,
      }
    },
  })
}

export interface RollbackResult {
  from: AliasEntry
  to: AliasEntry
  replicas: string[]
}

/**
 * `refresh promote --rollback`: the replicas go back to the previous snapshot (each checked, as in
 * a rollout), then the alias points at it. The index rolled back from is dropped from the alias.
 */
export async function rollbackPromotion(
  dataDir: string,
  options: { readinessTimeoutMs?: number } = {},
): Promise<RollbackResult> {
  const paths = layout(dataDir)
  const alias = readAlias(paths)
  if (!alias) {
    throw new RefreshError('promote', `nothing is promoted in ${dataDir}; run \`refresh run\` first.`)
  }
  const to = alias.previous[0]
  if (!to) {
    throw new RefreshError(
      'promote',
      `${paths.alias} has no previous index to roll back to (current is ${alias.current.index}); a second \`refresh run\` keeps one.`,
    )
  }
  if (!readManifest(paths, to.snapshot)) {
    throw new RefreshError(
      'promote',
      `the previous snapshot ${to.snapshot} is gone from ${paths.snapshots}; it cannot be rolled back to.`,
    )
  }
  const names = replicaNames(paths)
  const rollout =
    names.length > 0
      ? await rollReplicas(paths, to.snapshot, {
          replicas: names.length,
          readinessTimeoutMs: options.readinessTimeoutMs ?? 10_000,
        })
      : { updated: [] }
  writeJsonAtomic(paths.alias, { version: 1, current: to, previous: alias.previous.slice(1) } satisfies Alias)
  return { from: alias.current, to, replicas: rollout.updated }
}
