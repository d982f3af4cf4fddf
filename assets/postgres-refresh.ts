/**
 * The building blocks of a Postgres refresh (the `postgres` environment of the default config):
 * `copy({ postgres })` streams the upstream table into a new table of the API database named for
 * the run, `clean({ postgres })` cleans it there in SQL into the table that will be promoted, and
 * `reindex({ postgres })` has each worker read its id range straight from that table. The index
 * and everything after it work as for a local refresh; `promoteTable` then swaps the cleaned
 * table in under the live name.
 *
 * Database URLs are read from the environment when the step runs (never written into events,
 * metadata or a worker's input: metadata and messages carry them with the password redacted).
 */
import { type AssetDefinition, asset, type Metadata } from '../core/definitions.js'
import { ConfigError } from '../core/errors.js'
import { redactLocation } from '../core/store/open.js'
import { type CleanRule, type CleanRules, mediaCounts, mediaRules, parseRules } from './clean.js'
import type { BlockOptions } from './layout.js'
import { blockFields } from './layout.js'
import { checkSqlRules } from './postgres-clean.js'
import { configError } from './schema.js'

const MAX_NAME = 63

/** Where a Postgres refresh's data lives: from the environment (see `postgresSettings`). */
export interface PostgresSettings {
  /** The upstream database (`REFRESH_UPSTREAM_URL`). */
  upstreamUrl: string
  /** The API database (`REFRESH_API_URL`): the copy, the clean, the index's input and the promoted table. */
  apiUrl: string
  /** The upstream table (`REFRESH_UPSTREAM_TABLE`, default `media`), promoted under the same name. */
  table: string
}

/**
 * The settings of the `postgres` environment, from `REFRESH_UPSTREAM_URL`, `REFRESH_API_URL` and
 * `REFRESH_UPSTREAM_TABLE` (default `media`). A variable that is missing or malformed is a
 * `ConfigError` naming it (with the password of a URL redacted).
 */
export function postgresSettings(env: NodeJS.ProcessEnv = process.env): PostgresSettings {
  const url = (name: string, what: string) => {
    const value = env[name]
    if (!value) {
      throw new ConfigError(
        `${name} is not set: --env postgres needs ${what} as a postgres:// URL, e.g. ${name}=postgres://USER:PASSWORD@HOST:5432/DATABASE.`,
      )
    }
    let parsed: URL
    try {
      parsed = new URL(value)
    } catch {
      throw new ConfigError(
        `${name} (${redactLocation(value)}) cannot be read as a URL; write it as postgres://USER:PASSWORD@HOST:5432/DATABASE.`,
      )
    }
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
      throw new ConfigError(
        `${name} (${redactLocation(value)}) is not a postgres:// URL; write it as postgres://USER:PASSWORD@HOST:5432/DATABASE.`,
      )
    }
    return value
  }
  const table = env.REFRESH_UPSTREAM_TABLE || 'media'
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table)) {
    throw new ConfigError(
      `REFRESH_UPSTREAM_TABLE ${JSON.stringify(table)} is not a plain table name; use letters, digits and underscores (at most 63).`,
    )
  }
  return {
    upstreamUrl: url('REFRESH_UPSTREAM_URL', 'the upstream database'),
    apiUrl: url('REFRESH_API_URL', 'the API database'),
    table,
  }
}

/** A table named for a run: `<base>_<kind>_<runId>`, the base cut so the name fits in 63 characters. */
export function runTable(base: string, kind: string, runId: string): string {
  return `${base.slice(0, MAX_NAME - runId.length - kind.length - 2)}_${kind}_${runId}`
}

/** A URL option, else the environment variable, read when the step runs. */
function urlOf(given: string | undefined, variable: string, where: string): string {
  const url = given ?? process.env[variable]
  if (!url) {
    throw new ConfigError(
      `${where} has no database: pass its URL, or set ${variable} to a postgres://USER:PASSWORD@HOST:5432/DATABASE URL.`,
    )
  }
  return url
}

export interface PostgresCopyBlock {
  /** The upstream database's URL (default `$REFRESH_UPSTREAM_URL`, read when the step runs). */
  from?: string
  /** The API database's URL (default `$REFRESH_API_URL`). */
  to?: string
  /** The width of the id ranges loaded one transaction each (default 100,000). */
  batchRows?: number
}

