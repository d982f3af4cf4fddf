import type { Command } from 'commander'
import { ConfigError, StoreError } from '../../core/errors.js'
import { HISTORY_TABLES } from '../../core/store/types.js'
import { openExistingStore, table } from '../common.js'
import { type CliContext, EXIT, type Io } from '../io.js'

interface CopyOptions {
  from?: string
  to?: string
  json?: boolean
}

export function registerStore(program: Command, ctx: CliContext): void {
  const store = program.command('store').description('move a run store: copy its history into another')
  store
    .command('copy')
    .description(
      "copy a store's whole history (runs, steps, events, materializations, ticks, cursors, sensor and schedule states) into an empty store",
    )
    .requiredOption('--from <location>', 'the store to copy from: a file (or a postgres:// URL)')
    .requiredOption('--to <location>', 'the empty store to copy into: a postgres:// URL (or a file)')
    .option('--json', 'what was copied, as one JSON object')
    .addHelpText(
      'after',
      `
The copy keeps every id, so sensors' cursors, run keys and \`refresh show\` of an old run work in
the new store as in the old one. It is one transaction in the new store: it copies all or
nothing, and only into a store that holds no run. Stop the daemon and let runs finish first: a
run in flight in the source is refused (runs whose process died are marked interrupted first).
The source is only read.

Examples:
  refresh store copy --from .refresh/refresh.db --to "$REFRESH_STORE"
  refresh store copy --from .refresh/refresh.db --to postgres://refresh@db.internal:5432/refresh?schema=refresh`,
    )
    .action(async (options: CopyOptions) => {
      ctx.code = await copyCommand(options, ctx.io)
    })
}

async function copyCommand(options: CopyOptions, io: Io): Promise<number> {
  const { openStore, redactLocation, resolveStoreLocation } = await import('../../core/store/open.js')
  const from = resolveStoreLocation(options.from!, io.cwd)
  const to = resolveStoreLocation(options.to!, io.cwd)
  if (from === to) {
    throw new ConfigError(`--from and --to name the same store (${redactLocation(from)}); name two stores.`)
  }
  await using source = await openExistingStore(from)
  // a run whose process died is history like any other: closed as interrupted before the copy
  if (!source.readonly) await source.recoverInterruptedRuns()
  const inFlight = await source.listRuns({ status: ['started', 'paused', 'queued'] })
  const running = inFlight.filter((r) => r.status !== 'queued')
  if (running.length > 0) {
    throw new StoreError(
      `${running.length} run(s) are in flight in ${source.displayName} (${running
        .slice(0, 5)
        .map((r) => r.id)
        .join(', ')}); let them finish (or \`refresh cancel\` them) and stop the daemon, then copy.`,
    )
  }
  await using target = await openStore(to)
  const started = Date.now()
  const counts = await target.importHistory(source.exportHistory())
  const ms = Date.now() - started
  if (options.json) {
    io.out(JSON.stringify({ from: source.displayName, to: target.displayName, ms, rows: counts }))
    return EXIT.ok
  }
  io.out(`copied ${source.displayName} into ${target.displayName} in ${ms} ms:`)
  for (const line of table(
    ['TABLE', 'ROWS'],
    HISTORY_TABLES.map((t) => [t, String(counts[t])]),
  ))
    io.out(`  ${line}`)
  if (inFlight.length > 0)
    io.out(
      `${inFlight.length} queued run(s) were copied as queued: a daemon on ${target.displayName} launches them.`,
    )
  return EXIT.ok
}
