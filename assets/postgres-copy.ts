/**
 * Copy of an upstream Postgres table into a new table of the API database (issue 17's `copy` for a
 * Postgres refresh), streamed with `COPY (SELECT …) TO STDOUT` on the upstream piped into
 * `COPY … FROM STDIN` on the API database, one id range at a time.
 *
 * Resumable, and never a row twice: the first attempt writes the plan (the id ranges) into a small
 * table next to the new one, `<into>_copy_progress`, in the transaction that creates the new
 * table. Each range is then loaded in a transaction of its own on the API database that also marks
 * the range done in the progress table, so a range's rows and its mark commit together or not at
 * all. A retry after a crash finds the plan, skips the ranges marked done and loads the rest. When
 * the last range is done, the progress table is dropped and the new table gets a comment saying it
 * is complete (one transaction), so a retry of a finished copy does nothing.
 *
 * The upstream is read in one `REPEATABLE READ` transaction per attempt (every range of an attempt
 * sees the same snapshot); a retry reads its pending ranges as the upstream is then, and rows whose
 * id is beyond the plan's last id (added since the first attempt) are not copied. The new table has the upstream's columns, types and `NOT NULL`s but no
 * indexes or constraints: loading is faster without them, and `promoteTable` builds the live
 * table's on it before the swap. Types are written as the upstream names them (`format_type`): a
 * type of the upstream's own (an enum, a domain) must exist in the API database too.
 *
 * This is the user's data, not the run store: its SQL lives here, in assets/, with identifiers
 * validated and quoted. `COPY` takes no bind parameters, so the range bounds are written into the
 * statement: they are integers this code computed (bigint), never text from the user.
 */
import { pipeline } from 'node:stream/promises'
import { CanceledError, didYouMean, isRefreshError, NonRetriableError } from '../core/errors.js'
import { importPeer } from '../core/peers.js'
import {
  checkIdentifier,
  connectUserDatabase,
  INTEGER_TYPES,
  loadPg,
  type PgColumn,
  qualified as q,
  quoteIdent,
  scrubError as scrub,
  scrubbedError as scrubbed,
  tableColumns,
  type UserDatabase,
} from '../core/pg-client.js'
import { redactLocation } from '../core/store/open.js'
import { configError } from './schema.js'

const PROGRESS_SUFFIX = '_copy_progress'
const MAX_NAME = 63
const DONE_COMMENT = 'refresh: copy complete'
/** At most this many ranges in a plan (sparse ids with a small `batchRows` would make millions). */
const MAX_RANGES = 100_000

export interface PostgresCopyOptions {
  /** The upstream database: a `postgres://` URL (`?schema=` names the schema; default `public`). */
  from: string
  /** The API database: a `postgres://` URL (`?schema=` names the schema; default `public`). */
  to: string
  /** The upstream table. */
  table: string
  /** The new table in the API database (it must not exist, unless this is a retry of the same copy). */
  into: string
  /** The columns to copy (default: all of the upstream table's, in their order); must include `idColumn`. */
  columns?: string[]
  /** The integer column the ranges are split on (default `id`). */
  idColumn?: string
  /** The width of an id range (default 100,000): the rows one transaction loads at most. */
  batchRows?: number
  /**
   * Resume an abandoned copy instead of starting `into`: an unfinished copy (its progress table
   * still there) into a table whose name starts with this prefix, of the same columns, that no
   * running copy holds (each copy holds a session lock on its table while it runs). A
   * re-execution of a run whose process died mid-copy has another run id, so another `into`:
   * this is how it resumes rather than starting from zero.
   */
  resumeAbandoned?: string
  signal?: AbortSignal
  /** Called after each range commits. */
  onProgress?(progress: PostgresCopyProgress): void
}

export interface PostgresCopyProgress {
  /** Rows loaded by this attempt so far. */
  rows: number
  /** Ranges done, including those a previous attempt finished. */
  done: number
  ranges: number
  /** The range just loaded: ids in (lo, hi]. */
  lo: string
  hi: string
}

export interface PostgresCopyResult {
  /** The new table (`into`, or the abandoned copy this one resumed). */
  table: string
  columns: string[]
  /** Rows in the new table. */
  rows: number
  /** Rows this attempt loaded. */
  loaded: number
  ranges: number
  /** Ranges a previous attempt had finished, not loaded again. */
  skipped: number
  ms: number
}

