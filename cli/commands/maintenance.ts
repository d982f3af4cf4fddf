import { existsSync } from 'node:fs'
import { hostname, userInfo } from 'node:os'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { CanceledError, ConfigError } from '../../core/errors.js'
import { formatDateTime, indented, requireRun, storeOption, table, truncate } from '../common.js'
import { openConfigured } from '../config-options.js'
import { defaultBackupDir } from '../find-config.js'
import { formatDuration } from '../format.js'
import { type CliContext, EXIT, type Io } from '../io.js'
import { plainReporter } from '../reporters/plain.js'

interface Options {
  config?: string
  store?: string
  env?: string
  reason?: string
  drainTimeout?: string
  backupDir?: string
  dataDir?: string
  daemon?: boolean
}

function storeOptions(command: Command): Command {
  return command
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config')
}

export function registerMaintenance(program: Command, ctx: CliContext): void {
  storeOptions(
    program
      .command('maintenance')
      .description('stop the world safely for a deploy: park new runs, drain, back up; then replay')
      .argument('<action>', 'on | off | status')
      .option('--reason <text>', 'why (shown by `status` and in alerts)', 'maintenance')
      .option(
        '--drain-timeout <duration>',
        'how long in-flight runs may finish before they are parked (30s, 10m)',
        '10m',
      )
      .option('--backup-dir <dir>', 'where the backup goes (default: backups/ beside the store)')
      .option(
        '--data-dir <dir>',
        'data directory listed in the backup manifest (default: .refresh/data beside the config)',
      ),
  )
    .addHelpText(
      'after',
      '\nWhile on, `refresh run`, `refresh retry`, sensors and schedules park their requests (exit code 3 for\nthe CLI); `off` replays them once each, in order, with their original run keys.\n\nExamples:\n  refresh maintenance on --reason "deploy v2" --drain-timeout 5m\n  refresh maintenance status\n  refresh maintenance off',
    )
    .action(async (action: string, options: Options) => {
      ctx.code = await maintenanceCommand(action, options, ctx.io)
    })

  storeOptions(
    program.command('pause').description('pause a started run: running steps finish, no new step starts'),
  )
    .argument('<run-id>', 'run id or a unique prefix')
    .addHelpText('after', '\nExample:\n  refresh pause 01m83v')
    .action(async (runId: string, options: Options) => {
      ctx.code = await pauseCommand(runId, options, ctx.io)
    })

  storeOptions(
    program
      .command('resume')
      .description('continue a paused run in this process, without re-running finished steps'),
  )
    .argument('<run-id>', 'run id or a unique prefix')
    .option('--daemon', 'hand it to the daemon instead: it is queued and launched like any requested run')
    .addHelpText('after', '\nExamples:\n  refresh resume 01m83v\n  refresh resume 01m83v --daemon')
    .action(async (runId: string, options: Options) => {
      ctx.code = await resumeCommand(runId, options, ctx.io)
    })
}

function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (!m) throw new ConfigError(`${flag} ${text}: expected a duration like 30s, 10m or 1h.`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h']
  return Number(m[1]) * unit
}

