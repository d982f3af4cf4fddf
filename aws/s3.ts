/**
 * S3 for every backend that keeps data there: the upstream export `copy` reads, the reindex
 * input and shard outputs under `runs/<runId>/`, the workers' status objects, published
 * snapshots and the `current` alias. `@aws-sdk/client-s3` is imported on first use only.
 *
 * Uploads carry a SHA-256 checksum that S3 verifies (per part for multipart uploads) and keep
 * the whole file's SHA-256 in the object's metadata (`sha256`), so a download can be checked
 * end to end; downloads check the size and, for single-part objects, the ETag (the MD5).
 * Bodies are sent as buffers with a known length (parts of 8 MiB by default), which every
 * S3-compatible server accepts, rather than as chunk-signed streams.
 */

import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { open, rename, rm, stat } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { S3Client } from '@aws-sdk/client-s3'
import { RefreshError } from '../core/errors.js'
import { type AwsCallOptions, AwsService, clientConfig } from './service.js'
import type { AwsSdkClient } from './types.js'

type Sdk = typeof import('@aws-sdk/client-s3')

/** A bucket and a key prefix (`''` or ending in `/`). */
export interface S3Location {
  bucket: string
  prefix: string
}

/** `s3://bucket/some/prefix/` (or a `{ bucket, prefix }`) as a location; a clear error otherwise. */
export function s3Location(
  where: string | { bucket: string; prefix?: string },
  field = 'the S3 location',
): S3Location {
  if (typeof where !== 'string') {
    if (!where.bucket) throw new TypeError(`${field}: \`bucket\` is required`)
    return { bucket: where.bucket, prefix: normalizePrefix(where.prefix ?? '') }
  }
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(where)
  if (!match) {
    throw new TypeError(`${field}: ${JSON.stringify(where)} is not an S3 URL; expected s3://bucket/prefix/`)
  }
  return { bucket: match[1]!, prefix: normalizePrefix(match[2]!) }
}

function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '')
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`
}

/** `s3://bucket/key`. */
export function s3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`
}

/** Splits `s3://bucket/key` into its bucket and key (the key may not be empty). */
export function parseS3ObjectUrl(url: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url)
  if (!match) throw new TypeError(`${JSON.stringify(url)} is not an S3 object URL; expected s3://bucket/key`)
  return { bucket: match[1]!, key: match[2]! }
}

export const isS3Url = (value: unknown): value is string =>
  typeof value === 'string' && value.startsWith('s3://')

export interface S3Options extends AwsCallOptions {
  /** An S3 client (tests may pass one); default a client with the standard credential chain. */
  client?: AwsSdkClient
  /** Where the S3 settings come from, for error messages (`copy({ source })`). */
  where?: string
}

export interface S3ObjectInfo {
  key: string
  size: number
  /** Without quotes; `<md5>` for a single-part object, `<hash>-<parts>` for a multipart one. */
  etag: string
}

export interface TransferOptions {
  signal?: AbortSignal
  /** Called with the size of each chunk as it moves. */
  onBytes?(bytes: number): void
}

export interface UploadOptions extends TransferOptions {
  /** Part size of multipart uploads (default 8 MiB; S3 needs at least 5 MiB). */
  partSizeBytes?: number
  /** Files larger than this go up in parts (default 16 MiB). */
  multipartThresholdBytes?: number
  contentType?: string
  /** Parts in flight at once (default 4). */
  concurrency?: number
}

export interface DownloadOptions extends TransferOptions {
  /** What the object must be: its size, its ETag and/or the SHA-256 (hex) of its bytes. */
  expect?: { size?: number; etag?: string; sha256?: string }
}

/** The S3 calls of the backends, each retried when AWS throttles and explained when it fails. */
export class S3Store {
  private readonly aws: AwsService<Sdk, S3Client>
  private readonly options: S3Options
  /** AWS calls by action, retries included. */
  readonly calls: Record<string, number> = {}

