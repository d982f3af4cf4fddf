import type { Command } from 'commander'
import { storeOption } from '../common.js'
import { findConfig, storeLocationFor } from '../find-config.js'
import type { CliContext, Io } from '../io.js'
import { collect, parseConcurrency } from './run.js'

interface RetryOptions {
  config?: string
  store?: string
  env?: string
  concurrency?: string
  set?: string[]
  plain?: boolean
  json?: boolean
  force?: boolean
  wait?: boolean
}

export function registerRetry(program: Command, ctx: CliContext): void {
  program
    .command('retry')
    .summary('re-execute a failed run from failure')
    .description(
      're-execute a failed or canceled run from failure: its succeeded steps are reused, the rest run again',
    )
    .argument('<run-id>', 'the run to re-execute (a unique prefix of its id works)')
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config')
    .option(
      '--set <asset.field=value>',
      "override the failed run's config, typed by the asset schema",
      collect,
    )
    .option('--concurrency <n>', 'steps at once within the run')
    .option('--plain', 'one plain line per event (the default when stdout is not a terminal)')
    .option('--json', 'one JSON event per line')
    .option('--force', 'run even while maintenance mode is on (recorded on the run)')
    .option('--no-wait', 'fail at once (exit 1) instead of waiting when a run guard of the config is full')
    .addHelpText(
      'after',
      "\nThe config file is loaded again (fixed code runs); the run config is the failed run's.\n\nExamples:\n  refresh retry 01m83v10zz4pxmqvqy\n  refresh retry 01m83v --plain\n  refresh retry 01m83v --set clean.fail=false\n",
    )
    .action(async (runId: string, options: RetryOptions) => {
      ctx.code = await retryCommand(runId, options, ctx.io)
    })
}

async function retryCommand(runId: string, options: RetryOptions, io: Io): Promise<number> {
  const concurrency = parseConcurrency(options.concurrency)
  const file = findConfig(options.config, io.cwd)
  const [{ loadConfig }, { resolveEnvironment }, { executeRun, outputMode }, { parseOverrides }] =
    await Promise.all([
      import('../load-config.js'),
      import('../../core/config.js'),
      import('../execute.js'),
      import('../overrides.js'),
    ])
  const loaded = await loadConfig(file)
  const resolved = resolveEnvironment(loaded.config, options.env, loaded.file)
  const { requireAwsReady } = await import('../config-options.js')
  await requireAwsReady(resolved)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  // the run by id or unique prefix, said here when it is unknown or the prefix is ambiguous
  const { openExistingStore, requireRun } = await import('../common.js')
  let fromFailure: string
  {
    await using store = await openExistingStore(storeLocation)
    fromFailure = (await requireRun(store, runId)).id
  }
  return executeRun(
    resolved,
    storeLocation,
    {
      fromFailure,
      overrides: parseOverrides(options.set ?? [], resolved.assets, resolved.checks),
      concurrency,
      output: outputMode(options, io),
      force: options.force === true,
      wait: options.wait !== false,
    },
    io,
  )
}
