#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { type ErrorCode, errorCode } from '../core/errors.js'
import { registerAssets } from './commands/assets.js'
import { registerAutomation } from './commands/automation.js'
import { registerBackfill } from './commands/backfill.js'
import { registerCancel } from './commands/cancel.js'
import { registerChecks } from './commands/checks.js'
import { registerDaemon } from './commands/daemon.js'
import { registerDoctor } from './commands/doctor.js'
import { registerGc } from './commands/gc.js'
import { registerGraph } from './commands/graph.js'
import { registerLogs } from './commands/logs.js'
import { registerMaintenance } from './commands/maintenance.js'
import { registerPartitions } from './commands/partitions.js'
import { registerPromote } from './commands/promote.js'
import { registerPrune } from './commands/prune.js'
import { registerQuery } from './commands/query.js'
import { registerRetry } from './commands/retry.js'
import { registerRun } from './commands/run.js'
import { registerRuns } from './commands/runs.js'
import { registerSensors } from './commands/sensors.js'
import { registerServe } from './commands/serve.js'
import { registerShow } from './commands/show.js'
import { registerStatus } from './commands/status.js'
import { registerStore } from './commands/store.js'
import { registerValidate } from './commands/validate.js'
import { registerWorker } from './commands/worker.js'
import { type CliContext, EXIT, outputClosed, processIo } from './io.js'

/**
 * The `refresh` command. Each command lives in `cli/commands/<name>.ts` and registers itself
 * here; a command's action sets the exit code through `ctx.exit`. One top-level handler: bad
 * input prints one paragraph and exits 2; an internal error prints its stack and exits 1.
 */
async function main(argv: string[]): Promise<number> {
  const version = (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version
  const ctx: CliContext = { io: processIo(), code: EXIT.ok }
  const program = new Command('refresh')
    .description('Declare data assets as a graph and materialize them, with every run kept in SQLite.')
    .version(version)
    .exitOverride()
    .showHelpAfterError('(run `refresh --help` for usage)')

  registerRun(program, ctx)
  registerRetry(program, ctx)
  registerCancel(program, ctx)
  registerRuns(program, ctx)
  registerShow(program, ctx)
  registerChecks(program, ctx)
  registerAutomation(program, ctx)
  registerPartitions(program, ctx)
  registerBackfill(program, ctx)
  registerLogs(program, ctx)
  registerAssets(program, ctx)
  registerGraph(program, ctx)
  registerValidate(program, ctx)
  registerQuery(program, ctx)
  registerPromote(program, ctx)
  registerDaemon(program, ctx)
  registerSensors(program, ctx)
  registerMaintenance(program, ctx)
  registerStatus(program, ctx)
  registerServe(program, ctx)
  registerWorker(program, ctx)
  registerDoctor(program, ctx)
  registerGc(program, ctx)
  registerStore(program, ctx)
  registerPrune(program, ctx)

  try {
    await program.parseAsync(argv)
  } catch (error) {
    if (error instanceof CommanderError) {
      const ok = ['commander.helpDisplayed', 'commander.version', 'commander.help']
      return ok.includes(error.code) ? EXIT.ok : EXIT.usage
    }
    throw error
  }
  return ctx.code
}

// a closed pipe (`refresh runs | head`) ends the output, not the process with a stack trace; a
// run in progress is canceled cleanly and recorded as such (see whenOutputCloses)
for (const [stream, name] of [
  [process.stdout, 'out'],
  [process.stderr, 'err'],
] as const) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error
    if (!outputClosed(name)) process.exit(process.exitCode ?? EXIT.ok)
  })
}

/**
 * What each error refresh throws on purpose means for the process: its exit status, and what is
 * added to its message. Bad input exits 2; a parked run 3; an interruption before a run existed
 * 130; an operation that could not be done (a busy store, a failed AWS call, a guard that is
 * full) 1. Every other error is a bug: its stack is printed and the exit status is 1.
 */
const EXIT_FOR_CODE: Record<ErrorCode, { exit: number; suffix?: string }> = {
  config: { exit: EXIT.usage },
  graph: { exit: EXIT.usage },
  selection: { exit: EXIT.usage },
  store: { exit: EXIT.usage },
  promote: { exit: EXIT.usage },
  query: { exit: EXIT.usage },
  replicas: { exit: EXIT.usage },
  parked: { exit: EXIT.parked },
  // interrupted before a run existed (while waiting for a guard): nothing was recorded
  canceled: { exit: EXIT.interrupted, suffix: '; nothing was run.' },
  'guard-busy': { exit: EXIT.failed },
  'store-busy': { exit: EXIT.failed },
  aws: { exit: EXIT.failed },
  'aws-config': { exit: EXIT.usage },
  integrity: { exit: EXIT.failed },
  'units-failed': { exit: EXIT.failed },
  'non-retriable': { exit: EXIT.failed },
  'retry-after': { exit: EXIT.failed },
  'step-timeout': { exit: EXIT.failed },
}

main(process.argv).then(
  (code) => exit(code),
  (error: unknown) => {
    const code = errorCode(error)
    const known = code === undefined ? undefined : EXIT_FOR_CODE[code]
    if (known) {
      process.stderr.write(`refresh: ${(error as Error).message}${known.suffix ?? ''}\n`)
      exit(known.exit)
    } else {
      const text = error instanceof Error ? (error.stack ?? error.message) : String(error)
      process.stderr.write(`refresh: internal error: ${text}\n`)
      exit(EXIT.failed)
    }
  },
)

/**
 * Exits once stdout and stderr are flushed. A command is over when its promise settles: an asset
 * that ignored its abort signal (a pending timer, a socket) must not keep a canceled run's
 * process alive.
 */
function exit(code: number): void {
  process.exitCode = code
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}
