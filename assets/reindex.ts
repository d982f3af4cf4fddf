import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import Database from 'better-sqlite3'
import { z } from 'zod/v4'
import { type S3Location, type S3Store, s3Location, s3Url } from '../aws/s3.js'
import { type AssetDefinition, asset } from '../core/definitions.js'
import { NonRetriableError } from '../core/errors.js'
import type { JsonObject } from '../core/json.js'
import { localProcessRunner } from '../runners/local.js'
import { splitRange } from '../runners/ranges.js'
import { runUnits } from '../runners/run-units.js'
import type { Runner, WorkHandle, WorkResult, WorkUnit } from '../runners/types.js'
import {
  fieldColumns,
  type IndexFields,
  type IndexShardInput,
  identifier,
  MEDIA_FIELDS,
  type SearchableField,
} from '../search/index-shard.js'
import {
  type BlockOptions,
  blockFields,
  ensureWritableDir,
  indexName,
  isNumber,
  isString,
  layout,
  parseOptions,
  resolveDataDir,
  sweepTemps,
  tempPath,
  upstreamField,
} from './layout.js'
import { configError, requireColumns, type TableSchema, tableSchema } from './schema.js'

export interface ReindexOptions extends BlockOptions {
  /** Shards (id ranges, one worker each) unless the run config says otherwise (default 4). */
  shards?: number
  /** Where the shard workers run (default: a pool of local processes, one per CPU). */
  runner?: Runner
  /**
   * An S3 prefix (`s3://bucket/prefix/` or `{ bucket, prefix }`) through which the workers get
   * their input and hand back their shards, for runners with no file system shared with the
   * orchestrator (ECS, EC2): the cleaned database is uploaded to
   * `<prefix>runs/<runId>/<asset>/input/<file>`, each worker writes
   * `<prefix>runs/<runId>/<asset>/shards/shard-NNN.db`, and the shards are downloaded (checked
   * against the SHA-256 each worker reported) into the local index once all have succeeded.
   * Without it the workers read and write local paths.
   */
  transfer?: string | { bucket: string; prefix?: string }
  /**
   * The full-text searchable fields of the index: column names, or `{ column, list }` for a JSON
   * array column whose items (`list: true`) or each item's field (`list: 'name'`) are the words.
   * Default, with `stored`: the media index (`title`, `creator`, tag names).
   */
  searchable?: SearchableField[]
  /** The fields stored in the index (returned with hits, not searched). Default with `searchable`: none. */
  stored?: string[]
  /**
   * A Postgres refresh: each worker reads its id range straight from the cleaned table in the API
   * database (the `table` of `clean({ postgres })`'s metadata) instead of a file. `env` names the
   * environment variable that holds the database's URL (default `REFRESH_API_URL`), in the
   * orchestrator and in every worker: local workers inherit it; for ECS or EC2 workers set it in
   * the task definition or launch template (as a secret), never in the step's input. Without
   * `searchable`, a media table gets the media index and another table an index of its text
   * columns (the other columns stored).
   */
  postgres?: { env?: string } | true
}

const plain = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain column name')
/** What `reindex` takes from the config for the index's fields (validated when the asset is declared). */
export const reindexOptionsSchema = z.object({
  searchable: z
    .array(
      z.union([
        plain,
        z.object({ column: plain, list: z.union([z.literal(true), plain]).optional() }).strict(),
      ]),
    )
    .min(1, 'must name at least one column to search')
    .optional(),
  stored: z.array(plain).optional(),
})

export const reindexConfig = (shards: number) =>
  z.object({
    shards: z.number().int().min(1).max(256).default(shards),
    /** Attempts per shard: a failed shard is retried alone, the others keep going. */
    shardAttempts: z.number().int().min(1).max(20).default(3),
    /** Wait before a shard's retry (doubles with each retry). */
    shardRetryDelayMs: z.number().int().min(0).default(200),
    /** Fault injection for tests and drills: the shard (0-based) whose worker fails; -1 for none. */
    failShard: z.number().int().min(-1).default(-1),
    /** How that worker fails: `exit` (non-zero exit code) or `crash` (killed by SIGKILL). */
    failMode: z.enum(['exit', 'crash']).default('exit'),
    /** How many of that shard's attempts fail (the first ones); 0 means all. */
    failAttempts: z.number().int().min(0).default(1),
  })

