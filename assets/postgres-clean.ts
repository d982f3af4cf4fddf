/**
 * `clean` inside the API database of a Postgres refresh: the copied table is cleaned by the same
 * rules as the local clean (assets/clean.ts), compiled to Postgres SQL, into a new table; no row
 * leaves the server.
 *
 * Each rule becomes an expression over the row as the rules before it made it: the value of each
 * column after each rule, a drop reason (the first drop rule that applies), and per rule the
 * flags that count what it changed. One statement per id range computes all of it once per row
 * (a materialized CTE): it inserts the kept rows into the new table and returns the range's
 * counts. `dedupe` runs last, on the cleaned rows. The whole clean is one transaction: a failed or
 * canceled clean leaves no half-filled table, and a retry starts over.
 *
 * Differences from the local clean: a `dropUnmatched` pattern is a Postgres regular expression
 * (POSIX, `~`), and the rules that call a JavaScript function (`map`, `dropWhere` with a
 * function) cannot run inside the database: they are refused when the block is declared, naming
 * the SQL rule to use instead (`sql`, `dropWhere` with a SQL expression).
 *
 * When it is done, the new table carries a comment with the counts, so a retry after a crash
 * between the commit and the step's record finds the work done instead of a missing input.
 *
 * This is the user's data, not the run store: its SQL lives here, in assets/, with identifiers
 * validated and quoted and every user value a bound parameter (the user's own `sql` expressions
 * excepted: they are SQL by definition).
 */
import { CanceledError, ConfigError, didYouMean, isRefreshError, NonRetriableError } from '../core/errors.js'
import {
  checkIdentifier,
  connectUserDatabase,
  INTEGER_TYPES,
  type PgColumn,
  qualified,
  quoteIdent,
  scrubbedError,
  scrubError,
  tableColumns,
  type UserDatabase,
} from '../core/pg-client.js'
import { type CleanRule, parseRules, type RuleCount, ruleCounts } from './clean.js'
import { configError, requireColumns, type TableSchema } from './schema.js'

type Rule = ReturnType<typeof parseRules>[number]

const DONE_PREFIX = 'refresh: clean complete '

export interface PostgresCleanOptions {
  /** The API database: a `postgres://` URL (`?schema=` names the schema; default `public`). */
  url: string
  /** The copied table to clean. */
  table: string
  /** The new table the kept rows go to (replaced if a failed clean left one). */
  into: string
  /** The integer column the ranges are split on (default `id`). */
  idColumn?: string
  rules: readonly CleanRule[]
  /** Drop `table` in the transaction that commits the clean (it is scratch once cleaned). */
  dropSource?: boolean
  /** The width of an id range one statement cleans (default 100,000). */
  batchRows?: number
  signal?: AbortSignal
  onProgress?(done: number, total: number): void
}

export interface PostgresCleanResult {
  table: string
  idColumn: string
  rows: number
  minId: number | null
  maxId: number | null
  input: number
  dropped: number
  rules: RuleCount[]
  ms: number
}

/** The rules that cannot run inside Postgres: a `ConfigError` naming the rule and what to use instead. */
export function checkSqlRules(rules: readonly Rule[], where: string): void {
  rules.forEach((rule, i) => {
    if (rule.rule === 'map') {
      throw configError(
        `${where}: rules[${i}] (map on \`${rule.column}\`) calls a JavaScript function, which cannot run inside the API database; write it as \`{ rule: 'sql', column: '${rule.column}', expression: '…' }\`.`,
      )
    }
    if (rule.rule === 'dropWhere' && typeof rule.where !== 'string') {
      throw configError(
        `${where}: rules[${i}] (dropWhere) is a JavaScript function, which cannot run inside the API database; give \`where\` as a SQL expression over the row's columns.`,
      )
    }
  })
}

