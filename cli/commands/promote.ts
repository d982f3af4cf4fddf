import type { Command } from 'commander'
import type { TablePromotion } from '../../assets/postgres-table.js'
import { type CliContext, EXIT } from '../io.js'

interface PromoteOptions {
  config?: string
  env?: string
  rollback?: boolean
  table?: boolean
  json?: boolean
}

export function registerPromote(program: Command, ctx: CliContext): void {
  program
    .command('promote')
    .description('show the promoted index, or point `current` back at the previous one (--rollback)')
    .option('--rollback', 'roll the replicas and the `current` alias back to the previous index')
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .option('--env <name>', 'a named environment block of the config')
    .option(
      '--table',
      "act on the config's table promotion (`promoteTable`); the default when it is the config's only promotion",
    )
    .option('--json', 'the alias (or the rollback) as one JSON object')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh promote\n  refresh promote --json\n  refresh promote --rollback\n  refresh promote --table --rollback',
    )
    .action(async (options: PromoteOptions) => {
      const { findTablePromotion } = await import('../data-dir.js')
      const found = await findTablePromotion(options, ctx.io.cwd)
      if (found.table && (options.table || !found.indexPromote)) {
        await tableCommand(found.table, options, ctx)
        return
      }
      if (options.table) {
        const { ConfigError } = await import('../../core/errors.js')
        throw new ConfigError(
          "--table: the config has no table promotion; add `promoteTable({ table })` from 'refresh' to its assets.",
        )
      }
      // the assets (and the config loader) load here, not for every command
      const [{ findBlocks }, { rollbackPromotion }, { fileAliasStore }, { layout }] = await Promise.all([
        import('../data-dir.js'),
        import('../../assets/promote.js'),
        import('../../assets/state.js'),
        import('../../assets/layout.js'),
      ])
      const { dataDir, alias: store, fleet } = await findBlocks(options, ctx.io.cwd, found.config)
      const alias = store ?? fileAliasStore(layout(dataDir).alias)
      const { io } = ctx
      // a config that promotes a table with its index (the postgres environment): both, together
      const withTable = found.table && !options.table ? found.table : undefined
      if (options.rollback) {
        const r = await rollbackPromotion(dataDir, {
          alias,
          fleet,
          log: (m) => io.err(m),
        })
        const table = withTable ? await tableOutcome(withTable, options, io) : undefined
        if (options.json) {
          io.out(
            JSON.stringify({
              rolledBack: true,
              from: r.from,
              to: r.to,
              replicas: r.replicas,
              ...(table ? { table: table.json } : {}),
            }),
          )
        } else {
          io.out(`rolled back: current -> ${r.to.index} (snapshot ${r.to.snapshot}), was ${r.from.index}`)
          if (r.replicas.length) io.out(`replicas now serving ${r.to.snapshot}: ${r.replicas.join(', ')}`)
          for (const line of table?.lines ?? []) io.out(line)
        }
        ctx.code = EXIT.ok
        return
      }
      const current = await alias.read()
      const table = withTable ? await tableOutcome(withTable, options, io) : undefined
      if (options.json) {
        io.out(
          JSON.stringify({
            where: alias.where,
            current: current?.current ?? null,
            previous: current?.previous ?? [],
            ...(table ? { table: table.json } : {}),
          }),
        )
        ctx.code = EXIT.ok
        return
      }
      if (!current) {
        // nothing to show is not a failed run: an empty answer, as `refresh runs` gives before any run
        io.out(`nothing promoted yet in ${alias.where}; run \`refresh run\`.`)
      } else {
        io.out(
          `current:  ${current.current.index} (snapshot ${current.current.snapshot}, promoted ${current.current.promotedAt})`,
        )
        for (const p of current.previous)
          io.out(`previous: ${p.index} (snapshot ${p.snapshot}, promoted ${p.promotedAt})`)
      }
      for (const line of table?.lines ?? []) io.out(line)
      ctx.code = EXIT.ok
    })
}

/** `refresh promote [--rollback]` for a table promotion: the kept versions, or the previous one swapped back. */
async function tableCommand(table: TablePromotion, options: PromoteOptions, ctx: CliContext): Promise<void> {
  const outcome = await tableOutcome(table, options, ctx.io)
  if (options.json) ctx.io.out(JSON.stringify(outcome.json))
  else for (const line of outcome.lines) ctx.io.out(line)
  ctx.code = EXIT.ok
}

/** A table promotion's versions, or its rollback, as JSON and as lines of text. */
async function tableOutcome(
  table: TablePromotion,
  options: PromoteOptions,
  io: CliContext['io'],
): Promise<{ json: Record<string, unknown>; lines: string[] }> {
  if (options.rollback) {
    const r = await table.rollback((m) => io.err(m))
    return {
      json: { rolledBack: true, table: r.table, restored: r.restored, from: r.rolledBack, ms: r.ms },
      lines: [
        `rolled back: ${r.table} is ${r.restored} again (${r.ms} ms); the table rolled back from is kept as ${r.rolledBack}`,
      ],
    }
  }
  const versions = await table.versions()
  return {
    json: { where: table.where, previous: versions },
    lines: [
      `table: ${table.where}`,
      ...versions.map((v) => `previous: ${v}`),
      ...(versions.length === 0 ? ['no previous version kept'] : []),
    ],
  }
}