/** `copy({ postgres })`: see the file comment. */
export function copyFromPostgres(
  options: BlockOptions & { table?: string; columns?: string[]; idColumn?: string },
  postgres: PostgresCopyBlock,
): AssetDefinition {
  const table = options.table ?? 'media'
  return asset({
    ...blockFields('copy', options, '', {
      deps: [],
      retry: { maxAttempts: 3, delayMs: 500, backoff: 'exponential' },
      tags: { source: `postgres:${table}` },
    }),
    tags: { block: 'copy', source: `postgres:${table}` },
    description: `the upstream table \`${table}\` streamed into a new table of the API database`,
    async materialize(ctx) {
      const from = urlOf(postgres.from, 'REFRESH_UPSTREAM_URL', 'copy({ postgres })')
      const to = urlOf(postgres.to, 'REFRESH_API_URL', 'copy({ postgres })')
      const { copyPostgresTable } = await import('./postgres-copy.js')
      const into = runTable(table, 'copy', ctx.runId)
      const result = await copyPostgresTable({
        from,
        to,
        table,
        into,
        // a re-execution after a crash mid-copy (another run id) resumes the copy its parent left
        resumeAbandoned: into.slice(0, -ctx.runId.length),
        ...(options.columns ? { columns: options.columns } : {}),
        ...(options.idColumn ? { idColumn: options.idColumn } : {}),
        ...(postgres.batchRows ? { batchRows: postgres.batchRows } : {}),
        signal: ctx.signal,
        onProgress: (p) => ctx.progress(p.done, p.ranges),
      })
      if (result.skipped > 0 || result.table !== into)
        ctx.log(
          `resumed ${result.table}: ${result.skipped} of ${result.ranges} id ranges were loaded by an earlier attempt`,
        )
      return {
        database: redactLocation(to),
        table: result.table,
        sourceTable: table,
        idColumn: options.idColumn ?? 'id',
        columns: result.columns,
        rows: result.rows,
        loaded: result.loaded,
        ranges: result.ranges,
        skippedRanges: result.skipped,
        upstream: redactLocation(from),
      }
    },
  })
}

export interface PostgresCleanBlock {
  /** The API database's URL (default `$REFRESH_API_URL`, read when the step runs). */
  url?: string
  /** The width of the id ranges cleaned one statement each (default 100,000). */
  batchRows?: number
}

const MEDIA_SHAPE = ['url', 'license', 'title', 'tags']
const TEXT = /^(text|character varying|character)\b/

/** `clean({ postgres })`: see the file comment. */
export function cleanInPostgres(
  options: BlockOptions & { rules?: CleanRule[] },
  postgres: PostgresCleanBlock,
  config: import('zod/v4').ZodType<CleanRules>,
): AssetDefinition {
  const from = options.upstream ?? 'copy'
  const custom = options.rules === undefined ? undefined : parseRules(options.rules, 'clean({ rules })')
  if (custom) checkSqlRules(custom, 'clean({ rules })')
  return asset({
    ...blockFields('clean', options, '', { deps: [from], retry: { maxAttempts: 2, delayMs: 500 } }),
    tags: { block: 'clean', database: 'postgres' },
    description: 'the copied table cleaned by rules inside the API database, in SQL; counts per rule',
    config,
    async materialize(ctx) {
      const url = urlOf(postgres.url, 'REFRESH_API_URL', 'clean({ postgres })')
      const up: Metadata = ctx.upstream[from] ?? {}
      if (typeof up.table !== 'string') {
        throw configError(
          `clean({ postgres }): upstream asset \`${from}\` has no \`table\` in its metadata; run \`refresh run +clean\` so that copy makes it.`,
        )
      }
      const base = typeof up.sourceTable === 'string' ? up.sourceTable : up.table
      const idColumn = typeof up.idColumn === 'string' ? up.idColumn : 'id'
      // the default rules: the media refresh's on a media table, else whitespace trimmed in every text column
      let rules: CleanRule[] | undefined = custom
      let media = false
      if (!rules) {
        const columns = await columnsOf(url, up.table)
        media = MEDIA_SHAPE.every((c) => columns.some((x) => x.name === c))
        rules = media
          ? mediaRules(ctx.config)
          : columns
              .filter((c) => TEXT.test(c.type))
              .map((c) => ({ rule: 'trim', column: c.name, collapseSpaces: true }) as const)
      }
      const { cleanPostgresTable } = await import('./postgres-clean.js')
      const result = await cleanPostgresTable({
        url,
        table: up.table,
        into: runTable(base, 'new', ctx.runId),
        idColumn,
        rules,
        dropSource: true,
        ...(postgres.batchRows ? { batchRows: postgres.batchRows } : {}),
        signal: ctx.signal,
        onProgress: (done, total) => ctx.progress(done, total),
      })
      ctx.log(`kept ${result.rows} of ${result.input} rows (${result.dropped} dropped) in ${result.ms} ms`)
      return {
        database: redactLocation(url),
        table: result.table,
        sourceTable: base,
        idColumn: result.idColumn,
        rows: result.rows,
        minId: result.minId,
        maxId: result.maxId,
        input: result.input,
        dropped: result.dropped,
        rules: result.rules,
        ...(media ? mediaCounts(result.input, result.rules) : {}),
      }
    },
  })
}

async function columnsOf(url: string, table: string) {
  const { connectUserDatabase, tableColumns } = await import('../core/pg-client.js')
  const db = await connectUserDatabase(url, 'API', { applicationName: 'refresh clean' })
  try {
    const found = await tableColumns(db, table)
    if (!found.columns) {
      throw configError(
        `clean({ postgres }): the table ${db.schema}.${table} that copy made is not in ${db.display}; run \`refresh run +clean\` so that copy makes it again.`,
      )
    }
    return found.columns
  } finally {
    await db.client.end().catch(() => {})
  }
}
