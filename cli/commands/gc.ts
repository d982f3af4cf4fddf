import type { Command } from 'commander'
import type { GcRun, Leftover } from '../../aws/gc.js'
import { ConfigError } from '../../core/errors.js'
import { addStoreOptions, openExistingStore, table } from '../common.js'
import { loadResolved, requireAwsReady } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import { type CliContext, EXIT, type Io } from '../io.js'

interface GcOptions {
  config?: string
  store?: string
  env?: string
  yes?: boolean
  json?: boolean
}

export function registerGc(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('gc')
      .description('list (and with --yes remove) the AWS resources that finished or interrupted runs left'),
  )
    .option('--yes', 'remove what is listed as `remove` (default: list only)')
    .option('--json', 'the leftovers as one JSON array')
    .addHelpText(
      'after',
      `
Every resource refresh creates is tagged with its run (refresh:run) or kept under runs/<runId>/
in S3. A resource of a run that is no longer in flight, and is not a result of that run (the
serving replica fleet, a materialized snapshot), is a leftover: ECS tasks, EC2 instances, EBS
snapshots of failed runs, the S3 scratch of finished runs. Resources of runs this store does
not know are listed, never removed.

Exit code 0 when nothing is left over (or everything listed was removed), 1 when leftovers
remain or a removal failed, 2 on bad input.

Examples:
  refresh gc --env aws
  refresh gc --env aws --yes`,
    )
    .action(async (options: GcOptions) => {
      ctx.code = await gc(options, ctx.io)
    })
}

async function gc(options: GcOptions, io: Io): Promise<number> {
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  await requireAwsReady(resolved)
  const { settingsOf } = await import('../../aws/settings.js')
  const aws = settingsOf(resolved.resources)
  if (!aws) {
    throw new ConfigError(
      `${options.env ? `environment \`${options.env}\`` : 'the default environment'} has no AWS settings, so there is nothing on AWS to collect; use \`refresh gc --env aws\` (an environment with \`resources: { aws: awsSettings() }\`).`,
    )
  }
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  await using store = await openExistingStore(storeLocation)
  const { findLeftovers, removeLeftovers } = await import('../../aws/gc.js')
  const runOf = async (runId: string): Promise<GcRun | undefined> => {
    const run = await store.getRun(runId)
    if (!run) return undefined
    const snapshots = (await store.materializationsForRun(runId))
      .map((m) => m.metadata.snapshot)
      .filter((s): s is string => typeof s === 'string')
    return { status: run.status as GcRun['status'], snapshots }
  }
  const leftovers = await findLeftovers(aws, runOf)
  const removable = leftovers.filter((l) => l.action === 'remove')
  if (options.json && !options.yes) {
    io.out(JSON.stringify(leftovers))
    return removable.length > 0 ? EXIT.failed : EXIT.ok
  }
  if (!options.json) {
    if (leftovers.length === 0) io.out('nothing tagged by refresh runs was found')
    else for (const line of table(['KIND', 'ID', 'RUN', 'ACTION', 'WHY'], leftovers.map(row))) io.out(line)
  }
  if (!options.yes) {
    if (removable.length > 0 && !options.json)
      io.out(
        `${removable.length} leftover(s); remove them with \`refresh gc --env ${options.env ?? 'aws'} --yes\``,
      )
    return removable.length > 0 ? EXIT.failed : EXIT.ok
  }
  const { removed, failed } = await removeLeftovers(aws, leftovers)
  if (options.json) {
    io.out(JSON.stringify({ removed, failed }))
  } else {
    io.out(`removed ${removed.length} of ${removable.length}`)
    for (const f of failed) io.err(`could not remove ${f.leftover.kind} ${f.leftover.id}: ${f.error}`)
  }
  return failed.length > 0 ? EXIT.failed : EXIT.ok
}

function row(l: Leftover): string[] {
  const id = l.kind === 's3-prefix' ? `${l.id} (${l.keys?.length ?? 0} objects)` : l.id
  return [l.kind, id, l.runId, l.action, l.reason]
}
