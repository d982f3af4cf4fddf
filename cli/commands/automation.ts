import type { Command } from 'commander'
import type { AutomationCondition } from '../../core/automation.js'
import type { AutomationEvaluationRecord, AutomationStatus } from '../../core/store/types.js'
import type { NodeValue } from '../../sensors/automation/evaluate.js'
import { formatDateTime, storeOption, table } from '../common.js'
import { addConfigOptions, type ConfigOptions, loadResolved } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import type { CliContext, Io } from '../io.js'

interface AutomationOptions extends ConfigOptions {
  store?: string
  json?: boolean
  limit?: string
}

const SWITCHES = ['on', 'off', 'default'] as const

export function registerAutomation(program: Command, ctx: CliContext): void {
  addConfigOptions(
    program
      .command('automation')
      .summary("why automated assets did or didn't run; switch automation on or off")
      .description(
        '`automation`: every asset with an automation condition (`asset({ automation: eager() })`), whether it is on, and its latest evaluation by the daemon. `automation ASSET`: its latest evaluations with the value of every operand of its condition (how many partitions each is true for, and which), and the runs they requested. `automation on|off|default [ASSET...]`: switch automation for these assets, or for all (off for all stops every asset, whatever its own switch), persisted in the store; the daemon reads the switches at its next evaluation.',
      )
      .argument('[asset-or-switch]', 'an asset key, or on / off / default')
      .argument('[assets...]', 'with on/off/default: the assets (none: every asset)'),
  )
    .addOption(storeOption())
    .option('--limit <n>', 'with ASSET: how many evaluations to show, newest first', '5')
    .option('--json', 'one JSON object per asset, or per evaluation with ASSET')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh automation\n  refresh automation daily_summary\n  refresh automation off daily_summary\n  refresh automation off          # every asset, e.g. during a deploy\n  refresh automation on\n',
    )
    .action(async (first: string | undefined, rest: string[], options: AutomationOptions) => {
      ctx.code = SWITCHES.includes(first as AutomationStatus)
        ? await switchCommand(first as AutomationStatus, rest, options, ctx.io)
        : await showCommand(first, rest, options, ctx.io)
    })
}

async function openFor(options: AutomationOptions, io: Io) {
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  const { openStore } = await import('../../core/store/open.js')
  const automated = new Map<string, AutomationCondition>(
    resolved.assets.flatMap((a) => (a.automation ? [[a.key, a.automation] as const] : [])),
  )
  return { resolved, automated, store: await openStore(storeLocation) }
}

async function checkAutomated(
  assets: readonly string[],
  automated: ReadonlyMap<string, unknown>,
  all: readonly string[],
) {
  const { ConfigError, didYouMean } = await import('../../core/errors.js')
  for (const asset of assets) {
    if (automated.has(asset)) continue
    const known = automated.size
      ? ` Automated assets: ${[...automated.keys()].join(', ')}.`
      : ' No asset of the config has one.'
    throw new ConfigError(
      all.includes(asset)
        ? `\`${asset}\` has no automation condition; give it one (\`asset({ ..., automation: eager() })\`) to automate it.${known}`
        : `no asset \`${asset}\` in the config.${didYouMean(asset, all)}${known}`,
    )
  }
}

async function switchCommand(
  status: AutomationStatus,
  assets: string[],
  options: AutomationOptions,
  io: Io,
): Promise<number> {
  const { resolved, automated, store: opened } = await openFor(options, io)
  await using store = opened
  await checkAutomated(
    assets,
    automated,
    resolved.assets.map((a) => a.key),
  )
  const now = Date.now()
  if (assets.length === 0) await store.setAutomationStatus(null, status, now)
  for (const asset of assets) await store.setAutomationStatus(asset, status, now)
  if (options.json) {
    io.out(JSON.stringify({ status, assets: assets.length ? assets : null }))
    return 0
  }
  if (assets.length > 0) {
    io.out(`automation ${status} for ${assets.join(', ')}`)
    const global = (await store.automationSwitches()).status
    if (global === 'off' && status !== 'off') {
      io.out('automation is off for every asset: `refresh automation on` lets these run again.')
    }
  } else {
    io.out(
      status === 'off'
        ? 'automation off for every asset (the daemon evaluates nothing until `refresh automation on`)'
        : `automation ${status} for every asset${status === 'on' ? ' (except those switched off one by one)' : ''}`,
    )
  }
  return 0
}