/**
 * `reindex`: a new full-text index (SQLite FTS5) built as K shards, one worker per id range,
 * through a runner. A failed shard is retried alone; if one still fails, the others are stopped
 * and the half-built index is removed. The document count must equal the cleaned row count.
 */
export function reindex(options: ReindexOptions = {}): AssetDefinition {
  const dataDir = resolveDataDir(options.dataDir)
  const paths = layout(dataDir)
  const from = options.upstream ?? 'clean'
  const chosen = parseOptions(reindexOptionsSchema, options, 'reindex')
  if (chosen.stored && !chosen.searchable)
    throw configError('reindex(...): `stored` needs `searchable` too (the fields the index searches).')
  const chosenFields: IndexFields | undefined = chosen.searchable
    ? { searchable: chosen.searchable, stored: chosen.stored ?? [] }
    : undefined
  const postgresEnv =
    options.postgres === undefined
      ? undefined
      : options.postgres === true
        ? 'REFRESH_API_URL'
        : (options.postgres.env ?? 'REFRESH_API_URL')
  if (postgresEnv !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(postgresEnv))
    throw configError(
      `reindex({ postgres: { env } }): ${JSON.stringify(postgresEnv)} is not an environment variable name.`,
    )
  // checked when the asset is declared: a typo fails `refresh validate`, not a run
  const transfer =
    options.transfer === undefined ? undefined : s3Location(options.transfer, 'reindex({ transfer })')
  // the runner is made on first use, so declaring the asset starts nothing
  let defaultRunner: Runner | undefined
  return asset({
    ...blockFields('reindex', options, dataDir, { deps: [from], retry: { maxAttempts: 1 } }),
    description: 'a new FTS5 index built in shards by workers',
    config: reindexConfig(options.shards ?? 4),
    // shards are retried one by one inside the step; retrying the whole step would redo them all
    // a remote runner's workers outlive a killed orchestrator: stop them when the run is recovered;
    // the half-built index and range inputs of a dead run go too
    ...sweepTemps(
      () => [paths.indexes, paths.work],
      options.runner?.recover ? (runIds) => options.runner!.recover!(runIds) : undefined,
    ),
    async materialize(ctx) {
      const table = upstreamField(ctx, from, 'table', isString)
      const rows = upstreamField(ctx, from, 'rows', isNumber)
      const upId = ctx.upstream[from]?.idColumn
      const idColumn = typeof upId === 'string' ? upId : 'id'
      // a Postgres refresh: the workers read the API database; nothing goes up to S3 but the shards
      let source: string
      let database: IndexShardInput['database']
      let fields = chosenFields
      if (postgresEnv !== undefined) {
        database = { env: postgresEnv }
        source = `postgres:$${postgresEnv}`
        fields = await postgresFields(postgresEnv, table, chosenFields, idColumn)
      } else {
        source = upstreamField(ctx, from, 'file', isString)
        fields ??= MEDIA_FIELDS
        checkFields(source, table, fields, idColumn)
      }
      const minId = (ctx.upstream[from]?.minId as number | null | undefined) ?? 1
      const maxId = (ctx.upstream[from]?.maxId as number | null | undefined) ?? 0
      const { shards, failShard, failMode, failAttempts } = ctx.config
      defaultRunner ??= options.runner ?? localProcessRunner()
      const name = indexName(ctx.runId)
      const final = paths.index(name)
      // the workers build into a temporary name, renamed into place once every shard is in
      const dir = tempPath(final, ctx.runId)

      const ranges = splitRange(minId, maxId + 1, shards)
      // with `transfer`, each range's rows go up as a small database of their own (a worker
      // downloads its range only, not the whole table), and each range's worker starts as soon
      // as its input is up; the workers read and write S3
      let s3: S3Store | undefined
      let remote: { base: string; sources: string[]; uploads: RangeUploads } | undefined
      let runner = defaultRunner
      // stops the uploads still going when the step ends early (a range failed, a cancel)
      const uploadsDone = new AbortController()
      if (transfer && database) {
        const { S3Store } = await import('../aws/s3.js')
        s3 = new S3Store({ where: 'reindex({ transfer })' })
        const base = `${transfer.prefix}runs/${ctx.runId}/${ctx.key}/`
        remote = { base, sources: [], uploads: { urls: [], ready: [], done: Promise.resolve() } }
      } else if (transfer) {
        const { S3Store } = await import('../aws/s3.js')
        s3 = new S3Store({ where: 'reindex({ transfer })' })
        const base = `${transfer.prefix}runs/${ctx.runId}/${ctx.key}/`
        const uploads = uploadRanges(
          s3,
          transfer,
          base,
          source,
          table,
          idColumn,
          ranges,
          paths.work,
          ctx.runId,
          {
            log: (m) => ctx.log(m),
            signal: AbortSignal.any([ctx.signal, uploadsDone.signal]),
          },
        )
        remote = { base, sources: uploads.urls, uploads }
        runner = afterInputs(defaultRunner, (unit) => uploads.ready[unit.input.shard as number]!)
      }
      ensureWritableDir(paths.indexes)
      rmSync(dir, { recursive: true, force: true })
      rmSync(final, { recursive: true, force: true })
      mkdirSync(dir)
      const shardOutput = (shard: number) =>
        remote
          ? s3Url(transfer!.bucket, `${remote.base}shards/${shardFile(shard)}`)
          : join(dir, shardFile(shard))

      const done = new Array<number>(shards).fill(0)
      const reported = new Array<number>(shards).fill(-1)
      const units = ranges.map(([lo, hi], shard) => ({
        id: `shard-${shard}`,
        task: 'index-shard',
        runId: ctx.runId,
        asset: ctx.key,
        input: {
          source: remote?.sources[shard] ?? source,
          table,
          idColumn,
          fields,
          ...(database ? { database } : {}),
          lo,
          hi,
          output: shardOutput(shard),
          shard,
        } satisfies IndexShardInput as unknown as JsonObject,
      }))
      ctx.log(`building ${name}: ${rows} documents in ${shards} shards on ${runner.name}`)
      try {
        const outcomes = await runUnits(runner, units, {
          maxAttempts: ctx.config.shardAttempts,
          retryDelayMs: ctx.config.shardRetryDelayMs,
          signal: ctx.signal,
          inputFor: (unit) => {
            const shard = unit.input.shard as number
            const failing = shard === failShard && (failAttempts === 0 || unit.attempt <= failAttempts)
            return { ...unit.input, fail: failing ? failMode : null }
          },
          onProgress: (id, p) => {
            const shard = Number(id.slice('shard-'.length))
            done[shard] = p.done
            ctx.progress(
              done.reduce((a, b) => a + b, 0),
              rows,
            )
            // per-shard progress as a log line at each quarter
            const quarter = p.total ? Math.floor((4 * p.done) / p.total) : 0
            if (quarter > reported[shard]! && quarter < 4) {
              reported[shard] = quarter
              if (quarter > 0) ctx.log(`${id}: ${p.done}/${p.total} (${quarter * 25}%)`, 'debug')
            }
          },
          onAttempt: (unit, result) => {
            if (result.status === 'succeeded') {
              ctx.log(
                `${unit.id}: ${String(result.output.documents)} documents in ${Math.round(result.durationMs)} ms`,
              )
            } else if (result.status === 'failed') {
              done[unit.input.shard as number] = 0
              const retry = unit.attempt < ctx.config.shardAttempts
              ctx.log(
                `${unit.id} attempt ${unit.attempt}/${ctx.config.shardAttempts} failed: ${result.error}${retry ? '; retrying this shard alone' : ''}`,
                'warn',
              )
            }
          },
        })
        const perShard = outcomes.map((o, shard) => ({
          shard,
          lo: ranges[shard]![0],
          hi: ranges[shard]![1],
          documents: o.output.documents as number,
          ms: Math.round(o.durationMs),
          attempts: o.attempts,
          maxRssMb: (o.output.maxRssMb as number | undefined) ?? null,
          ...(typeof o.output.bytes === 'number' ? { bytes: o.output.bytes } : {}),
          ...(typeof o.output.sha256 === 'string' ? { sha256: o.output.sha256 } : {}),
        })) satisfies JsonObject[]
        if (transfer && s3) await downloadShards(s3, transfer, perShard, dir, shardOutput, ctx)
        const documents = perShard.reduce((a, s) => a + s.documents, 0)
        if (documents !== rows) {
          throw new NonRetriableError(
            `index ${name} has ${documents} documents but clean kept ${rows} rows; no document may be lost between workers.`,
          )
        }
        const bytes = perShard.reduce((a, s) => a + statSync(join(dir, shardFile(s.shard))).size, 0)
        renameSync(dir, final)
        return {
          index: name,
          dir: final,
          ...(database ? { table } : {}),
          documents,
          shards,
          bytes,
          runner: runner.name,
          shardTimings: perShard,
        }
      } catch (error) {
        // nothing half-built stays behind to be snapshotted or promoted
        rmSync(dir, { recursive: true, force: true })
        throw error
      } finally {
        // the input and the shard files in S3 are scratch: once the shards are here (or the step
        // failed, and a retry uploads again) they go; `refresh gc` is the backstop after a crash
        if (s3 && remote) {
          uploadsDone.abort()
          await remote.uploads.done
          try {
            const keys = (await s3.list(transfer!.bucket, remote.base)).map((o) => o.key)
            await s3.deleteKeys(transfer!.bucket, keys)
          } catch (error) {
            ctx.log(
              `could not remove the run's scratch under ${s3Url(transfer!.bucket, remote.base)} (${error instanceof Error ? error.message : String(error)}); \`refresh gc\` will`,
              'warn',
            )
          }
        }
        s3?.close()
      }
    },
  })
}

