/**
 * Table promotion in the user's Postgres database (the API database of a Postgres refresh): the
 * table a run built takes the live name in one transaction, the previous live table is kept under
 * a versioned name for rollback, and older versions are dropped beyond `keep`.
 *
 * How the swap keeps the schema identical: every index, constraint and owned sequence of the live
 * table is matched to its counterpart on the new table by definition (not by name), and in the
 * swap's transaction the live table's objects move to versioned names while the new table's take
 * the live names. Missing indexes and constraints are built on the new table before the swap
 * (outside the lock); the live table's grants and owner are applied to the new table inside it.
 * Readers are never shown a missing table: the renames commit together, and a reader queued on
 * the live name while the swap holds its lock resolves the name again once it gets the lock.
 * The swap waits at most `lockTimeoutMs` for its lock (so readers queue behind it at most that
 * long), then rolls back, waits and tries again.
 *
 * Not carried over (limits of a rename swap): views, and foreign keys of other tables, keep
 * pointing at the table they were created on (now the versioned one); column-level grants,
 * triggers, policies and comments are not copied.
 *
 * This is the user's data, not the run store: its SQL lives here, in assets/, with identifiers
 * validated and quoted and values passed as parameters.
 */
import type pg from 'pg'
import { z } from 'zod/v4'
import { type AssetDefinition, asset } from '../core/definitions.js'
import { ConfigError, isRefreshError, NonRetriableError, RefreshError } from '../core/errors.js'
import { newRunId } from '../core/ids.js'
import {
  checkIdentifier,
  connectUserDatabase,
  quoteIdent,
  scrubbedError,
  scrubError,
} from '../core/pg-client.js'
import { redactLocation } from '../core/store/open.js'
import { attachParts } from './backends.js'
import type { BlockOptions } from './layout.js'

const MAX_NAME = 63
const PRIVILEGES = new Set([
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'TRUNCATE',
  'REFERENCES',
  'TRIGGER',
  'MAINTAIN',
])
const LOCK_NOT_AVAILABLE = '55P03'

export { checkIdentifier, quoteIdent } from '../core/pg-names.js'

export interface TableTarget {
  /** The API database: a `postgres://` URL (`?schema=` names the schema; default `public`). */
  url: string
  /** The live table's name. */
  table: string
  /** The schema (default: the URL's `?schema=`, else `public`). */
  schema?: string
  /** How long the swap waits for its lock before it rolls back and tries again (default 200 ms). */
  lockTimeoutMs?: number
  /** Attempts at taking the lock (default 50). */
  lockAttempts?: number
  log?(message: string): void
}

export interface TablePromotionResult {
  /** The live table's name (now the promoted table). */
  table: string
  /** The table that took the live name. */
  promoted: string
  /** The versioned name the previous live table is kept under, or null when there was none. */
  previous: string | null
  /** Versions dropped beyond `keep` (and tables rolled back from). */
  dropped: string[]
  /** Indexes and constraints built on the new table because it lacked them. */
  built: string[]
  /** Attempts the swap took (a lock not granted within `lockTimeoutMs` is one failed attempt). */
  attempts: number
  ms: number
}

export interface TableRollbackResult {
  table: string
  /** The version now live again. */
  restored: string
  /** The name the table rolled back from is kept under. */
  rolledBack: string
  attempts: number
  ms: number
}

/** The versioned name of the live table `live` for `stamp` (a run id): `<live>_prev_<stamp>`. */
export function versionName(live: string, stamp: string): string {
  return `${live.slice(0, MAX_NAME - stamp.length - 6)}_prev_${stamp}`
}

function rolledBackName(live: string, stamp: string): string {
  return `${live.slice(0, MAX_NAME - stamp.length - 12)}_rolledback_${stamp}`
}

const STAMP = /^[0-9a-z]{18}$/

/**
 * Makes `next` the live table `table` in one transaction (see the file comment); the previous
 * live table is kept as `<table>_prev_<stamp>`, and versions beyond `keep` are dropped afterwards.
 */
