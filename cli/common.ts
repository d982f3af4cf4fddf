import { existsSync } from 'node:fs'
import { type Command, Option } from 'commander'
import { StoreError } from '../core/errors.js'
import type { RunStore } from '../core/store/run-store.js'
import type { InterruptedRun, RunRecord, RunStatus } from '../core/store/types.js'
import { cutEnd } from './format.js'

export { requireRun } from '../core/store/run-store.js'

/** `--store`, declared once for every command that takes it. */
export function storeOption(): Option {
  return new Option(
    '--store <location>',
    "the run store: a file or a postgres:// URL (default: the config's store, else .refresh/refresh.db beside the config)",
  ).env('REFRESH_STORE')
}

/** `--config`, `--store`, `--env`: how every command that reads the store finds it. */
export function addStoreOptions(command: Command): Command {
  return command
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config (its store)')
}

/** Opens a store that must exist already: reading commands never create one. */
export async function openExistingStore(location: string): Promise<RunStore> {
  const { isFileLocation, openStore } = await import('../core/store/open.js')
  if (isFileLocation(location) && !existsSync(location)) {
    throw new StoreError(`no store at ${location}; run \`refresh run\` first, or pass --store FILE.`)
  }
  // a store this user may only read is still read (what writes says so when it tries)
  return openStore(location, { readonly: 'if-unwritable' })
}

/**
 * Opens the store for a listing (`runs`, `status`). Before the first run there is no store, and a
 * listing of nothing is empty, not an error (as Dagster and Airflow show an empty list): an empty
 * in-memory store answers instead, and `exists` says which it is. Nothing is created on disk.
 */
export async function openListedStore(location: string): Promise<{ store: RunStore; exists: boolean }> {
  const { isFileLocation, openStore } = await import('../core/store/open.js')
  if (isFileLocation(location) && !existsSync(location))
    return { store: await openStore(':memory:'), exists: false }
  return { store: await openStore(location, { readonly: 'if-unwritable' }), exists: true }
}

/**
 * A run as every reader shows it: a started run whose owner is gone (recovery has not marked it
 * yet) reads as `interrupted`, ended when its owner was last seen; any other run as stored.
 */
export interface ShownRun {
  status: RunStatus | 'interrupted'
  endedAt: number | null
  /** Why it reads as interrupted. */
  reason: string | null
}

/** The runs of a store that read as interrupted, by id (one query for a whole listing). */
export async function interruptedRuns(
  store: Pick<RunStore, 'interruptedRuns'>,
): Promise<Map<string, InterruptedRun>> {
  return new Map((await store.interruptedRuns()).map((r) => [r.runId, r]))
}

export function shownRun(run: RunRecord, interrupted: ReadonlyMap<string, InterruptedRun>): ShownRun {
  const gone = run.status === 'started' ? interrupted.get(run.id) : undefined
  return gone
    ? { status: 'interrupted', endedAt: gone.lastSeenAt, reason: gone.reason }
    : { status: run.status, endedAt: run.endedAt, reason: null }
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

/** The width left for a table printed two spaces in (undefined in a pipe, where nothing is cut). */
export function indented(columns: number | undefined): number | undefined {
  return columns === undefined ? undefined : columns - 2
}