/**
 * The index's fields and id column exist in the cleaned table: a column the config names that
 * it does not have is a `ConfigError` before any worker starts.
 */
function checkFields(source: string, table: string, fields: IndexFields, idColumn: string): void {
  const db = new Database(source, { readonly: true, fileMustExist: true })
  try {
    const schema = tableSchema(db, table)
    if (!schema) return // the workers say which table is missing, as before
    requireFields(schema, fields, idColumn)
  } finally {
    db.close()
  }
}

/** The id column and every field of the index are columns of the table (a `ConfigError` naming the one that is not). */
function requireFields(schema: TableSchema, fields: IndexFields, idColumn: string): void {
  requireColumns(schema, [idColumn], 'reindex', 'idColumn (from copy)')
  requireColumns(schema, fieldColumns({ searchable: fields.searchable, stored: [] }), 'reindex', 'searchable')
  requireColumns(schema, fields.stored, 'reindex', 'stored')
}

export function shardFile(shard: number): string {
  return `shard-${String(shard).padStart(3, '0')}.db`
}

/** Brings the shards the workers uploaded into the local index, each checked against the SHA-256 its worker reported. */
async function downloadShards(
  s3: S3Store,
  transfer: S3Location,
  shards: ReadonlyArray<{ shard: number; sha256?: string; bytes?: number }>,
  dir: string,
  outputOf: (shard: number) => string,
  ctx: { log(message: string, level?: 'debug' | 'info' | 'warn'): void; signal: AbortSignal },
): Promise<void> {
  let bytes = 0
  const queue = [...shards]
  const worker = async () => {
    for (let s = queue.shift(); s; s = queue.shift()) {
      if (s.sha256 === undefined) {
        throw new NonRetriableError(
          `shard ${s.shard}'s worker reported no sha256 for ${outputOf(s.shard)}; a worker that writes S3 outputs reports one (is the worker image older than the orchestrator?).`,
        )
      }
      const url = outputOf(s.shard)
      const key = url.slice(`s3://${transfer.bucket}/`.length)
      const got = await s3.download(transfer.bucket, key, join(dir, shardFile(s.shard)), {
        signal: ctx.signal,
        expect: { sha256: s.sha256, ...(s.bytes === undefined ? {} : { size: s.bytes }) },
      })
      bytes += got.bytes
    }
  }
  await Promise.all(Array.from({ length: Math.min(4, shards.length) }, worker))
  ctx.log(`downloaded ${shards.length} shards (${bytes} bytes), each checked against its worker's sha256`)
}

