import type { Command } from 'commander'
import { CanceledError, ConfigError } from '../../core/errors.js'
import { storeOption } from '../common.js'
import { loadResolved, openConfigured, requireAwsReady } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import { type CliContext, EXIT, type Io } from '../io.js'
import { plainReporter } from '../reporters/plain.js'

interface DaemonOptions {
  config?: string
  store?: string
  env?: string
  json?: boolean
  graceSeconds?: string
  maxRuns?: string
  http?: string
  httpTimeoutMs?: string
  automationInterval?: string
}

export function registerDaemon(program: Command, ctx: CliContext): void {
  program
    .command('daemon')
    .description('run sensors and schedules, launching each requested run in its own process')
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config')
    .option('--json', 'one JSON object per log line')
    .option(
      '--grace-seconds <n>',
      'on SIGTERM, how long running runs may go on before they are canceled',
      '60',
    )
    .option('--max-runs <n>', 'launch at most N runs at once (default: no limit)')
    .option(
      '--automation-interval <duration>',
      "how often the assets' automation conditions are evaluated: seconds, or 500ms, 5s, 1m (a new materialization wakes it sooner)",
      '5s',
    )
    .option('--http <[host:]port>', 'serve /healthz, /readyz and /metrics (loopback unless a host is given)')
    .option(
      '--http-timeout-ms <n>',
      'how long /metrics and /healthz wait for the store before answering from the last values',
      '1000',
    )
    .addHelpText(
      'after',
      '\nA second daemon on the same store waits and takes over within seconds if the first dies.\nSIGTERM or Ctrl-C: stop ticking, let runs finish (up to --grace-seconds), exit 0.\nEach run is a local process (`refresh launch RUN_ID`), or an ECS task with `runLauncher: ecsRunLauncher({...})` in the config.\n\nExamples:\n  refresh daemon\n  refresh daemon --json --grace-seconds 300 --max-runs 4\n  refresh daemon --http 9464          # http://127.0.0.1:9464/metrics',
    )
    .action(async (options: DaemonOptions) => {
      ctx.code = await daemonCommand(options, ctx.io)
    })

  program
    .command('launch', { hidden: true })
    .description(
      'execute one queued run (the daemon starts each run this way; the store comes in $REFRESH_STORE)',
    )
    .argument('<run-id>')
    .option('-c, --config <file>', 'config file')
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config')
    .action(async (runId: string, options: DaemonOptions) => {
      ctx.code = await launchCommand(runId, options, ctx.io)
    })
}

async function daemonCommand(options: DaemonOptions, io: Io): Promise<number> {
  const graceSeconds = Number(options.graceSeconds ?? '60')
  if (!Number.isFinite(graceSeconds) || graceSeconds < 0) {
    throw new ConfigError(`--grace-seconds ${options.graceSeconds}: expected a number of seconds, like 60.`)
  }
  const maxRuns = parseMaxRuns(options.maxRuns)
  const automationIntervalMs = parseInterval(options.automationInterval ?? '5s')
  const listen = options.http === undefined ? undefined : await parseHttp(options)
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  const { isFileLocation, openStore } = await import('../../core/store/open.js')
  const launcher = resolved.runLauncher ?? (await import('../../daemon/local-launcher.js')).localRunLauncher()
  if (launcher.remote && (isFileLocation(storeLocation) || storeLocation === ':memory:')) {
    throw new ConfigError(
      `${loaded.file}: runLauncher starts each run as an ${launcher.kind.toUpperCase()} task on another host, which cannot reach the store ${storeLocation === ':memory:' ? 'in memory' : `file ${storeLocation}`}. Give the daemon and its tasks a shared store: a Postgres URL in \`store\` (in the config), --store or REFRESH_STORE; the task definition gives the tasks the same REFRESH_STORE from its secrets (see docs/aws.md).`,
    )
  }
  const store = await openStore(storeLocation)
  await requireAwsReady(resolved).catch(async (error: unknown) => {
    await store.close()
    throw error
  })
  const [{ checkInstigators }, { Daemon }] = await Promise.all([
    import('../../sensors/definitions.js'),
    import('../../daemon/daemon.js'),
  ])
  const instigators = checkInstigators(
    loaded.config.sensors ?? [],
    loaded.config.schedules ?? [],
    loaded.file,
  )
  const [{ AssetGraph }, { checkInstigatorSelections }] = await Promise.all([
    import('../../core/graph.js'),
    import('../../sensors/selections.js'),
  ])
  const graph = AssetGraph.build(resolved.assets)
  // a selection that names no asset would fail every tick, every iteration: refuse to start
  checkInstigatorSelections(instigators, graph, loaded.file)
  const alerts = loaded.config.alerts
  const { daemonReporter } = await import('../reporters/daemon.js')
  const report = daemonReporter(io.out, options.json === true)
  const watcher = alerts
    ? new (await import('../../daemon/alerts.js')).AlertWatcher({
        store,
        config: alerts,
        replicasKey: resolved.assets.find((a) => a.tags.block === 'replicas')?.key,
        sensors: instigators.filter((i) => i.kind === 'sensor').map((i) => i.name),
        assets: resolved.assets,
        onSent(alert, failures) {
          report({
            type: 'alert',
            ts: Date.now(),
            level: failures.length === 0 ? 'info' : 'warn',
            alert: alert.event,
            runId: alert.runId ?? null,
            asset: alert.asset ?? null,
            failures: failures.map((f) => ({ target: f.target, attempts: f.attempts, error: f.error })),
          })
        },
      })
    : undefined
  let lastAlertPoll = 0
  const retention = loaded.config.retention
  const { readRetention } = await import('../../core/retention.js')
  const { promotedRuns } = await import('../data-dir.js')
  const daemon = new Daemon({
    retention: retention && {
      policy: readRetention(retention.olderThan, retention.keepFailed, {
        olderThan: 'retention.olderThan',
        keepFailed: 'retention.keepFailed',
      }),
      keepRunIds: () => promotedRuns(resolved, loaded.dir),
    },
    async onIteration(now) {
      // alerts are detected from the store once a second; delivery runs in the background
      if (!watcher || now - lastAlertPoll < 1_000) return
      lastAlertPoll = now
      await watcher.poll(now)
    },
    store,
    graph,
    runConfig: resolved.config,
    guards: resolved.guards,
    instigators,
    graceMs: graceSeconds * 1000,
    launcher,
    configFile: loaded.file,
    environment: options.env,
    ...(maxRuns === undefined ? {} : { maxRuns }),
    automationIntervalMs,
    checks: checkNames(resolved.checks),
    onEvent: report,
  })
  let http: Awaited<ReturnType<typeof import('../../daemon/http.js').startOpsHttp>> | undefined
  if (listen) {
    const { startOpsHttp } = await import('../../daemon/http.js')
    try {
      http = await startOpsHttp({
        ...listen,
        storeLocation,
        timeoutMs: Number(options.httpTimeoutMs ?? '1000'),
        instigators: instigators.map((i) =>
          i.kind === 'sensor'
            ? {
                name: i.name,
                kind: i.kind,
                defaultStatus: i.defaultStatus,
                intervalSeconds: i.intervalSeconds,
              }
            : {
                name: i.name,
                kind: i.kind,
                defaultStatus: i.defaultStatus,
                cron: i.cron,
                timezone: i.timezone,
              },
        ),
        freshness: resolved.assets.flatMap((a) =>
          a.freshness
            ? [
                {
                  asset: a.key,
                  maxLag: a.freshness.maxLag,
                  maxLagMs: a.freshness.maxLagMs,
                  ...(a.partitions?.kind === 'time' ? { timePartitions: a.partitions.spec } : {}),
                },
              ]
            : [],
        ),
        promoteKey: resolved.assets.find(
          (a) => a.key === 'promote' || a.tags.block === 'promote' || 'promote' in a.tags,
        )?.key,
        state: () => ({
          holder: daemon.leaseHolder,
          shared: daemon.shared,
          lastIterationAt: daemon.lastIterationAt,
          ready: daemon.ready,
        }),
      })
    } catch (error) {
      await store.close()
      throw error
    }
    report({ type: 'http', ts: Date.now(), level: 'info', address: http.address })
  }
  report({
    type: 'starting',
    ts: Date.now(),
    level: 'info',
    store: store.displayName,
    instigators: instigators.length,
    config: loaded.file,
  })
  const stop = () => daemon.stop()
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  try {
    await daemon.run()
    await Promise.race([watcher?.drain(), new Promise((r) => setTimeout(r, 5_000).unref())])
  } finally {
    process.off('SIGTERM', stop)
    process.off('SIGINT', stop)
    await http?.close()
    await launcher.close()
    await store.close()
  }
  return EXIT.ok
}