async function maintenanceCommand(action: string, options: Options, io: Io): Promise<number> {
  if (!['on', 'off', 'status'].includes(action)) {
    throw new ConfigError(`\`refresh maintenance ${action}\`: the action is one of on, off, status.`)
  }
  const drainTimeoutMs = parseDuration(options.drainTimeout ?? '10m', '--drain-timeout')
  const { loaded, resolved, store, storeLocation } = await openConfigured(options, io.cwd)
  const [{ systemClock }, maintenance, { AssetGraph }, { describeOutcome }] = await Promise.all([
    import('../../core/clock.js'),
    import('../../daemon/maintenance.js'),
    import('../../core/graph.js'),
    import('../../sensors/ticker.js'),
  ])
  try {
    if (action === 'on') {
      const dataDir = options.dataDir
        ? resolve(io.cwd, options.dataDir)
        : resolve(loaded.dir, '.refresh/data')
      const result = await maintenance.maintenanceOn(store, {
        reason: options.reason ?? 'maintenance',
        by: `${userInfo().username}@${hostname()}`,
        drainTimeoutMs,
        clock: systemClock,
        backupDir: options.backupDir
          ? resolve(io.cwd, options.backupDir)
          : defaultBackupDir(storeLocation, loaded.dir),
        dataDir: existsSync(dataDir) ? dataDir : undefined,
        progress: (line) => io.out(line),
      })
      if (result.alreadyOn) {
        io.out(
          `maintenance mode is already on since ${formatDateTime(result.alreadyOn.since)} (${result.alreadyOn.reason}); nothing changed.`,
        )
        return EXIT.ok
      }
      io.out(`maintenance mode is on (${options.reason}): new runs are parked.`)
      await sendMaintenanceAlert(
        loaded.config.alerts,
        store,
        'maintenance_on',
        `maintenance mode is on (${options.reason})`,
        io,
      )
      if (result.drained.length) io.out(`drained: ${result.drained.join(', ')}`)
      for (const p of result.parked)
        io.out(`parked to resume from failure: run ${p.runId} (request #${p.requestId})`)
      io.out(
        `backup: ${result.backup?.ok ? 'ok' : 'FAILED'}: ${result.backup?.detail}${result.backup?.location ? ` (${result.backup.location})` : ''}`,
      )
      // an in-memory store has nothing to back up: not a failure
      return result.backup?.ok === false && result.backup.location !== null ? EXIT.failed : EXIT.ok
    }
    if (action === 'off') {
      const { state, replayed } = await maintenance.maintenanceOff({
        store,
        graph: AssetGraph.build(resolved.assets),
        runConfig: resolved.config,
        guards: resolved.guards,
        clock: systemClock,
      })
      io.out(
        `maintenance mode is off (it was on for ${formatDuration(Date.now() - state.since)}: ${state.reason}).`,
      )
      for (const { parked, outcome } of replayed) {
        const text = outcome.outcome === 'failed' ? `FAILED: ${outcome.reason}` : describeOutcome(outcome)
        io.out(
          `replayed #${parked.id} (${parked.origin}, ${parked.selection}${parked.runKey ? `, key ${parked.runKey}` : ''}): ${text}`,
        )
      }
      if (replayed.length > 0) io.out('queued runs launch when a daemon runs (`refresh daemon`).')
      await sendMaintenanceAlert(
        loaded.config.alerts,
        store,
        'maintenance_off',
        `maintenance mode is off (${state.reason}); ${replayed.length} parked request(s) replayed`,
        io,
      )
      return EXIT.ok
    }
    // status
    const state = await store.getMaintenance()
    io.out(
      state
        ? `maintenance: ON since ${formatDateTime(state.since)} (${formatDuration(Date.now() - state.since)}), by ${state.by}: ${state.reason}`
        : 'maintenance: off',
    )
    const started = await store.listRuns({ status: 'started' })
    if (state && started.length) {
      io.out(`draining ${started.length} run(s):`)
      for (const line of table(
        ['RUN', 'SELECTION', 'STARTED', 'STEP'],
        await Promise.all(
          started.map(async (r) => [
            r.id,
            r.selection,
            formatDateTime(r.startedAt ?? r.createdAt),
            (await store.getSteps(r.id)).find((s) => s.status === 'running')?.key ?? '-',
          ]),
        ),
        { width: indented(io.columns), flex: 1, drop: [2], flexMin: 8 },
      ))
        io.out(`  ${line}`)
    }
    const parked = await store.listParked({ pending: true })
    io.out(`parked requests: ${parked.length}`)
    for (const line of table(
      ['#', 'ARRIVED', 'ORIGIN', 'SELECTION', 'RUN KEY'],
      parked.map((p) => [
        String(p.id),
        formatDateTime(p.createdAt),
        p.origin,
        // a partitioned request shows its partition with what it selects
        `${truncate(p.selection, 30)}${p.partitionKey === null ? '' : ` (partition ${p.partitionKey})`}`,
        p.runKey ?? '-',
      ]),
      { width: indented(io.columns), flex: 3, drop: [1], flexMin: 8 },
    ).slice(parked.length ? 0 : 1))
      io.out(`  ${line}`)
    const backup = await store.lastBackup()
    io.out(
      backup
        ? `last backup: ${formatDateTime(backup.at)} ${backup.ok ? 'ok' : 'FAILED'}: ${backup.detail}${backup.location ? ` (${backup.location})` : ''}`
        : 'last backup: none',
    )
    return EXIT.ok
  } finally {
    await store.close()
  }
}

