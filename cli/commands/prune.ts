import { hostname, userInfo } from 'node:os'
import type { Command } from 'commander'
import { DURATION_HINT, durationMs } from '../../core/duration.js'
import { ConfigError } from '../../core/errors.js'
import { prunePolicy, pruneStore, type Retention, readRetention, recordPrune } from '../../core/retention.js'
import { PRUNE_KINDS, type PrunePlan } from '../../core/store/types.js'
import { addStoreOptions, formatDateTime, indented, openListedStore, table } from '../common.js'
import { loadResolved } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import { formatCounts, formatDuration, pruneScope } from '../format.js'
import { type CliContext, EXIT, type Io } from '../io.js'

interface PruneOptions {
  config?: string
  store?: string
  env?: string
  olderThan?: string
  keepFailed?: string
  yes?: boolean
  json?: boolean
}

export function registerPrune(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('prune')
      .summary('delete old runs and ticks (prints what it would delete unless --yes)')
      .description(
        'delete finished runs older than a duration, with their steps, attempts, events and materializations, and old sensor and schedule ticks; without --yes, print what would be deleted',
      ),
  )
    .option(
      '--older-than <duration>',
      "finished runs and ticks older than this (30d, 12h, 90m; default: the config's retention.olderThan)",
    )
    .option('--keep-failed <duration>', 'keep failed runs until this old (default: --older-than)')
    .option('--yes', 'delete (default: print what would be deleted, and delete nothing)')
    .option('--json', 'what would be (or was) deleted as one JSON object')
    .addHelpText(
      'after',
      `
Never deleted, however old: a run in flight (queued, started, paused); a run that holds the latest
materialization of an asset (or of a partition); a run a pending parked request replays from;
the runs the promoted alias refers to (current and previous entries: what a rollback needs); the
runs a kept run was re-executed from; an instigator's latest tick. Run keys stay used. Deletes go
in short transactions, so runs and a daemon go on meanwhile.

Examples:
  refresh prune --older-than 30d
  refresh prune --older-than 30d --keep-failed 90d --yes`,
    )
    .action(async (options: PruneOptions) => {
      ctx.code = await prune(options, ctx.io)
    })
}

async function prune(options: PruneOptions, io: Io): Promise<number> {
  // bad durations are refused before the config is loaded
  for (const [flag, value] of [
    ['--older-than', options.olderThan],
    ['--keep-failed', options.keepFailed],
  ] as const) {
    if (value !== undefined && durationMs(value) === undefined)
      throw new ConfigError(`${flag} ${value}: ${DURATION_HINT}.`)
  }
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  const retention = retentionOf(options, loaded.config.retention)
  const location = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  const { store: opened, exists } = await openListedStore(location)
  await using store = opened
  const scope = pruneScope(retention)
  const nothing = `nothing to prune: no finished run or tick ${scope} that is not still needed`
  const keep = exists ? await (await import('../data-dir.js')).promotedRuns(resolved, loaded.dir) : []
  const summary = { olderThan: retention.olderThan, keepFailed: retention.keepFailed, keptForAlias: keep }
  const policy = prunePolicy(retention, Date.now(), keep)
  if (!options.yes) {
    // a store that does not exist yet answers as the empty store it stands in for
    const plan = await store.pruneCandidates(policy)
    if (options.json) io.out(JSON.stringify({ ...summary, dryRun: true, wouldDelete: plan }))
    else if (!exists) io.out(`nothing to prune: there is no store at ${location} yet`)
    else if (PRUNE_KINDS.every((k) => plan[k].count === 0)) io.out(nothing)
    else {
      io.out(`would delete, ${scope}${aliasNote(keep)}:`)
      for (const line of planTable(plan, indented(io.columns))) io.out(`  ${line}`)
      io.out('nothing was deleted; add --yes to delete them')
    }
    return EXIT.ok
  }
  const result = await pruneStore(store, policy)
  if (exists && result.complete) {
    await recordPrune(store, {
      at: Date.now(),
      by: `refresh prune (${userInfo().username}@${hostname()})`,
      olderThan: retention.olderThan,
      keepFailed: retention.keepFailed,
      deleted: result.deleted,
      durationMs: result.durationMs,
      longestBatchMs: result.longestBatchMs,
    })
  }
  if (options.json) {
    io.out(
      JSON.stringify({
        ...summary,
        dryRun: false,
        deleted: result.deleted,
        batches: result.batches,
        durationMs: Math.round(result.durationMs),
        longestBatchMs: Math.round(result.longestBatchMs),
      }),
    )
  } else if (!exists) {
    io.out(`nothing to prune: there is no store at ${location} yet`)
  } else if (result.batches === 0) {
    io.out(nothing)
  } else {
    io.out(
      `deleted ${formatCounts(result.deleted)} ${scope} in ${formatDuration(result.durationMs)} (${result.batches} batch${result.batches === 1 ? '' : 'es'}; the longest took ${formatDuration(result.longestBatchMs)})`,
    )
  }
  return EXIT.ok
}

/** The policy from the flags, else from the config's `retention`, field by field. */
function retentionOf(
  options: PruneOptions,
  config: { olderThan: string; keepFailed?: string } | undefined,
): Retention {
  const olderThan = options.olderThan ?? config?.olderThan
  if (olderThan === undefined) {
    throw new ConfigError(
      "refresh prune needs an age: give --older-than (like --older-than 30d), or set `retention: { olderThan: '30d' }` in the config.",
    )
  }
  const keepFailed = options.keepFailed ?? config?.keepFailed
  return readRetention(olderThan, keepFailed, {
    olderThan: options.olderThan === undefined ? 'retention.olderThan' : '--older-than',
    keepFailed: options.keepFailed === undefined ? 'retention.keepFailed' : '--keep-failed',
  })
}

function aliasNote(keep: readonly string[]): string {
  return keep.length === 0 ? '' : ` (keeping the ${keep.length} run(s) the promoted alias refers to)`
}

function planTable(plan: PrunePlan, width: number | undefined): string[] {
  const when = (ts: number | null) => (ts === null ? '' : formatDateTime(ts))
  return table(
    ['KIND', 'COUNT', 'OLDEST', 'NEWEST'],
    PRUNE_KINDS.filter((k) => plan[k].count > 0).map((k) => [
      k,
      plan[k].count.toLocaleString('en-US'),
      when(plan[k].oldest),
      when(plan[k].newest),
    ]),
    { width },
  )
}