interface RangeUploads {
  /** The S3 URL of each range's input, in shard order (known before the uploads finish). */
  urls: string[]
  /** Settles when that range's input is up (rejects when its upload failed). */
  ready: Promise<void>[]
  /** Settles when every upload has settled and the local scratch is gone. */
  done: Promise<void>
}

/**
 * Writes each id range of the cleaned table to its own small database (the table's own schema,
 * its rows in [lo, hi)) and uploads it to `<base>input/range-NNN.db`, four ranges at a time:
 * a range's worker may start as soon as its own input is up. The local files are scratch.
 */
function uploadRanges(
  s3: S3Store,
  transfer: S3Location,
  base: string,
  source: string,
  table: string,
  idColumn: string,
  ranges: ReadonlyArray<readonly [number, number]>,
  workDir: string,
  runId: string,
  ctx: { log(message: string, level?: 'debug' | 'info' | 'warn'): void; signal: AbortSignal },
): RangeUploads {
  const started = performance.now()
  const dir = tempPath(join(workDir, `ranges-${basename(base.replace(/\/$/, '')) || 'reindex'}`), runId)
  const names = ranges.map((_, shard) => `range-${String(shard).padStart(3, '0')}.db`)
  const urls = names.map((name) => s3Url(transfer.bucket, `${base}input/${name}`))
  const settle = ranges.map(() => ({
    resolve: (): void => undefined,
    reject: (_: unknown): void => undefined,
  }))
  const ready = ranges.map(
    (_, shard) =>
      new Promise<void>((resolve, reject) => {
        settle[shard] = { resolve, reject }
      }),
  )
  // a range nobody waits for yet (its unit is queued) must not be an unhandled rejection
  for (const r of ready) r.catch(() => undefined)
  const upload = async () => {
    ensureWritableDir(dir)
    const { default: Database } = await import('better-sqlite3')
    const src = new Database(source, { readonly: true, fileMustExist: true })
    let schema: string
    try {
      const row = src.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) as
        | { sql: string }
        | undefined
      if (!row)
        throw new NonRetriableError(`${source} has no table ${table}; run \`refresh run clean+\` again.`)
      schema = row.sql
    } finally {
      src.close()
    }
    let bytes = 0
    let next = 0
    const worker = async () => {
      for (let shard = next++; shard < ranges.length; shard = next++) {
        try {
          const [lo, hi] = ranges[shard]!
          const file = join(dir, names[shard]!)
          rmSync(file, { force: true })
          const db = new Database(file)
          try {
            db.pragma('journal_mode = OFF')
            db.pragma('synchronous = OFF')
            db.exec(schema)
            db.prepare('ATTACH DATABASE ? AS src').run(source)
            db.prepare(
              `INSERT INTO main.${identifier(table)} SELECT * FROM src.${identifier(table)} WHERE ${identifier(idColumn)} >= ? AND ${identifier(idColumn)} < ? ORDER BY ${identifier(idColumn)}`,
            ).run(lo, hi)
            db.exec('DETACH DATABASE src')
          } finally {
            db.close()
          }
          const up = await s3.upload(file, transfer.bucket, `${base}input/${names[shard]}`, {
            signal: ctx.signal,
          })
          rmSync(file, { force: true })
          bytes += up.bytes
          settle[shard]!.resolve()
        } catch (error) {
          settle[shard]!.reject(error)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(4, ranges.length) }, worker))
    ctx.log(
      `uploaded ${ranges.length} range inputs (${bytes} bytes) to ${s3Url(transfer.bucket, `${base}input/`)} in ${Math.round(performance.now() - started)} ms`,
    )
  }
  const done = upload()
    .catch((error: unknown) => {
      // every range still waiting fails with the reason
      for (const s of settle) s.reject(error)
    })
    .finally(() => rmSync(dir, { recursive: true, force: true }))
  return { urls, ready, done }
}

