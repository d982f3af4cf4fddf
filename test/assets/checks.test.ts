import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { indexCountWithin, indexNotEmpty, snapshotVerifies } from '../../assets/checks.js'
import { layout } from '../../assets/layout.js'
import type { CheckContext, CheckDefinition } from '../../core/checks.js'
import type { Metadata } from '../../core/definitions.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { tempDir } from '../helpers.js'
import { chain, small } from './chain.js'

/** Evaluates a check on given metadata, outside a run (its config parsed with defaults). */
async function evaluate(check: CheckDefinition, metadata: Metadata, config: unknown = {}) {
  const ctx: CheckContext = {
    runId: 'r',
    asset: check.asset,
    check: check.name,
    partition: null,
    metadata,
    config,
    resources: {},
    signal: new AbortController().signal,
    log: () => {},
  }
  return check.evaluate(ctx)
}

describe('the default refresh’s checks', () => {
  it('pass on a whole refresh, then a bigger drop than allowed stops snapshot, replicas and promote', async () => {
    const dir = tempDir()
    const dataDir = join(dir, 'data')
    const checks = [indexNotEmpty(), indexCountWithin({ dataDir }), snapshotVerifies()]
    await using store = await openStore(join(dir, 'refresh.db'))
    const first = await materialize(chain(dataDir), { store, checks, config: small() })
    expect(first.status).toBe('success')
    expect(first.checks.map((c) => [c.asset, c.check, c.passed])).toEqual([
      ['reindex', 'not_empty', true],
      ['reindex', 'count_within', true],
      ['snapshot', 'checksums', true],
    ])
    // nothing was promoted before the first run: the count check says so
    expect(first.checks[1]!.metadata).toMatchObject({ promoted: null, maxDropPercent: 10 })
    const documents = first.materializations.reindex!.metadata.documents as number
    const alias = readFileSync(layout(dataDir).alias, 'utf8')

    // a third of the catalog: far more than a 10% drop
    const second = await materialize(chain(dataDir), {
      store,
      checks,
      config: small({ catalog: { rows: 1000 } }),
    })
    expect(second.status).toBe('failure')
    const count = second.checks.find((c) => c.check === 'count_within')!
    expect(count.passed).toBe(false)
    expect(count.metadata).toMatchObject({ promoted: documents, maxDropPercent: 10 })
    expect(count.metadata.dropPercent as number).toBeGreaterThan(50)
    for (const key of ['snapshot', 'replicas', 'promote'])
      expect(second.steps[key]).toMatchObject({
        status: 'skipped',
        upstream: 'reindex',
        check: 'count_within',
      })
    expect(readFileSync(layout(dataDir).alias, 'utf8')).toBe(alias)

    // accepted once with a run config that allows it: the retry reindexes, checks, and promotes
    const third = await materialize(chain(dataDir), {
      store,
      checks,
      fromFailure: second.runId,
      config: {
        ...small({ catalog: { rows: 1000 } }),
        checks: { reindex: { count_within: { maxDropPercent: 90 } } },
      },
    })
    expect(third.status).toBe('success')
    expect(Object.keys(third.steps)).toEqual(['reindex', 'snapshot', 'replicas', 'promote'])
    expect(readFileSync(layout(dataDir).alias, 'utf8')).not.toBe(alias)
  })

  it('indexNotEmpty fails on an empty index and throws without a document count', async () => {
    expect(await evaluate(indexNotEmpty(), { documents: 0 })).toEqual({
      passed: false,
      metadata: { documents: 0 },
    })
    expect(await evaluate(indexNotEmpty(), { documents: 5 })).toMatchObject({ passed: true })
    await expect(evaluate(indexNotEmpty(), {})).rejects.toThrow(/says nothing of its `documents`/)
  })

  it('snapshotVerifies fails when a file of the snapshot no longer matches its manifest', async () => {
    const dir = tempDir()
    const dataDir = join(dir, 'data')
    const result = await materialize(chain(dataDir), {
      selection: '+snapshot',
      checks: [snapshotVerifies()],
      config: small(),
    })
    expect(result.status).toBe('success')
    const metadata = result.materializations.snapshot!.metadata
    const snapDir = metadata.dir as string
    expect(await evaluate(snapshotVerifies(), metadata)).toMatchObject({
      passed: true,
      metadata: { mismatched: [] },
    })
    const shard = readdirSync(snapDir).find((f) => f.endsWith('.db'))!
    writeFileSync(join(snapDir, shard), 'not an index any more')
    expect(await evaluate(snapshotVerifies(), metadata)).toMatchObject({
      passed: false,
      metadata: { mismatched: [shard] },
    })
    await expect(evaluate(snapshotVerifies(), { snapshot: 'snap-ebs' })).rejects.toThrow(/no local `dir`/)
  })
})