/** Cleans `table` into `into` inside the API database (see the file comment). */
export async function cleanPostgresTable(options: PostgresCleanOptions): Promise<PostgresCleanResult> {
  const started = performance.now()
  const rules = parseRules(options.rules, 'clean')
  checkSqlRules(rules, 'clean')
  const table = checkIdentifier(options.table, 'the table to clean')
  const into = checkIdentifier(options.into, 'the cleaned table')
  const idColumn = checkIdentifier(options.idColumn ?? 'id', 'the id column')
  const batchRows = options.batchRows ?? 100_000
  if (!Number.isSafeInteger(batchRows) || batchRows < 1)
    throw new ConfigError(`batchRows must be a positive integer, not ${String(options.batchRows)}.`)
  options.signal?.throwIfAborted()
  const db = await connectUserDatabase(options.url, 'API', { applicationName: 'refresh clean' })
  // a cancel stops the statement running on the server, not only the next one
  const cancel = () => {
    void cancelBackend(db)
  }
  options.signal?.addEventListener('abort', cancel, { once: true })
  try {
    const found = await tableColumns(db, table)
    if (!found.columns) {
      const done = await finished(db, into)
      if (done) return { ...done, ms: elapsed(started) }
      throw configError(
        `clean: the table ${db.schema}.${table} does not exist in ${db.display}.${didYouMean(table, found.tables)} Run \`refresh run +clean\` so that copy makes it first.`,
      )
    }
    const columns = found.columns
    const schema: TableSchema = {
      table,
      columns: columns.map((c) => ({ name: c.name, type: c.type, notNull: c.notNull, pk: 0 })),
    }
    requireColumns(schema, [idColumn], 'clean', 'idColumn')
    rules.forEach((rule, i) => {
      const named = 'column' in rule ? [rule.column] : 'key' in rule ? rule.key : []
      requireColumns(schema, named, 'clean', `rules[${i}] (${rule.rule})`)
    })
    const idType = columns.find((c) => c.name === idColumn)!.type
    if (!INTEGER_TYPES.has(idType)) {
      throw configError(
        `clean: the id column \`${idColumn}\` of ${db.schema}.${table} is ${idType}; ranges are split on an integer column: set \`idColumn\` on copy.`,
      )
    }
    const compiled = compile(columns, rules)
    const src = qualified(db.schema, table)
    const out = qualified(db.schema, into)
    const id = quoteIdent(idColumn)

    await db.client.query('BEGIN')
    const { rows: bounds } = await db.client.query<{ lo: string | null; hi: string | null; n: string }>(
      `SELECT min(${id})::text AS lo, max(${id})::text AS hi, count(*)::text AS n FROM ${src}`,
    )
    const total = Number(bounds[0]!.n)
    const definitions = columns
      .map((c) => {
        const notNull = c.notNull || compiled.notNull.has(c.name)
        return `${quoteIdent(c.name)} ${c.type}${notNull ? ' NOT NULL' : ''}`
      })
      .join(', ')
    await db.client.query(`DROP TABLE IF EXISTS ${out}`)
    await db.client.query(`CREATE TABLE ${out} (${definitions})`)
    const n = compiled.params.length
    const statement = `WITH r AS MATERIALIZED (
        SELECT ${compiled.select.map((e, k) => `${e} AS c${k}`).join(', ')}, ${compiled.drop} AS d${compiled.flags.map((f, k) => `, ${f.sql} AS f${k}`).join('')}
          FROM ${src} AS t${compiled.joins.join('')}
         WHERE t.${id} > $${n + 1} AND t.${id} <= $${n + 2}
      ), ins AS (
        INSERT INTO ${out} (${columns.map((c) => quoteIdent(c.name)).join(', ')})
        SELECT ${columns.map((_, k) => `c${k}`).join(', ')} FROM r WHERE d = 0 ORDER BY c${columns.findIndex((c) => c.name === idColumn)}
      )
      SELECT count(*)::int AS input${compiled.dropRules.map((i) => `, count(*) FILTER (WHERE d = ${i + 1})::int AS d${i}`).join('')}${compiled.flags.map((f, k) => `, ${f.sum(`f${k}`)} AS f${k}`).join('')}
        FROM r`
    const sums = new Map<string, number>()
    let done = 0
    if (bounds[0]!.lo !== null) {
      const last = BigInt(bounds[0]!.hi!)
      const width = BigInt(batchRows)
      for (let lo = BigInt(bounds[0]!.lo) - 1n; lo < last; lo += width) {
        options.signal?.throwIfAborted()
        const hi = lo + width < last ? lo + width : last
        const { rows } = await db.client.query<Record<string, number | string>>(statement, [
          ...compiled.params,
          lo.toString(),
          hi.toString(),
        ])
        for (const [k, v] of Object.entries(rows[0]!)) sums.set(k, (sums.get(k) ?? 0) + Number(v))
        done += Number(rows[0]!.input)
        options.onProgress?.(done, total)
      }
    }
    // dedupe last, on the cleaned values: the first row (lowest id) of each key stays
    const deduped = new Map<number, number>()
    for (const [i, rule] of rules.entries()) {
      if (rule.rule !== 'dedupe') continue
      const key = rule.key.map(quoteIdent).join(', ')
      const result = await db.client.query(
        `DELETE FROM ${out} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() OVER (PARTITION BY ${key} ORDER BY ${id}) AS n FROM ${out}) s WHERE s.n > 1)`,
      )
      deduped.set(i, result.rowCount ?? 0)
    }
    const { rows: stats } = await db.client.query<{ rows: string; lo: string | null; hi: string | null }>(
      `SELECT count(*)::text AS rows, min(${id})::text AS lo, max(${id})::text AS hi FROM ${out}`,
    )
    const counts = ruleCounts(rules, compiled.flags, sums, deduped)
    const input = sums.get('input') ?? 0
    const rows = Number(stats[0]!.rows)
    const result = {
      table: into,
      idColumn,
      rows,
      minId: stats[0]!.lo === null ? null : Number(stats[0]!.lo),
      maxId: stats[0]!.hi === null ? null : Number(stats[0]!.hi),
      input,
      dropped: input - rows,
      rules: counts,
    }
    if (options.dropSource) await db.client.query(`DROP TABLE ${src}`)
    // a literal: COMMENT takes no parameters; the JSON is ours (numbers and checked names), quotes doubled
    await db.client.query(
      `COMMENT ON TABLE ${out} IS '${`${DONE_PREFIX}${JSON.stringify(result)}`.replaceAll("'", "''")}'`,
    )
    await db.client.query('COMMIT')
    return { ...result, ms: elapsed(started) }
  } catch (error) {
    await db.client.query('ROLLBACK').catch(() => {})
    if (options.signal?.aborted) throw new CanceledError(`the clean of ${table} was canceled`)
    if (isRefreshError(error)) throw error
    const code = (error as { code?: unknown })?.code
    // a user's SQL expression that does not compile or a pattern Postgres rejects: the config is wrong
    if (typeof code === 'string' && /^(42|2201B)/.test(code)) {
      throw configError(
        `clean: a rule's SQL failed in ${db.display}: ${scrubError(error, options.url)}. Fix the rule (a \`sql\` expression, a \`dropWhere\` or a \`dropUnmatched\` pattern) in refresh.config.ts.`,
      )
    }
    throw new NonRetriableError(
      `the clean of ${db.schema}.${table} in ${db.display} failed and was rolled back: ${scrubError(error, options.url)}`,
      { cause: scrubbedError(error, options.url) },
    )
  } finally {
    options.signal?.removeEventListener('abort', cancel)
    await db.client.end().catch(() => {})
  }
}

