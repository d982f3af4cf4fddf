import type { Command } from 'commander'
import type { AssetGraph } from '../../core/graph.js'
import type { RunStore } from '../../core/store/run-store.js'
import type { BackfillRecord } from '../../core/store/types.js'
import { formatDateTime, storeOption, table } from '../common.js'
import { addConfigOptions, type ConfigOptions, loadResolved } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import { formatDuration } from '../format.js'
import type { CliContext, Io } from '../io.js'
import { collect } from './run.js'

interface BackfillOptions extends ConfigOptions {
  store?: string
  from?: string
  to?: string
  partitions?: string[]
  missingOnly?: boolean
  maxRuns?: string
  perRun?: string
  set?: string[]
  json?: boolean
  follow?: boolean
}

export function registerBackfill(program: Command, ctx: CliContext): void {
  const backfill = addConfigOptions(
    program
      .command('backfill')
      .summary('materialize a range of partitions, one run per partition, submitted by the daemon')
      .description(
        'records a backfill of the selected partitioned assets: one run per partition of --from..--to (or --partitions, or all), submitted by `refresh daemon` as capacity frees (--max-runs, run guards, maintenance mode); `backfill show|cancel|retry ID` follow it',
      )
      .argument(
        '[selection...]',
        'the partitioned assets to backfill (they share one partitions definition)',
      ),
  )
    .addOption(storeOption())
    .option('--from <key>', 'the first partition (included)')
    .option('--to <key>', 'the last partition (included)')
    .option('--partitions <keys>', 'these partition keys, comma-separated (repeatable)', collect)
    .option('--missing-only', 'only the partitions some selected asset is missing (or failed)')
    .option(
      '--per-run <n>',
      "partitions per run: each run builds a range of consecutive partitions (capped by each asset's backfillPolicy)",
    )
    .option('--max-runs <n>', 'runs of this backfill in flight at once')
    .option('--set <asset.field=value>', 'run config override for every run (repeatable)', collect)
    .option('--json', 'the backfill as one JSON object')
    .option(
      '--follow',
      'then follow it as `backfill show ID --follow` does, until it ends (exit 0 when it completed, 1 otherwise)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  refresh backfill daily_events+ --from 2026-01-01 --to 2026-12-31 --max-runs 8\n  refresh backfill daily_events --from 2026-01-01 --to 2026-01-31 --follow\n  refresh backfill daily_events --partitions 2026-03-01,2026-03-08 --json\n  refresh backfill daily_events --missing-only\n  refresh backfill show 01m8b\n  refresh backfill cancel 01m8b\n  refresh backfill retry 01m8b\n',
    )
    .action(async (selection: string[], options: BackfillOptions) => {
      ctx.code = await createCommand(selection, options, ctx.io)
    })
  for (const [name, summary] of [
    ['show', 'a backfill: its status, partitions done, failed, running, skipped of the total, rate and ETA'],
    ['cancel', 'cancel a backfill: no new run; its queued runs are dequeued, its running runs canceled'],
    ['retry', 'a new backfill of what a backfill did not get done (failed, skipped, never launched)'],
  ] as const) {
    const sub = addConfigOptions(
      backfill.command(name).summary(summary).argument('<id>', 'a backfill id (or a unique prefix)'),
    )
    if (name === 'show')
      sub.option(
        '--follow',
        'print its progress as it changes until it ends (with --json: one backfill:progress object per change, then backfill:end); exit 0 when it completed, 1 otherwise',
      )
    sub
      .addOption(storeOption())
      .option('--json', 'as one JSON object')
      // the parent's options (--json, --store, --config) are parsed by the parent: read both
      .action(async (id: string, _options: BackfillOptions, command: Command) => {
        ctx.code = await idCommand(name, id, command.optsWithGlobals<BackfillOptions>(), ctx.io)
      })
  }
  addConfigOptions(program.command('backfills').summary('backfills, newest first, with their progress'))
    .addOption(storeOption())
    .option('--json', 'one JSON object per backfill')
    .addHelpText('after', '\nExamples:\n  refresh backfills\n  refresh backfills --json\n')
    .action(async (options: BackfillOptions) => {
      ctx.code = await listCommand(options, ctx.io)
    })
}