  constructor(options: S3Options = {}) {
    this.options = options
    this.aws = new AwsService({
      service: 's3',
      where: options.where ?? 'the S3 options',
      package: '@aws-sdk/client-s3',
      load: () => import('@aws-sdk/client-s3'),
      make: (sdk) =>
        new sdk.S3Client({
          ...clientConfig(options),
          // a local or S3-compatible endpoint (`AWS_ENDPOINT_URL_S3`) rarely has per-bucket host names
          forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL),
          // checksums are sent explicitly (SHA-256), never as chunk-signed trailers
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        }),
      client: options.client,
      field: (_action, name) =>
        name === 'NoSuchBucket' || name === 'InvalidBucketName' ? 'bucket' : 'prefix',
      count: (a) => {
        this.calls[a] = (this.calls[a] ?? 0) + 1
      },
      options,
    })
  }

  /** Closes the default client's connections. */
  close(): void {
    this.aws.destroy()
  }

  private call<T>(
    action: string,
    resource: string,
    send: (sdk: Sdk, client: S3Client) => Promise<T>,
    passThrough?: (error: unknown) => boolean,
  ): Promise<T> {
    return this.aws.call(action, resource, send, passThrough)
  }

  /** Fails with a clear error unless the bucket exists and these credentials may use it. */
  async headBucket(bucket: string): Promise<void> {
    try {
      await this.call('HeadBucket', `arn:aws:s3:::${bucket}`, (sdk, c) =>
        c.send(new sdk.HeadBucketCommand({ Bucket: bucket })),
      )
    } catch (error) {
      const status = (error as { cause?: { $metadata?: { httpStatusCode?: number } } }).cause?.$metadata
        ?.httpStatusCode
      if (status === 404) {
        throw new S3NotFoundError(
          `the S3 bucket ${bucket} does not exist; create it or check \`bucket\` in ${this.options.where ?? 'the S3 options'}.`,
        )
      }
      throw error
    }
  }

  /** Every object under a prefix, listed page by page (1,000 a call), sorted by key. */
  async list(bucket: string, prefix: string): Promise<S3ObjectInfo[]> {
    const objects: S3ObjectInfo[] = []
    let token: string | undefined
    do {
      const out = await this.call(
        'ListBucket',
        `arn:aws:s3:::${bucket}`,
        (sdk, c) =>
          c.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token })),
        isNoSuchBucket,
      ).catch((error) => rethrowMissing(error, bucket, prefix, this.options.where))
      for (const o of out.Contents ?? []) {
        if (o.Key === undefined) continue
        objects.push({ key: o.Key, size: o.Size ?? 0, etag: unquote(o.ETag) })
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined
    } while (token)
    return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  /** An object's bytes, or undefined when there is no such key. */
  async getBytes(bucket: string, key: string): Promise<Buffer | undefined> {
    try {
      const out = await this.call(
        'GetObject',
        `arn:aws:s3:::${bucket}/${key}`,
        (sdk, c) => c.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key })),
        isMissing,
      )
      return Buffer.from(await out.Body!.transformToByteArray())
    } catch (error) {
      if (isNoSuchKey(error)) return undefined
      return rethrowMissing(error, bucket, key, this.options.where)
    }
  }

  /** An object parsed as JSON, or undefined when there is no such key. */
  async getJson<T>(bucket: string, key: string): Promise<T | undefined> {
    const bytes = await this.getBytes(bucket, key)
    if (bytes === undefined) return undefined
    try {
      return JSON.parse(bytes.toString('utf8')) as T
    } catch (cause) {
      throw new Error(`${s3Url(bucket, key)} is not valid JSON (${(cause as Error).message})`, { cause })
    }
  }

  /** Writes an object whole, with its SHA-256 checked by S3. A reader sees the old or the new object. */
  async putBytes(
    bucket: string,
    key: string,
    body: Buffer,
    options: { contentType?: string } = {},
  ): Promise<{ etag: string; sha256: string }> {
    const digest = createHash('sha256').update(body)
    const sha256 = digest.digest('hex')
    const out = await this.call(
      'PutObject',
      `arn:aws:s3:::${bucket}/${key}`,
      (sdk, c) =>
        c.send(
          new sdk.PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: body,
            ContentLength: body.length,
            ContentType: options.contentType,
            ChecksumSHA256: Buffer.from(sha256, 'hex').toString('base64'),
            Metadata: { sha256 },
          }),
        ),
      isNoSuchBucket,
    ).catch((error) => rethrowMissing(error, bucket, key, this.options.where))
    return { etag: unquote(out.ETag), sha256 }
  }

  putJson(bucket: string, key: string, value: unknown): Promise<{ etag: string; sha256: string }> {
    return this.putBytes(bucket, key, Buffer.from(`${JSON.stringify(value, null, 2)}\n`), {
      contentType: 'application/json',
    })
  }

  /**
   * Uploads a file: one PutObject up to the threshold, else a multipart upload (parts in
   * parallel, each with its SHA-256; aborted on failure so no parts linger). Returns the size,
   * the whole file's SHA-256 (hex) and the ETag.
   */
  async upload(
    file: string,
    bucket: string,
    key: string,
    options: UploadOptions = {},
  ): Promise<{ bytes: number; sha256: string; etag: string }> {
    const { size } = await stat(file)
    const threshold = options.multipartThresholdBytes ?? 16 * 1024 * 1024
    if (size <= threshold) {
      const body = await readRange(file, 0, size)
      options.signal?.throwIfAborted()
      const out = await this.putBytes(bucket, key, body, { contentType: options.contentType })
      options.onBytes?.(size)
      return { bytes: size, sha256: out.sha256, etag: out.etag }
    }
    const partSize = Math.max(5 * 1024 * 1024, options.partSizeBytes ?? 8 * 1024 * 1024)
    const sha256 = await hashFile(file, options.signal)
    const resource = `arn:aws:s3:::${bucket}/${key}`
    const created = await this.call('PutObject', resource, (sdk, c) =>
      c.send(
        new sdk.CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: options.contentType,
          ChecksumAlgorithm: 'SHA256',
          Metadata: { sha256 },
        }),
      ),
    ).catch((error) => rethrowMissing(error, bucket, key, this.options.where))
    const uploadId = created.UploadId!
    try {
      const count = Math.ceil(size / partSize)
      const parts: Array<{ PartNumber: number; ETag: string; ChecksumSHA256: string }> = []
      let next = 0
      const worker = async () => {
        while (next < count) {
          const index = next++
          options.signal?.throwIfAborted()
          const start = index * partSize
          const body = await readRange(file, start, Math.min(partSize, size - start))
          const checksum = createHash('sha256').update(body).digest('base64')
          const out = await this.call('PutObject', resource, (sdk, c) =>
            c.send(
              new sdk.UploadPartCommand({
                Bucket: bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: index + 1,
                Body: body,
                ContentLength: body.length,
                ChecksumSHA256: checksum,
              }),
            ),
          )
          parts[index] = { PartNumber: index + 1, ETag: out.ETag!, ChecksumSHA256: checksum }
          options.onBytes?.(body.length)
        }
      }
      await Promise.all(Array.from({ length: Math.min(count, options.concurrency ?? 4) }, worker))
      const done = await this.call('PutObject', resource, (sdk, c) =>
        c.send(
          new sdk.CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
          }),
        ),
      )
      return { bytes: size, sha256, etag: unquote(done.ETag) }
    } catch (error) {
      await this.call('AbortMultipartUpload', resource, (sdk, c) =>
        c.send(new sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })),
      ).catch(() => undefined)
      throw error
    }
  }

  /**
   * Downloads an object to a file: written beside it under a temporary name, checked (size,
   * ETag, SHA-256, as far as `expect` and the object's metadata say), then renamed into place.
   * A failed or mismatching download leaves nothing at `file`.
   */
  async download(
    bucket: string,
    key: string,
    file: string,
    options: DownloadOptions = {},
  ): Promise<{
    bytes: number
    etag: string
    sha256: string
  }> {
    const url = s3Url(bucket, key)
    const out = await this.call(
      'GetObject',
      `arn:aws:s3:::${bucket}/${key}`,
      (sdk, c) => c.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key })),
      isMissing,
    ).catch((error) => rethrowMissing(error, bucket, key, this.options.where))
    const etag = unquote(out.ETag)
    const expect = options.expect ?? {}
    if (expect.etag !== undefined && unquote(expect.etag) !== etag) {
      ;(out.Body as Readable | undefined)?.destroy()
      throw new S3IntegrityError(
        `${url} changed while it was read (ETag ${etag}, listed as ${unquote(expect.etag)})`,
      )
    }
    const tmp = `${file}.${process.pid}.download`
    const wanted = expect.sha256 ?? out.Metadata?.sha256
    const sha = createHash('sha256')
    // a single-part object's ETag is its MD5 (a multipart one's ends in -N); objects refresh
    // wrote carry their SHA-256 instead, which covers both, so the MD5 is taken only without one
    const md5 = wanted === undefined && /^[0-9a-f]{32}$/.test(etag) ? createHash('md5') : undefined
    let bytes = 0
    try {
      await pipeline(
        out.Body as Readable,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            sha.update(chunk)
            md5?.update(chunk)
            bytes += chunk.length
            options.onBytes?.(chunk.length)
            yield chunk
          }
        },
        createWriteStream(tmp),
        { signal: options.signal },
      )
      const sha256 = sha.digest('hex')
      const expectedSize = expect.size ?? out.ContentLength
      if (expectedSize !== undefined && bytes !== expectedSize) {
        throw new S3IntegrityError(`${url}: read ${bytes} bytes, expected ${expectedSize}`)
      }
      if (md5 && md5.digest('hex') !== etag) {
        throw new S3IntegrityError(`${url}: the bytes read do not match its ETag ${etag} (MD5)`)
      }
      if (wanted !== undefined && wanted !== sha256) {
        throw new S3IntegrityError(
          `${url}: sha256 ${sha256.slice(0, 12)}... does not match the expected ${wanted.slice(0, 12)}...`,
        )
      }
      await rename(tmp, file)
      return { bytes, etag, sha256 }
    } catch (error) {
      await rm(tmp, { force: true })
      throw error
    }
  }

  /** Deletes objects (1,000 a call); returns how many were deleted. */
  async deleteKeys(bucket: string, keys: readonly string[]): Promise<number> {
    let deleted = 0
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000)
      const out = await this.call('DeleteObject', `arn:aws:s3:::${bucket}/*`, (sdk, c) =>
        c.send(
          new sdk.DeleteObjectsCommand({
            Bucket: bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ),
      )
      const errors = out.Errors ?? []
      if (errors.length > 0) {
        const first = errors[0]!
        throw new Error(
          `could not delete ${errors.length} object(s) from s3://${bucket}/, first ${first.Key}: ${first.Code} ${first.Message ?? ''}`.trim(),
        )
      }
      deleted += batch.length
    }
    return deleted
  }
}