async function showCommand(
  asset: string | undefined,
  extra: string[],
  options: AutomationOptions,
  io: Io,
): Promise<number> {
  const { ConfigError } = await import('../../core/errors.js')
  if (extra.length > 0) {
    throw new ConfigError(
      `automation ${asset}: unexpected ${extra.join(' ')}; \`refresh automation ASSET\` shows one asset, \`refresh automation on|off ASSET...\` switches several.`,
    )
  }
  const limit = Number(options.limit ?? '5')
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new ConfigError(`--limit ${options.limit}: expected a whole number of evaluations above 0, like 5.`)
  }
  const { resolved, automated, store: opened } = await openFor(options, io)
  await using store = opened
  const { switchedOn } = await import('../../sensors/automation/evaluator.js')
  const switches = await store.automationSwitches()
  const on = (key: string) => switchedOn(automated.has(key), switches.status, switches.assets[key])
  if (asset !== undefined) {
    await checkAutomated(
      [asset],
      automated,
      resolved.assets.map((a) => a.key),
    )
    const evaluations = await store.automationEvaluations(asset, limit)
    if (options.json) {
      for (const e of evaluations) io.out(JSON.stringify({ ...e, on: on(asset), tree: JSON.parse(e.tree) }))
      return 0
    }
    io.out(`${asset}: ${automated.get(asset)!.label}, ${switchText(asset, switches)}`)
    if (evaluations.length === 0) {
      io.out('not evaluated yet: `refresh daemon` evaluates it (every 5 s by default).')
      return 0
    }
    for (const e of evaluations) {
      io.out('')
      io.out(evaluationHeading(e))
      for (const line of treeLines(JSON.parse(e.tree) as NodeValue, automated.get(asset)!, '  ')) io.out(line)
    }
    return 0
  }
  const latest = new Map((await store.latestAutomationEvaluations()).map((e) => [e.asset, e]))
  const keys = resolved.assets.filter((a) => automated.has(a.key)).map((a) => a.key)
  if (options.json) {
    for (const key of keys) {
      const e = latest.get(key)
      io.out(
        JSON.stringify({
          asset: key,
          condition: automated.get(key)!.label,
          on: on(key),
          latest: e ? { ...e, tree: JSON.parse(e.tree) } : null,
        }),
      )
    }
    return 0
  }
  if (keys.length === 0) {
    io.out(
      'no asset of the config has an automation condition; give one `automation: eager()` (or onCron, onMissing).',
    )
    return 0
  }
  if (switches.status === 'off')
    io.out('automation is off for every asset (`refresh automation on` to resume)')
  const rows = keys.map((key) => {
    const e = latest.get(key)
    return [
      key,
      automated.get(key)!.label,
      on(key) ? 'on' : 'off',
      e ? formatDateTime(e.evaluatedAt) : 'not yet',
      e ? `${e.trueCount}/${e.total}` : '',
      e ? e.runIds.join(', ') : '',
    ]
  })
  for (const line of table(['ASSET', 'CONDITION', 'SWITCH', 'LAST CHANGE', 'TRUE', 'RUNS'], rows, {
    width: io.columns,
  })) {
    io.out(line)
  }
  return 0
}

function switchText(
  asset: string,
  switches: { status: AutomationStatus; assets: Record<string, AutomationStatus> },
): string {
  if (switches.status === 'off') return 'off (for every asset)'
  return switches.assets[asset] === 'off' ? 'off' : 'on'
}

function evaluationHeading(e: AutomationEvaluationRecord): string {
  const what =
    e.total === 1 && e.trueCount <= 1
      ? e.trueCount
        ? 'true'
        : 'false'
      : `true for ${e.trueCount} of ${e.total} partitions`
  const runs = e.runIds.length ? `: requested ${e.runIds.join(', ')}` : ''
  return `tick ${e.tick}, ${formatDateTime(e.evaluatedAt)}: ${what}${runs}`
}

/** The tree, one node a line: ✓ or ✗ (or the count of partitions), how it is written, which partitions. */
export function treeLines(node: NodeValue, condition: AutomationCondition, indent = ''): string[] {
  const lines: string[] = []
  const walk = (n: NodeValue, c: AutomationCondition | undefined, depth: number) => {
    // not(operand) on one line: `✓ not anyDepsMissing()`
    const only = n.children?.length === 1 ? n.children[0] : undefined
    if (c?.kind === 'not' && only && !only.children && n.label === `not(${only.label})`) {
      const partitions = n.partitions ? `  ${n.partitions}` : ''
      lines.push(`${indent}${'  '.repeat(depth)}${markOf(n)} not ${only.label}${partitions}`)
      return
    }
    const generic =
      c && (c.kind === 'and' || c.kind === 'or' || c.kind === 'not') && n.label.startsWith(`${c.kind}(`)
    const name = generic ? c.kind : n.label
    const mark = markOf(n)
    const partitions = n.partitions ? `  ${n.partitions}` : ''
    lines.push(`${indent}${'  '.repeat(depth)}${mark} ${name}${partitions}`)
    n.children?.forEach((child, i) => {
      walk(child, c?.children[i], depth + 1)
    })
  }
  walk(node, condition, 0)
  return lines
}

function markOf(n: NodeValue): string {
  return n.total === 1 ? (n.trueCount ? '✓' : '✗') : `${n.trueCount}/${n.total}`
}