type Endpoint = UserDatabase
type Column = PgColumn

interface Range {
  lo: bigint
  hi: bigint
}

/**
 * Copies `table` of the upstream database into a new table `into` of the API database with
 * `COPY … TO STDOUT` / `COPY … FROM STDIN` in id ranges; a retry resumes after the last range
 * that committed (see the file comment).
 */
export async function copyPostgresTable(options: PostgresCopyOptions): Promise<PostgresCopyResult> {
  const started = performance.now()
  const table = checkIdentifier(options.table, 'the upstream table')
  let into = checkIdentifier(options.into, 'the new table (`into`)')
  if (into.length > MAX_NAME - PROGRESS_SUFFIX.length) {
    throw configError(
      `the new table's name \`${into}\` is too long: at most ${MAX_NAME - PROGRESS_SUFFIX.length} characters, so that \`${into}${PROGRESS_SUFFIX}\` fits Postgres' 63.`,
    )
  }
  const idColumn = checkIdentifier(options.idColumn ?? 'id', 'the id column')
  const batchRows = options.batchRows ?? 100_000
  if (!Number.isSafeInteger(batchRows) || batchRows < 1) {
    throw configError(`batchRows must be a positive integer, not ${String(options.batchRows)}.`)
  }
  for (const c of options.columns ?? []) checkIdentifier(c, 'a column')
  let progressTable = `${into}${PROGRESS_SUFFIX}`
  options.signal?.throwIfAborted()

  const [driver, copyStreams] = await Promise.all([
    loadPg(`the copy of ${table}`),
    importPeer('pg-copy-streams', `the copy of ${table}`, () => import('pg-copy-streams')),
  ])
  const connect = (url: string, role: string) =>
    connectUserDatabase(url, role, { driver, applicationName: 'refresh postgres-copy' })
  const up = await connect(options.from, 'upstream')
  let api: Endpoint | undefined
  try {
    api = await connect(options.to, 'API')
    const source = await sourceColumns(up, table)
    const columns = pickColumns(source, options.columns, idColumn, up, table)
    const id = columns.find((c) => c.name === idColumn)!
    if (!INTEGER_TYPES.has(id.type)) {
      throw configError(
        `the id column \`${idColumn}\` of ${up.schema}.${table} is ${id.type}; ranges are split on an integer column (smallint, integer, bigint): name one with \`idColumn\`.`,
      )
    }
    const names = columns.map((c) => c.name)
    const list = names.map(quoteIdent).join(', ')

    const adopted =
      options.resumeAbandoned === undefined
        ? undefined
        : await adopt(api, options.resumeAbandoned, into, names)
    if (adopted) {
      into = adopted
      progressTable = `${into}${PROGRESS_SUFFIX}`
    } else if (!(await lock(api, into))) {
      throw new NonRetriableError(
        `another copy into ${api.schema}.${into} is running (it holds its lock); wait for it to end.`,
      )
    }
    const state = await destination(api, into, progressTable)
    if (state === 'complete') {
      const rows = await count(api, into)
      return { table: into, columns: names, rows, loaded: 0, ranges: 0, skipped: 0, ms: elapsed(started) }
    }
    await up.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    if (state === 'absent') await plan(api, up, columns, table, into, progressTable, idColumn, batchRows)
    const ranges = await rangesOf(api, progressTable)
    const pending = ranges.filter((r) => !r.done)
    let done = ranges.length - pending.length
    let loaded = 0
    for (const range of pending) {
      options.signal?.throwIfAborted()
      await api.client.query('BEGIN')
      try {
        const reader = up.client.query(
          copyStreams.to(
            `COPY (SELECT ${list} FROM ${q(up.schema, table)} WHERE ${quoteIdent(idColumn)} > ${range.lo} AND ${quoteIdent(idColumn)} <= ${range.hi} ORDER BY ${quoteIdent(idColumn)}) TO STDOUT`,
          ),
        )
        const writer = api.client.query(copyStreams.from(`COPY ${q(api.schema, into)} (${list}) FROM STDIN`))
        await pipeline(reader, writer, ...(options.signal ? [{ signal: options.signal }] : []))
        const rows = writer.rowCount
        await api.client.query(
          `UPDATE ${q(api.schema, progressTable)} SET rows = $2, copied_at = now() WHERE lo = $1`,
          [range.lo.toString(), rows],
        )
        await api.client.query('COMMIT')
        loaded += rows
        done++
        options.onProgress?.({
          rows: loaded,
          done,
          ranges: ranges.length,
          lo: range.lo.toString(),
          hi: range.hi.toString(),
        })
      } catch (error) {
        await api.client.query('ROLLBACK').catch(() => {})
        throw error
      }
    }
    await up.client.query('COMMIT')
    // the rows are the sum of the ranges' (no count(*) scan of the new table)
    await api.client.query('BEGIN')
    const { rows: sums } = await api.client.query<{ n: string }>(
      `SELECT coalesce(sum(rows), 0)::text AS n FROM ${q(api.schema, progressTable)}`,
    )
    await api.client.query(`DROP TABLE ${q(api.schema, progressTable)}`)
    await api.client.query(`COMMENT ON TABLE ${q(api.schema, into)} IS '${DONE_COMMENT}'`)
    await api.client.query('COMMIT')
    const rows = Number(sums[0]?.n ?? 0)
    return {
      table: into,
      columns: names,
      rows,
      loaded,
      ranges: ranges.length,
      skipped: ranges.length - pending.length,
      ms: elapsed(started),
    }
  } catch (error) {
    if (options.signal?.aborted) throw new CanceledError(`the copy of ${table} into ${into} was canceled`)
    if (isRefreshError(error)) throw error
    const where = `${up.display} -> ${api?.display ?? redactLocation(options.to)}`
    throw new NonRetriableError(
      `the copy of ${up.schema}.${table} into ${into} (${where}) failed; ranges already done are kept and a retry resumes after them: ${scrub(error, options.from, options.to)}`,
      { cause: scrubbed(error, options.from, options.to) },
    )
  } finally {
    await Promise.all([up.client.end().catch(() => {}), api?.client.end().catch(() => {})])
  }
}