/**
 * A runner whose units start only once their input is ready (uploaded); a unit whose input
 * failed fails without being started, not retried (the upload itself was retried).
 */
function afterInputs(runner: Runner, ready: (unit: WorkUnit) => Promise<void>): Runner {
  return {
    name: runner.name,
    close: () => runner.close(),
    [Symbol.asyncDispose]: () => runner.close(),
    ...(runner.recover ? { recover: (runIds: readonly string[]) => runner.recover!(runIds) } : {}),
    start(unit, listener) {
      const started = performance.now()
      let inner: WorkHandle | undefined
      let stopped: string | undefined
      let resolveStopped!: (result: WorkResult) => void
      // a unit stopped while its input is still going up ends at once, never starts
      const whenStopped = new Promise<WorkResult>((resolve) => {
        resolveStopped = resolve
      })
      const started$: Promise<WorkResult> = ready(unit).then(
        () => {
          if (stopped !== undefined) return { status: 'stopped', reason: stopped, durationMs: 0 }
          inner = runner.start(unit, listener)
          return inner.result
        },
        (error: unknown) => ({
          status: 'failed',
          error: `the input of ${unit.id} could not be uploaded: ${error instanceof Error ? error.message : String(error)}`,
          exitCode: null,
          signal: null,
          durationMs: performance.now() - started,
          retriable: false,
        }),
      )
      const result = Promise.race([whenStopped, started$])
      return {
        unit,
        result,
        get where() {
          return inner?.where
        },
        async stop(reason = 'stopped') {
          stopped ??= reason
          if (inner) await inner.stop(reason)
          else resolveStopped({ status: 'stopped', reason, durationMs: performance.now() - started })
          await result
        },
      }
    },
  }
}