async function opened(options: BackfillOptions, io: Io) {
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  const [{ openStore }, { buildGraph }] = await Promise.all([
    import('../../core/store/open.js'),
    import('../../core/materialize.js'),
  ])
  return { resolved, graph: buildGraph(resolved.assets), store: await openStore(storeLocation) }
}

async function createCommand(selection: string[], options: BackfillOptions, io: Io): Promise<number> {
  const { ConfigError } = await import('../../core/errors.js')
  let maxRuns: number | undefined
  if (options.maxRuns !== undefined) {
    maxRuns = Number(options.maxRuns)
    if (!Number.isSafeInteger(maxRuns) || maxRuns < 1)
      throw new ConfigError(`--max-runs ${options.maxRuns}: expected a whole number of at least 1.`)
  }
  let perRun: number | undefined
  if (options.perRun !== undefined) {
    perRun = Number(options.perRun)
    if (!Number.isSafeInteger(perRun) || perRun < 1)
      throw new ConfigError(`--per-run ${options.perRun}: expected a whole number of at least 1.`)
  }
  const { resolved, graph, store: s } = await opened(options, io)
  await using store = s
  const [{ applyOverrides, parseOverrides }, { requestBackfill }] = await Promise.all([
    import('../overrides.js'),
    import('../../core/backfills.js'),
  ])
  const config = applyOverrides(
    resolved.config,
    parseOverrides(options.set ?? [], resolved.assets, resolved.checks),
  )
  const partitions = options.partitions?.flatMap((p) =>
    p
      .split(',')
      .map((k) => k.trim())
      .filter(Boolean),
  )
  const backfill = await requestBackfill(
    store,
    graph,
    {
      ...(selection.length > 0 ? { selection } : {}),
      ...(options.from !== undefined ? { from: options.from } : {}),
      ...(options.to !== undefined ? { to: options.to } : {}),
      ...(partitions ? { partitions } : {}),
      ...(options.missingOnly ? { missingOnly: true } : {}),
      ...(maxRuns !== undefined ? { maxRuns } : {}),
      ...(perRun !== undefined ? { perRun } : {}),
      config,
    },
    Date.now(),
  )
  if (options.json) {
    io.out(JSON.stringify(await describe(backfill)))
    return options.follow ? await follow(store, graph, backfill.id, options, io) : 0
  }
  const { backfillProgress } = await import('../../core/backfills.js')
  const total = backfillProgress(backfill.state).target.size
  io.out(
    `backfill ${backfill.id} requested: ${total} partition${total === 1 ? '' : 's'} of ${backfill.spec.partitions.description} (${backfill.spec.selection}), ${backfill.spec.perRun === 1 ? 'one run each' : `up to ${backfill.spec.perRun} per run`}${backfill.spec.maxRuns ? `, at most ${backfill.spec.maxRuns} run(s) at once` : ''}`,
  )
  if (options.follow) {
    io.out('`refresh daemon` submits its runs; following it (Ctrl-C stops following, not the backfill).')
    return await follow(store, graph, backfill.id, options, io)
  }
  io.out(
    `\`refresh daemon\` submits its runs; follow it with \`refresh backfill show ${backfill.id} --follow\`.`,
  )
  return 0
}

