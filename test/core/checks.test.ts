import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { assetCheck } from '../../core/checks.js'
import { ConfigError } from '../../core/errors.js'
import type { RunEvent } from '../../core/events.js'
import type { JsonObject } from '../../core/json.js'
import { materialize, resumeRun } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { noop } from '../helpers.js'

/**
 *   a ─▶ b ─▶ c        a check on b stops c and d, and nothing else
 *        └──▶ d
 *   x ─▶ y             unrelated: goes on
 */
function graph(rows: { value: number }) {
  const calls: string[] = []
  const track = (key: string, deps: string[] = []) =>
    noop(key, deps, {
      materialize: (): JsonObject => {
        calls.push(key)
        return key === 'b' ? { rows: rows.value } : { key }
      },
    })
  const assets = [
    track('a'),
    track('b', ['a']),
    track('c', ['b']),
    track('d', ['b']),
    track('x'),
    track('y', ['x']),
  ]
  return { assets, calls }
}

const notEmpty = assetCheck({
  asset: 'b',
  name: 'not_empty',
  blocking: true,
  evaluate: (ctx) => ({
    passed: (ctx.metadata.rows as number) > 0,
    metadata: { rows: ctx.metadata.rows ?? null },
  }),
})

describe('asset checks', () => {
  it('a failed blocking check stops exactly what is downstream, names the check, and fails the run', async () => {
    await using store = await openStore(':memory:')
    const { assets, calls } = graph({ value: 0 })
    const events: RunEvent[] = []
    const result = await materialize(assets, {
      store,
      checks: [notEmpty],
      concurrency: 1,
      onEvent: (e) => events.push(e),
    })
    expect(result.status).toBe('failure')
    expect(calls.sort()).toEqual(['a', 'b', 'x', 'y'])
    expect(result.steps.b!.status).toBe('succeeded')
    expect(result.steps.c).toMatchObject({ status: 'skipped', upstream: 'b', check: 'not_empty' })
    expect(result.steps.d).toMatchObject({ status: 'skipped', upstream: 'b', check: 'not_empty' })
    expect(result.steps.y!.status).toBe('succeeded')
    expect(result.checks).toEqual([
      {
        asset: 'b',
        check: 'not_empty',
        partition: null,
        passed: false,
        severity: 'error',
        blocking: true,
        metadata: { rows: 0 },
        error: null,
      },
    ])
    // the check comes between the materialization and the step's success, and before any skip
    const types = events.filter((e) => 'step' in e && e.step === 'b').map((e) => e.type)
    expect(types).toEqual(['step:start', 'asset:materialized', 'check:evaluated', 'step:success'])
    const skipped = events.find((e) => e.type === 'step:skipped' && e.step === 'c')
    expect(skipped).toMatchObject({ upstream: 'b', check: 'not_empty' })

    // persisted with the run, the partition column null
    const stored = await store.checkResultsOfRun(result.runId)
    expect(stored).toHaveLength(1)
    expect(stored[0]).toMatchObject({
      runId: result.runId,
      asset: 'b',
      check: 'not_empty',
      partitionKey: null,
      passed: false,
      blocking: true,
      severity: 'error',
      metadata: { rows: 0 },
    })
    expect((await store.getSteps(result.runId)).find((s) => s.key === 'c')!.reason).toBe('b:not_empty')
    const events2 = await store.getEvents(result.runId, { types: ['check:evaluated'] })
    expect(events2).toHaveLength(1)
  })

  it('a passing check lets everything run', async () => {
    await using store = await openStore(':memory:')
    const { assets, calls } = graph({ value: 5 })
    const result = await materialize(assets, { store, checks: [notEmpty] })
    expect(result.status).toBe('success')
    expect(calls.sort()).toEqual(['a', 'b', 'c', 'd', 'x', 'y'])
    expect(result.checks.map((c) => c.passed)).toEqual([true])
    expect(await store.latestCheckResults('b')).toMatchObject([{ check: 'not_empty', passed: true }])
  })

  it('a failed blocking check on an asset with nothing downstream still fails the run', async () => {
    await using store = await openStore(':memory:')
    const result = await materialize([noop('leaf')], {
      store,
      checks: [
        assetCheck({ asset: 'leaf', name: 'never', blocking: true, evaluate: () => ({ passed: false }) }),
      ],
    })
    expect(result.status).toBe('failure')
    expect(result.steps.leaf!.status).toBe('succeeded')
    const [end] = await store.getEvents(result.runId, { types: ['run:end'] })
    expect(end).toMatchObject({ status: 'failure', succeeded: 1, failed: 0, skipped: 0, checksFailed: 1 })
  })

  it('a run paused after a blocking check failed still ends failure when resumed', async () => {
    await using store = await openStore(':memory:')
    // `leaf` fails its blocking check; `slow` asks for a pause while it runs; `after` is left pending
    const assets = [
      noop('leaf'),
      noop('slow', [], {
        materialize: async (ctx) => {
          await store.requestPause(ctx.runId, Date.now())
          return new Promise((r) => setTimeout(() => r({ ok: true }), 200))
        },
      }),
      noop('after', ['slow']),
    ]
    const checks = [
      assetCheck({ asset: 'leaf', name: 'never', blocking: true, evaluate: () => ({ passed: false }) }),
    ]
    const paused = await materialize(assets, { store, checks, cancelPollMs: 20 })
    expect(paused.status).toBe('paused')
    expect(paused.checks).toMatchObject([{ check: 'never', passed: false }])
    const resumed = await resumeRun(assets, paused.runId, { store, checks })
    expect(resumed?.steps.after?.status).toBe('succeeded')
    expect(resumed?.status).toBe('failure')
  })

  it('a warning (severity warn, or not blocking) is recorded and stops nothing', async () => {
    await using store = await openStore(':memory:')
    const { assets, calls } = graph({ value: 0 })
    const result = await materialize(assets, {
      store,
      checks: [
        assetCheck({
          asset: 'b',
          name: 'warn_only',
          blocking: true,
          severity: 'warn',
          evaluate: () => ({ passed: false }),
        }),
        assetCheck({ asset: 'b', name: 'not_blocking', evaluate: () => ({ passed: false }) }),
      ],
    })
    expect(result.status).toBe('success')
    expect(calls.sort()).toEqual(['a', 'b', 'c', 'd', 'x', 'y'])
    expect(result.checks.map((c) => [c.check, c.passed, c.severity, c.blocking])).toEqual([
      ['warn_only', false, 'warn', true],
      ['not_blocking', false, 'error', false],
    ])
    expect(await store.checkResultsOfRun(result.runId)).toHaveLength(2)
  })

  it('a check that throws counts as failed with its error', async () => {
    await using store = await openStore(':memory:')
    const { assets, calls } = graph({ value: 3 })
    const result = await materialize(assets, {
      store,
      checks: [
        assetCheck({
          asset: 'b',
          name: 'explodes',
          blocking: true,
          evaluate: () => {
            throw new Error('the index file is gone')
          },
        }),
        assetCheck({ asset: 'y', name: 'bad_return', evaluate: () => 'yes' as never }),
      ],
    })
    expect(result.status).toBe('failure')
    expect(calls).not.toContain('c')
    expect(result.checks[0]).toMatchObject({
      check: 'explodes',
      passed: false,
      error: { message: 'the index file is gone' },
    })
    expect(result.checks[1]!.error!.message).toMatch(/must return \{ passed: boolean/)
    const [stored] = await store.checkResultsOfRun(result.runId)
    expect(stored!.error!.message).toBe('the index file is gone')
  })

  it('re-execution from failure runs the checked asset and its check again, then what it stopped', async () => {
    await using store = await openStore(':memory:')
    const rows = { value: 0 }
    const { assets, calls } = graph(rows)
    const first = await materialize(assets, { store, checks: [notEmpty] })
    expect(first.status).toBe('failure')

    // the data is fixed upstream
    rows.value = 7
    calls.length = 0
    const second = await materialize(assets, { store, checks: [notEmpty], fromFailure: first.runId })
    expect(second.status).toBe('success')
    expect(calls.sort()).toEqual(['b', 'c', 'd'])
    expect(Object.keys(second.reused).sort()).toEqual(['a', 'x', 'y'])
    expect(second.checks).toMatchObject([{ check: 'not_empty', passed: true, metadata: { rows: 7 } }])
    const latest = await store.latestCheckResults()
    expect(latest).toHaveLength(1)
    expect(latest[0]).toMatchObject({ runId: second.runId, passed: true })
  })

  it('gives checks their validated run config, defaults applied', async () => {
    await using store = await openStore(':memory:')
    const seen: unknown[] = []
    const check = assetCheck({
      asset: 'b',
      name: 'within',
      blocking: true,
      config: z.object({ maxDropPercent: z.number().default(10) }),
      evaluate: (ctx) => {
        seen.push(ctx.config)
        return { passed: ctx.config.maxDropPercent >= 0 }
      },
    })
    const { assets } = graph({ value: 1 })
    await materialize(assets, { store, checks: [check] })
    const failed = await materialize(assets, {
      store,
      checks: [check],
      config: { checks: { b: { within: { maxDropPercent: -1 } } } },
    })
    expect(seen).toEqual([{ maxDropPercent: 10 }, { maxDropPercent: -1 }])
    expect(failed.status).toBe('failure')
    // kept with the run: a re-execution uses the same config
    expect((await store.getRun(failed.runId))!.config.checks).toEqual({
      b: { within: { maxDropPercent: -1 } },
    })
    await expect(
      materialize(assets, { store, checks: [check], config: { checks: { b: { within: { maxDrop: 1 } } } } }),
    ).rejects.toThrow(/config for check `b:within` has no field `maxDrop`. Did you mean `maxDropPercent`/)
    await expect(
      materialize(assets, { store, checks: [check], config: { checks: { b: { nope: {} } } } }),
    ).rejects.toThrow(/asset `b` has no check `nope`/)
    await expect(
      materialize(assets, {
        store,
        checks: [check],
        config: { checks: { b: { within: { maxDropPercent: 'x' } } } },
      }),
    ).rejects.toThrow(ConfigError)
  })

  it('refuses checks on unknown assets and duplicate names', async () => {
    const { assets } = graph({ value: 1 })
    const on = (asset: string, name = 'c') => assetCheck({ asset, name, evaluate: () => ({ passed: true }) })
    await expect(materialize(assets, { checks: [on('bb')] })).rejects.toThrow(
      /asset `bb`, which is not defined. Did you mean `b`/,
    )
    await expect(materialize(assets, { checks: [on('b'), on('b')] })).rejects.toThrow(/two checks named `c`/)
    expect(() => assetCheck({ asset: 'b', name: 'has space', evaluate: () => ({ passed: true }) })).toThrow(
      ConfigError,
    )
  })
})
