import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod/v4'
import type { S3Options } from '../aws/s3.js'
import { assetCheck, type CheckDefinition, type CheckOutcome } from '../core/checks.js'
import type { AliasStore } from './backends.js'
import { readJson, resolveDataDir } from './layout.js'
import { aliasStoreFor, type PromoteOptions } from './promote.js'
import { hashFile } from './snapshot.js'
import type { Manifest } from './state.js'

/**
 * Checks that gate promotion in the default refresh. Each is blocking with severity `error`: a
 * failure skips what is downstream of the checked asset (snapshot, replicas, promote), so the
 * promoted index stays as it was. Compose them in `defineConfig({ checks: [...] })`.
 */

export interface IndexCheckOptions {
  /** The asset checked (default `reindex`; `snapshot` for `snapshotVerifies`). */
  asset?: string
  /** The check's name (each helper has its default). */
  name?: string
  /** Default true: a failure stops what is downstream. False (or severity `warn`) only records and alerts. */
  blocking?: boolean
  severity?: 'warn' | 'error'
}

function documentsOf(metadata: Record<string, unknown>): number | undefined {
  const documents = metadata.documents
  return typeof documents === 'number' && Number.isFinite(documents) ? documents : undefined
}

/** The new index holds at least one document (its materialization's `documents`). */
export function indexNotEmpty(options: IndexCheckOptions = {}): CheckDefinition {
  return assetCheck({
    asset: options.asset ?? 'reindex',
    name: options.name ?? 'not_empty',
    description: 'the new index holds at least one document',
    blocking: options.blocking ?? true,
    severity: options.severity ?? 'error',
    evaluate(ctx) {
      const documents = documentsOf(ctx.metadata)
      if (documents === undefined) {
        throw new Error(`the materialization of \`${ctx.asset}\` says nothing of its \`documents\``)
      }
      return { passed: documents > 0, metadata: { documents } }
    },
  })
}

export interface IndexCountWithinOptions extends IndexCheckOptions, Pick<PromoteOptions, 'dataDir'> {
  /**
   * The most the document count may drop below the promoted index's, in percent (default 10).
   * Run config overrides it: `--set checks.reindex.count_within.maxDropPercent=50`; a negative
   * value asks for growth (-5: at least 5% more documents).
   */
  maxDropPercent?: number
  /** Where the `current` alias is, as `promote` is given it (default: the data directory's file). */
  alias?: PromoteOptions['alias']
  s3?: S3Options
}

/**
 * The new index's document count is within `maxDropPercent` of the currently promoted index's
 * (read from the `current` alias, as promote wrote it). Passes when nothing is promoted yet.
 */
export function indexCountWithin(options: IndexCountWithinOptions = {}): CheckDefinition {
  let store: AliasStore | undefined
  const aliasStore = () => {
    store ??= aliasStoreFor(resolvedDir, options.alias, options.s3)
    return store
  }
  // resolved now: the data directory is relative to the config file being loaded
  const resolvedDir = resolveDataDir(options.dataDir)
  return assetCheck({
    asset: options.asset ?? 'reindex',
    name: options.name ?? 'count_within',
    description: 'the document count is within maxDropPercent of the promoted index',
    blocking: options.blocking ?? true,
    severity: options.severity ?? 'error',
    config: z.object({
      maxDropPercent: z
        .number()
        .max(100)
        .default(options.maxDropPercent ?? 10),
    }),
    async evaluate(ctx): Promise<CheckOutcome> {
      const documents = documentsOf(ctx.metadata)
      if (documents === undefined) {
        throw new Error(`the materialization of \`${ctx.asset}\` says nothing of its \`documents\``)
      }
      const alias = await aliasStore().read()
      const promoted = alias?.current.documents
      const { maxDropPercent } = ctx.config
      if (promoted === undefined) {
        return { passed: true, metadata: { documents, promoted: null, maxDropPercent } }
      }
      const dropPercent = promoted === 0 ? 0 : ((promoted - documents) / promoted) * 100
      return {
        passed: dropPercent <= maxDropPercent,
        metadata: {
          documents,
          promoted,
          promotedIndex: alias!.current.index,
          dropPercent: Math.round(dropPercent * 100) / 100,
          maxDropPercent,
        },
      }
    },
  })
}

/**
 * The snapshot's files match the checksums of its manifest, read back from disk (a local
 * snapshot: its materialization's `dir`). A snapshot kept elsewhere (EBS) has no local files:
 * the check then fails, saying so; leave it out of such an environment (its backend verifies
 * what it can, like encryption, in the step itself).
 */
export function snapshotVerifies(options: IndexCheckOptions = {}): CheckDefinition {
  return assetCheck({
    asset: options.asset ?? 'snapshot',
    name: options.name ?? 'checksums',
    description: "the snapshot's files match its manifest's sha256 checksums",
    blocking: options.blocking ?? true,
    severity: options.severity ?? 'error',
    async evaluate(ctx): Promise<CheckOutcome> {
      const dir = ctx.metadata.dir
      if (typeof dir !== 'string') {
        throw new Error(
          `the materialization of \`${ctx.asset}\` has no local \`dir\` to verify (a snapshot kept elsewhere); leave snapshotVerifies() out for it`,
        )
      }
      const manifest = readJson<Manifest>(join(dir, 'manifest.json'))
      if (!manifest) return { passed: false, metadata: { dir, problem: 'no manifest.json' } }
      const bad: string[] = []
      for (const f of manifest.files) {
        const file = join(dir, f.name)
        if (!existsSync(file) || (await hashFile(file, ctx.signal)) !== f.sha256) bad.push(f.name)
      }
      const documentsMatch = documentsOf(ctx.metadata) === manifest.documents
      return {
        passed: bad.length === 0 && documentsMatch,
        metadata: {
          files: manifest.files.length,
          mismatched: bad,
          ...(documentsMatch ? {} : { problem: 'the manifest counts other documents than the step made' }),
        },
      }
    },
  })
}