/** The result a finished clean left in its table's comment, when the input is gone because it committed. */
async function finished(
  db: UserDatabase,
  into: string,
): Promise<Omit<PostgresCleanResult, 'ms'> | undefined> {
  const { rows } = await db.client.query<{ comment: string | null }>(
    `SELECT obj_description(c.oid, 'pg_class') AS comment FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [db.schema, into],
  )
  const comment = rows[0]?.comment
  if (!comment?.startsWith(DONE_PREFIX)) return undefined
  return JSON.parse(comment.slice(DONE_PREFIX.length)) as Omit<PostgresCleanResult, 'ms'>
}

async function cancelBackend(db: UserDatabase): Promise<void> {
  const pid = (db.client as unknown as { processID?: number }).processID
  if (pid === undefined) return
  const other = await connectUserDatabase(db.url, 'API', { applicationName: 'refresh clean cancel' }).catch(
    () => undefined,
  )
  if (!other) return
  try {
    await other.client.query('SELECT pg_cancel_backend($1)', [pid])
  } finally {
    await other.client.end().catch(() => {})
  }
}

interface Flag {
  rule: number
  kind: 'rowsChanged' | 'rowsBlanked' | 'itemsBelowMin' | 'itemsDenied' | 'itemsDuplicate'
  /** A boolean (or for items, integer) expression over a row. */
  sql: string
  /** Its sum over the range's kept rows. */
  sum(alias: string): string
}

interface Compiled {
  select: string[]
  drop: string
  flags: Flag[]
  params: unknown[]
  joins: string[]
  notNull: Set<string>
  dropRules: number[]
}

const TEXT_TYPES = /^(text|character varying|varchar|character|char|citext|name)\b/

/** The rules as SQL over one row `t` of the table (see the file comment). */
function compile(columns: readonly PgColumn[], rules: readonly Rule[]): Compiled {
  const cur = new Map(columns.map((c) => [c.name, `t.${quoteIdent(c.name)}`]))
  const types = new Map(columns.map((c) => [c.name, c.type]))
  const params: unknown[] = []
  const param = (value: unknown, cast: string) => {
    params.push(value)
    return `$${params.length}::${cast}`
  }
  const flags: Flag[] = []
  const drops: string[] = []
  const joins: string[] = []
  const notNull = new Set<string>()
  const dropRules: number[] = []
  const kept = (alias: string) => `count(*) FILTER (WHERE d = 0 AND ${alias})::int`
  const summed = (alias: string) => `coalesce(sum(${alias}) FILTER (WHERE d = 0), 0)::int`
  // a column as text for the text rules (a rule on a non-text column works on its text form)
  const text = (column: string) => {
    const v = cur.get(column)!
    return TEXT_TYPES.test(types.get(column) ?? '') ? v : `(${v})::text`
  }
  const row = () =>
    `(SELECT ${columns.map((c) => `${cur.get(c.name)} AS ${quoteIdent(c.name)}`).join(', ')}) AS row`
  // the user's SQL sees the columns as the rules before made them, by their names
  const overRow = (expression: string) => `(SELECT (${expression}) FROM ${row()})`
  rules.forEach((rule, i) => {
    const n = i + 1
    const transform = (column: string, next: string, cheap?: { changed: string; blank?: string }) => {
      const before = cur.get(column)!
      cur.set(column, `(${next})`)
      flags.push({
        rule: i,
        kind: 'rowsChanged',
        sql: cheap ? `coalesce(${cheap.changed}, false)` : `((${next}) IS DISTINCT FROM ${before})`,
        sum: kept,
      })
      if (cheap?.blank) {
        flags.push({ rule: i, kind: 'rowsBlanked', sql: `(${cheap.blank})`, sum: kept })
        notNull.delete(column)
      }
    }
    switch (rule.rule) {
      case 'trim': {
        const c = text(rule.column)
        let v = rule.collapseSpaces ? `btrim(regexp_replace(${c}, '[ \\t]+', ' ', 'g'))` : `btrim(${c})`
        if (rule.emptyToNull) v = `NULLIF(${v}, '')`
        const spaces = rule.collapseSpaces
          ? `(${c} ~ '  |\\t' OR ${c} <> btrim(${c}))`
          : `(${c} <> btrim(${c}))`
        const blank = `(coalesce(btrim(${rule.collapseSpaces ? `translate(${c}, E'\\t', ' ')` : c}), '') = '')`
        transform(
          rule.column,
          v,
          rule.emptyToNull ? { changed: `(${spaces} AND NOT ${blank})`, blank } : { changed: spaces },
        )
        break
      }
      case 'url': {
        const c = text(rule.column)
        const scheme = param(rule.scheme, 'text')
        const http = rule.upgradeHttp ? `'https://' || substr(${c}, 8)` : c
        transform(
          rule.column,
          `CASE WHEN ${c} LIKE 'https://%' THEN ${c} WHEN ${c} LIKE 'http://%' THEN ${http} ELSE ${scheme} || '://' || ${c} END`,
          {
            changed: rule.upgradeHttp
              ? `(${c} IS NOT NULL AND NOT ${c} LIKE 'https://%')`
              : `(${c} IS NOT NULL AND NOT (${c} LIKE 'https://%' OR ${c} LIKE 'http://%'))`,
          },
        )
        break
      }
      case 'lowercase': {
        const c = text(rule.column)
        transform(rule.column, `lower(${c})`, { changed: `(${c} <> lower(${c}))` })
        break
      }
      case 'dropNull': {
        const c = cur.get(rule.column)!
        drops.push(rule.blank ? `(${c} IS NULL OR btrim((${c})::text) = '')` : `(${c} IS NULL)`)
        notNull.add(rule.column)
        break
      }
      case 'dropUnmatched':
        drops.push(`(NOT coalesce(${text(rule.column)} ~ ${param(rule.pattern, 'text')}, false))`)
        notNull.add(rule.column)
        break
      case 'dropNotIn':
        drops.push(`(NOT coalesce(${text(rule.column)} = ANY(${param(rule.values, 'text[]')}), false))`)
        notNull.add(rule.column)
        break
      case 'dedupe':
        break
      case 'filterList': {
        const alias = `l${n}`
        const type = types.get(rule.column) ?? 'text'
        const min = rule.min === undefined ? 'NULL::float8' : param(rule.min, 'float8')
        const deny = param(
          rule.deny.map((d) => d.trim().toLowerCase()),
          'text[]',
        )
        const name =
          rule.field === undefined
            ? `lower(btrim(coalesce(x.e #>> '{}', '')))`
            : `lower(btrim(coalesce(x.e ->> ${param(rule.field, 'text')}, '')))`
        const score =
          rule.score === undefined
            ? '0::float8'
            : `CASE WHEN jsonb_typeof(x.e -> ${param(rule.score, 'text')}) = 'number' THEN (x.e ->> ${param(rule.score, 'text')})::float8 ELSE 0 END`
        const item =
          rule.field === undefined
            ? 'to_jsonb(k.name)'
            : `CASE WHEN jsonb_typeof(k.e) = 'object' THEN k.e || jsonb_build_object(${param(rule.field, 'text')}, k.name)${rule.score === undefined ? '' : ` || jsonb_build_object(${param(rule.score, 'text')}, k.score)`} ELSE to_jsonb(k.name) END`
        // the items classified: below the threshold (or nameless), denied, a duplicate of an earlier name
        const items = `SELECT x.ord, x.e, ${name} AS name, ${score} AS score
            FROM jsonb_array_elements(CASE WHEN jsonb_typeof(s.j) = 'array' THEN s.j ELSE '[]'::jsonb END) WITH ORDINALITY AS x(e, ord)`
        const classified = `SELECT i.*, (${min} IS NOT NULL AND i.score < ${min}) OR i.name = '' AS below,
              i.name = ANY(${deny}) AS denied FROM (${items}) i`
        // one pass over the items: each classified, ranked within its name among the kept ones
        const ranked = `SELECT c.*, NOT c.below AND NOT c.denied AS cand,
              row_number() OVER (PARTITION BY NOT c.below AND NOT c.denied, c.name ORDER BY c.ord) AS nth,
              row_number() OVER (PARTITION BY NOT c.below AND NOT c.denied, c.name ORDER BY c.score DESC, c.ord) AS best,
              min(c.ord) OVER (PARTITION BY NOT c.below AND NOT c.denied, c.name) AS first
              FROM (${classified}) c`
        const keep = rule.dedupe ? 'k.cand AND k.best = 1' : 'k.cand'
        const order = rule.dedupe
          ? rule.sort
            ? 'k.name COLLATE "C", k.first'
            : 'k.first'
          : rule.sort
            ? 'k.name COLLATE "C", k.ord'
            : 'k.ord'
        const source =
          TEXT_TYPES.test(type) || type === 'json' || type === 'jsonb' ? cur.get(rule.column)! : 'NULL'
        joins.push(` CROSS JOIN LATERAL (
            SELECT s.j,
              CASE WHEN jsonb_typeof(s.j) = 'array'
                THEN coalesce(jsonb_agg(${item} ORDER BY ${order}) FILTER (WHERE ${keep}), '[]'::jsonb)
                ELSE s.j END AS v,
              count(*) FILTER (WHERE k.below)::int AS below,
              count(*) FILTER (WHERE k.denied AND NOT k.below)::int AS denied,
              ${rule.dedupe ? 'count(*) FILTER (WHERE k.cand AND k.nth > 1)::int' : '0'} AS dup
            FROM (SELECT (${source})::jsonb AS j) s LEFT JOIN LATERAL (${ranked}) k ON true
            GROUP BY s.j
          ) AS ${alias}`)
        // back to the column's own type
        const back =
          type === 'jsonb' ? `${alias}.v` : type === 'json' ? `${alias}.v::json` : `${alias}.v::text`
        const before = cur.get(rule.column)!
        cur.set(rule.column, `(CASE WHEN ${alias}.j IS NULL THEN ${before} ELSE ${back} END)`)
        flags.push({
          rule: i,
          kind: 'rowsChanged',
          sql: `(${alias}.v IS DISTINCT FROM ${alias}.j)`,
          sum: kept,
        })
        flags.push({ rule: i, kind: 'itemsBelowMin', sql: `${alias}.below`, sum: summed })
        flags.push({ rule: i, kind: 'itemsDenied', sql: `${alias}.denied`, sum: summed })
        flags.push({ rule: i, kind: 'itemsDuplicate', sql: `${alias}.dup`, sum: summed })
        break
      }
      case 'sql':
        transform(rule.column, overRow(rule.expression))
        notNull.delete(rule.column)
        break
      case 'dropWhere':
        drops.push(`coalesce(${overRow(rule.where as string)}, false)`)
        break
      case 'map':
        // refused by checkSqlRules
        break
    }
    if (drops.length > dropRules.length) dropRules.push(i)
  })
  const drop = drops.length
    ? `CASE ${drops.map((d, k) => `WHEN ${d} THEN ${dropRules[k]! + 1}`).join(' ')} ELSE 0 END`
    : '0'
  const select = columns.map((c) => {
    const v = cur.get(c.name)!
    return v === `t.${quoteIdent(c.name)}` ? v : `(${v})::${c.type}`
  })
  return { select, drop, flags, params, joins, notNull, dropRules }
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started)
}
