import type { Command } from 'commander'
import { ConfigError, didYouMean } from '../../core/errors.js'
import { FINISHED_RUN_STATUSES } from '../../core/store/types.js'
import { addStoreOptions, openExistingStore, requireRun } from '../common.js'
import { locateStore, type StoreLocationOptions } from '../find-config.js'
import type { CliContext, Io } from '../io.js'
import { jsonReporter, plainReporter } from '../reporters/plain.js'

interface LogsOptions extends StoreLocationOptions {
  step?: string
  follow?: boolean
  json?: boolean
}

export function registerLogs(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('logs')
      .summary("a run's events (--follow)")
      .description("a run's events, one timestamped line each (--follow: until the run ends)")
      .argument('<run-id>', 'the run (a unique prefix of its id works)'),
  )
    .option('--step <key>', 'only the events of this step')
    .option('-f, --follow', 'keep printing new events until the run ends')
    .option('--json', 'one JSON event per line')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh logs 01m83v10zz4pxmqvqy\n  refresh logs 01m83v --step reindex --follow\n',
    )
    .action(async (runId: string, options: LogsOptions) => {
      ctx.code = await logsCommand(runId, options, ctx.io)
    })
}

const POLL_MS = 200
/** While following, a run whose owner died is closed by recovery this often. */
const RECOVER_EVERY_MS = 5_000

async function logsCommand(idOrPrefix: string, options: LogsOptions, io: Io): Promise<number> {
  await using store = await openExistingStore(await locateStore(options, io.cwd))
  const run = await requireRun(store, idOrPrefix)
  if (options.step !== undefined && !run.plan.includes(options.step)) {
    throw new ConfigError(
      `run ${run.id} has no step \`${options.step}\`.${didYouMean(options.step, run.plan)} Its steps: ${run.plan.join(', ')}.`,
    )
  }
  const print = options.json ? jsonReporter(io.out) : plainReporter(io.out, { debug: true })
  let afterId = 0
  let lastRecover = Date.now()
  for (;;) {
    const finished = FINISHED_RUN_STATUSES.includes((await store.getRun(run.id))!.status)
    const events = await store.getEvents(run.id, { afterId, step: options.step })
    for (const event of events) {
      afterId = event.id
      const { id: _, ...plain } = event
      print(plain as typeof event)
    }
    // the status is read before the events, so a finished run's last events are already printed
    if (!options.follow || finished) return 0
    if (Date.now() - lastRecover > RECOVER_EVERY_MS) {
      lastRecover = Date.now()
      await store.recoverInterruptedRuns({ runIds: [run.id] })
    }
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}
