import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.js'
import { addStoreOptions, openExistingStore, requireRun } from '../common.js'
import { locateStore, type StoreLocationOptions } from '../find-config.js'
import { formatDuration } from '../format.js'
import { type CliContext, EXIT, type Io } from '../io.js'

interface CancelOptions extends StoreLocationOptions {
  wait: boolean
  timeout?: string
}

export function registerCancel(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('cancel')
      .summary('cancel a running run')
      .description('cancel a run started by another process (it stops within a second and ends canceled)')
      .argument('<run-id>', 'the run to cancel (a unique prefix of its id works)'),
  )
    .option('--timeout <seconds>', 'how long to wait for the run to end', '10')
    .option('--no-wait', 'request the cancel and return at once')
    .addHelpText(
      'after',
      '\nExit code 0 when the run ended canceled (or had already succeeded), 1 when it ended failed or is still running at the timeout.\n\nExamples:\n  refresh cancel 01m83v10zz4pxmqvqy\n  refresh cancel 01m83v --timeout 30\n',
    )
    .action(async (runId: string, options: CancelOptions) => {
      ctx.code = await cancelCommand(runId, options, ctx.io)
    })
}

const POLL_MS = 100

async function cancelCommand(idOrPrefix: string, options: CancelOptions, io: Io): Promise<number> {
  const timeoutS = Number(options.timeout ?? '10')
  if (!Number.isFinite(timeoutS) || timeoutS < 0) {
    throw new ConfigError(
      `--timeout ${options.timeout}: expected a number of seconds (for example --timeout 30).`,
    )
  }
  await using store = await openExistingStore(await locateStore(options, io.cwd))
  const run = await requireRun(store, idOrPrefix)
  if (run.status !== 'started' && run.status !== 'queued' && run.status !== 'paused') {
    io.out(`run ${run.id} already ended ${run.status}; nothing to cancel.`)
    return endedExit(run.status)
  }
  const requestedAt = Date.now()
  // a run whose process is gone would never see the request: close it here instead (the store's
  // rule for who is gone, the one recovery uses)
  const gone = run.status === 'started' && (await store.interruptedRuns({ runIds: [run.id] })).length > 0
  if (gone) {
    await store.abandonRun(
      run.id,
      'canceled',
      `canceled by \`refresh cancel\`; its process (pid ${run.ownerPid}) was gone`,
      requestedAt,
    )
    io.out(`run ${run.id} canceled (its process, pid ${run.ownerPid}, was already gone).`)
    return EXIT.ok
  }
  const status = await store.requestCancel(run.id, requestedAt)
  if (status === 'canceled') {
    io.out(`run ${run.id} canceled (it had not started).`)
    return EXIT.ok
  }
  const owner = run.ownerPid !== null ? ` (pid ${run.ownerPid} on ${run.ownerHost ?? '?'})` : ''
  io.out(`cancel requested for run ${run.id}${owner}.`)
  if (!options.wait) return EXIT.ok
  const deadline = requestedAt + timeoutS * 1000
  for (;;) {
    const now = (await store.getRun(run.id))!
    if (now.status !== 'started') {
      const took = formatDuration((now.endedAt ?? Date.now()) - requestedAt)
      const steps = await store.getSteps(run.id)
      const canceled = steps.filter((s) => s.status === 'canceled').length
      const succeeded = steps.filter((s) => s.status === 'succeeded').length
      io.out(
        `run ${run.id} ended ${now.status} ${took} after the request: ${succeeded} succeeded, ${canceled} canceled. Resume it with: refresh retry ${run.id}`,
      )
      return endedExit(now.status)
    }
    if (Date.now() >= deadline) {
      io.err(
        `run ${run.id} is still running ${timeoutS} s after the request; its owner${owner} may be busy in a step that ignores its abort signal. \`refresh show ${run.id}\` shows where it is.`,
      )
      return EXIT.failed
    }
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}

/**
 * The exit code once the run has ended: 1 is kept for a run that failed (as `refresh run` exits);
 * ending canceled is what was asked, and a run that succeeded before the cancel reached it has
 * nothing wrong to report.
 */
function endedExit(status: string): number {
  return status === 'failure' ? EXIT.failed : EXIT.ok
}