export async function promoteTableNow(
  target: TableTarget & { next: string; keep?: number; stamp?: string },
): Promise<TablePromotionResult> {
  const stamp = target.stamp ?? newRunId(Date.now())
  if (!STAMP.test(stamp))
    throw new ConfigError(
      `a version stamp is a run id (18 lower-case letters or digits), not ${JSON.stringify(stamp)}.`,
    )
  const keep = target.keep ?? 1
  return withClient(target, async (client, schema, live) => {
    const next = checkIdentifier(target.next, 'the new table')
    if (next === live) {
      throw new NonRetriableError(`the new table is the live table \`${live}\` itself; nothing to promote.`)
    }
    const started = performance.now()
    const nextTable = await tableInfo(client, schema, next)
    if (!nextTable) {
      throw new NonRetriableError(
        `the new table ${schema}.${next} does not exist in ${redactLocation(target.url)}; run the step that builds it first.`,
      )
    }
    const liveTable = await tableInfo(client, schema, live)
    const retired = liveTable ? versionName(live, stamp) : null
    const plan = liveTable ? await planSwap(client, schema, liveTable, nextTable, stamp) : undefined
    const attempts = await swapWithRetry(client, target, async () => {
      await lockTables(client, schema, liveTable ? [live, next] : [next])
      if (plan && liveTable && retired) {
        await applyAccess(client, schema, liveTable, nextTable)
        await runSwap(client, plan)
        await client.query(`ALTER TABLE ${q(schema, live)} RENAME TO ${quoteIdent(retired)}`)
      }
      await client.query(`ALTER TABLE ${q(schema, next)} RENAME TO ${quoteIdent(live)}`)
    })
    const dropped = await prune(client, schema, live, keep, target.log)
    return {
      table: live,
      promoted: next,
      previous: retired,
      dropped,
      built: plan?.built ?? [],
      attempts,
      ms: Math.round(performance.now() - started),
    }
  })
}

/**
 * Swaps the newest kept version (`<table>_prev_<stamp>`) back under the live name, with the same
 * guarantees as a promotion; the table rolled back from is kept as `<table>_rolledback_<stamp>`
 * (dropped by the next promotion).
 */
export async function rollbackTable(target: TableTarget & { stamp?: string }): Promise<TableRollbackResult> {
  const stamp = target.stamp ?? newRunId(Date.now())
  return withClient(target, async (client, schema, live) => {
    const started = performance.now()
    const versions = await listVersions(client, schema, live, '_prev_')
    const restored = versions[0]
    if (!restored) {
      throw new RefreshError(
        'promote',
        `${schema}.${live} has no previous version to roll back to (no ${live}_prev_* table); a second promotion keeps one.`,
      )
    }
    const liveTable = await tableInfo(client, schema, live)
    const restoredTable = (await tableInfo(client, schema, restored))!
    if (!liveTable) {
      throw new RefreshError(
        'promote',
        `${schema}.${live} does not exist, so there is nothing to roll back from.`,
      )
    }
    const retired = rolledBackName(live, stamp)
    const plan = await planSwap(client, schema, liveTable, restoredTable, stamp)
    const attempts = await swapWithRetry(client, target, async () => {
      await lockTables(client, schema, [live, restored])
      await applyAccess(client, schema, liveTable, restoredTable)
      await runSwap(client, plan)
      await client.query(`ALTER TABLE ${q(schema, live)} RENAME TO ${quoteIdent(retired)}`)
      await client.query(`ALTER TABLE ${q(schema, restored)} RENAME TO ${quoteIdent(live)}`)
    })
    return {
      table: live,
      restored,
      rolledBack: retired,
      attempts,
      ms: Math.round(performance.now() - started),
    }
  })
}

/** The kept versions of `table`, newest first. */
export async function tableVersions(target: TableTarget): Promise<string[]> {
  return withClient(target, (client, schema, live) => listVersions(client, schema, live, '_prev_'))
}

export const promoteTableConfig = z.object({
  /** Earlier live tables kept for `refresh promote --rollback`; older ones are dropped. */
  keep: z.number().int().min(0).max(20).optional(),
})

export interface PromoteTableOptions extends Omit<BlockOptions, 'dataDir'> {
  /** The live table's name in the API database (default `media`). */
  table?: string
  /** The API database's URL (default: `$REFRESH_API_URL`, read when the step runs). */
  url?: string
  /** The schema (default: the URL's `?schema=`, else `public`). */
  schema?: string
  /** The new table's name; default: the `table` field of the upstream step's metadata. */
  source?: string
  /** Earlier live tables kept (default 1); older ones are dropped. The run config's `keep` overrides it. */
  keep?: number
  /** How long the swap waits for its lock before it retries (default 200 ms): the longest a reader queues behind it. */
  lockTimeoutMs?: number
  /**
   * Assets that must materialize first besides `upstream` (e.g. `['promote']`, so that the table
   * is swapped in once the index built from it is promoted, never before its reindex has read it).
   */
  after?: string[]
}