async function idCommand(
  action: 'show' | 'cancel' | 'retry',
  id: string,
  options: BackfillOptions,
  io: Io,
): Promise<number> {
  const { graph, store: s } = await opened(options, io)
  await using store = s
  const { cancelBackfill, retryBackfill } = await import('../../core/backfills.js')
  const { StoreError } = await import('../../core/errors.js')
  const now = Date.now()
  let backfill: BackfillRecord
  if (action === 'cancel') backfill = await cancelBackfill(store, id, now)
  else if (action === 'retry') backfill = await retryBackfill(store, graph, id, now)
  else {
    const found = await store.findBackfill(id)
    if (!found)
      throw new StoreError(`no backfill \`${id}\` in ${store.displayName}; \`refresh backfills\` lists them.`)
    backfill = found
  }
  // awaited here: the store closes when this function returns
  if (action === 'show' && options.follow) return await follow(store, graph, backfill.id, options, io)
  const d = await describe(backfill, now)
  if (options.json) {
    io.out(JSON.stringify(d))
    return 0
  }
  if (action === 'cancel')
    io.out(
      `backfill ${backfill.id} is ${backfill.status}: no new run; its queued runs are dequeued and its running runs canceled.`,
    )
  if (action === 'retry')
    io.out(`backfill ${backfill.id} requested: the ${d.total} partition(s) ${id} did not get done.`)
  io.out(`backfill ${d.id} · ${d.status} · ${d.selection} · ${d.partitions}`)
  io.out(
    `  ${d.succeeded} done, ${d.failed} failed, ${d.running} running, ${d.skipped} skipped, ${d.pending} to go of ${d.total}`,
  )
  const elapsed = (d.endedAt ?? now) - d.createdAt
  const rate = d.succeeded > 0 && elapsed > 0 ? (d.succeeded / elapsed) * 1000 : null
  io.out(
    `  requested ${formatDateTime(d.createdAt)} · ${d.endedAt !== null ? `ended after ${formatDuration(elapsed)}` : `running for ${formatDuration(elapsed)}`}${rate ? ` · ${rate >= 1 ? `${rate.toFixed(1)} partitions/s` : `${(rate * 60).toFixed(1)} partitions/min`}` : ''}${rate && d.endedAt === null && d.pending + d.running > 0 ? ` · ETA ${formatDuration(((d.pending + d.running) / rate) * 1000)}` : ''}`,
  )
  if (d.error) io.out(`  ${d.error}`)
  return 0
}

/**
 * `backfill show --follow` (and `backfill SELECTION --follow`): reads the backfill every half
 * second until it ends. On a terminal that can redraw, a live panel (counts with a bar, rate over
 * a sliding window, ETA, its latest runs); else a line per change, or with --json one
 * `backfill:progress` object per change and `backfill:end`. Ctrl-C only stops following: the
 * backfill is the daemon's, and goes on. Exits 0 when it completed, 1 when it failed or was
 * canceled, 130 when interrupted.
 */
