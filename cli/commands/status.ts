import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { AssetDefinition } from '../../core/definitions.js'
import { redactLocation } from '../../core/store/open.js'
import { DAEMON_PRESENCE_PREFIX, type RunRecord } from '../../core/store/types.js'
import {
  addStoreOptions,
  formatDateTime,
  indented,
  interruptedRuns,
  openListedStore,
  table,
  truncate,
} from '../common.js'
import { loadResolved } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import { formatDuration, formatFreshness, freshnessJson } from '../format.js'
import type { CliContext, Io } from '../io.js'

interface StatusOptions {
  config?: string
  store?: string
  env?: string
  json?: boolean
}

export function registerStatus(program: Command, ctx: CliContext): void {
  addStoreOptions(
    program
      .command('status')
      .description(
        'one screen: daemon and lease, maintenance, runs in flight, next ticks, parked requests, the promoted index, the last run, stale assets',
      ),
  )
    .option('--json', 'one JSON object')
    .addHelpText('after', '\nExamples:\n  refresh status\n  refresh status --json | jq .daemon')
    .action(async (options: StatusOptions) => {
      ctx.code = await statusCommand(options, ctx.io)
    })
}

async function statusCommand(options: StatusOptions, io: Io): Promise<number> {
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  const [{ checkInstigators }, { nextScheduleTick }, { readFailures }] = await Promise.all([
    import('../../sensors/definitions.js'),
    import('../../sensors/ticker.js'),
    import('../../daemon/alerts.js'),
  ])
  const instigators = checkInstigators(
    loaded.config.sensors ?? [],
    loaded.config.schedules ?? [],
    loaded.file,
  )
  // before the first run: the same screen, every part empty
  const { store: opened, exists } = await openListedStore(storeLocation)
  await using store = opened
  const storeName = exists ? store.displayName : redactLocation(storeLocation)
  const now = Date.now()

  const lease = await store.getLease('daemon')
  const daemon = lease
    ? {
        holder: lease.holder,
        alive: lease.expiresAt > now,
        acquiredAt: lease.acquiredAt,
        expiresAt: lease.expiresAt,
        expiresInMs: lease.expiresAt - now,
      }
    : null
  const maintenance = await store.getMaintenance()
  const gone = await interruptedRuns(store)
  const live = await store.listRuns({ status: ['started', 'paused', 'queued'] })
  // every daemon alive (its presence lease), with the sensors and schedules it evaluated last and the runs it launched
  const claims = await store.tickClaims()
  const daemons = (await store.listLeases(DAEMON_PRESENCE_PREFIX))
    .filter((l) => l.expiresAt > now)
    .map((l) => {
      const [host, pid] = splitHolder(l.holder)
      return {
        holder: l.holder,
        host,
        pid,
        since: l.acquiredAt,
        leader: daemon?.alive === true && daemon.holder === l.holder,
        instigators: claims.filter((c) => c.holder === l.holder).map((c) => c.name),
        runs: live.filter((r) => r.launchedBy === l.holder && !gone.has(r.id)).map((r) => r.id),
      }
    })
  // a started run whose owner is gone is not in flight: it reads as interrupted until recovered
  const interrupted = live
    .filter((r) => gone.has(r.id))
    .map((r) => ({
      id: r.id,
      selection: r.selection,
      since: r.startedAt ?? r.createdAt,
      lastSeenAt: gone.get(r.id)!.lastSeenAt,
      reason: gone.get(r.id)!.reason,
    }))
  const inFlight = await Promise.all(
    live
      .filter((r) => !gone.has(r.id))
      .map(async (r) => {
        const steps = await store.getSteps(r.id)
        const current = steps
          .filter((s) => s.status === 'running' || s.status === 'retrying')
          .map((s) => s.key)
        const next = steps.find((s) => s.status === 'pending')?.key ?? null
        return {
          id: r.id,
          status: r.status,
          selection: r.selection,
          origin: r.origin,
          since: r.startedAt ?? r.createdAt,
          steps: current,
          next,
        }
      }),
  )
  const states = new Map((await store.listInstigators()).map((s) => [s.name, s]))
  const ticks = instigators.map((def) => {
    const state = states.get(def.name)
    const on = state?.status === 'on' || (state?.status !== 'off' && def.defaultStatus === 'on')
    return def.kind === 'schedule'
      ? {
          name: def.name,
          kind: def.kind,
          on,
          lastTickAt: state?.lastTickAt ?? null,
          nextTickAt: on ? (nextScheduleTick(def, now) ?? null) : null,
        }
      : {
          name: def.name,
          kind: def.kind,
          on,
          lastTickAt: state?.lastTickAt ?? null,
          nextTickAt: on
            ? state?.lastTickAt == null
              ? now
              : state.lastTickAt + def.intervalSeconds * 1000
            : null,
        }
  })
  const parked = await store.countParked()
  const { lastPrune } = await import('../../core/retention.js')
  const pruned = await lastPrune(store)
  const promoted = await promotedIndex(resolved.assets, loaded.dir)
  const last = (await store.listRuns({ status: ['success', 'failure', 'canceled'], limit: 1 }))[0]
  const lastRun = last ? describeRun(last, (await store.failedSteps([last.id])).get(last.id) ?? null) : null
  const alertFailures = (await readFailures(store)).slice(0, 3)
  const latestChecks = await store.latestCheckResults()
  const checks = {
    total: latestChecks.length,
    failing: latestChecks
      .filter((c) => !c.passed)
      .map((c) => ({
        asset: c.asset,
        check: c.check,
        partition: c.partitionKey,
        blocking: c.blocking && c.severity === 'error',
        runId: c.runId,
      })),
  }
  // assets with a freshness policy, stale ones first
  const { freshnessOf } = await import('../../core/freshness.js')
  const freshness = [...(await freshnessOf(store, resolved.assets, now)).entries()].sort(
    ([, a], [, b]) => Number(a.status === 'fresh') - Number(b.status === 'fresh'),
  )

  const automated = resolved.assets.filter((a) => a.automation).map((a) => a.key)
  const switches = automated.length > 0 ? await store.automationSwitches() : undefined
  const automation = switches && {
    assets: automated.length,
    off: switches.status === 'off' ? automated : automated.filter((key) => switches.assets[key] === 'off'),
    global: switches.status === 'off' ? ('off' as const) : ('on' as const),
  }

  if (options.json) {
    io.out(
      JSON.stringify(
        {
          at: now,
          store: storeName,
          storeExists: exists,
          daemon,
          daemons,
          maintenance,
          runs: inFlight,
          interrupted,
          ticks,
          parked,
          lastPrune: pruned,
          promoted,
          lastRun,
          checks,
          freshness: freshness.map(([asset, f]) => ({ asset, ...freshnessJson(f) })),
          automation: automation ?? null,
          alertFailures,
        },
        null,
        2,
      ),
    )
    return 0
  }

  io.out(`store: ${storeName}${exists ? '' : ' (none yet: `refresh run` creates it)'}`)
  if (!daemon) io.out('daemon: not running (nobody holds the daemon lease; start one with `refresh daemon`)')
  else if (daemon.alive)
    io.out(
      `daemon: running, lease held by ${daemon.holder} since ${formatDateTime(daemon.acquiredAt)} (renewed; expires in ${formatDuration(daemon.expiresInMs)})`,
    )
  else
    io.out(
      `daemon: not running: the lease of ${daemon.holder} expired ${formatDuration(-daemon.expiresInMs)} ago (it stopped renewing it)`,
    )
  if (daemons.length > 0) {
    io.out(`daemons: ${daemons.length} alive`)
    for (const line of table(
      ['HOST', 'PID', 'SINCE', 'ROLE', 'SENSORS/SCHEDULES', 'RUNS'],
      daemons.map((d) => [
        d.host,
        String(d.pid ?? '-'),
        formatDateTime(d.since),
        d.leader ? 'lease' : '-',
        d.instigators.length === 0 ? '-' : `${d.instigators.length}: ${d.instigators.join(',')}`,
        d.runs.length === 0 ? '-' : `${d.runs.length}: ${d.runs.join(',')}`,
      ]),
      { width: indented(io.columns), flex: 4, drop: [3, 2], flexMin: 8 },
    ))
      io.out(`  ${line}`)
  }
  io.out(
    maintenance
      ? `maintenance: ON since ${formatDateTime(maintenance.since)} by ${maintenance.by}: ${maintenance.reason}`
      : 'maintenance: off',
  )
  if (inFlight.length === 0) io.out('runs in flight: none')
  else {
    io.out(`runs in flight: ${inFlight.length}`)
    for (const line of table(
      ['RUN', 'STATUS', 'SELECTION', 'ORIGIN', 'FOR', 'STEP'],
      inFlight.map((r) => [
        r.id,
        r.status,
        truncate(r.selection, 24),
        r.origin,
        formatDuration(now - r.since),
        r.steps.length ? r.steps.join(',') : r.next ? `next: ${r.next}` : '-',
      ]),
      { width: indented(io.columns), flex: 2, drop: [3], flexMin: 8 },
    ))
      io.out(`  ${line}`)
  }
  for (const r of interrupted)
    io.out(
      `interrupted: run ${r.id} (${truncate(r.selection, 24)}) after ${formatDuration(r.lastSeenAt - r.since)}: ${r.reason}; \`refresh retry ${r.id}\` re-executes it`,
    )
  if (ticks.length === 0) io.out('next ticks: no sensors or schedules in the config')
  else {
    io.out('next ticks:')
    for (const line of table(
      ['NAME', 'KIND', 'STATE', 'LAST TICK', 'NEXT TICK'],
      ticks.map((t) => [
        t.name,
        t.kind,
        t.on ? 'on' : 'off',
        t.lastTickAt === null ? '-' : formatDateTime(t.lastTickAt),
        t.nextTickAt === null
          ? '-'
          : `${formatDateTime(t.nextTickAt)} (${t.nextTickAt <= now ? 'due' : `in ${formatDuration(t.nextTickAt - now)}`})`,
      ]),
      { width: indented(io.columns), flex: 0, drop: [3, 1], flexMin: 8 },
    ))
      io.out(`  ${line}`)
  }
  io.out(`parked requests: ${parked}${parked ? ' (replayed when maintenance goes off)' : ''}`)
  io.out(
    pruned
      ? `last prune: ${formatDateTime(pruned.at)} by ${pruned.by} (older than ${pruned.olderThan}, failed ${pruned.keepFailed}): ${pruned.deleted.runs} run(s), ${pruned.deleted.events} event(s), ${pruned.deleted.ticks} tick(s) deleted in ${formatDuration(pruned.durationMs)}`
      : 'last prune: never (`refresh prune --older-than 30d` shows what it would delete)',
  )
  if (promoted.kind === 'none') io.out(`promoted index: none (${promoted.reason})`)
  else
    io.out(
      `promoted index: ${promoted.index} from snapshot ${promoted.snapshot} (run ${promoted.runId}, promoted ${formatDateTime(Date.parse(promoted.promotedAt))}, ${formatDuration(now - Date.parse(promoted.promotedAt))} ago; ${promoted.previous} previous kept)`,
    )
  if (!lastRun) io.out('last run: none yet')
  else
    io.out(
      `last run: ${lastRun.id} ${lastRun.status}${lastRun.failedStep ? ` at ${lastRun.failedStep}` : ''} (${lastRun.selection}) in ${lastRun.durationMs === null ? '-' : formatDuration(lastRun.durationMs)}, ended ${formatDateTime(lastRun.endedAt ?? now)}  \`refresh show ${lastRun.id}\``,
    )
  if (checks.total > 0) {
    const failing = checks.failing.map(
      (c) => `${c.asset}:${c.check}${c.partition ? ` [${c.partition}]` : ''}`,
    )
    io.out(
      failing.length === 0
        ? `checks: all ${checks.total} passing (latest results; \`refresh checks\`)`
        : `checks: ${failing.length} of ${checks.total} failing: ${failing.join(', ')}  \`refresh checks\``,
    )
  }
  if (freshness.length > 0) {
    const stale = freshness.filter(([, f]) => f.status !== 'fresh')
    io.out(
      stale.length === 0
        ? `freshness: all ${freshness.length} fresh  \`refresh assets\``
        : `freshness: ${stale.length} of ${freshness.length} stale: ${stale.map(([asset, f]) => `${asset} ${formatFreshness(f, now)}`).join(', ')}  \`refresh assets\``,
    )
  }
  if (automation) {
    io.out(
      automation.global === 'off'
        ? `automation: off for every asset (${automation.assets} automated; \`refresh automation on\` resumes)`
        : `automation: ${automation.assets - automation.off.length} of ${automation.assets} automated asset(s) on${automation.off.length ? `, off: ${automation.off.join(', ')}` : ''}  \`refresh automation\``,
    )
  }
  if (alertFailures.length > 0) {
    const f = alertFailures[0]!
    io.out(
      `alerts: last failed delivery ${formatDateTime(f.at)}: ${f.event}${f.runId ? ` (run ${f.runId})` : ''} to the ${f.target} after ${f.attempts} attempts: ${f.error}`,
    )
  }
  return 0
}

