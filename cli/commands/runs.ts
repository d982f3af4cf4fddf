import type { Command } from 'commander'
import { ConfigError, didYouMean } from '../../core/errors.js'
import type { RunStatus } from '../../core/store/types.js'
import {
  addStoreOptions,
  formatDateTime,
  interruptedRuns,
  openListedStore,
  shownRun,
  table,
  truncate,
} from '../common.js'
import { locateStore, type StoreLocationOptions } from '../find-config.js'
import { formatDuration } from '../format.js'
import type { CliContext, Io } from '../io.js'

interface RunsOptions extends StoreLocationOptions {
  status?: string
  limit: string
  json?: boolean
}

const STATUSES: readonly RunStatus[] = ['queued', 'started', 'paused', 'success', 'failure', 'canceled']
/** Words people type for a status (the step words, British spelling). */
const ALIASES: Record<string, RunStatus> = {
  failed: 'failure',
  succeeded: 'success',
  running: 'started',
  cancelled: 'canceled',
}

export function registerRuns(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('runs')
      .summary('list runs')
      .description('list runs, newest first: id, status, selection, started, duration, failed step'),
  )
    .option('--status <status>', `only runs with this status (comma-separated: ${STATUSES.join(', ')})`)
    .option('--limit <n>', 'how many runs', '20')
    .option('--json', 'one JSON object per run')
    .addHelpText('after', '\nExamples:\n  refresh runs\n  refresh runs --status failure,canceled --limit 5\n')
    .action(async (options: RunsOptions) => {
      ctx.code = await runsCommand(options, ctx.io)
    })
}

async function runsCommand(options: RunsOptions, io: Io): Promise<number> {
  const status = parseStatuses(options.status)
  const limit = Number(options.limit)
  if (!Number.isInteger(limit) || limit < 1) {
    throw new ConfigError(
      `--limit ${options.limit}: expected a whole number of at least 1 (for example --limit 50).`,
    )
  }
  const location = await locateStore(options, io.cwd)
  const { store: opened, exists } = await openListedStore(location)
  await using store = opened
  const runs = await store.listRuns({ status, limit })
  const failed = await store.failedSteps(runs.map((r) => r.id))
  const interrupted = await interruptedRuns(store)
  const now = Date.now()
  if (options.json) {
    for (const r of runs) {
      const shown = shownRun(r, interrupted)
      io.out(
        JSON.stringify({
          id: r.id,
          status: shown.status,
          ...(shown.reason === null ? {} : { interrupted: shown.reason }),
          selection: r.selection,
          partition: r.partitionKey,
          startedAt: r.startedAt,
          endedAt: shown.endedAt,
          durationMs: r.startedAt !== null && shown.endedAt !== null ? shown.endedAt - r.startedAt : null,
          failedStep: failed.get(r.id) ?? null,
          parentRunId: r.parentRunId,
        }),
      )
    }
    return 0
  }
  if (runs.length === 0) {
    const where = exists ? store.displayName : `${location} (no store yet: \`refresh run\` creates it)`
    io.out(status ? `no ${status.join(' or ')} runs in ${where}.` : `no runs yet in ${where}.`)
    return 0
  }
  const rows = runs.map((r) => {
    const started = r.startedAt ?? r.createdAt
    const shown = shownRun(r, interrupted)
    const duration =
      shown.endedAt !== null
        ? formatDuration(shown.endedAt - started)
        : r.status === 'started'
          ? `running ${formatDuration(now - started)}`
          : ''
    return [
      r.id,
      shown.status,
      truncate(
        `${r.selection}${r.partitionKey ? ` [${r.partitionKey}]` : ''}${r.parentRunId ? ' (retry)' : ''}`,
        32,
      ),
      formatDateTime(started),
      duration,
      failed.get(r.id) ?? '',
    ]
  })
  // on a narrow terminal the selection is cut first, then the start time and the duration give way
  const header = ['ID', 'STATUS', 'SELECTION', 'STARTED', 'DURATION', 'FAILED STEP']
  for (const line of table(header, rows, { width: io.columns, flex: 2, drop: [3, 4], flexMin: 6 }))
    io.out(line)
  return 0
}

function parseStatuses(text: string | undefined): RunStatus[] | undefined {
  if (text === undefined) return undefined
  return text.split(',').map((s) => {
    const status = ALIASES[s.trim()] ?? s.trim()
    if (!(STATUSES as readonly string[]).includes(status)) {
      throw new ConfigError(
        `--status ${status}: not a run status.${didYouMean(status, STATUSES)} Statuses: ${STATUSES.join(', ')}.`,
      )
    }
    return status as RunStatus
  })
}