const MEDIA_SHAPE = ['title', 'creator', 'tags', 'url', 'license', 'provider', 'identifier']
const TEXT = /^(text|character varying|character|citext)\b/

/**
 * The index's fields for a table of the API database, checked against its columns: the chosen
 * ones, else the media index for a media table, else its text columns searchable and the other
 * columns (but the id) stored. A column the config names that the table lacks is a `ConfigError`.
 */
async function postgresFields(
  env: string,
  table: string,
  chosen: IndexFields | undefined,
  idColumn: string,
): Promise<IndexFields> {
  const url = process.env[env]
  if (!url) {
    throw configError(
      `reindex({ postgres }): ${env} is not set; set it to the API database's postgres:// URL (in the workers' environment too).`,
    )
  }
  const { connectUserDatabase, tableColumns } = await import('../core/pg-client.js')
  const db = await connectUserDatabase(url, 'API', { applicationName: 'refresh reindex' })
  try {
    const found = await tableColumns(db, table)
    if (!found.columns) {
      throw configError(
        `reindex: the cleaned table ${db.schema}.${table} is not in ${db.display}; run \`refresh run +reindex\` so that clean makes it.`,
      )
    }
    const schema = {
      table,
      columns: found.columns.map((c) => ({ name: c.name, type: c.type, notNull: c.notNull, pk: 0 })),
    }
    const has = (name: string) => found.columns.some((c) => c.name === name)
    const fields =
      chosen ??
      (MEDIA_SHAPE.every(has)
        ? MEDIA_FIELDS
        : {
            searchable: found.columns
              .filter((c) => c.name !== idColumn && TEXT.test(c.type))
              .map((c) => c.name),
            stored: found.columns.filter((c) => c.name !== idColumn && !TEXT.test(c.type)).map((c) => c.name),
          })
    if (fields.searchable.length === 0) {
      throw configError(
        `reindex: table ${db.schema}.${table} has no text column to search; name the columns with \`searchable\`.`,
      )
    }
    requireFields(schema, fields, idColumn)
    return fields
  } finally {
    await db.client.end().catch(() => {})
  }
}