/** The `maintenance_on|off` alert, when the config has alerts; a failed delivery is reported, not fatal. */
async function sendMaintenanceAlert(
  config: import('../../core/config.js').AlertsConfig | undefined,
  store: import('../../daemon/alerts.js').AlertStore,
  event: 'maintenance_on' | 'maintenance_off',
  text: string,
  io: Io,
): Promise<void> {
  if (!config) return
  const { deliverAlert } = await import('../../daemon/alerts.js')
  const failures = await deliverAlert(
    { event, text, at: Date.now(), commands: ['refresh maintenance status'] },
    config,
    store,
    { attempts: 3 },
  )
  for (const f of failures)
    io.err(`warning: the ${event} alert was not delivered to the ${f.target}: ${f.error}`)
}

async function pauseCommand(runId: string, options: Options, io: Io): Promise<number> {
  const { store } = await openConfigured(options, io.cwd)
  try {
    const run = await requireRun(store, runId)
    await store.requestPause(run.id, Date.now())
    io.out(
      `pause requested for run ${run.id}: running steps finish, then it stops (\`refresh resume ${run.id}\` continues it).`,
    )
    // its owner polls for the request several times a second; running steps may take longer
    for (let i = 0; i < 40 && (await store.getRun(run.id))?.status === 'started'; i++) {
      await new Promise((r) => setTimeout(r, 250))
    }
    const status = (await store.getRun(run.id))?.status
    if (status === 'started') {
      io.out(`run ${run.id} is finishing its running steps; it pauses when they end.`)
      return EXIT.ok
    }
    io.out(`run ${run.id} is ${status}.`)
    return EXIT.ok
  } finally {
    await store.close()
  }
}

async function resumeCommand(runId: string, options: Options, io: Io): Promise<number> {
  const { resolved, store } = await openConfigured(options, io.cwd)
  const controller = new AbortController()
  const onSignal = () => controller.abort(new CanceledError('interrupted (Ctrl-C)'))
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const run = await requireRun(store, runId)
    if (options.daemon) {
      if (!(await store.requeuePausedRun(run.id))) {
        throw new ConfigError(`run ${run.id} is ${run.status}; only a paused run can be resumed.`)
      }
      io.out(
        `run ${run.id} is queued: a running daemon (\`refresh daemon\`) resumes it with the steps it had left.`,
      )
      return EXIT.ok
    }
    const { resumeRun } = await import('../../core/materialize.js')
    const result = await resumeRun(resolved.assets, run.id, {
      store,
      checks: resolved.checks,
      resources: resolved.resources,
      pools: resolved.pools,
      concurrency: resolved.concurrency,
      signal: controller.signal,
      onEvent: plainReporter(io.out),
    })
    if (!result) {
      io.err(`run ${run.id} cannot be resumed now: maintenance mode is on (\`refresh maintenance status\`).`)
      return EXIT.parked
    }
    if (controller.signal.aborted) return EXIT.interrupted
    return result.status === 'success' || result.status === 'paused' ? EXIT.ok : EXIT.failed
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await store.close()
  }
}