// --- the SQL ---

async function sourceColumns(up: Endpoint, table: string): Promise<Column[]> {
  const found = await tableColumns(up, table)
  if (found.columns) return found.columns
  throw configError(
    `the upstream table ${up.schema}.${table} does not exist in ${up.display}.${didYouMean(
      table,
      found.tables,
    )} Name an existing table with \`table\` (and its schema with the URL's ?schema=).`,
  )
}

function pickColumns(
  source: Column[],
  named: string[] | undefined,
  idColumn: string,
  up: Endpoint,
  table: string,
): Column[] {
  const byName = new Map(source.map((c) => [c.name, c]))
  const all = source.map((c) => c.name)
  const missing = [...(named ?? []), idColumn].find((n) => !byName.has(n))
  if (missing !== undefined) {
    const what = missing === idColumn && !named?.includes(missing) ? 'id column' : 'column'
    throw configError(
      `the ${what} \`${missing}\` does not exist in the upstream table ${up.schema}.${table} (${up.display}).${didYouMean(missing, all)} Its columns are: ${all.join(', ')}; fix \`${what === 'id column' ? 'idColumn' : 'columns'}\`.`,
    )
  }
  if (!named) return source
  if (!named.includes(idColumn)) {
    throw configError(
      `\`columns\` must include the id column \`${idColumn}\` (the copy is split and resumed on it); add it, or name another with \`idColumn\`.`,
    )
  }
  return [...new Set(named)].map((n) => byName.get(n)!)
}

/** Takes the session lock a running copy holds on its table (false when another session holds it). */
async function lock(api: Endpoint, into: string): Promise<boolean> {
  const { rows } = await api.client.query<{ ok: boolean }>(
    `SELECT pg_try_advisory_lock(hashtext('refresh copy ' || $1)) AS ok`,
    [`${api.schema}.${into}`],
  )
  return rows[0]!.ok
}

/**
 * The newest unfinished copy into a table named `prefix…` (other than `into`) with the columns
 * `names`, whose lock this session could take: its copy is no longer running.
 */
async function adopt(
  api: Endpoint,
  prefix: string,
  into: string,
  names: string[],
): Promise<string | undefined> {
  const like = `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`
  const { rows } = await api.client.query<{ name: string; columns: string[] }>(
    `SELECT c.relname AS name,
            array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                   AND NOT a.attisdropped ORDER BY a.attnum) AS columns
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname LIKE $2 AND c.relname <> $3
        AND c.relname NOT LIKE '%${PROGRESS_SUFFIX.replaceAll('_', '\\_')}'
        AND EXISTS (SELECT 1 FROM pg_class p WHERE p.relnamespace = n.oid AND p.relname = c.relname || $4)
      ORDER BY c.relname DESC`,
    [api.schema, like, into, PROGRESS_SUFFIX],
  )
  for (const row of rows) {
    if (row.columns.join(',') !== names.join(',')) continue
    if (await lock(api, row.name)) return row.name
  }
  return undefined
}

