import { relative } from 'node:path'
import type { Command } from 'commander'
import { ConfigError, didYouMean } from '../../core/errors.js'
import { findConfig } from '../find-config.js'
import type { CliContext, Io } from '../io.js'

interface ValidateOptions {
  config?: string
  env?: string
}

export function registerValidate(program: Command, ctx: CliContext): void {
  program
    .command('validate')
    .summary('check the config without running anything')
    .description('load and check the config (graph, schemas, pools) in every environment; run nothing')
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .option('--env <name>', 'check only this environment (default: the top level and every environment)')
    .addHelpText('after', '\nExamples:\n  refresh validate\n  refresh validate --env aws\n')
    .action(async (options: ValidateOptions) => {
      ctx.code = await validateCommand(options, ctx.io)
    })
}

async function validateCommand(options: ValidateOptions, io: Io): Promise<number> {
  const file = findConfig(options.config, io.cwd)
  const [{ loadConfig }, { resolveEnvironment }, { resolveRunConfig }, { buildGraph }] = await Promise.all([
    import('../load-config.js'),
    import('../../core/config.js'),
    import('../../core/definitions.js'),
    import('../../core/materialize.js'),
  ])
  const loaded = await loadConfig(file)
  const names =
    options.env !== undefined ? [options.env] : [undefined, ...Object.keys(loaded.config.environments ?? {})]
  const summaries: string[] = []
  for (const name of names) {
    // a lazy block (built from environment variables, say) is only built when it is asked for
    if (
      options.env === undefined &&
      name !== undefined &&
      typeof loaded.config.environments?.[name] === 'function'
    ) {
      summaries.push(`${name}: built when chosen (check it with \`refresh validate --env ${name}\`)`)
      continue
    }
    const resolved = resolveEnvironment(loaded.config, name, loaded.file)
    const where = name === undefined ? '' : ` (environment \`${name}\`)`
    const graph = buildGraph(resolved.assets)
    try {
      resolveRunConfig(graph.assets, graph.order, resolved.config, (key) =>
        didYouMean(key, graph.assets.keys()),
      )
    } catch (error) {
      if (error instanceof ConfigError && where)
        throw new ConfigError(`${error.message}${where}`, { cause: error })
      throw error
    }
    for (const def of graph.assets.values()) {
      if (def.pool !== undefined && resolved.pools[def.pool] === undefined) {
        throw new ConfigError(
          `asset \`${def.key}\` uses pool \`${def.pool}\`, which has no limit${where}; set one with \`pools: { ${JSON.stringify(def.pool)}: 1 }\`.`,
        )
      }
    }
    // run guards name defined assets
    const { holdsFor } = await import('../../core/guards.js')
    try {
      holdsFor(graph, resolved.guards, graph.order)
    } catch (error) {
      if (error instanceof ConfigError && where)
        throw new ConfigError(`${error.message}${where}`, { cause: error })
      throw error
    }
    const groups = new Set(graph.order.map((k) => graph.assets.get(k)!.group))
    summaries.push(
      `${name ?? 'default'}: ${graph.order.length} assets in ${groups.size} group${groups.size === 1 ? '' : 's'}`,
    )
  }
  const sensors = loaded.config.sensors?.length ?? 0
  const schedules = loaded.config.schedules?.length ?? 0
  io.out(`${relative(io.cwd, loaded.file) || loaded.file} is valid.`)
  for (const s of summaries) io.out(`  ${s}`)
  // sensors and schedules: made by their functions, names unique, cron and timezones valid
  const { checkInstigators } = await import('../../sensors/definitions.js')
  checkInstigators(loaded.config.sensors ?? [], loaded.config.schedules ?? [], loaded.file)
  if (sensors || schedules)
    io.out(
      `  ${sensors} sensor${sensors === 1 ? '' : 's'}, ${schedules} schedule${schedules === 1 ? '' : 's'}`,
    )
  return 0
}
