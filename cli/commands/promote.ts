import type { Command } from 'commander'
import { type CliContext, EXIT } from '../io.js'

interface PromoteOptions {
  config?: string
  env?: string
  rollback?: boolean
}

export function registerPromote(program: Command, ctx: CliContext): void {
  program
    .command('promote')
    .description('show the promoted index, or point `current` back at the previous one (--rollback)')
    .option('--rollback', 'roll the replicas and the `current` alias back to the previous index')
    .option('-c, --config <file>', 'config file (default: refresh.config.ts in the current directory)')
    .option('--env <name>', 'a named environment block of the config')
    .addHelpText('after', '\nExamples:\n  refresh promote\n  refresh promote --rollback')
    .action(async (options: PromoteOptions) => {
      // the assets (and the config loader) load here, not for every command
      const [{ findDataDir }, { layout }, { rollbackPromotion }, { readAlias }] = await Promise.all([
        import('../data-dir.js'),
        import('../../assets/layout.js'),
        import('../../assets/promote.js'),
        import('../../assets/state.js'),
      ])
      const dataDir = await findDataDir(options, ctx.io.cwd)
      const { io } = ctx
      if (options.rollback) {
        const r = await rollbackPromotion(dataDir)
        io.out(`rolled back: current -> ${r.to.index} (snapshot ${r.to.snapshot}), was ${r.from.index}`)
        if (r.replicas.length) io.out(`replicas now serving ${r.to.snapshot}: ${r.replicas.join(', ')}`)
        ctx.code = EXIT.ok
        return
      }
      const alias = readAlias(layout(dataDir))
      if (!alias) {
        io.out(`nothing promoted yet in ${dataDir}; run \`refresh run\`.`)
        ctx.code = EXIT.failed
        return
      }
      io.out(
        `current:  ${alias.current.index} (snapshot ${alias.current.snapshot}, promoted ${alias.current.promotedAt})`,
      )
      for (const p of alias.previous)
        io.out(`previous: ${p.index} (snapshot ${p.snapshot}, promoted ${p.promotedAt})`)
      ctx.code = EXIT.ok
    })
}
