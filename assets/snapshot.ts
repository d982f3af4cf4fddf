import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, existsSync, readdirSync } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import Database from 'better-sqlite3'
import { z } from 'zod/v4'
import { type S3Options, S3Store, s3Location, s3Url, type UploadOptions } from '../aws/s3.js'
import { type AssetContext, type AssetDefinition, asset } from '../core/definitions.js'
import { probeWord } from '../search/docs.js'
import type { BackendContext, SnapshotBackend } from './backends.js'
import {
  type BlockOptions,
  blockFields,
  ensureWritableDir,
  fileError,
  isNumber,
  isString,
  layout,
  resolveDataDir,
  sweepTemps,
  tempPath,
  upstreamField,
  writeJsonAtomic,
} from './layout.js'
import { type Manifest, snapshotsInUse } from './state.js'

export const snapshotConfig = z.object({
  /** Snapshots to keep (the newest); older ones go unless a replica or the alias uses them. */
  keep: z.number().int().min(1).default(3),
  /** Fault injection for tests and drills: damage a copied file before it is verified. */
  corrupt: z.boolean().default(false),
})

export interface SnapshotOptions extends BlockOptions {
  /**
   * Where snapshots are kept instead of the data directory (EBS, ...): `create` gets the index and
   * returns the step's metadata. Default: the local snapshot below.
   */
  backend?: SnapshotBackend
  /**
   * Also publish each local snapshot to S3 (`s3://bucket/prefix/` -> `<prefix>snapshots/<id>/`):
   * every file with its SHA-256 checked against the manifest, then the manifest last.
   */
  publish?: string | { bucket: string; prefix?: string }
  /** S3 client options for `publish`. */
  s3?: S3Options
  /** How `publish` uploads: files above the threshold (default 16 MiB) go up in parts. */
  upload?: Pick<UploadOptions, 'partSizeBytes' | 'multipartThresholdBytes' | 'concurrency'>
}

/**
 * `snapshot`: an immutable copy of the new index in `snapshots/<id>/` with a manifest (source
 * run, time, documents, sha256 of every file). The copy is written under a temporary name,
 * verified against the checksums taken while copying, and only then renamed into place.
 */
export function snapshot(options: SnapshotOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  const from = options.upstream ?? 'reindex'
  const { backend } = options
  const publish =
    options.publish === undefined ? undefined : s3Location(options.publish, 'snapshot({ publish })')
  return asset({
    ...blockFields('snapshot', options, dataDir, { deps: [from], retry: { maxAttempts: 2, delayMs: 500 } }),
    description: 'an immutable, checksummed copy of the new index; the last K kept',
    config: snapshotConfig,
    ...sweepTemps(
      () => [paths.snapshots],
      backend?.recover ? (runIds) => backend.recover?.(runIds) : undefined,
    ),
    async materialize(ctx) {
      const indexDir = upstreamField(ctx, from, 'dir', isString)
      const index = upstreamField(ctx, from, 'index', isString)
      const documents = upstreamField(ctx, from, 'documents', isNumber)
      if (backend) return backend.create({ index, indexDir, documents }, backendContext(ctx))
      const id = `snap-${ctx.runId}`
      const final = paths.snapshot(id)
      const partial = tempPath(final, ctx.runId)
      ensureWritableDir(paths.snapshots)
      await rm(partial, { recursive: true, force: true })
      await rm(final, { recursive: true, force: true })
      let manifest: Manifest
      try {
        if (!existsSync(indexDir)) {
          throw new Error(
            `the index ${index} is gone from ${indexDir}; run \`refresh run reindex+\` to rebuild it`,
          )
        }
        const names = (await readdir(indexDir)).filter((f) => f.endsWith('.db')).sort()
        await mkdir(partial, { recursive: true })
        let copied = 0
        const sizes = await Promise.all(names.map((n) => stat(join(indexDir, n))))
        const total = sizes.reduce((sum, st) => sum + st.size, 0)
        // every file at once: their reads, writes and fsyncs overlap in the I/O thread pool
        const files: Manifest['files'] = await Promise.all(
          names.map(async (name) => {
            const result = await copyHashed(join(indexDir, name), join(partial, name), ctx.signal, (n) => {
              copied += n
              ctx.progress(copied, total)
            })
            return { name, ...result }
          }),
        )
        if (ctx.config.corrupt && files.length > 0) await flipByte(join(partial, files[0]!.name))
        const actuals = await Promise.all(files.map((f) => hashFile(join(partial, f.name), ctx.signal)))
        for (const [i, f] of files.entries()) {
          const actual = actuals[i]!
          if (actual !== f.sha256) {
            throw new Error(
              `snapshot ${id}: ${f.name} does not match its checksum after writing (sha256 ${actual.slice(0, 12)}..., expected ${f.sha256.slice(0, 12)}...); the copy is corrupt and was discarded`,
            )
          }
        }
        manifest = {
          id,
          index,
          sourceRun: ctx.runId,
          createdAt: new Date().toISOString(),
          documents,
          shards: names.length,
          probe: names[0] ? probeTerm(join(partial, names[0])) : null,
          files,
        }
        writeJsonAtomic(join(partial, 'manifest.json'), manifest, ctx.runId)
        await rename(partial, final)
      } catch (error) {
        await rm(partial, { recursive: true, force: true })
        if (error instanceof Error && /ENOSPC|EACCES|EROFS/.test(String((error as { code?: unknown }).code)))
          throw fileError('write the snapshot', final, error)
        throw error
      }
      const removed = await prune(ctx.config.keep, id)
      if (removed.length) ctx.log(`removed old snapshot(s): ${removed.join(', ')}`)
      const bytes = manifest.files.reduce((a, f) => a + f.bytes, 0)
      const published = publish ? await publishSnapshot(final, manifest, publish, options, ctx) : undefined
      return {
        snapshot: id,
        dir: final,
        index,
        documents,
        probe: manifest.probe,
        files: manifest.files.length,
        bytes,
        removed,
        ...(published ? { published } : {}),
      }
    },
  })

  /** Keeps the newest `keep` snapshots and every one in use; removes the others. */
  async function prune(keep: number, current: string): Promise<string[]> {
    const ids = readdirSync(paths.snapshots)
      .filter((n) => n.startsWith('snap-'))
      .sort()
    const inUse = snapshotsInUse(paths)
    inUse.add(current)
    const old = ids.slice(0, Math.max(0, ids.length - keep)).filter((id) => !inUse.has(id))
    for (const id of old) await rm(paths.snapshot(id), { recursive: true, force: true })
    return old
  }
}