/** The part of a table promotion the CLI uses: `refresh promote --rollback` and the list of versions. */
export interface TablePromotion {
  /** For messages: the table and the database, credentials redacted. */
  readonly where: string
  rollback(log?: (message: string) => void): Promise<TableRollbackResult>
  versions(): Promise<string[]>
}

/**
 * `promoteTable`: the table the upstream step built takes the live name in one transaction
 * (indexes, constraints, sequences and grants carried over); the previous one is kept for
 * `refresh promote --rollback`, older ones dropped beyond `keep`. Never retried blindly.
 */
export function promoteTable(options: PromoteTableOptions = {}): AssetDefinition {
  const table = checkIdentifier(options.table ?? 'media', 'the live table')
  if (options.schema !== undefined) checkIdentifier(options.schema, 'the schema')
  if (options.source !== undefined) checkIdentifier(options.source, 'the new table')
  const from = options.upstream ?? 'clean'
  const urlOf = (): string => {
    const url = options.url ?? process.env.REFRESH_API_URL
    if (!url) {
      throw new ConfigError(
        `promoteTable({ table: '${table}' }) has no database: pass \`url\` or set REFRESH_API_URL to the API database's postgres:// URL.`,
      )
    }
    return url
  }
  const targetOf = (log?: (m: string) => void): TableTarget => ({
    url: urlOf(),
    table,
    ...(options.schema === undefined ? {} : { schema: options.schema }),
    ...(options.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: options.lockTimeoutMs }),
    ...(log ? { log } : {}),
  })
  const definition = asset({
    key: options.key ?? 'promote-table',
    deps: [
      ...(options.source !== undefined && options.upstream === undefined ? [] : [from]),
      ...(options.after ?? []).filter((d) => d !== from),
    ],
    group: options.group ?? 'refresh',
    tags: { block: 'promote-table', table },
    retry: options.retry ?? { maxAttempts: 1 },
    timeoutMs: options.timeoutMs,
    description: `the new table promoted to \`${table}\`; the previous kept for rollback`,
    config: promoteTableConfig,
    async materialize(ctx) {
      let next = options.source
      if (next === undefined) {
        const value = ctx.upstream[from]?.table
        if (typeof value !== 'string') {
          throw new NonRetriableError(
            `upstream asset \`${from}\` has no \`table\` in its metadata; run \`${ctx.key}\` with everything upstream of it: \`refresh run +${ctx.key}\`, or pass \`source\`.`,
          )
        }
        next = value
      }
      const keep = ctx.config.keep ?? options.keep ?? 1
      const stamp = /^[0-9a-z]{18}$/.test(ctx.runId) ? ctx.runId : undefined
      const r = await promoteTableNow({
        ...targetOf((m) => ctx.log(m)),
        next,
        keep,
        ...(stamp ? { stamp } : {}),
      })
      ctx.log(
        `${table} <- ${r.promoted} in ${r.ms} ms (${r.attempts} attempt${r.attempts === 1 ? '' : 's'})${r.previous ? `; previous kept as ${r.previous}` : ''}`,
      )
      return {
        table: r.table,
        promoted: r.promoted,
        previous: r.previous,
        dropped: r.dropped,
        built: r.built,
        attempts: r.attempts,
        ms: r.ms,
      }
    },
  })
  const part: TablePromotion = {
    get where() {
      const url = options.url ?? process.env.REFRESH_API_URL
      return `${table} in ${url ? redactLocation(url) : '$REFRESH_API_URL (unset)'}`
    },
    rollback: (log) => rollbackTable(targetOf(log)),
    versions: () => tableVersions(targetOf()),
  }
  return attachParts(definition, { table: part })
}

// --- the SQL ---

interface TableInfo {
  oid: number
  name: string
  owner: string
  acl: string | null
}

