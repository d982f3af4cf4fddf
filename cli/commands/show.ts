import type { Command } from 'commander'
import { parseSkipReason } from '../../core/checks.js'
import type { CheckResultRecord } from '../../core/store/types.js'
import {
  addStoreOptions,
  type Cell,
  formatDateTime,
  interruptedRuns,
  openExistingStore,
  requireRun,
  shownRun,
  table,
} from '../common.js'
import { locateStore, type StoreLocationOptions } from '../find-config.js'
import { firstLine, formatDuration, formatMetadata } from '../format.js'
import type { CliContext, Io } from '../io.js'

interface ShowOptions extends StoreLocationOptions {
  json?: boolean
}

export function registerShow(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('show')
      .summary("a run's steps as a timeline")
      .description("a run's steps as a timeline: start offset, duration, attempts, status, error, metadata")
      .argument('<run-id>', 'the run (a unique prefix of its id works)'),
  )
    .option('--json', 'the run, its steps, attempts, materializations and check results as one JSON object')
    .addHelpText('after', '\nExamples:\n  refresh show 01m83v10zz4pxmqvqy\n  refresh show 01m83v --json\n')
    .action(async (runId: string, options: ShowOptions) => {
      ctx.code = await showCommand(runId, options, ctx.io)
    })
}

const BAR = 20

async function showCommand(idOrPrefix: string, options: ShowOptions, io: Io): Promise<number> {
  await using store = await openExistingStore(await locateStore(options, io.cwd))
  const run = await requireRun(store, idOrPrefix)
  const steps = await store.getSteps(run.id)
  const attempts = await store.getAttempts(run.id)
  const produced = new Map((await store.materializationsForRun(run.id)).map((m) => [m.asset, m]))
  const checks = await store.checkResultsOfRun(run.id)
  const shown = shownRun(run, await interruptedRuns(store))
  if (options.json) {
    const interrupted =
      shown.reason === null ? {} : { interrupted: { reason: shown.reason, lastSeenAt: shown.endedAt } }
    io.out(
      JSON.stringify({
        run,
        ...interrupted,
        steps,
        attempts,
        materializations: [...produced.values()],
        checks,
      }),
    )
    return 0
  }
  const start = run.startedAt ?? run.createdAt
  const end = shown.endedAt ?? Date.now()
  const span = Math.max(1, end - start)
  const parent = run.parentRunId ? ` · re-execution of ${run.parentRunId}` : ''
  const partition = run.partitionKey ? ` · partition ${run.partitionKey}` : ''
  io.out(`run ${run.id} · ${shown.status} · ${run.selection}${partition}${parent}`)
  io.out(
    `started ${formatDateTime(start)} · ${shown.endedAt !== null ? `took ${formatDuration(end - start)}` : `running for ${formatDuration(end - start)}`}`,
  )
  if (shown.reason !== null)
    io.out(`interrupted: ${shown.reason}; re-execute it from failure with \`refresh retry ${run.id}\``)
  if (run.error) io.out(`${run.error.name}: ${firstLine(run.error.message)}`)
  io.out('')
  const rows: Cell[][] = []
  const metadataCell = (prefix: string, metadata: Record<string, unknown>): Cell => ({
    text: `${prefix}${formatMetadata(metadata, 4)}`,
    fit: (max) => `${prefix}${formatMetadata(metadata, 4, max - prefix.length)}`.trimEnd(),
  })
  for (const [key, from] of Object.entries(run.reused)) {
    const m = await store.runMaterialization(from, key)
    rows.push([
      key,
      'reused',
      '',
      '',
      '',
      '',
      m ? metadataCell(`from run ${from}  `, m.metadata) : `from run ${from}`,
    ])
  }
  for (const step of steps) {
    const offset = step.startedAt !== null ? `+${formatDuration(step.startedAt - start)}` : ''
    const duration =
      step.startedAt !== null ? formatDuration((step.endedAt ?? Date.now()) - step.startedAt) : ''
    const bar =
      step.startedAt !== null ? timelineBar(step.startedAt - start, (step.endedAt ?? end) - start, span) : ''
    const own = attempts.filter((a) => a.step === step.key)
    const tries = step.attempts ? String(step.attempts) : ''
    let detail: Cell = ''
    const m = produced.get(step.key)
    if (step.status === 'succeeded') detail = m ? metadataCell('', m.metadata) : ''
    else if (step.status === 'skipped') detail = step.reason ? skippedDetail(step.reason) : ''
    else if (step.error) detail = `${step.error.name}: ${firstLine(step.error.message)}`
    rows.push([step.key, step.status, offset, duration, bar, tries, detail])
    // the step's checks, one line each, under it
    for (const c of checks.filter((r) => r.asset === step.key)) rows.push(['', ...checkRow(c)])
    // earlier failed attempts, one line each, under the step
    for (const a of own.slice(0, -1)) {
      if (a.error)
        rows.push([
          '',
          a.status,
          '',
          '',
          '',
          `#${a.attempt}`,
          `${a.error.name}: ${firstLine(a.error.message)}`,
        ])
    }
  }
  // the step first, the detail last and cut to the terminal; on a narrow one the timeline, then
  // the start offset, then the attempts give way
  const header = ['STEP', 'STATUS', 'START', 'DURATION', 'TIMELINE', 'ATTEMPTS', 'DETAIL']
  for (const line of table(header, rows, { width: io.columns, drop: [4, 2, 5] })) io.out(line)
  if (run.status === 'failure' || run.status === 'canceled') {
    io.out('')
    io.out(`re-execute from failure: refresh retry ${run.id}`)
  }
  return 0
}

function skippedDetail(reason: string): string {
  const { upstream, check } = parseSkipReason(reason)
  return check === undefined ? `upstream ${upstream} failed` : `check ${upstream}:${check} failed`
}

/** A check result as the cells after the step's: its verdict, then its name and detail. */
function checkRow(c: CheckResultRecord): Cell[] {
  const verdict = c.passed
    ? 'passed'
    : c.blocking && c.severity === 'error'
      ? 'FAILED'
      : c.severity === 'warn'
        ? 'warned'
        : 'failed'
  const detail = c.error ? `${c.error.name}: ${firstLine(c.error.message)}` : formatMetadata(c.metadata, 4)
  return [`check ${verdict}`, '', '', '', '', `${c.check}${detail ? `  ${detail}` : ''}`]
}

/** Where a step ran within the run, as a bar of BAR cells. */
function timelineBar(from: number, to: number, span: number): string {
  const a = Math.min(BAR - 1, Math.floor((from / span) * BAR))
  const b = Math.max(a + 1, Math.min(BAR, Math.ceil((to / span) * BAR)))
  return `${' '.repeat(a)}${'█'.repeat(b - a)}${' '.repeat(BAR - b)}`
}