/** What a snapshot backend may do with the step it works for. */
function backendContext(ctx: AssetContext): BackendContext {
  return {
    runId: ctx.runId,
    asset: ctx.key,
    signal: ctx.signal,
    log: (message, level) => ctx.log(message, level),
    progress: (done, total) => ctx.progress(done, total ?? undefined),
  }
}

/**
 * Uploads a verified local snapshot to `<prefix>snapshots/<id>/`: every file (in parts when
 * large), each one's SHA-256 compared with the manifest's, and the manifest last, so a reader
 * that finds the manifest finds every file it lists. Returns the snapshot's S3 URL.
 */
export async function publishSnapshot(
  dir: string,
  manifest: Manifest,
  to: { bucket: string; prefix: string },
  options: Pick<SnapshotOptions, 's3' | 'upload'>,
  ctx: Pick<AssetContext, 'signal' | 'log' | 'progress'>,
): Promise<string> {
  const store = new S3Store({ ...options.s3, where: 'snapshot({ publish })' })
  const base = `${to.prefix}snapshots/${manifest.id}/`
  const total = manifest.files.reduce((a, f) => a + f.bytes, 0)
  let sent = 0
  try {
    const queue = [...manifest.files]
    const worker = async () => {
      for (let f = queue.shift(); f; f = queue.shift()) {
        const out = await store.upload(join(dir, f.name), to.bucket, base + f.name, {
          ...options.upload,
          signal: ctx.signal,
          contentType: 'application/vnd.sqlite3',
          onBytes: (n) => {
            sent += n
            ctx.progress(sent, total)
          },
        })
        if (out.sha256 !== f.sha256) {
          throw new Error(
            `publishing snapshot ${manifest.id}: ${f.name} was uploaded with sha256 ${out.sha256.slice(0, 12)}... but the manifest says ${f.sha256.slice(0, 12)}...; the local snapshot changed after it was verified`,
          )
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(4, queue.length) }, worker))
    // the manifest last: its presence means every file is there
    await store.upload(join(dir, 'manifest.json'), to.bucket, `${base}manifest.json`, {
      signal: ctx.signal,
      contentType: 'application/json',
    })
    const url = s3Url(to.bucket, base)
    ctx.log(`published ${manifest.id} to ${url} (${manifest.files.length} files, ${total} bytes)`)
    return url
  } finally {
    store.close()
  }
}

/** Copies a file, hashing the bytes as they are written, then fsyncs the copy. */
async function copyHashed(
  source: string,
  target: string,
  signal: AbortSignal,
  /** Called with the size of each chunk as it is written. */
  progress: (chunkBytes: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256')
  let bytes = 0
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk)
      bytes += chunk.length
      progress(chunk.length)
      cb(null, chunk)
    },
  })
  await pipeline(createReadStream(source, { highWaterMark: 1 << 20 }), tap, createWriteStream(target), {
    signal,
  })
  const fd = await open(target, 'r')
  try {
    await fd.sync()
  } finally {
    await fd.close()
  }
  return { sha256: hash.digest('hex'), bytes }
}

export async function hashFile(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20, signal }))
    hash.update(chunk as Buffer)
  return hash.digest('hex')
}

async function flipByte(file: string): Promise<void> {
  const fd = await open(file, 'r+')
  try {
    const { size } = await fd.stat()
    const at = Math.floor(size / 2)
    const buf = Buffer.alloc(1)
    await fd.read(buf, 0, 1, at)
    buf[0] = buf[0]! ^ 0xff
    await fd.write(buf, 0, 1, at)
  } finally {
    await fd.close()
  }
}

/**
 * A word known to be in a shard, which readiness checks search for: from the first searchable
 * field that has one among the first documents (for the media index, the first title's first word).
 */
export function probeTerm(shardFile: string): string | null {
  const db = new Database(shardFile, { readonly: true, fileMustExist: true })
  try {
    return probeWord(db)
  } finally {
    db.close()
  }
}
