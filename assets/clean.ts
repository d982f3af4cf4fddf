import Database from 'better-sqlite3'
import { z } from 'zod/v4'
import { yieldSlice } from '../core/async.js'
import { type AssetDefinition, asset, formatIssues } from '../core/definitions.js'
import { ConfigError } from '../core/errors.js'
import { identifier } from '../search/index-shard.js'
import {
  type BlockOptions,
  blockFields,
  fileError,
  isString,
  resolveDataDir,
  upstreamField,
} from './layout.js'
import { cleanInPostgres, type PostgresCleanBlock } from './postgres-refresh.js'
import { columnDefinitions, configError, requireColumns, tableSchema } from './schema.js'
import { MAX_ROWID, type SliceOptions } from './slices.js'

/** A list given as an array in the config file or as `a,b,c` (for `--set clean.licenses=by,cc0`). */
const list = (defaults: string[]) =>
  z
    .union([
      z.array(z.string()),
      z.string().transform((s) =>
        s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      ),
    ])
    .default(defaults)

/** The cleanup rules, each with a default. */
export const cleanConfig = z.object({
  /** Added to URLs that have none (`example.org/a.jpg` -> `https://example.org/a.jpg`). */
  urlScheme: z.enum(['https', 'http']).default('https'),
  /** Licenses that may be served; rows with any other license are dropped. */
  licenses: list(['by', 'by-sa', 'by-nd', 'by-nc', 'by-nc-sa', 'by-nc-nd', 'cc0', 'pdm']),
  /** Tags below this machine-labelling accuracy are dropped. */
  minTagAccuracy: z.number().min(0).max(1).default(0.9),
  /** Tags never shown, whatever their accuracy. */
  deniedTags: list(['watermark', 'no person', 'unknown']),
  /** Drop rows whose title is blank (default: keep them with no title). */
  dropBlankTitles: z.boolean().default(false),
})
export type CleanRules = z.output<typeof cleanConfig>

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/
const column = z.string().regex(IDENT, 'must be a plain column name')
const named = { name: z.string().min(1).optional() }
const fn = <T>(what: string) => z.custom<T>((v) => typeof v === 'function', `must be a function (${what})`)
const regex = z.string().refine((p) => {
  try {
    new RegExp(p, 'u')
    return true
  } catch {
    return false
  }
}, 'must be a valid regular expression')

/** A row as a user function sees it: column name to value. */
export type Row = Record<string, unknown>

/**
 * The cleaning rules, applied in order to every row of the copied table. Each is counted in the
 * step's metadata (`rules`: rows changed, rows dropped, per rule, under its `name`, by default
 * `<rule>:<column>`). A drop rule sees the values the rules before it made; changes are counted
 * over the rows that are kept. `dedupe` runs last, on the cleaned rows.
 */
