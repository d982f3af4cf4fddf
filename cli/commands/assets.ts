import { existsSync } from 'node:fs'
import type { Command } from 'commander'
import type { MaterializationRecord } from '../../core/store/types.js'
import { formatDateTime, storeOption, table } from '../common.js'
import { addConfigOptions, type ConfigOptions, loadResolved } from '../config-options.js'
import { storeLocationFor } from '../find-config.js'
import { formatDuration, formatFreshness, formatMetadata, freshnessJson } from '../format.js'
import type { CliContext, Io } from '../io.js'

interface AssetsOptions extends ConfigOptions {
  store?: string
  json?: boolean
}

export function registerAssets(program: Command, ctx: CliContext): void {
  addConfigOptions(
    program
      .command('assets')
      .summary('assets and their latest materializations')
      .description(
        'every asset with its group, deps, latest materialization (when, run, metadata) and, for an asset with a freshness policy, whether it is stale',
      ),
  )
    .addOption(storeOption())
    .option('--json', 'one JSON object per asset')
    .addHelpText('after', '\nExamples:\n  refresh assets\n  refresh assets --json\n')
    .action(async (options: AssetsOptions) => {
      ctx.code = await assetsCommand(options, ctx.io)
    })
}

async function assetsCommand(options: AssetsOptions, io: Io): Promise<number> {
  const { loaded, resolved } = await loadResolved(options, io.cwd)
  const { buildGraph } = await import('../../core/materialize.js')
  const graph = buildGraph(resolved.assets)
  const storeLocation = storeLocationFor(options.store, io.cwd, loaded.dir, resolved.store)
  let latest = new Map<string, MaterializationRecord>()
  const now = Date.now()
  const { freshnessOf } = await import('../../core/freshness.js')
  const { isFileLocation, openStore } = await import('../../core/store/open.js')
  // no store file yet: nothing was materialized
  let freshness = await freshnessOf(
    { latestMaterializations: async () => latest, latestMaterialization: async () => undefined },
    graph.assets.values(),
    now,
    latest,
  )
  if (!isFileLocation(storeLocation) || existsSync(storeLocation)) {
    await using store = await openStore(storeLocation)
    latest = await store.latestMaterializations()
    freshness = await freshnessOf(store, graph.assets.values(), now, latest)
  }
  if (options.json) {
    for (const key of graph.order) {
      const def = graph.assets.get(key)!
      const m = latest.get(key)
      const f = freshness.get(key)
      io.out(
        JSON.stringify({
          key,
          group: def.group,
          deps: def.deps,
          description: def.description ?? null,
          latest: m ? { runId: m.runId, ts: m.ts, metadata: m.metadata, partition: m.partitionKey } : null,
          freshness: f ? freshnessJson(f) : null,
        }),
      )
    }
    return 0
  }
  const rows = graph.order.map((key) => {
    const def = graph.assets.get(key)!
    const m = latest.get(key)
    const f = freshness.get(key)
    return [
      key,
      def.group,
      def.deps.join(', ') || '-',
      m ? formatDateTime(m.ts) : 'never',
      m ? `${formatDuration(now - m.ts)} ago` : '',
      ...(freshness.size > 0 ? [f ? formatFreshness(f, now) : '-'] : []),
      m?.runId ?? '',
      m
        ? { text: formatMetadata(m.metadata, 4), fit: (max: number) => formatMetadata(m.metadata, 4, max) }
        : '',
    ]
  })
  // on a narrow terminal the metadata is cut by whole pairs, then the run id, the deps, the age
  // and the group give way; FRESHNESS (when an asset has a policy) stays: it is what an operator
  // looks for
  const header = ['ASSET', 'GROUP', 'DEPS', 'MATERIALIZED', 'AGO', 'RUN', 'METADATA']
  const fit = { width: io.columns, flex: 6, drop: [5, 2, 4, 1], flexMin: 10 }
  if (freshness.size > 0) {
    header.splice(5, 0, 'FRESHNESS')
    Object.assign(fit, { flex: 7, drop: [6, 2, 4, 1] })
  }
  for (const line of table(header, rows, fit)) io.out(line)
  return 0
}