interface Plan {
  /** Statements that move the live table's objects away, then the new table's onto the live names. */
  renames: string[]
  /** Sequences of the live table that the new table's columns already use: their ownership moves. */
  owned: string[]
  built: string[]
}

async function withClient<T>(
  target: TableTarget,
  fn: (client: pg.Client, schema: string, live: string) => Promise<T>,
): Promise<T> {
  const live = checkIdentifier(target.table, 'the live table')
  const db = await connectUserDatabase(target.url, 'API', {
    applicationName: 'refresh promote-table',
    ...(target.schema === undefined ? {} : { schema: target.schema }),
  })
  try {
    return await fn(db.client, db.schema, live)
  } catch (error) {
    if (isRefreshError(error)) throw error
    throw new NonRetriableError(
      `the table promotion of ${db.schema}.${live} in ${db.display} failed, and the live table is as it was: ${scrubError(error, target.url)}`,
      { cause: scrubbedError(error, target.url) },
    )
  } finally {
    await db.client.end().catch(() => {})
  }
}

function q(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`
}

async function tableInfo(client: pg.Client, schema: string, name: string): Promise<TableInfo | undefined> {
  const { rows } = await client.query<{ oid: number; owner: string; acl: string | null }>(
    `SELECT c.oid::int AS oid, pg_get_userbyid(c.relowner) AS owner, c.relacl::text AS acl
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, name],
  )
  const row = rows[0]
  return row ? { ...row, name } : undefined
}

interface Named {
  name: string
  def: string
}

/** Indexes that back no constraint, keyed by definition without their name and table. */
async function indexes(client: pg.Client, oid: number): Promise<Named[]> {
  const { rows } = await client.query<{ name: string; def: string }>(
    `SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = $1
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = $1 AND k.conindid = i.indexrelid)
      ORDER BY ic.relname`,
    [oid],
  )
  return rows.map((r) => ({ name: r.name, def: indexShape(r.def) }))
}

/** `CREATE [UNIQUE] INDEX name ON table USING ...` without the name and table. */
function indexShape(def: string): string {
  const at = def.indexOf(' USING ')
  return `${def.startsWith('CREATE UNIQUE') ? 'UNIQUE' : ''}${def.slice(at)}`
}

async function constraints(client: pg.Client, oid: number): Promise<Named[]> {
  const { rows } = await client.query<{ name: string; def: string; type: string }>(
    `SELECT conname AS name, contype::text AS type, pg_get_constraintdef(oid) AS def
       FROM pg_constraint WHERE conrelid = $1 ORDER BY conname`,
    [oid],
  )
  return rows.map((r) => ({ name: r.name, def: r.def }))
}

/** Sequences owned by a column of the table (serial, identity). */
async function ownedSequences(
  client: pg.Client,
  oid: number,
): Promise<Array<{ name: string; column: string }>> {
  const { rows } = await client.query<{ name: string; column: string }>(
    `SELECT s.relname AS name, a.attname AS column
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
        AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
      ORDER BY s.relname`,
    [oid],
  )
  return rows
}

/** The sequence each column's default draws from. */
async function defaultSequences(client: pg.Client, oid: number): Promise<Map<string, string>> {
  const { rows } = await client.query<{ column: string; name: string }>(
    `SELECT a.attname AS column, s.relname AS name
       FROM pg_attrdef ad
       JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
       JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
       JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
      WHERE ad.adrelid = $1`,
    [oid],
  )
  return new Map(rows.map((r) => [r.column, r.name]))
}

/** The name an object of the retired table is kept under: unique per swap (`i`) and stamp. */
function retiredObject(name: string, i: number, stamp: string): string {
  return `v${i}_${stamp}_${name}`.slice(0, MAX_NAME)
}

/**
 * Matches the live table's objects to the new table's and builds what the new table lacks
 * (outside the swap's lock); the renames the swap runs.
 */