/** Whether the new table is to be made, is a copy in progress, or is a finished copy. */
async function destination(
  api: Endpoint,
  into: string,
  progressTable: string,
): Promise<'absent' | 'in-progress' | 'complete'> {
  const { rows } = await api.client.query<{ name: string; comment: string | null }>(
    `SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS comment
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2::text[])`,
    [api.schema, [into, progressTable]],
  )
  const target = rows.find((r) => r.name === into)
  const progress = rows.some((r) => r.name === progressTable)
  if (!target && !progress) return 'absent'
  if (target && progress) return 'in-progress'
  if (target && target.comment === DONE_COMMENT) return 'complete'
  if (target) {
    throw configError(
      `the table ${api.schema}.${into} already exists in ${api.display} and is not a copy refresh started; choose another \`into\`, or drop it.`,
    )
  }
  throw configError(
    `${api.schema}.${progressTable} exists in ${api.display} without the table it tracks (${into}); drop it to start the copy afresh.`,
  )
}

/** Creates the new table and the plan of its ranges, in one transaction. */
async function plan(
  api: Endpoint,
  up: Endpoint,
  columns: Column[],
  table: string,
  into: string,
  progressTable: string,
  idColumn: string,
  batchRows: number,
): Promise<void> {
  const { rows } = await up.client.query<{ lo: string | null; hi: string | null }>(
    `SELECT min(${quoteIdent(idColumn)})::text AS lo, max(${quoteIdent(idColumn)})::text AS hi FROM ${q(up.schema, table)}`,
  )
  const ranges: Range[] = []
  const first = rows[0]?.lo
  const last = rows[0]?.hi
  if (first != null && last != null) {
    const width = BigInt(batchRows)
    const count = (BigInt(last) - BigInt(first)) / width + 1n
    if (count > BigInt(MAX_RANGES)) {
      throw configError(
        `the ids of ${up.schema}.${table} span ${first}..${last}, which is ${count} ranges of ${batchRows}; raise \`batchRows\` so that there are at most ${MAX_RANGES}.`,
      )
    }
    for (let lo = BigInt(first) - 1n; lo < BigInt(last); lo += width) {
      ranges.push({ lo, hi: lo + width < BigInt(last) ? lo + width : BigInt(last) })
    }
  }
  const shape = columns
    .map((c) => `${quoteIdent(c.name)} ${c.type}${c.notNull ? ' NOT NULL' : ''}`)
    .join(', ')
  await api.client.query('BEGIN')
  try {
    await api.client.query(`CREATE TABLE ${q(api.schema, into)} (${shape})`)
    await api.client.query(
      `CREATE TABLE ${q(api.schema, progressTable)} (lo bigint PRIMARY KEY, hi bigint NOT NULL, rows bigint, copied_at timestamptz)`,
    )
    await api.client.query(
      `INSERT INTO ${q(api.schema, progressTable)} (lo, hi) SELECT * FROM unnest($1::bigint[], $2::bigint[])`,
      [ranges.map((r) => r.lo.toString()), ranges.map((r) => r.hi.toString())],
    )
    await api.client.query('COMMIT')
  } catch (error) {
    await api.client.query('ROLLBACK').catch(() => {})
    throw error
  }
}

async function rangesOf(api: Endpoint, progressTable: string): Promise<Array<Range & { done: boolean }>> {
  const { rows } = await api.client.query<{ lo: string; hi: string; done: boolean }>(
    `SELECT lo::text AS lo, hi::text AS hi, copied_at IS NOT NULL AS done FROM ${q(api.schema, progressTable)} ORDER BY lo`,
  )
  return rows.map((r) => ({ lo: BigInt(r.lo), hi: BigInt(r.hi), done: r.done }))
}

async function count(api: Endpoint, into: string): Promise<number> {
  const { rows } = await api.client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM ${q(api.schema, into)}`,
  )
  return Number(rows[0]?.n ?? 0)
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started)
}