export const cleanRuleSchema = z.discriminatedUnion('rule', [
  /** Strips leading and trailing spaces; `collapseSpaces` also turns tabs and runs of spaces into one space; `emptyToNull` makes blank values NULL. */
  z
    .object({
      rule: z.literal('trim'),
      column,
      collapseSpaces: z.boolean().default(false),
      emptyToNull: z.boolean().default(false),
      ...named,
    })
    .strict(),
  /** Gives URLs without a scheme `scheme://` (default https) and, with `upgradeHttp` (default), turns `http://` into `https://`. */
  z
    .object({
      rule: z.literal('url'),
      column,
      scheme: z.enum(['https', 'http']).default('https'),
      upgradeHttp: z.boolean().default(true),
      ...named,
    })
    .strict(),
  z.object({ rule: z.literal('lowercase'), column, ...named }).strict(),
  /** Drops rows where the column is NULL (with `blank`, also empty or only spaces). */
  z.object({ rule: z.literal('dropNull'), column, blank: z.boolean().default(false), ...named }).strict(),
  /** Drops rows where the column does not match `pattern` (a JavaScript regular expression; NULL never matches). */
  z.object({ rule: z.literal('dropUnmatched'), column, pattern: regex, ...named }).strict(),
  /** Drops rows whose value is not one of `values` (NULL is not). */
  z.object({ rule: z.literal('dropNotIn'), column, values: z.array(z.string()), ...named }).strict(),
  /** Keeps the first row (lowest id) of each distinct `key` (one column or several). */
  z.object({ rule: z.literal('dedupe'), key: z.array(column).min(1), ...named }).strict(),
  /**
   * Filters a JSON array column: items whose `score` field is below `min`, or whose name (the item
   * itself, or its `field`) is in `deny` (compared lower-case) are removed; `dedupe` keeps one
   * item per name (the best score); names are trimmed and lower-cased; `sort` orders by name.
   */
  z
    .object({
      rule: z.literal('filterList'),
      column,
      field: z.string().min(1).optional(),
      score: z.string().min(1).optional(),
      min: z.number().optional(),
      deny: z.array(z.string()).default([]),
      dedupe: z.boolean().default(false),
      sort: z.boolean().default(false),
      ...named,
    })
    .strict(),
  /** Sets the column to `fn(value, row)` (a pure function: it may be called more than once per row). */
  z
    .object({
      rule: z.literal('map'),
      column,
      fn: fn<(value: unknown, row: Row) => unknown>('(value, row) => newValue'),
      ...named,
    })
    .strict(),
  /** Sets the column to a SQL expression over the row's columns (as the rules before made them). */
  z.object({ rule: z.literal('sql'), column, expression: z.string().min(1), ...named }).strict(),
  /** Drops rows where a SQL expression over the row's columns is true, or a function `(row) => boolean` returns true. */
  z
    .object({
      rule: z.literal('dropWhere'),
      where: z.union([z.string().min(1), fn<(row: Row) => boolean>('(row) => boolean')]),
      ...named,
    })
    .strict(),
])
export type CleanRule = z.input<typeof cleanRuleSchema>
type Rule = z.output<typeof cleanRuleSchema>
export const cleanRulesSchema = z.array(cleanRuleSchema)

/** One rule's effect, as written in the step's metadata. */
export interface RuleCount {
  name: string
  rule: Rule['rule']
  column: string | null
  rowsChanged: number
  rowsDropped: number
  [extra: string]: string | number | null
}

/**
 * The default rules: the media refresh's cleanup (what `clean` did before rules were
 * configurable), built from its run config.
 */
export function mediaRules(config: CleanRules): CleanRule[] {
  return [
    { rule: 'dropNull', column: 'url', blank: true, name: 'droppedNoUrl' },
    { rule: 'dropNotIn', column: 'license', values: config.licenses, name: 'droppedLicense' },
    { rule: 'trim', column: 'title', collapseSpaces: true, emptyToNull: true, name: 'title' },
    ...(config.dropBlankTitles
      ? [{ rule: 'dropNull', column: 'title', name: 'droppedBlankTitle' } as const]
      : []),
    { rule: 'url', column: 'url', scheme: config.urlScheme, upgradeHttp: false, name: 'urlsFixed' },
    {
      rule: 'filterList',
      column: 'tags',
      field: 'name',
      score: 'accuracy',
      min: config.minTagAccuracy,
      deny: config.deniedTags,
      dedupe: true,
      sort: true,
      name: 'tags',
    },
  ]
}

/** The media refresh's counts under their names of old, from its rules' counts. */
export function mediaCounts(input: number, rules: readonly RuleCount[]): Record<string, number> {
  const r = (name: string) => rules.find((x) => x.name === name)
  return {
    input,
    droppedNoUrl: r('droppedNoUrl')!.rowsDropped,
    droppedLicense: r('droppedLicense')!.rowsDropped,
    droppedBlankTitle: r('droppedBlankTitle')?.rowsDropped ?? 0,
    urlsFixed: r('urlsFixed')!.rowsChanged,
    blankTitles: r('title')!.rowsBlanked as number,
    titlesNormalized: r('title')!.rowsChanged,
    tagsLowAccuracy: r('tags')!.itemsBelowMin as number,
    tagsDenied: r('tags')!.itemsDenied as number,
    tagsDuplicate: r('tags')!.itemsDuplicate as number,
  }
}

/** Checks a rule list (a `ConfigError` naming the rule and field when one is bad). */
export function parseRules(rules: unknown, where = 'clean'): Rule[] {
  const parsed = cleanRulesSchema.safeParse(rules)
  if (!parsed.success) throw configError(`${where}: \`rules\` is invalid: ${formatIssues(parsed.error)}`)
  return parsed.data
}

