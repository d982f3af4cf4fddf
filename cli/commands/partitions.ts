import type { Command } from 'commander'
import type { PartitionStatus, PartitionStatusName } from '../../core/partition-status.js'
import { storeOption } from '../common.js'
import { addConfigOptions, type ConfigOptions, loadResolved } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import type { CliContext, Io } from '../io.js'

interface PartitionsOptions extends ConfigOptions {
  store?: string
  status?: string
  json?: boolean
}

/** Ranges listed per status in the text output before "… and N more". */
const SHOWN_RANGES = 20

export function registerPartitions(program: Command, ctx: CliContext): void {
  addConfigOptions(
    program
      .command('partitions')
      .summary("an asset's partitions by status; add or remove dynamic partition keys")
      .description(
        "`partitions ASSET`: how many partitions of the asset are materialized, failed, in progress, missing or stale (an upstream partition changed since), with their key ranges. `partitions add|remove NAME KEY...`: the keys of the dynamic partitions definition NAME (dynamicPartitions('NAME')).",
      )
      .argument('<asset-or-action>', 'an asset key, or `add` / `remove`')
      .argument('[keys...]', 'with add/remove: the dynamic partitions name, then the keys'),
  )
    .addOption(storeOption())
    .option(
      '--status <status>',
      'only the partitions of this status: materialized, failed, in_progress, missing, stale',
    )
    .option('--json', 'the counts and the key ranges as one JSON object')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh partitions daily_events\n  refresh partitions daily_events --status missing\n  refresh partitions add customers acme globex\n  refresh partitions remove customers globex\n',
    )
    .action(async (first: string, rest: string[], options: PartitionsOptions) => {
      ctx.code =
        first === 'add' || first === 'remove'
          ? await dynamicCommand(first, rest, options, ctx.io)
          : await statusCommand(first, rest, options, ctx.io)
    })
}

async function openFor(options: PartitionsOptions, io: Io) {
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  const { openStore } = await import('../../core/store/open.js')
  return { resolved, store: await openStore(storeLocation) }
}

async function dynamicCommand(
  action: 'add' | 'remove',
  args: string[],
  options: PartitionsOptions,
  io: Io,
): Promise<number> {
  const { ConfigError } = await import('../../core/errors.js')
  const [name, ...keys] = args
  if (name === undefined || keys.length === 0) {
    throw new ConfigError(
      `partitions ${action}: name the dynamic partitions and at least one key: \`refresh partitions ${action} NAME KEY...\`.`,
    )
  }
  const { resolved, store: opened } = await openFor(options, io)
  await using store = opened
  const { dynamicNames } = await import('../../core/partition-runs.js')
  const known = new Set(resolved.assets.flatMap((a) => (a.partitions ? dynamicNames(a.partitions) : [])))
  if (!known.has(name)) {
    const { didYouMean } = await import('../../core/errors.js')
    throw new ConfigError(
      `no asset of the config has dynamicPartitions('${name}').${didYouMean(name, known)}${known.size ? ` The config's dynamic partitions: ${[...known].join(', ')}.` : ''}`,
    )
  }
  for (const key of keys) {
    if (key.length === 0 || key.includes('|') || key.length > 200) {
      throw new ConfigError(
        `partitions ${action}: ${JSON.stringify(key)} cannot be a partition key; keys are 1 to 200 characters without \`|\` (it joins the dimensions of multi partitions).`,
      )
    }
  }
  const now = Date.now()
  const changed =
    action === 'add'
      ? await store.addDynamicPartitions(name, keys, now)
      : await store.removeDynamicPartitions(name, keys, now)
  const unchanged = keys.filter((k) => !changed.includes(k))
  if (options.json) {
    io.out(JSON.stringify({ name, [action === 'add' ? 'added' : 'removed']: changed, unchanged }))
    return 0
  }
  const verb = action === 'add' ? 'added' : 'removed'
  io.out(
    `${verb} ${changed.length} key${changed.length === 1 ? '' : 's'} ${action === 'add' ? 'to' : 'from'} ${name}${changed.length ? `: ${changed.join(', ')}` : ''}`,
  )
  if (unchanged.length) io.out(`${action === 'add' ? 'already there' : 'not there'}: ${unchanged.join(', ')}`)
  return 0
}

async function statusCommand(
  asset: string,
  extra: string[],
  options: PartitionsOptions,
  io: Io,
): Promise<number> {
  const { ConfigError } = await import('../../core/errors.js')
  if (extra.length > 0) {
    throw new ConfigError(
      `partitions ${asset}: unexpected ${extra.join(' ')}; \`refresh partitions ASSET\` shows one asset (add/remove take keys).`,
    )
  }
  const { PARTITION_STATUSES, partitionStatus } = await import('../../core/partition-status.js')
  const wanted = options.status as PartitionStatusName | undefined
  if (wanted !== undefined && !PARTITION_STATUSES.includes(wanted)) {
    throw new ConfigError(`--status ${options.status}: expected one of ${PARTITION_STATUSES.join(', ')}.`)
  }
  const { resolved, store: opened } = await openFor(options, io)
  await using store = opened
  const { buildGraph } = await import('../../core/materialize.js')
  const status = await partitionStatus(store, buildGraph(resolved.assets), asset, Date.now())
  const statuses = wanted ? [wanted] : PARTITION_STATUSES
  if (options.json) {
    io.out(
      JSON.stringify({
        asset,
        partitions: status.definition.describe(),
        total: status.total,
        counts: Object.fromEntries(PARTITION_STATUSES.map((s) => [s, status.subsets[s].size])),
        ranges: Object.fromEntries(statuses.map((s) => [s, keyRanges(status, s, Number.POSITIVE_INFINITY)])),
      }),
    )
    return 0
  }
  io.out(`${asset}: ${status.total.toLocaleString('en-US')} partitions (${status.definition.describe()})`)
  for (const s of statuses) {
    const subset = status.subsets[s]
    if (wanted === undefined && subset.isEmpty) continue
    const ranges = keyRanges(status, s, SHOWN_RANGES)
    const more = subset.rangeCount - ranges.length
    io.out(
      `  ${s.replace('_', ' ').padEnd(13)}${subset.size.toLocaleString('en-US').padStart(10)}  ${ranges.map(([a, b]) => (a === b ? a : `${a}..${b}`)).join(', ')}${more > 0 ? `, … and ${more} more range${more === 1 ? '' : 's'}` : ''}`,
    )
  }
  return 0
}

/** The first `limit` ranges of a status as [first key, last key]. */
function keyRanges(
  status: PartitionStatus,
  name: PartitionStatusName,
  limit: number,
): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [start, end] of status.subsets[name].ranges()) {
    if (out.length >= limit) break
    out.push([status.definition.keyAt(start, status.ctx), status.definition.keyAt(end - 1, status.ctx)])
  }
  return out
}
