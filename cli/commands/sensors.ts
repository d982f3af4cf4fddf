import type { Command } from 'commander'
import { ConfigError, didYouMean } from '../../core/errors.js'
import type { InstigatorDefinition } from '../../sensors/definitions.js'
import { formatDateTime, storeOption, table, truncate } from '../common.js'
import { openConfigured } from '../config-options.js'
import { type CliContext, EXIT, type Io } from '../io.js'

interface Options {
  config?: string
  store?: string
  env?: string
  limit?: string
  json?: boolean
}

const ACTIONS = ['list', 'on', 'off', 'tick'] as const

export function registerSensors(program: Command, ctx: CliContext): void {
  for (const kind of ['sensor', 'schedule'] as const) {
    program
      .command(`${kind}s`)
      .description(`list ${kind}s with their state, last and next tick; turn one on or off; evaluate one now`)
      .argument('[action]', ACTIONS.join(' | '), 'list')
      .argument('[name]', `the ${kind} to act on`)
      .option(
        '-c, --config <file>',
        'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
      )
      .addOption(storeOption())
      .option('--env <name>', 'a named environment block of the config')
      .option('--json', `one JSON object per ${kind} (list), or the result of the action`)
      .addHelpText(
        'after',
        `\nExamples:\n  refresh ${kind}s\n  refresh ${kind}s --json\n  refresh ${kind}s off ${kind === 'sensor' ? 'snapshot_after_reindex' : 'nightly'}\n  refresh ${kind}s tick ${kind === 'sensor' ? 'snapshot_after_reindex' : 'nightly'}`,
      )
      .action(async (action: string, name: string | undefined, options: Options) => {
        ctx.code = await instigatorsCommand(kind, action, name, options, ctx.io)
      })
  }
  program
    .command('ticks')
    .description('the tick history of a sensor or schedule, newest first')
    .argument('<name>', 'sensor or schedule name')
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .addOption(storeOption())
    .option('--env <name>', 'a named environment block of the config')
    .option('--limit <n>', 'how many ticks', '20')
    .option('--json', 'one JSON object per tick')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh ticks snapshot_after_reindex --limit 5\n  refresh ticks nightly --json',
    )
    .action(async (name: string, options: Options) => {
      ctx.code = await ticksCommand(name, options, ctx.io)
    })
}

async function setup(options: Options, io: Io) {
  const opened = await openConfigured(options, io.cwd)
  const { checkInstigators } = await import('../../sensors/definitions.js')
  const { config, file } = opened.loaded
  return { ...opened, defs: checkInstigators(config.sensors ?? [], config.schedules ?? [], file) }
}

function findDef(
  defs: InstigatorDefinition[],
  kind: 'sensor' | 'schedule',
  name: string,
): InstigatorDefinition {
  const def = defs.find((d) => d.name === name && d.kind === kind)
  if (!def) {
    const names = defs.filter((d) => d.kind === kind).map((d) => d.name)
    throw new ConfigError(
      `no ${kind} \`${name}\` in the config.${didYouMean(name, names)}${names.length ? ` ${kind}s: ${names.join(', ')}.` : ''}`,
    )
  }
  return def
}

