import type { Command } from 'commander'
import { type CliContext, EXIT } from '../io.js'

interface PromoteOptions {
  config?: string
  env?: string
  rollback?: boolean
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
    .option('--json', 'the alias (or the rollback) as one JSON object')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh promote\n  refresh promote --json\n  refresh promote --rollback',
    )
    .action(async (options: PromoteOptions) => {
      // the assets (and the config loader) load here, not for every command
      const [{ findBlocks }, { rollbackPromotion }, { fileAliasStore }, { layout }] = await Promise.all([
        import('../data-dir.js'),
        import('../../assets/promote.js'),
        import('../../assets/state.js'),
        import('../../assets/layout.js'),
      ])
      const { dataDir, alias: store, fleet } = await findBlocks(options, ctx.io.cwd)
      const alias = store ?? fileAliasStore(layout(dataDir).alias)
      const { io } = ctx
      if (options.rollback) {
        const r = await rollbackPromotion(dataDir, {
          alias,
          fleet,
          log: (m) => io.err(m),
        })
        if (options.json) {
          io.out(JSON.stringify({ rolledBack: true, from: r.from, to: r.to, replicas: r.replicas }))
          ctx.code = EXIT.ok
          return
        }
        io.out(`rolled back: current -> ${r.to.index} (snapshot ${r.to.snapshot}), was ${r.from.index}`)
        if (r.replicas.length) io.out(`replicas now serving ${r.to.snapshot}: ${r.replicas.join(', ')}`)
        ctx.code = EXIT.ok
        return
      }
      const current = await alias.read()
      if (options.json) {
        io.out(
          JSON.stringify({
            where: alias.where,
            current: current?.current ?? null,
            previous: current?.previous ?? [],
          }),
        )
        ctx.code = EXIT.ok
        return
      }
      if (!current) {
        // nothing to show is not a failed run: an empty answer, as `refresh runs` gives before any run
        io.out(`nothing promoted yet in ${alias.where}; run \`refresh run\`.`)
        ctx.code = EXIT.ok
        return
      }
      io.out(
        `current:  ${current.current.index} (snapshot ${current.current.snapshot}, promoted ${current.current.promotedAt})`,
      )
      for (const p of current.previous)
        io.out(`previous: ${p.index} (snapshot ${p.snapshot}, promoted ${p.promotedAt})`)
      ctx.code = EXIT.ok
    })
}