async function planSwap(
  client: pg.Client,
  schema: string,
  live: TableInfo,
  next: TableInfo,
  stamp: string,
): Promise<Plan> {
  const built: string[] = []
  const away: string[] = []
  const onto: string[] = []
  const owned: string[] = []
  let i = 0
  const temp = (): string => `t${i}_${stamp}_new`

  // constraints first: renaming one that is backed by an index renames the index too
  const liveConstraints = await constraints(client, live.oid)
  const nextConstraints = await constraints(client, next.oid)
  for (const c of liveConstraints) {
    i++
    let match = takeMatch(nextConstraints, c.def)
    if (!match) {
      const name = temp()
      await client.query(`ALTER TABLE ${q(schema, next.name)} ADD CONSTRAINT ${quoteIdent(name)} ${c.def}`)
      built.push(c.name)
      match = { name, def: c.def }
    }
    away.push(
      `ALTER TABLE ${q(schema, live.name)} RENAME CONSTRAINT ${quoteIdent(c.name)} TO ${quoteIdent(retiredObject(c.name, i, stamp))}`,
    )
    if (match.name !== c.name) {
      onto.push(
        `ALTER TABLE ${q(schema, next.name)} RENAME CONSTRAINT ${quoteIdent(match.name)} TO ${quoteIdent(c.name)}`,
      )
    }
  }

  const liveIndexes = await indexes(client, live.oid)
  const nextIndexes = await indexes(client, next.oid)
  const liveDefs = await client.query<{ name: string; def: string }>(
    `SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1`,
    [live.oid],
  )
  for (const x of liveIndexes) {
    i++
    let match = takeMatch(nextIndexes, x.def)
    if (!match) {
      const name = temp()
      const full = liveDefs.rows.find((r) => r.name === x.name)!.def
      const using = full.slice(full.indexOf(' USING '))
      await client.query(
        `CREATE ${x.def.startsWith('UNIQUE') ? 'UNIQUE ' : ''}INDEX ${quoteIdent(name)} ON ${q(schema, next.name)}${using}`,
      )
      built.push(x.name)
      match = { name, def: x.def }
    }
    away.push(`ALTER INDEX ${q(schema, x.name)} RENAME TO ${quoteIdent(retiredObject(x.name, i, stamp))}`)
    if (match.name !== x.name)
      onto.push(`ALTER INDEX ${q(schema, match.name)} RENAME TO ${quoteIdent(x.name)}`)
  }

  const liveSeqs = await ownedSequences(client, live.oid)
  const nextSeqs = await ownedSequences(client, next.oid)
  const nextDefaults = await defaultSequences(client, next.oid)
  for (const s of liveSeqs) {
    i++
    const own = nextSeqs.find((n) => n.column === s.column)
    if (own) {
      // the new table has a sequence of its own: it takes the live name, past the ids it holds
      await advanceSequence(client, schema, own.name, next.name, s.column)
      away.push(
        `ALTER SEQUENCE ${q(schema, s.name)} RENAME TO ${quoteIdent(retiredObject(s.name, i, stamp))}`,
      )
      onto.push(`ALTER SEQUENCE ${q(schema, own.name)} RENAME TO ${quoteIdent(s.name)}`)
    } else if (nextDefaults.get(s.column) === s.name) {
      // built with LIKE: the new column draws from the live sequence, which must not be dropped with the old table
      await advanceSequence(client, schema, s.name, next.name, s.column)
      owned.push(
        `ALTER SEQUENCE ${q(schema, s.name)} OWNED BY ${q(schema, next.name)}.${quoteIdent(s.column)}`,
      )
    } else {
      throw new NonRetriableError(
        `column ${s.column} of ${schema}.${next.name} does not draw from a sequence as ${live.name}.${s.column} does (${s.name}); build the new table with \`CREATE TABLE ${next.name} (LIKE ${live.name} INCLUDING ALL)\`.`,
      )
    }
  }
  return { renames: [...away, ...onto], owned, built }
}

function takeMatch(candidates: Named[], def: string): Named | undefined {
  const at = candidates.findIndex((c) => c.def === def)
  if (at < 0) return undefined
  return candidates.splice(at, 1)[0]
}

/** Moves a sequence past the largest value of the column it feeds (rows copied with their ids). */
async function advanceSequence(
  client: pg.Client,
  schema: string,
  sequence: string,
  table: string,
  column: string,
): Promise<void> {
  const seq = q(schema, sequence)
  await client.query(
    `SELECT setval($1::regclass, m) FROM (SELECT max(${quoteIdent(column)})::bigint AS m FROM ${q(schema, table)}) x
      WHERE m > coalesce(pg_sequence_last_value($1::regclass), 0)`,
    [seq],
  )
}