/** `--max-runs N`: a whole number of at least 1, or undefined (no limit). */
function parseMaxRuns(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError(
      `--max-runs ${value}: expected a whole number of runs of at least 1, like --max-runs 4 (leave it out for no limit).`,
    )
  }
  return n
}

async function parseHttp(options: DaemonOptions): Promise<{ host: string; port: number }> {
  const timeout = Number(options.httpTimeoutMs ?? '1000')
  if (!Number.isInteger(timeout) || timeout < 1) {
    throw new ConfigError(
      `--http-timeout-ms ${options.httpTimeoutMs}: expected a whole number of milliseconds, like 1000.`,
    )
  }
  const { parseListen } = await import('../../daemon/http.js')
  return parseListen(options.http!)
}

/** Executes one queued run; SIGINT/SIGTERM cancel it gracefully (the daemon's grace period ran out). */
async function launchCommand(runId: string, options: DaemonOptions, io: Io): Promise<number> {
  const { resolved, store } = await openConfigured(options, io.cwd)
  await requireAwsReady(resolved).catch((error: unknown) => {
    store.close()
    throw error
  })
  const controller = new AbortController()
  const onSignal = (signal: NodeJS.Signals) => controller.abort(new CanceledError(`received ${signal}`))
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const { launchRun } = await import('../../core/materialize.js')
    const result = await launchRun(resolved.assets, runId, {
      store,
      checks: resolved.checks,
      resources: resolved.resources,
      pools: resolved.pools,
      concurrency: resolved.concurrency,
      signal: controller.signal,
      onEvent: plainReporter(io.out),
    })
    if (!result) {
      io.err(`run ${runId} was not launched: it is not queued any more, or its guard is full.`)
      return EXIT.ok
    }
    return result.status === 'success' ? EXIT.ok : EXIT.failed
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await store.close()
  }
}

/** `--automation-interval`: `5` (seconds), `500ms`, `5s`, `1m`. */
function parseInterval(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  const ms = match
    ? Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[(match[2] ?? 's') as 'ms' | 's' | 'm']
    : NaN
  if (!(ms >= 10 && ms <= 3_600_000)) {
    throw new ConfigError(
      `--automation-interval ${text}: expected a duration from 10ms to 60m, like 5s, 500ms or 1m (a bare number is seconds).`,
    )
  }
  return Math.round(ms)
}

/** The names of each asset's checks. */
function checkNames(checks: ReadonlyArray<{ asset: string; name: string }>): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const c of checks) out.set(c.asset, [...(out.get(c.asset) ?? []), c.name])
  return out
}