/** A download whose bytes are not what S3 (or the manifest) says they are. */
export class S3IntegrityError extends RefreshError {
  constructor(message: string) {
    super('integrity', message)
    this.name = 'S3IntegrityError'
  }
}

/** A bucket or an object that does not exist. */
export class S3NotFoundError extends RefreshError {
  constructor(message: string) {
    super('aws', message)
    this.name = 'S3NotFoundError'
  }
}

function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '')
}

const isNoSuchBucket = (error: unknown) => (error as { name?: string })?.name === 'NoSuchBucket'
const isNoSuchKey = (error: unknown) => {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } }
  return e?.name === 'NoSuchKey' || (e?.name === 'NotFound' && e.$metadata?.httpStatusCode === 404)
}
const isMissing = (error: unknown) => isNoSuchBucket(error) || isNoSuchKey(error)

function rethrowMissing(error: unknown, bucket: string, key: string, where = 'the S3 options'): never {
  if (isNoSuchBucket(error)) {
    throw new S3NotFoundError(
      `the S3 bucket ${bucket} does not exist; create it or check \`bucket\` in ${where}.`,
    )
  }
  if (isNoSuchKey(error)) {
    throw new S3NotFoundError(`${s3Url(bucket, key)} does not exist; check \`prefix\` in ${where}.`)
  }
  throw error
}

async function readRange(file: string, start: number, length: number): Promise<Buffer> {
  const fd = await open(file, 'r')
  try {
    const buffer = Buffer.allocUnsafe(length)
    let read = 0
    while (read < length) {
      const { bytesRead } = await fd.read(buffer, read, length - read, start + read)
      if (bytesRead === 0) throw new Error(`${file} ended at ${start + read} bytes while it was uploaded`)
      read += bytesRead
    }
    return buffer
  } finally {
    await fd.close()
  }
}

async function hashFile(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20, signal }))
    hash.update(chunk as Buffer)
  return hash.digest('hex')
}
