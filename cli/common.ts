import { existsSync } from 'node:fs'
import type { Command } from 'commander'
import { StoreError } from '../core/errors.js'
import type { SqliteStore } from '../core/store/sqlite.js'
import type { RunRecord } from '../core/store/types.js'

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

/** A run by id or unique prefix, or a `StoreError` that says how to list runs. */
export function requireRun(store: SqliteStore, idOrPrefix: string): RunRecord {
  const run = store.findRun(idOrPrefix)
  if (!run) {
    throw new StoreError(
      `no run \`${idOrPrefix}\` in ${store.path}; \`refresh runs\` lists the runs (an id prefix of 4 or more characters works too).`,
    )
  }
  return run
}

/** Local date and time, to the second: `2026-11-23 09:15:38`. */
export function formatDateTime(ts: number): string {
  const d = new Date(ts)
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)]
}

export function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}
