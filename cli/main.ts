#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { isRefreshError } from '../core/errors.js'
import { runCommand } from './commands/run.js'
import { EXIT, processIo } from './io.js'

/**
 * The `refresh` command. One top-level handler: bad input prints one paragraph and exits 2;
 * an internal error prints its stack and exits 1.
 */
async function main(argv: string[]): Promise<number> {
  const io = processIo()
  const version = (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version
  let code: number = EXIT.ok
  const program = new Command('refresh')
    .description('Declare data assets as a graph and materialize them, with every run kept in SQLite.')
    .version(version)
    .exitOverride()
    .showHelpAfterError('(run `refresh --help` for usage)')

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
    .action(async (selection: string[], options) => {
      code = await runCommand(selection, options, io)
    })

  try {
    await program.parseAsync(argv)
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.code === 'commander.help'
      ) {
        return EXIT.ok
      }
      return EXIT.usage
    }
    throw error
  }
  return code
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
      process.stderr.write(
        `refresh: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      )
      process.exitCode = EXIT.failed
    }
  },
)