/**
 * Rows cleaned per slice: about 20 ms of work here (4 us a row), so the event loop gets a turn
 * many times a second (progress is written, a cancel is seen at once) at a cost of a few ms in all.
 */
const CLEAN_SLICE = 5_000

/**
 * A JSON list filter as one SQL function (JSON in, JSON out), counting what it removed and the
 * rows it changed. One pass in JS is several times faster than json_each per row. `apply` counts
 * only when asked: the fill's result columns (evaluated for kept rows only) ask once per row.
 */
function listFilter(rule: Extract<Rule, { rule: 'filterList' }>) {
  const deny = new Set(rule.deny.map((t) => t.trim().toLowerCase()))
  const counts = { rowsChanged: 0, itemsBelowMin: 0, itemsDenied: 0, itemsDuplicate: 0 }
  let lastRow: unknown
  const nameOf = (item: unknown) => {
    const raw = rule.field !== undefined ? (item as Record<string, unknown> | null)?.[rule.field] : item
    return String(raw ?? '')
      .trim()
      .toLowerCase()
  }
  const apply = (json: unknown, row?: unknown): unknown => {
    // counted once per kept row, however many times the row's SQL calls it
    const counting = row !== undefined && row !== lastRow
    if (counting) lastRow = row
    if (typeof json !== 'string') return json
    const items = JSON.parse(json) as unknown[]
    if (!Array.isArray(items)) return json
    const local = { itemsBelowMin: 0, itemsDenied: 0, itemsDuplicate: 0 }
    const best = new Map<string, { item: unknown; score: number }>()
    const kept: Array<{ name: string; item: unknown; score: number }> = []
    for (const item of items) {
      const rawScore =
        rule.score !== undefined ? (item as Record<string, unknown> | null)?.[rule.score] : undefined
      const score = typeof rawScore === 'number' ? rawScore : 0
      const name = nameOf(item)
      if ((rule.min !== undefined && score < rule.min) || name === '') local.itemsBelowMin++
      else if (deny.has(name)) local.itemsDenied++
      else if (rule.dedupe && best.has(name)) {
        local.itemsDuplicate++
        const b = best.get(name)!
        if (score > b.score) {
          b.score = score
          b.item = item
        }
      } else {
        const entry = { name, item, score }
        best.set(name, entry)
        kept.push(entry)
      }
    }
    if (rule.sort) kept.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    const out = JSON.stringify(
      kept.map(({ name }) => {
        const { item, score } = best.get(name)!
        if (rule.field === undefined) return name
        const rest = { ...(item as Record<string, unknown>), [rule.field]: name }
        if (rule.score !== undefined) rest[rule.score] = score
        return rest
      }),
    )
    if (counting) {
      counts.itemsBelowMin += local.itemsBelowMin
      counts.itemsDenied += local.itemsDenied
      counts.itemsDuplicate += local.itemsDuplicate
      if (out !== json) counts.rowsChanged++
    }
    return out
  }
  return { apply, counts }
}

/** A value from a user function as SQLite takes it. */
function toSql(value: unknown): unknown {
  if (value === undefined) return null
  if (typeof value === 'boolean') return value ? 1 : 0
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value)) return JSON.stringify(value)
  return value
}

interface Compiled {
  /** The result columns (each column's value once every rule applied). */
  select: string[]
  /** 0 for a kept row, else the 1-based index (among the rules) of the rule that dropped it. */
  drop: string
  /** Per rule, SQL counted over the kept rows (`changed`, `blanked`), or nothing. */
  flags: Array<{ rule: number; kind: 'rowsChanged' | 'rowsBlanked'; sql: string }>
  params: Record<string, unknown>
  lists: Map<number, ReturnType<typeof listFilter>>
  notNull: Set<string>
  /** The rules (by index) that drop rows in the SQL. */
  dropRules: number[]
}

/**
 * Turns the rules into SQL over one row of the table: each column's value after each rule is an
 * expression over the one before, the drop rule that applies first gives the row's drop reason.
 * User values go in as bound parameters; only column names (checked identifiers) and the user's
 * own SQL expressions are written into the text.
 */