/** The live table's owner and grants, applied to the new table (inside the swap). */
async function applyAccess(
  client: pg.Client,
  schema: string,
  live: TableInfo,
  next: TableInfo,
): Promise<void> {
  const target = q(schema, next.name)
  if (live.owner !== next.owner)
    await client.query(`ALTER TABLE ${target} OWNER TO ${quoteIdent(live.owner)}`)
  const { rows: now } = await client.query<{ acl: string | null }>(
    'SELECT relacl::text AS acl FROM pg_class WHERE oid = $1',
    [next.oid],
  )
  if (now[0]?.acl === live.acl) return
  const grants = async (oid: number) =>
    (
      await client.query<{ grantee: string | null; privilege: string; grantable: boolean }>(
        `SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
                a.privilege_type AS privilege, a.is_grantable AS grantable
           FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1`,
        [oid],
      )
    ).rows
  const role = (g: string | null) => (g === null ? 'PUBLIC' : quoteIdent(g))
  for (const g of new Set((await grants(next.oid)).map((r) => r.grantee))) {
    if (g !== live.owner) await client.query(`REVOKE ALL ON ${target} FROM ${role(g)}`)
  }
  for (const g of await grants(live.oid)) {
    if (!PRIVILEGES.has(g.privilege)) throw new Error(`unknown table privilege ${g.privilege}`)
    if (g.grantee === live.owner) continue
    await client.query(
      `GRANT ${g.privilege} ON ${target} TO ${role(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`,
    )
  }
}

/** Both tables locked first, so that the renames after it wait for nothing. */
async function lockTables(client: pg.Client, schema: string, names: string[]): Promise<void> {
  await client.query(`LOCK TABLE ${names.map((n) => q(schema, n)).join(', ')} IN ACCESS EXCLUSIVE MODE`)
}

async function runSwap(client: pg.Client, plan: Plan): Promise<void> {
  for (const statement of plan.owned) await client.query(statement)
  for (const statement of plan.renames) await client.query(statement)
}

/**
 * Runs `swap` in one transaction that first locks what it renames, waiting at most
 * `lockTimeoutMs`; a lock not granted rolls back, waits a little and tries again, so readers
 * never queue behind the swap for longer than that. Any other failure rolls back and is thrown.
 */
async function swapWithRetry(
  client: pg.Client,
  target: TableTarget,
  swap: () => Promise<void>,
): Promise<number> {
  const timeout = Math.max(1, Math.floor(target.lockTimeoutMs ?? 200))
  const maxAttempts = target.lockAttempts ?? 50
  for (let attempt = 1; ; attempt++) {
    await client.query('BEGIN')
    try {
      await client.query(`SELECT set_config('lock_timeout', $1, true)`, [`${timeout}ms`])
      await swap()
      await client.query('COMMIT')
      return attempt
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      if ((error as { code?: unknown }).code !== LOCK_NOT_AVAILABLE || attempt >= maxAttempts) throw error
      target.log?.(`the swap waited ${timeout} ms for its lock (attempt ${attempt}); trying again`)
      await new Promise((r) => setTimeout(r, Math.min(1_000, timeout * attempt)))
    }
  }
}

/** The tables `<live><kind><stamp>`, newest first. */
async function listVersions(
  client: pg.Client,
  schema: string,
  live: string,
  kind: string,
): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`,
    [schema],
  )
  const probe = kind === '_prev_' ? versionName : rolledBackName
  return rows
    .map((r) => r.name)
    .filter((name) => {
      const stamp = name.slice(-18)
      return STAMP.test(stamp) && probe(live, stamp) === name
    })
    .sort()
    .reverse()
}

/** Drops versions beyond `keep` and tables rolled back from, each on its own (a failure is logged, not thrown). */
async function prune(
  client: pg.Client,
  schema: string,
  live: string,
  keep: number,
  log?: (m: string) => void,
): Promise<string[]> {
  const doomed = [
    ...(await listVersions(client, schema, live, '_prev_')).slice(keep),
    ...(await listVersions(client, schema, live, '_rolledback_')),
  ]
  const dropped: string[] = []
  for (const name of doomed) {
    try {
      await client.query(`DROP TABLE ${q(schema, name)}`)
      dropped.push(name)
    } catch (error) {
      log?.(`could not drop ${schema}.${name} (kept): ${(error as Error).message}`)
    }
  }
  return dropped
}