function describeRun(run: RunRecord, failedStep: string | null) {
  const start = run.startedAt ?? run.createdAt
  return {
    id: run.id,
    status: run.status,
    selection: run.selection,
    failedStep,
    endedAt: run.endedAt,
    durationMs: run.endedAt === null ? null : run.endedAt - start,
  }
}

type Promoted =
  | { kind: 'none'; reason: string }
  | {
      kind: 'promoted'
      index: string
      snapshot: string
      runId: string
      promotedAt: string
      previous: number
      dataDir: string
    }

async function promotedIndex(assets: readonly AssetDefinition[], configDir: string): Promise<Promoted> {
  const block = assets.find((a) => a.tags.block === 'promote' && a.tags.dataDir)
  if (!block) return { kind: 'none', reason: 'the config has no `promote` asset' }
  const dataDir = resolve(configDir, block.tags.dataDir!)
  const [{ layout }, { readAlias }, { partsOf }] = await Promise.all([
    import('../../assets/layout.js'),
    import('../../assets/state.js'),
    import('../../assets/backends.js'),
  ])
  // the config's alias store (an S3 object on AWS), else the data directory's current.json
  const store = partsOf(block).alias
  let alias: Awaited<ReturnType<NonNullable<typeof store>['read']>>
  try {
    alias = store ? await store.read() : readAlias(layout(dataDir))
  } catch (error) {
    return {
      kind: 'none',
      reason: `cannot read the alias: ${error instanceof Error ? error.message : String(error)}`,
    }
  }
  if (!alias) return { kind: 'none', reason: `nothing promoted yet in ${store?.where ?? dataDir}` }
  return { kind: 'promoted', ...alias.current, previous: alias.previous.length, dataDir }
}

/** A daemon's holder (`host:pid:start`) as its host and pid. */
function splitHolder(holder: string): [string, number | null] {
  const parts = holder.split(':')
  if (parts.length < 3) return [holder, null]
  const pid = Number(parts.at(-2))
  return [parts.slice(0, -2).join(':'), Number.isInteger(pid) ? pid : null]
}