function compile(db: Database.Database, columns: readonly string[], rules: readonly Rule[]): Compiled {
  const cur = new Map(columns.map((c) => [c, identifier(c)]))
  const params: Record<string, unknown> = {}
  const flags: Compiled['flags'] = []
  const drops: string[] = []
  const lists = new Map<number, ReturnType<typeof listFilter>>()
  const notNull = new Set<string>()
  const dropRules: number[] = []
  const raw = () => columns.every((c) => cur.get(c) === identifier(c))
  // a user's SQL sees the columns as the rules before made them
  const overRow = (expression: string) =>
    raw()
      ? `(${expression})`
      : `(SELECT (${expression}) FROM (SELECT ${columns.map((c) => `${cur.get(c)} AS ${identifier(c)}`).join(', ')}))`
  const rowFunction = (name: string, body: (row: Row) => unknown) => {
    db.function(name, { varargs: true, deterministic: false }, (...values: unknown[]) => {
      const row: Row = {}
      columns.forEach((c, i) => {
        row[c] = values[i]
      })
      return toSql(body(row)) as never
    })
    return `${name}(${columns.map((c) => cur.get(c)).join(', ')})`
  }
  rules.forEach((rule, i) => {
    const n = i + 1
    const p = (suffix: string) => `r${n}_${suffix}`
    // `changed` (and `blank`) can be given as cheaper tests than comparing the new value with the old
    const transform = (column: string, next: string, cheap?: { changed: string; blank?: string }) => {
      const before = cur.get(column)!
      cur.set(column, `(${next})`)
      flags.push({
        rule: i,
        kind: 'rowsChanged',
        sql: cheap ? `(${cheap.changed})` : `((${next}) IS NOT ${before})`,
      })
      if (cheap?.blank) {
        flags.push({ rule: i, kind: 'rowsBlanked', sql: `(${cheap.blank})` })
        notNull.delete(column)
      }
    }
    switch (rule.rule) {
      case 'trim': {
        const c = cur.get(rule.column)!
        let v = rule.collapseSpaces
          ? `trim(replace(replace(replace(replace(${c}, char(9), ' '), '    ', ' '), '  ', ' '), '  ', ' '))`
          : `trim(${c})`
        if (rule.emptyToNull) v = `NULLIF(${v}, '')`
        const spaces = rule.collapseSpaces
          ? `(instr(${c}, '  ') > 0 OR ${c} <> trim(${c}) OR instr(${c}, char(9)) > 0)`
          : `(${c} <> trim(${c}))`
        const blank = `(coalesce(trim(${rule.collapseSpaces ? `replace(${c}, char(9), ' ')` : c}), '') = '')`
        // a value that becomes NULL is counted as blanked, not changed
        transform(
          rule.column,
          v,
          rule.emptyToNull ? { changed: `${spaces} AND NOT ${blank}`, blank } : { changed: spaces },
        )
        break
      }
      case 'url': {
        const c = cur.get(rule.column)!
        params[p('scheme')] = rule.scheme
        const http = rule.upgradeHttp ? `'https://' || substr(${c}, 8)` : c
        transform(
          rule.column,
          `CASE WHEN ${c} LIKE 'https://%' THEN ${c} WHEN ${c} LIKE 'http://%' THEN ${http} ELSE @${p('scheme')} || '://' || ${c} END`,
          {
            changed: rule.upgradeHttp
              ? `${c} IS NOT NULL AND NOT ${c} LIKE 'https://%'`
              : `${c} IS NOT NULL AND NOT (${c} LIKE 'https://%' OR ${c} LIKE 'http://%')`,
          },
        )
        break
      }
      case 'lowercase':
        transform(rule.column, `lower(${cur.get(rule.column)})`, {
          changed: `${cur.get(rule.column)} <> lower(${cur.get(rule.column)})`,
        })
        break
      case 'dropNull': {
        const c = cur.get(rule.column)!
        drops.push(rule.blank ? `(${c} IS NULL OR trim(${c}) = '')` : `(${c} IS NULL)`)
        notNull.add(rule.column)
        break
      }
      case 'dropUnmatched': {
        params[p('pattern')] = rule.pattern
        drops.push(`(NOT coalesce(refresh_regexp(@${p('pattern')}, ${cur.get(rule.column)}), 0))`)
        notNull.add(rule.column)
        break
      }
      case 'dropNotIn': {
        params[p('values')] = JSON.stringify(rule.values)
        drops.push(
          `(NOT coalesce(${cur.get(rule.column)} IN (SELECT value FROM json_each(@${p('values')})), 0))`,
        )
        notNull.add(rule.column)
        break
      }
      case 'dedupe':
        break
      case 'filterList': {
        const list = listFilter(rule)
        lists.set(i, list)
        db.function(`refresh_list_${n}`, { deterministic: false }, (v) => list.apply(v) as never)
        db.function(`refresh_list_${n}_kept`, { deterministic: false }, (id, v) => list.apply(v, id) as never)
        // counted by the function itself, over the kept rows (see `keptSelect`)
        cur.set(rule.column, `refresh_list_${n}(${cur.get(rule.column)})`)
        break
      }
      case 'map': {
        const column = rule.column
        const f = rule.fn
        transform(
          column,
          rowFunction(`refresh_map_${n}`, (row) => f(row[column], row)),
        )
        notNull.delete(column)
        break
      }
      case 'sql':
        transform(rule.column, overRow(rule.expression))
        notNull.delete(rule.column)
        break
      case 'dropWhere': {
        const where = rule.where
        const test =
          typeof where === 'string' ? overRow(where) : rowFunction(`refresh_where_${n}`, (row) => where(row))
        drops.push(`(coalesce(${test}, 0) <> 0)`)
        break
      }
    }
    // a drop rule's index among the rules, so its count lands on it
    if (drops.length > dropRules.length) dropRules.push(i)
  })
  const drop = drops.length
    ? `CASE ${drops.map((d, k) => `WHEN ${d} THEN ${dropRules[k]! + 1}`).join(' ')} ELSE 0 END`
    : '0'
  return { select: columns.map((c) => cur.get(c)!), drop, flags, params, lists, notNull, dropRules }
}

