/**
 * Asset checks: what one check adds to a run beyond its own work. materialize() of N no-op assets
 * in a chain on an opened in-memory store, without checks and with one no-op check per asset
 * (its result is stored and announced like any check's), median of several runs; the difference
 * per check is the overhead (target: under 1 ms).
 */
import { performance } from 'node:perf_hooks'
import {
  type AssetDefinition,
  asset,
  assetCheck,
  type CheckDefinition,
  materialize,
  openStore,
} from '../index.js'
import { median } from './lib.js'

function chainOf(count: number): AssetDefinition[] {
  return Array.from({ length: count }, (_, i) =>
    asset({ key: `a${i}`, deps: i === 0 ? [] : [`a${i - 1}`], materialize: () => ({ i }) }),
  )
}

function noopChecks(count: number): CheckDefinition[] {
  return Array.from({ length: count }, (_, i) =>
    assetCheck({ asset: `a${i}`, name: 'noop', blocking: true, evaluate: () => ({ passed: true }) }),
  )
}

interface Row {
  assets: number
  without: number
  withChecks: number
  perCheck: number
}

async function measure(count: number, runs: number): Promise<Row> {
  const assets = chainOf(count)
  const checks = noopChecks(count)
  const store = await openStore(':memory:')
  try {
    // warm up both paths (JIT, prepared statements)
    await materialize(assets, { store })
    await materialize(assets, { store, checks })
    const without: number[] = []
    const withChecks: number[] = []
    // interleaved, so that drift (GC, the other tenants of the machine) hits both alike
    for (let r = 0; r < runs; r++) {
      let t0 = performance.now()
      let result = await materialize(assets, { store })
      without.push(performance.now() - t0)
      if (result.status !== 'success') throw new Error(`bench run failed: ${result.status}`)
      t0 = performance.now()
      result = await materialize(assets, { store, checks })
      withChecks.push(performance.now() - t0)
      if (result.status !== 'success' || result.checks.length !== count)
        throw new Error(`bench run with checks failed: ${result.status}, ${result.checks.length} checks`)
    }
    const a = median(without)
    const b = median(withChecks)
    return { assets: count, without: a, withChecks: b, perCheck: (b - a) / count }
  } finally {
    await store.close()
  }
}

export default async function bench() {
  const rows: Row[] = []
  for (const [count, runs] of [
    [10, 30],
    [100, 15],
    [500, 5],
  ] as const) {
    rows.push(await measure(count, runs))
  }
  const ms = (n: number) => n.toFixed(n < 1 ? 3 : 1)
  const body = [
    'materialize() of a chain of N no-op assets on an opened `:memory:` store, without checks and with',
    "one no-op blocking check per asset (each result written with its event in the run's batches);",
    'median of the runs, interleaved. Target: under 1 ms per check beyond its own work.',
    '',
    '| assets | without checks | with a check each | per check |',
    '|---:|---:|---:|---:|',
    ...rows.map(
      (r) => `| ${r.assets} | ${ms(r.without)} ms | ${ms(r.withChecks)} ms | ${ms(r.perCheck)} ms |`,
    ),
  ].join('\n')
  return { title: 'Asset checks: overhead per check', body }
}
