import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.js'
import { storeOption } from '../common.js'
import { findConfig, storeLocationFor } from '../find-config.js'
import type { CliContext, Io } from '../io.js'

export interface RunOptions {
  config?: string
  store?: string
  env?: string
  set?: string[]
  concurrency?: string
  plain?: boolean
  json?: boolean
  dryRun?: boolean
  force?: boolean
  wait?: boolean
  partition?: string
}

export function registerRun(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .summary('materialize assets (default: all)')
    .description('materialize the selected assets (default: all) and report every step')
    .argument('[selection...]', 'assets to run: key, key+, +key, key+1, 1+key, *, group:name, tag:k=v')
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config')
    .option(
      '--set <asset.field=value>',
      'run config override, typed by the asset schema (repeatable)',
      collect,
    )
    .option(
      '--partition <key>',
      'the partition to build of the selected partitioned assets (`refresh partitions ASSET` lists them)',
    )
    .option('--concurrency <n>', 'steps at once within the run')
    .option('--plain', 'one plain line per event (the default when stdout is not a terminal)')
    .option('--json', 'one JSON event per line')
    .option('--dry-run', 'print the plan and the run config, run nothing')
    .option('--force', 'run even while maintenance mode is on (recorded on the run)')
    .option('--no-wait', 'fail at once (exit 1) instead of waiting when a run guard of the config is full')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh run\n  refresh run clean+ --concurrency 2\n  refresh run catalog --set catalog.rows=500 --dry-run\n  refresh run copy,clean --json\n  refresh run daily_events+ --partition 2026-11-24\n',
    )
    .action(async (selection: string[], options: RunOptions) => {
      ctx.code = await runCommand(selection, options, ctx.io)
    })
}

/** Commander collector for repeatable flags. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

/** `refresh run [selection...]`: loads the config, materializes, reports every event. */
export async function runCommand(selection: string[], options: RunOptions, io: Io): Promise<number> {
  const concurrency = parseConcurrency(options.concurrency)
  const file = findConfig(options.config, io.cwd)
  const [{ loadConfig }, { resolveEnvironment }, { applyOverrides, parseOverrides }] = await Promise.all([
    import('../load-config.js'),
    import('../../core/config.js'),
    import('../overrides.js'),
  ])
  const loaded = await loadConfig(file)
  const resolved = resolveEnvironment(loaded.config, options.env, loaded.file)
  const config = applyOverrides(
    resolved.config,
    parseOverrides(options.set ?? [], resolved.assets, resolved.checks),
  )
  const { checkPlan, printPlan } = await import('../plan.js')
  if (options.dryRun) {
    printPlan(resolved, selection, config, io, options.json === true)
    return 0
  }
  checkPlan(resolved, selection, config)
  const { requireAwsReady } = await import('../config-options.js')
  await requireAwsReady(resolved)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  const { executeRun, outputMode } = await import('../execute.js')
  return executeRun(
    resolved,
    storeLocation,
    {
      selection,
      config,
      concurrency,
      output: outputMode(options, io),
      force: options.force === true,
      wait: options.wait !== false,
      ...(options.partition !== undefined ? { partition: options.partition } : {}),
    },
    io,
  )
}

export function parseConcurrency(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) {
    throw new ConfigError(
      `--concurrency ${text}: expected a whole number of at least 1 (for example --concurrency 4).`,
    )
  }
  return n
}