export interface CleanRowsOptions {
  /** The working table (default `media`); cleaned into `<table>_clean`. */
  table?: string
  /** The integer column the slices are split on (default `id`). */
  idColumn?: string
  rules: readonly CleanRule[]
}

export interface CleanRowsResult {
  table: string
  idColumn: string
  rows: number
  minId: number | null
  maxId: number | null
  input: number
  dropped: number
  rules: RuleCount[]
}

/**
 * Cleans the working table into `<table>_clean` (a new table, so a retry starts over cleanly) by
 * the rules, and counts what each rule did. The rows go in slices of `CLEAN_SLICE` by id, with a
 * turn of the event loop between them, all in one transaction: a clean that fails or is aborted
 * is rolled back and leaves no half-filled table (on abort at once: the process may exit before
 * the next slice, as a canceled run ends without waiting for its steps). A column a rule names
 * that the table does not have is a `ConfigError` naming it.
 */
export async function cleanRows(
  file: string,
  options: CleanRowsOptions,
  slices: SliceOptions = {},
): Promise<CleanRowsResult> {
  const { signal, progress, sliceRows = CLEAN_SLICE } = slices
  const rules = parseRules(options.rules)
  const table = options.table ?? 'media'
  const idColumn = options.idColumn ?? 'id'
  signal?.throwIfAborted()
  const db = new Database(file)
  // an abort is dispatched between two slices (this thread runs one or the other)
  const discard = () => {
    if (db.inTransaction) db.exec('ROLLBACK')
    db.close()
  }
  signal?.addEventListener('abort', discard, { once: true })
  try {
    db.pragma('synchronous = OFF')
    const schema = tableSchema(db, table)
    if (!schema)
      throw configError(
        `clean: ${file} has no table \`${table}\`; run \`refresh run +clean\` to copy it first.`,
      )
    requireColumns(schema, [idColumn], 'clean', 'idColumn')
    rules.forEach((rule, i) => {
      const named = 'column' in rule ? [rule.column] : 'key' in rule ? rule.key : []
      requireColumns(schema, named, 'clean', `rules[${i}] (${rule.rule})`)
    })
    const regexes = new Map<string, RegExp>()
    db.function('refresh_regexp', { deterministic: true }, (pattern, value) => {
      if (value === null) return null
      let re = regexes.get(String(pattern))
      if (!re) {
        re = new RegExp(String(pattern), 'u')
        regexes.set(String(pattern), re)
      }
      return re.test(String(value)) ? 1 : 0
    })
    const columns = schema.columns.map((c) => c.name)
    const compiled = compile(db, columns, rules)
    const t = identifier(table)
    const out = `${table}_clean`
    const o = identifier(out)
    const id = identifier(idColumn)
    const range = `${id} BETWEEN @from AND @to`
    const fill = `INSERT INTO ${o} (${columns.map(identifier).join(', ')})
      SELECT ${compiled.select.map((e) => e.replace(/refresh_list_(\d+)\(/g, `refresh_list_$1_kept(${id}, `)).join(', ')} FROM ${t} WHERE ${range} AND (${compiled.drop}) = 0 ORDER BY ${id}`
    const dropRules = compiled.dropRules
    const countSql = `SELECT count(*) AS input${dropRules.map((i) => `, coalesce(sum(d = ${i + 1}), 0) AS d${i}`).join('')}${compiled.flags.map((_, k) => `, coalesce(sum(d = 0 AND f${k}), 0) AS f${k}`).join('')}
      FROM (SELECT (${compiled.drop}) AS d${compiled.flags.map((f, k) => `, ${f.sql} AS f${k}`).join('')} FROM ${t} WHERE ${range})`
    const total = db.prepare(`SELECT count(*) FROM ${t}`).pluck().get() as number
    // ids as BigInt: a slice's bounds are exact whatever the ids
    const first = db.prepare(`SELECT min(${id}) FROM ${t}`).pluck().safeIntegers().get() as bigint | null
    const nextSlice = db
      .prepare(`SELECT ${id} FROM ${t} WHERE ${id} >= ? ORDER BY ${id} LIMIT 1 OFFSET ?`)
      .pluck()
      .safeIntegers()
    const countSlice = db.prepare(countSql)
    // the cleaned table has the working table's columns; one that a drop rule keeps from NULL is NOT NULL
    const definitions = columnDefinitions(schema, columns)
      .split(', ')
      .map((d, k) =>
        compiled.notNull.has(columns[k]!) && !/NOT NULL|PRIMARY KEY/.test(d) ? `${d} NOT NULL` : d,
      )
      .join(', ')
    db.exec('BEGIN')
    db.exec(`DROP TABLE IF EXISTS ${o}`)
    db.exec(`CREATE TABLE ${o} (${definitions})`)
    const fillSlice = db.prepare(fill)
    const sums = new Map<string, number>()
    let done = 0
    for (let from = first; from !== null; ) {
      const next = (nextSlice.get(from, sliceRows) as bigint | undefined) ?? null
      const slice = { ...compiled.params, from, to: next === null ? MAX_ROWID : next - 1n }
      const counts = countSlice.get(slice) as Record<string, number>
      for (const [k, n] of Object.entries(counts)) sums.set(k, (sums.get(k) ?? 0) + n)
      fillSlice.run(slice)
      done += counts.input!
      progress?.(done, total)
      from = next
      await yieldSlice(signal)
    }
    // dedupe last, on the cleaned values: the first row (lowest id) of each key stays
    const deduped = new Map<number, number>()
    rules.forEach((rule, i) => {
      if (rule.rule !== 'dedupe') return
      const key = rule.key.map(identifier).join(', ')
      deduped.set(
        i,
        db.prepare(`DELETE FROM ${o} WHERE ${id} NOT IN (SELECT min(${id}) FROM ${o} GROUP BY ${key})`).run()
          .changes,
      )
    })
    db.exec('COMMIT')
    const result = db
      .prepare(`SELECT count(*) AS rows, min(${id}) AS minId, max(${id}) AS maxId FROM ${o}`)
      .get() as { rows: number; minId: number | null; maxId: number | null }
    const counts = ruleCounts(rules, compiled.flags, sums, deduped).map((entry, i) => {
      const list = compiled.lists.get(i)
      return list ? Object.assign(entry, list.counts) : entry
    })
    const input = sums.get('input') ?? 0
    return { table: out, idColumn, ...result, input, dropped: input - result.rows, rules: counts }
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw error
  } finally {
    signal?.removeEventListener('abort', discard)
    db.close()
  }
}

/**
 * Each rule's counts, as both cleans write them in the step's metadata: named by `name`, else
 * `<rule>:<column>` (`#2`, `#3`... for a name used again), rows dropped (by the drop rule, or by
 * `dedupe`) and the flags counted over the kept rows.
 */
export function ruleCounts(
  rules: readonly Rule[],
  flags: ReadonlyArray<{ rule: number; kind: string }>,
  sums: ReadonlyMap<string, number>,
  deduped: ReadonlyMap<number, number>,
): RuleCount[] {
  const names = new Map<string, number>()
  return rules.map((rule, i) => {
    const column = 'column' in rule ? rule.column : 'key' in rule ? rule.key.join(',') : null
    let name = rule.name ?? (column === null ? rule.rule : `${rule.rule}:${column}`)
    const seen = names.get(name) ?? 0
    names.set(name, seen + 1)
    if (seen > 0) name = `${name}#${seen + 1}`
    const entry: RuleCount = {
      name,
      rule: rule.rule,
      column,
      rowsChanged: 0,
      rowsDropped: sums.get(`d${i}`) ?? deduped.get(i) ?? 0,
    }
    flags.forEach((f, k) => {
      if (f.rule === i) entry[f.kind] = sums.get(`f${k}`) ?? 0
    })
    return entry
  })
}

export interface CleanResult {
  rows: number
  minId: number | null
  maxId: number | null
  counts: Record<string, number>
  rules: RuleCount[]
}

/**
 * Cleans the media working table `media` into `media_clean` by the media rules (`mediaRules`),
 * counts under their names of old. The SQL is shared with the benchmark's floor.
 */
export async function cleanTable(
  file: string,
  rules: CleanRules,
  options: SliceOptions = {},
): Promise<CleanResult> {
  const result = await cleanRows(file, { table: 'media', idColumn: 'id', rules: mediaRules(rules) }, options)
  return {
    rows: result.rows,
    minId: result.minId,
    maxId: result.maxId,
    counts: mediaCounts(result.input, result.rules),
    rules: result.rules,
  }
}

export interface CleanOptions extends BlockOptions {
  /**
   * The cleaning rules, in order (see `cleanRuleSchema`); default: the media refresh's rules
   * (`mediaRules`), set by the run config (`licenses`, `minTagAccuracy`, `deniedTags`, ...).
   * With `rules`, those run config fields are not used.
   */
  rules?: CleanRule[]
  /**
   * Clean inside the API database of a Postgres refresh, in SQL, instead of a working file: the
   * table `copy({ postgres })` made is cleaned into the table `promoteTable` promotes (see
   * assets/postgres-clean.ts). `true` takes the database from `$REFRESH_API_URL`.
   */
  postgres?: PostgresCleanBlock | true
}

/**
 * `clean`: the copied table cleaned by rules into `<table>_clean`: by default the media rules
 * (fix URLs, drop rows that cannot be served, filter and dedupe tags, normalize titles).
 */
export function clean(options: CleanOptions = {}): AssetDefinition {
  if (options.postgres)
    return cleanInPostgres(options, options.postgres === true ? {} : options.postgres, cleanConfig)
  const dataDir = resolveDataDir(options.dataDir)
  const from = options.upstream ?? 'copy'
  // checked when the asset is declared: a bad rule fails `refresh validate`, not a run
  const custom = options.rules === undefined ? undefined : parseRules(options.rules, 'clean({ rules })')
  return asset({
    ...blockFields('clean', options, dataDir, { deps: [from], retry: { maxAttempts: 2, delayMs: 500 } }),
    description: 'the working table cleaned by the rules in its config; counts per rule',
    config: cleanConfig,
    async materialize(ctx) {
      const file = upstreamField(ctx, from, 'file', isString)
      const up = ctx.upstream[from] ?? {}
      const table = typeof up.table === 'string' ? up.table : 'media'
      const idColumn = typeof up.idColumn === 'string' ? up.idColumn : 'id'
      let result: CleanRowsResult
      try {
        result = await cleanRows(
          file,
          { table, idColumn, rules: custom ?? mediaRules(ctx.config) },
          { signal: ctx.signal, progress: (done, total) => ctx.progress(done, total) },
        )
      } catch (cause) {
        if (ctx.signal.aborted || cause instanceof ConfigError) throw cause
        throw fileError('clean', file, cause)
      }
      ctx.log(`kept ${result.rows} of ${result.input} rows (${result.dropped} dropped)`)
      return {
        file,
        table: result.table,
        idColumn: result.idColumn,
        rows: result.rows,
        minId: result.minId,
        maxId: result.maxId,
        input: result.input,
        dropped: result.dropped,
        rules: result.rules,
        // the media refresh's counts keep their names
        ...(custom ? {} : mediaCounts(result.input, result.rules)),
      }
    },
  })
}
