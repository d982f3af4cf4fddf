#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { isRefreshError } from '../core/errors.js'
import { registerRun } from './commands/run.js'
import { type CliContext, EXIT, processIo } from './io.js'

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

// a closed pipe (`refresh runs | head`) ends the output, not the process with a stack trace
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.ok)
    throw error
  })
}

main(process.argv).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    if (isRefreshError(error)) {
      process.stderr.write(`refresh: ${error.message}\n`)
      process.exitCode = EXIT.usage
    } else {
      const text = error instanceof Error ? (error.stack ?? error.message) : String(error)
      process.stderr.write(`refresh: internal error: ${text}\n`)
      process.exitCode = EXIT.failed
    }
  },
)
