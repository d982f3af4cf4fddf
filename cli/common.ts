import { existsSync } from 'node:fs'
import { type Command, Option } from 'commander'
import { StoreError } from '../core/errors.js'
import type { RunStore } from '../core/store/run-store.js'

export { requireRun } from '../core/store/run-store.js'

/** `--store`, declared once for every command that takes it. */
export function storeOption(): Option {
  return new Option(
    '--store <location>',
    'the run store: a file (default: .refresh/refresh.db beside the config)',
  )
}

/** `--config`, `--store`, `--env`: how every command that reads the store finds it. */
export function addStoreOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'config file (default: refresh.config.ts in the current directory)')
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config (its store)')
}

/** Opens a store that must exist already: reading commands never create one. */
export async function openExistingStore(location: string): Promise<RunStore> {
  const { isFileLocation, openStore } = await import('../core/store/open.js')
  if (isFileLocation(location) && !existsSync(location)) {
    throw new StoreError(`no store at ${location}; run \`refresh run\` first, or pass --store FILE.`)
  }
  return openStore(location)
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
