import { resolve } from 'node:path'
import type { Command } from 'commander'
import { resolveEnvironment } from '../../core/config.js'
import { CanceledError, ConfigError } from '../../core/errors.js'
import type { RunEventListener } from '../../core/events.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/sqlite.js'
import { type CliContext, EXIT, type Io } from '../io.js'
import { findConfig, loadConfig } from '../load-config.js'
import { jsonReporter, plainReporter } from '../reporters/plain.js'

export interface RunOptions {
  config?: string
  store?: string
  env?: string
  concurrency?: string
  plain?: boolean
  json?: boolean
}

export function registerRun(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('materialize the selected assets (default: all) and report every step')
    .argument('[selection...]', 'assets to run: key, key+, +key, key+1, 1+key, *, group:name, tag:k=v')
    .option('-c, --config <file>', 'config file (default: refresh.config.ts in the current directory)')
    .option('--store <file>', 'store file (default: .refresh/refresh.db beside the config)')
    .option('--env <name>', 'a named environment block of the config')
    .option('--concurrency <n>', 'steps at once within the run')
    .option('--plain', 'one plain line per event')
    .option('--json', 'one JSON event per line')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh run\n  refresh run clean+ --concurrency 2\n  refresh run copy,clean --json',
    )
    .action(async (selection: string[], options: RunOptions) => {
      ctx.code = await runCommand(selection, options, ctx.io)
    })
}

/** `refresh run [selection...]`: loads the config, materializes, reports every event. */
export async function runCommand(selection: string[], options: RunOptions, io: Io): Promise<number> {
  const concurrency = parseConcurrency(options.concurrency)
  const file = findConfig(options.config, io.cwd)
  const loaded = await loadConfig(file)
  const resolved = resolveEnvironment(loaded.config, options.env, loaded.file)
  const storePath = options.store
    ? resolve(io.cwd, options.store)
    : resolve(loaded.dir, resolved.store ?? '.refresh/refresh.db')

  const store = openStore(storePath)
  try {
    for (const r of store.recoverInterruptedRuns()) {
      io.err(`note: run ${r.runId} was left running and is now marked failed (${r.reason}).`)
    }
    const listener: RunEventListener = options.json
      ? jsonReporter(io.out)
      : plainReporter(io.out, { timestamps: !io.isTTY })

    const controller = new AbortController()
    let runId: string | undefined
    let interrupts = 0
    const onSignal = (signal: NodeJS.Signals) => {
      interrupts++
      if (interrupts === 1) {
        if (!options.json) io.err(`canceling... (${signal}; press Ctrl-C again to stop at once)`)
        controller.abort(
          new CanceledError(signal === 'SIGINT' ? 'interrupted (Ctrl-C)' : `received ${signal}`),
        )
        return
      }
      // second interrupt: close the run as canceled right now, so nothing is left `started`
      if (runId !== undefined)
        store.abandonRun(runId, 'canceled', `stopped at once (${signal} twice)`, Date.now())
      store.close()
      process.exit(EXIT.interrupted)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    try {
      const result = await materialize(resolved.assets, {
        store,
        selection: selection.length > 0 ? selection : undefined,
        config: resolved.config,
        resources: resolved.resources,
        pools: resolved.pools,
        concurrency: concurrency ?? resolved.concurrency,
        signal: controller.signal,
        onEvent: (event) => {
          if (event.type === 'run:start') runId = event.runId
          listener(event)
        },
      })
      if (interrupts > 0) return EXIT.interrupted
      return result.status === 'success' ? EXIT.ok : EXIT.failed
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  } finally {
    store.close()
  }
}

function parseConcurrency(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) {
    throw new ConfigError(
      `--concurrency ${text}: expected a whole number of at least 1 (for example --concurrency 4).`,
    )
  }
  return n
}
