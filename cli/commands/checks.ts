import type { Command } from 'commander'
import type { CheckResultRecord } from '../../core/store/types.js'
import { addStoreOptions, formatDateTime, openListedStore, table } from '../common.js'
import { locateStore, type StoreLocationOptions } from '../find-config.js'
import { firstLine, formatMetadata } from '../format.js'
import type { CliContext, Io } from '../io.js'

interface ChecksOptions extends StoreLocationOptions {
  json?: boolean
}

export function registerChecks(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('checks')
      .summary('the latest result of every asset check')
      .description(
        'the latest result of every asset check (of one asset): passed or failed, severity, blocking, the run that evaluated it, its metadata or error',
      )
      .argument('[asset]', 'only the checks of this asset'),
  )
    .option('--json', 'one JSON object per check result')
    .addHelpText('after', '\nExamples:\n  refresh checks\n  refresh checks reindex --json\n')
    .action(async (asset: string | undefined, options: ChecksOptions) => {
      ctx.code = await checksCommand(asset, options, ctx.io)
    })
}

async function checksCommand(asset: string | undefined, options: ChecksOptions, io: Io): Promise<number> {
  const location = await locateStore(options, io.cwd)
  const { store: opened, exists } = await openListedStore(location)
  await using store = opened
  const results = await store.latestCheckResults(asset)
  if (options.json) {
    for (const r of results) io.out(JSON.stringify(r))
    return 0
  }
  if (results.length === 0) {
    const where = exists ? store.displayName : `${location} (no store yet: \`refresh run\` creates it)`
    io.out(`no check results${asset === undefined ? '' : ` for \`${asset}\``} yet in ${where}.`)
    return 0
  }
  const partitioned = results.some((r) => r.partitionKey !== null)
  const rows = results.map((r) => [
    r.asset,
    r.check,
    ...(partitioned ? [r.partitionKey ?? ''] : []),
    verdict(r),
    `${r.severity}${r.blocking ? ', blocking' : ''}`,
    r.runId,
    formatDateTime(r.ts),
    r.error ? `${r.error.name}: ${firstLine(r.error.message)}` : formatMetadata(r.metadata, 4),
  ])
  const header = [
    'ASSET',
    'CHECK',
    ...(partitioned ? ['PARTITION'] : []),
    'RESULT',
    'SEVERITY',
    'RUN',
    'EVALUATED',
    'DETAIL',
  ]
  for (const line of table(header, rows, { width: io.columns })) io.out(line)
  return 0
}

function verdict(r: CheckResultRecord): string {
  if (r.passed) return 'passed'
  return r.blocking && r.severity === 'error' ? 'FAILED' : 'failed'
}