async function follow(
  store: RunStore,
  graph: AssetGraph,
  id: string,
  options: BackfillOptions,
  io: Io,
): Promise<number> {
  const { canRedraw, colorsWanted, EXIT } = await import('../io.js')
  const { backfillActivity } = await import('../../core/backfills.js')
  const panel =
    !options.json && canRedraw(io)
      ? (await import('../view/backfill-view.js')).mountBackfillView(process.stdout, {
          color: colorsWanted(io),
        })
      : undefined
  let stopped = false
  let wake: (() => void) | undefined
  const onSignal = () => {
    stopped = true
    wake?.()
  }
  process.on('SIGINT', onSignal)
  try {
    let last = ''
    for (;;) {
      const backfill = (await store.getBackfill(id))!
      const now = Date.now()
      const d = await describe(backfill, now)
      const ended = backfill.status !== 'requested' && backfill.status !== 'canceling'
      if (panel) {
        const activity = await backfillActivity(store, graph, backfill, now)
        panel.update({
          ts: now,
          id: d.id,
          status: d.status,
          selection: d.selection,
          partitions: d.partitions,
          total: d.total,
          succeeded: d.succeeded,
          failed: d.failed,
          skipped: d.skipped,
          running: activity.running,
          queued: activity.queued,
          notLaunched: d.pending,
          createdAt: d.createdAt,
          endedAt: d.endedAt,
          ...(d.error ? { error: d.error } : {}),
          recent: activity.recent,
        })
      } else {
        const key = JSON.stringify([d.status, d.succeeded, d.failed, d.running, d.skipped])
        if (key !== last || ended) {
          last = key
          const elapsed = (d.endedAt ?? now) - d.createdAt
          const rate = d.succeeded > 0 && elapsed > 0 ? (d.succeeded / elapsed) * 1000 : null
          const etaMs =
            rate && !ended && d.pending + d.running > 0 ? ((d.pending + d.running) / rate) * 1000 : null
          if (options.json) {
            io.out(
              JSON.stringify({
                type: ended ? 'backfill:end' : 'backfill:progress',
                ts: now,
                ...d,
                ratePerSecond: rate,
                etaMs,
              }),
            )
          } else {
            io.out(
              `${new Date(now).toISOString().slice(11, 19)} backfill ${d.id} ${d.status}: ${d.succeeded} done, ${d.failed} failed, ${d.running} running, ${d.skipped} skipped of ${d.total}${rate ? ` · ${rate >= 1 ? `${rate.toFixed(1)}/s` : `${(rate * 60).toFixed(1)}/min`}` : ''}${etaMs !== null ? ` · ETA ${formatDuration(etaMs)}` : ''}`,
            )
          }
        }
      }
      if (ended) {
        await panel?.close()
        return backfill.status === 'completed' ? EXIT.ok : EXIT.failed
      }
      if (!stopped) {
        await new Promise<void>((r) => {
          const timer = setTimeout(r, 500)
          wake = () => {
            clearTimeout(timer)
            r()
          }
        })
        wake = undefined
      }
      if (stopped) {
        await panel?.close()
        io.err(
          `stopped following; backfill ${id} goes on, driven by \`refresh daemon\` (\`refresh backfill cancel ${id}\` stops it).`,
        )
        return EXIT.interrupted
      }
    }
  } finally {
    process.off('SIGINT', onSignal)
  }
}

async function listCommand(options: BackfillOptions, io: Io): Promise<number> {
  const { store: s } = await opened(options, io)
  await using store = s
  const backfills = await store.listBackfills({ limit: 50 })
  const described = await Promise.all(backfills.map((b) => describe(b)))
  if (options.json) {
    for (const d of described) io.out(JSON.stringify(d))
    return 0
  }
  if (described.length === 0) {
    io.out(
      `no backfills yet in ${store.displayName}; \`refresh backfill SELECTION --from KEY --to KEY\` requests one.`,
    )
    return 0
  }
  const rows = described.map((d) => [
    d.id,
    d.status,
    d.selection,
    String(d.total),
    String(d.succeeded),
    String(d.failed),
    String(d.running),
    formatDateTime(d.createdAt),
  ])
  for (const line of table(
    ['ID', 'STATUS', 'SELECTION', 'PARTITIONS', 'DONE', 'FAILED', 'RUNNING', 'REQUESTED'],
    rows,
    {
      width: io.columns,
    },
  ))
    io.out(line)
  return 0
}

/** A backfill as the commands show it (and as --json emits it). */
async function describe(b: BackfillRecord, now = Date.now()) {
  const { backfillProgress } = await import('../../core/backfills.js')
  const p = backfillProgress(b.state)
  const settled = p.succeeded.union(p.failed).union(p.skipped)
  return {
    id: b.id,
    status: b.status,
    selection: b.spec.selection,
    partitions: b.spec.partitions.description,
    total: p.target.size,
    succeeded: p.succeeded.size,
    failed: p.failed.size,
    running: p.inFlight.size,
    skipped: p.skipped.size,
    pending: p.target.difference(settled).difference(p.inFlight).size,
    maxRuns: b.spec.maxRuns,
    perRun: b.spec.perRun,
    createdAt: b.createdAt,
    endedAt: b.endedAt,
    durationMs: (b.endedAt ?? now) - b.createdAt,
    ...(b.state.error ? { error: b.state.error } : {}),
  }
}
