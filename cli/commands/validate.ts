import { relative } from 'node:path'
import type { Command } from 'commander'
import { ConfigError, didYouMean } from '../../core/errors.js'
import { findConfig } from '../find-config.js'
import type { CliContext, Io } from '../io.js'

interface ValidateOptions {
  config?: string
  env?: string
  json?: boolean
}

/** One environment's result: checked, or left for `--env NAME` (a block built by a function). */
type EnvironmentSummary =
  | { environment: string; checked: true; assets: number; groups: number }
  | { environment: string; checked: false; reason: string }

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
    .option('--json', 'the result as one JSON object (errors still exit 2 with one paragraph on stderr)')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh validate\n  refresh validate --env aws\n  refresh validate --json\n',
    )
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
  const summaries: EnvironmentSummary[] = []
  // sensors and schedules: made by their functions, names unique, cron and timezones valid
  const { checkInstigators } = await import('../../sensors/definitions.js')
  const instigators = checkInstigators(
    loaded.config.sensors ?? [],
    loaded.config.schedules ?? [],
    loaded.file,
  )
  for (const name of names) {
    // a lazy block (built from environment variables, say) is only built when it is asked for
    if (
      options.env === undefined &&
      name !== undefined &&
      typeof loaded.config.environments?.[name] === 'function'
    ) {
      summaries.push({
        environment: name,
        checked: false,
        reason: `built when chosen (check it with \`refresh validate --env ${name}\`)`,
      })
      continue
    }
    const resolved = resolveEnvironment(loaded.config, name, loaded.file)
    const where = name === undefined ? '' : ` (environment \`${name}\`)`
    const graph = buildGraph(resolved.assets)
    try {
      const config = resolveRunConfig(graph.assets, graph.order, resolved.config, (key) =>
        didYouMean(key, graph.assets.keys()),
      )
      // asset checks name defined assets, once each, and their config fits their schemas
      const { checksByAsset, resolveCheckConfig, CHECKS_CONFIG_KEY } = await import('../../core/checks.js')
      const byAsset = checksByAsset(resolved.checks, graph.assets)
      resolveCheckConfig(byAsset, graph.has(CHECKS_CONFIG_KEY) ? undefined : config[CHECKS_CONFIG_KEY])
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
    // every sensor's and schedule's selection names assets of this environment's graph
    const { checkInstigatorSelections } = await import('../../sensors/selections.js')
    checkInstigatorSelections(instigators, graph, loaded.file, where)
    const groups = new Set(graph.order.map((k) => graph.assets.get(k)!.group))
    summaries.push({
      environment: name ?? 'default',
      checked: true,
      assets: graph.order.length,
      groups: groups.size,
    })
  }
  const sensors = instigators.filter((i) => i.kind === 'sensor').length
  const schedules = instigators.length - sensors
  if (options.json) {
    io.out(JSON.stringify({ file: loaded.file, valid: true, environments: summaries, sensors, schedules }))
    return 0
  }
  io.out(`${relative(io.cwd, loaded.file) || loaded.file} is valid.`)
  for (const s of summaries) {
    io.out(
      s.checked
        ? `  ${s.environment}: ${s.assets} assets in ${s.groups} group${s.groups === 1 ? '' : 's'}`
        : `  ${s.environment}: ${s.reason}`,
    )
  }
  if (sensors || schedules)
    io.out(
      `  ${sensors} sensor${sensors === 1 ? '' : 's'}, ${schedules} schedule${schedules === 1 ? '' : 's'}`,
    )
  return 0
}
