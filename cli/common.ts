import { existsSync } from 'node:fs'
import type { Command } from 'commander'
import { StoreError } from '../core/errors.js'
import type { SqliteStore } from '../core/store/sqlite.js'
import type { RunRecord } from '../core/store/types.js'
import { cutEnd } from './format.js'

/** `--config`, `--store`, `--env`: how every command that reads the store finds it. */
export function addStoreOptions(command: Command): Command {
  return command
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .option('--store <file>', 'store file (default: .refresh/refresh.db beside the config)')
    .option('--env <name>', 'a named environment block of the config (its store)')
}

/** Opens a store that must exist already: reading commands never create one. */
export async function openExistingStore(path: string): Promise<SqliteStore> {
  if (!existsSync(path)) {
    throw new StoreError(`no store at ${path}; run \`refresh run\` first, or pass --store FILE.`)
  }
  const { openStore } = await import('../core/store/sqlite.js')
  return openStore(path)
}

/**
 * Opens the store for a listing (`runs`, `status`). Before the first run there is no store, and a
 * listing of nothing is empty, not an error (as Dagster and Airflow show an empty list): an empty
 * in-memory store answers instead, and `exists` says which it is. Nothing is created on disk.
 */
export async function openListedStore(path: string): Promise<{ store: SqliteStore; exists: boolean }> {
  const { openStore } = await import('../core/store/sqlite.js')
  if (!existsSync(path)) return { store: openStore(':memory:'), exists: false }
  return { store: openStore(path), exists: true }
}

/** Most matches an ambiguous prefix lists. */
const MATCHES_SHOWN = 10

/**
 * A run by id or unique prefix, or a `StoreError` that says what to type: for an unknown id, how
 * to list runs; for a prefix several runs share, those runs (the newest ten), to pick one from.
 * Ids sort by time, so the runs with a prefix are the newest ones below the prefix followed by
 * `~` (after every id character): one bounded listing, not a scan of every run.
 */
export function requireRun(store: SqliteStore, idOrPrefix: string): RunRecord {
  const exact = store.getRun(idOrPrefix)
  if (exact) return exact
  const matches = store
    .listRuns({ before: `${idOrPrefix}~`, limit: MATCHES_SHOWN + 1 })
    .filter((r) => r.id.startsWith(idOrPrefix))
  if (matches.length === 1) return matches[0]!
  if (matches.length === 0) {
    throw new StoreError(
      `no run \`${idOrPrefix}\` in ${store.path}; \`refresh runs\` lists the runs (a unique prefix of an id works too).`,
    )
  }
  const shown = matches.slice(0, MATCHES_SHOWN)
  const more = matches.length > MATCHES_SHOWN ? ` The newest ${MATCHES_SHOWN} of them:` : ''
  throw new StoreError(
    `run id prefix \`${idOrPrefix}\` is ambiguous: it matches ${matches.length > MATCHES_SHOWN ? `more than ${MATCHES_SHOWN}` : matches.length} runs; type more of the id.${more}\n${shown
      .map(
        (r) =>
          `  ${r.id}  ${r.status.padEnd(8)}  ${formatDateTime(r.startedAt ?? r.createdAt)}  ${r.selection}`,
      )
      .join('\n')}`,
  )
}

/** Local date and time, to the second: `2026-11-23 09:15:38`. */
export function formatDateTime(ts: number): string {
  const d = new Date(ts)
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

/** A table cell: text, or text that knows how to shorten itself to a width (metadata by whole pairs). */
export type Cell = string | { text: string; fit(max: number): string }

export interface TableFit {
  /** The width to fit (`io.columns`); undefined: no limit (a pipe). */
  width?: number
  /** The column that gives way first: it is cut to what is left (default: the last one). */
  flex?: number
  /** Columns left out, in this order, while the others still do not fit beside the flex one. */
  drop?: readonly number[]
  /** Narrowest the flex column may get before a column is dropped (default 12). */
  flexMin?: number
}

const cellText = (c: Cell | undefined) => (c === undefined ? '' : typeof c === 'string' ? c : c.text)

/**
 * Left-aligned columns separated by two spaces; the last column is not padded. With a width, the
 * table fits it: the flex column is cut to what the others leave (a cell's own `fit` first, so a
 * value is dropped whole rather than cut), and columns in `drop` are left out while that is not
 * enough. A line never wraps, and nothing but the flex column is ever cut.
 */
export function table(
  header: readonly string[],
  rows: ReadonlyArray<readonly Cell[]>,
  fit: TableFit = {},
): string[] {
  const flex = fit.flex ?? header.length - 1
  let shown = header.map((_, i) => i)
  const natural = header.map((h, i) => Math.max(h.length, ...rows.map((r) => cellText(r[i]).length)))
  const widthOf = (cols: number[]) =>
    cols.reduce((sum, i) => sum + (i === flex ? 0 : natural[i]!), 0) + 2 * (cols.length - 1)
  let flexWidth = natural[flex]!
  if (fit.width !== undefined) {
    for (const d of [undefined, ...(fit.drop ?? [])]) {
      if (d !== undefined) shown = shown.filter((i) => i !== d)
      flexWidth = Math.min(natural[flex]!, fit.width - widthOf(shown))
      if (flexWidth >= Math.min(fit.flexMin ?? 12, natural[flex]!)) break
    }
    flexWidth = Math.max(0, flexWidth)
  }
  const render = (cell: Cell | undefined, i: number): string => {
    if (i !== flex || fit.width === undefined) return cellText(cell)
    if (cell === undefined) return ''
    if (typeof cell === 'string') return cutEnd(cell, flexWidth)
    return cell.text.length <= flexWidth ? cell.text : cell.fit(flexWidth)
  }
  const widths = header.map((_, i) => (i === flex ? flexWidth : natural[i]!))
  const last = shown.at(-1)
  const line = (cells: readonly (Cell | undefined)[]) =>
    shown
      .map((i) => {
        const text = render(cells[i], i)
        return i === last ? text : text.padEnd(widths[i]!)
      })
      .join('  ')
      .trimEnd()
  return [line(header.map((h, i) => (i === flex ? cutEnd(h, flexWidth) : h))), ...rows.map(line)]
}

export function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}