async function instigatorsCommand(
  kind: 'sensor' | 'schedule',
  action: string,
  name: string | undefined,
  options: Options,
  io: Io,
): Promise<number> {
  if (!(ACTIONS as readonly string[]).includes(action)) {
    throw new ConfigError(`\`refresh ${kind}s ${action}\`: the action is one of ${ACTIONS.join(', ')}.`)
  }
  if (action !== 'list' && name === undefined) {
    throw new ConfigError(
      `\`refresh ${kind}s ${action}\` needs a ${kind} name, for example \`refresh ${kind}s ${action} NAME\`.`,
    )
  }
  const { resolved, store, defs } = await setup(options, io)
  const { describeOutcome, effectiveStatus, nextScheduleTick, tickSchedule, tickSensor } = await import(
    '../../sensors/ticker.js'
  )
  try {
    const now = Date.now()
    if (action === 'list') {
      const mine = defs.filter((d) => d.kind === kind)
      if (mine.length === 0) {
        if (!options.json) io.out(`no ${kind}s in the config.`)
        return EXIT.ok
      }
      const listed = await Promise.all(
        mine.map(async (d) => {
          const state = await store.getInstigator(d.name)
          const status = effectiveStatus(d, state)
          const last = state?.lastTickId ? await store.getTick(state.lastTickId) : undefined
          // a sensor is evaluated by a running daemon once its interval has passed since the last tick
          const next =
            status === 'off'
              ? null
              : d.kind === 'sensor'
                ? state?.lastTickAt == null
                  ? now
                  : Math.max(now, state.lastTickAt + d.intervalSeconds * 1000)
                : (nextScheduleTick(d, now) ?? null)
          return { d, status, isDefault: !state || state.status === 'default', last, next }
        }),
      )
      if (options.json) {
        for (const { d, status, isDefault, last, next } of listed) {
          io.out(
            JSON.stringify({
              name: d.name,
              kind: d.kind,
              status,
              statusIsDefault: isDefault,
              ...(d.kind === 'sensor'
                ? { intervalSeconds: d.intervalSeconds, description: d.description ?? null }
                : { cron: d.cron, timezone: d.timezone, selection: d.selection, partitioned: d.partitioned }),
              lastTick: last
                ? { at: last.startedAt, status: last.status, error: last.error?.message ?? null }
                : null,
              nextTickAt: next,
            }),
          )
        }
        return EXIT.ok
      }
      const rows = listed.map(({ d, status, isDefault, last, next }) => {
        const lastText = last
          ? `${formatDateTime(last.startedAt)} ${last.status}${last.status === 'failure' ? `: ${truncate(last.error?.message ?? '', 50)}` : ''}`
          : '-'
        const stateText = `${status}${isDefault ? ' (default)' : ''}`
        const nextText = next === null ? '-' : next <= now ? 'due' : formatDateTime(next)
        return d.kind === 'sensor'
          ? [d.name, stateText, `${d.intervalSeconds} s`, lastText, nextText, d.description ?? '']
          : [
              d.name,
              stateText,
              `${d.cron} (${d.timezone})${d.partitioned ? ', partitioned' : ''}`,
              lastText,
              nextText,
            ]
      })
      const header =
        kind === 'sensor'
          ? ['NAME', 'STATE', 'INTERVAL', 'LAST TICK', 'NEXT TICK', 'WHAT']
          : ['NAME', 'STATE', 'CRON', 'LAST TICK', 'NEXT TICK']
      for (const line of table(header, rows, { width: io.columns })) io.out(line)
      return EXIT.ok
    }
    const def = findDef(defs, kind, name!)
    if (action === 'on' || action === 'off') {
      await store.setInstigatorStatus(def.name, def.kind, action, now)
      if (options.json) {
        io.out(JSON.stringify({ name: def.name, kind: def.kind, status: action }))
        return EXIT.ok
      }
      io.out(
        `${kind} ${def.name} is ${action}${action === 'on' && kind === 'schedule' ? ' (no tick before now will fire)' : ''}.`,
      )
      return EXIT.ok
    }
    const [{ systemClock }, { AssetGraph }] = await Promise.all([
      import('../../core/clock.js'),
      import('../../core/graph.js'),
    ])
    const env = {
      store,
      graph: AssetGraph.build(resolved.assets),
      runConfig: resolved.config,
      guards: resolved.guards,
      clock: systemClock,
    }
    const results = def.kind === 'sensor' ? [await tickSensor(def, env)] : await tickSchedule(def, env)
    if (options.json) {
      io.out(JSON.stringify({ name: def.name, kind: def.kind, ticks: results }))
      return results.some((r) => r.tick.status === 'failure') ? EXIT.failed : EXIT.ok
    }
    if (results.length === 0) {
      const next = def.kind === 'schedule' ? nextScheduleTick(def, now) : undefined
      io.out(`schedule ${def.name}: nothing due${next ? `; next tick ${formatDateTime(next)}` : ''}.`)
      return EXIT.ok
    }
    let code: number = EXIT.ok
    for (const { tick, outcomes } of results) {
      if (tick.status === 'failure') {
        io.out(`${kind} ${def.name}: failed: ${tick.error?.message}`)
        code = EXIT.failed
      } else if (tick.status === 'skipped') {
        io.out(`${kind} ${def.name}: skipped: ${tick.skipReason}`)
      } else {
        for (const o of outcomes) {
          const partition = 'runId' in o ? (await store.getRun(o.runId))?.partitionKey : null
          io.out(`${kind} ${def.name}: ${describeOutcome(o)}${partition ? ` (partition ${partition})` : ''}`)
        }
      }
    }
    io.out('queued runs launch when a daemon runs (`refresh daemon`).')
    return code
  } finally {
    await store.close()
  }
}

async function ticksCommand(name: string, options: Options, io: Io): Promise<number> {
  const limit = Number(options.limit ?? '20')
  if (!Number.isInteger(limit) || limit < 1)
    throw new ConfigError(`--limit ${options.limit}: expected a whole number, like 20.`)
  const { store, defs } = await setup(options, io)
  try {
    if (!defs.some((d) => d.name === name)) {
      throw new ConfigError(
        `no sensor or schedule \`${name}\` in the config.${didYouMean(
          name,
          defs.map((d) => d.name),
        )}`,
      )
    }
    const ticks = await store.listTicks(name, limit)
    if (options.json) {
      for (const t of ticks) io.out(JSON.stringify(t))
      return EXIT.ok
    }
    if (ticks.length === 0) {
      io.out(`${name} has not ticked yet.`)
      return EXIT.ok
    }
    // the partition each run was requested for, beside its id
    const partitions = new Map<string, string | null>()
    for (const id of new Set(ticks.flatMap((t) => t.runIds)))
      partitions.set(id, (await store.getRun(id))?.partitionKey ?? null)
    const runText = (id: string) => (partitions.get(id) ? `${id} (${partitions.get(id)})` : id)
    const rows = ticks.map((t) => [
      formatDateTime(t.tickTime),
      t.status,
      t.runIds.map(runText).join(', ') || '-',
      truncate(t.status === 'failure' ? (t.error?.message ?? '') : (t.skipReason ?? ''), 80),
    ])
    for (const line of table(['TICK', 'STATUS', 'RUNS', 'REASON'], rows, { width: io.columns })) io.out(line)
    return EXIT.ok
  } finally {
    await store.close()
  }
}
