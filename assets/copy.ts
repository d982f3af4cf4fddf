import { readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { z } from 'zod'
import { type AssetDefinition, asset } from '../core/definitions.js'
import {
  type BlockOptions,
  blockTags,
  ensureWritableDir,
  fileError,
  isString,
  layout,
  resolveDataDir,
  upstreamField,
} from './layout.js'

export const copyConfig = z.object({
  /** Working databases of earlier runs to keep (the newest ones); older ones are removed. */
  keepWork: z.number().int().min(0).default(1),
})

const MEDIA_COLUMNS = `id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, title TEXT, creator TEXT, url TEXT,
  license TEXT, provider TEXT NOT NULL, tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL`

/**
 * Copies the upstream `media` table into a fresh working database `target`. The working file is
 * scratch (rebuilt by a retry), so it is written without fsync. Returns the rows copied.
 */
export function copyTable(source: string, target: string): number {
  for (const suffix of ['', '-journal']) rmSync(target + suffix, { force: true })
  const db = new Database(target)
  try {
    db.pragma('synchronous = OFF')
    db.prepare('ATTACH DATABASE ? AS up').run(source)
    db.exec(`CREATE TABLE media (${MEDIA_COLUMNS})`)
    return db.transaction(
      () => db.prepare('INSERT INTO main.media SELECT * FROM up.media ORDER BY id').run().changes,
    )()
  } finally {
    db.close()
  }
}

/** `copy`: the upstream table copied into a new working database named for the run. */
export function copy(options: BlockOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  const from = options.upstream ?? 'catalog'
  return asset({
    key: options.key ?? 'copy',
    deps: [from],
    group: options.group ?? 'refresh',
    tags: blockTags('copy', dataDir),
    description: 'the upstream table copied into a fresh working database',
    config: copyConfig,
    retry: options.retry ?? { maxAttempts: 3, delayMs: 500, backoff: 'exponential' },
    timeoutMs: options.timeoutMs,
    async materialize(ctx) {
      const source = upstreamField(ctx.upstream, from, 'file', isString)
      ensureWritableDir(paths.work)
      const file = paths.workDb(ctx.runId)
      let rows: number
      try {
        rows = copyTable(source, file)
      } catch (cause) {
        rmSync(file, { force: true })
        throw fileError(`copy ${source} into`, file, cause)
      }
      const removed = pruneWork(paths.work, file, ctx.config.keepWork)
      if (removed.length) ctx.log(`removed ${removed.length} old working database(s)`)
      return { file, table: 'media', rows, bytes: statSync(file).size, source }
    },
  })
}

/** Removes working databases beyond the newest `keep` (run ids sort by time), never `current`. */
function pruneWork(dir: string, current: string, keep: number): string[] {
  const others = readdirSync(dir)
    .filter((f) => f.endsWith('.db') && join(dir, f) !== current)
    .sort()
  const drop = others.slice(0, Math.max(0, others.length - keep))
  for (const f of drop) for (const suffix of ['', '-journal']) rmSync(join(dir, f + suffix), { force: true })
  return drop
}
