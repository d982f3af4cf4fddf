/**
 * The status channel of the remote runners (ECS, EC2): where a worker keeps its `WorkerStatus`
 * (see worker.ts) and how the runner reads it back. A remote worker has an exit code at best and
 * no channel back, so its progress and its output travel through this small JSON object: a file
 * on a directory the orchestrator and the workers share (`statusDir`: EFS, a bind mount), or an
 * S3 object (`statusUrl`: `<prefix>runs/<runId>/status/<unit>.attempt-<n>.json`), replaced whole
 * by each write (PutObject), so a reader sees one state or the next, never half of one.
 */

import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { S3Store, s3Location, s3Url } from '../aws/s3.js'
import type { AwsCallOptions } from '../aws/service.js'
import { limiter } from '../core/async.js'
import { ConfigError } from '../core/errors.js'
import type { WorkUnit } from './types.js'
import type { WorkerStatus } from './worker.js'

/** Where the workers' statuses are: one of the two is required. */
export interface StatusOptions {
  /** A directory shared with the workers (EFS, a bind mount). */
  statusDir?: string
  /** An S3 prefix (`s3://bucket/prefix/` or `{ bucket, prefix }`) the workers can write and the runner read. */
  statusUrl?: string | { bucket: string; prefix?: string }
}

export interface StatusChannel {
  /** `file` or `s3`, for messages. */
  readonly kind: 'file' | 's3'
  /** Where the worker of this unit attempt writes (a path or an s3:// URL), cleared of an older status. */
  prepare(unit: WorkUnit): Promise<string>
  /** The status: undefined before the worker first wrote it; an Error when it cannot be read. */
  read(where: string): Promise<WorkerStatus | undefined | Error>
  /** Removes a status that has nothing more to tell (a success). Never throws. */
  discard(where: string): Promise<void>
  close(): void
}

/**
 * The channel the options ask for; a TypeError naming both options when neither (or both) is
 * set. `who` names the runner for the message (`ecsRunner`).
 */
export function statusChannel(
  options: StatusOptions & AwsCallOptions & { s3?: S3Store; readConcurrency?: number },
  who: string,
): StatusChannel {
  const { statusDir, statusUrl } = options
  if (!statusDir && !statusUrl) {
    throw new ConfigError(
      `${who}: \`statusUrl\` (an S3 prefix, s3://bucket/prefix/) or \`statusDir\` (a directory shared with the workers) is required, for the workers' progress and output`,
    )
  }
  if (statusDir && statusUrl) throw new ConfigError(`${who}: set \`statusUrl\` or \`statusDir\`, not both`)
  if (statusDir) return fileChannel(statusDir)
  return s3Channel(
    s3Location(statusUrl!, `${who}({ statusUrl })`),
    // only the call options: the runner's `client` is its ECS or EC2 client, not an S3 one
    options.s3 ??
      new S3Store({
        region: options.region,
        callAttempts: options.callAttempts,
        backoffMs: options.backoffMs,
        where: `${who}({ statusUrl })`,
      }),
    !options.s3,
    options.readConcurrency ?? 16,
  )
}

function fileChannel(dir: string): StatusChannel {
  return {
    kind: 'file',
    async prepare(unit) {
      const runDir = join(dir, safeName(unit.runId ?? 'no-run'))
      const file = join(runDir, `${safeName(unit.id)}.attempt-${unit.attempt}.json`)
      mkdirSync(runDir, { recursive: true })
      rmSync(file, { force: true })
      return file
    },
    async read(file) {
      let text: string
      try {
        text = readFileSync(file, 'utf8')
      } catch (cause) {
        if ((cause as { code?: unknown }).code === 'ENOENT') return undefined
        return new Error(`cannot read the worker status ${file}: ${(cause as Error).message}`)
      }
      try {
        return JSON.parse(text) as WorkerStatus
      } catch (cause) {
        return new Error(`the worker status ${file} is not JSON: ${(cause as Error).message}`)
      }
    },
    async discard(file) {
      rmSync(file, { force: true })
    },
    close() {},
  }
}

function s3Channel(
  where: { bucket: string; prefix: string },
  store: S3Store,
  owned: boolean,
  concurrency: number,
): StatusChannel {
  // reads of one poll go out at most `concurrency` at a time, so 1,000 units are not 1,000 GETs at once
  const limit = limiter(concurrency)
  const keyOf = (url: string) => url.slice(`s3://${where.bucket}/`.length)
  return {
    kind: 's3',
    async prepare(unit) {
      const key = `${where.prefix}runs/${safeName(unit.runId ?? 'no-run')}/status/${safeName(unit.id)}.attempt-${unit.attempt}.json`
      // a fresh attempt number per start: nothing older can be there but a crashed run's leftover
      await store.deleteKeys(where.bucket, [key]).catch(() => undefined)
      return s3Url(where.bucket, key)
    },
    read(url) {
      return limit(async () => {
        try {
          return await store.getJson<WorkerStatus>(where.bucket, keyOf(url))
        } catch (error) {
          return new Error(
            `cannot read the worker status ${url}: ${error instanceof Error ? error.message : String(error)}`,
          )
        }
      })
    },
    async discard(url) {
      await store.deleteKeys(where.bucket, [keyOf(url)]).catch(() => undefined)
    },
    close() {
      if (owned) store.close()
    },
  }
}

export function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_')
}
