import { describe, expect, it } from 'vitest'
import { ConfigError, NonRetriableError, StoreError } from '../../core/errors.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { noop } from '../helpers.js'

describe('re-execution from failure', () => {
  it('reuses the parent run’s succeeded steps and runs the rest', async () => {
    await using store = await openStore(':memory:')
    const calls: string[] = []
    let brokenFixed = false
    const seen: unknown[] = []
    const assets = [
      noop('copy', [], {
        materialize: (ctx) => {
          calls.push('copy')
          return { table: `work_${ctx.runId}` }
        },
      }),
      noop('clean', ['copy'], {
        materialize: (ctx) => {
          calls.push('clean')
          seen.push(ctx.upstream.copy)
          if (!brokenFixed) throw new NonRetriableError('bad rule')
          return { rows: 9 }
        },
      }),
      noop('stats', ['copy'], {
        materialize: () => {
          calls.push('stats')
        },
      }),
      noop('publish', ['clean']),
    ]
    const first = await materialize(assets, { store, concurrency: 1 })
    expect(first.status).toBe('failure')
    expect(calls).toEqual(['copy', 'clean', 'stats'])

    brokenFixed = true
    calls.length = 0
    const second = await materialize(assets, { store, fromFailure: first.runId })
    expect(second.status).toBe('success')
    expect(second.parentRunId).toBe(first.runId)
    expect(calls).toEqual(['clean'])
    expect(Object.keys(second.steps)).toEqual(['clean', 'publish'])
    expect(second.reused).toEqual({
      copy: { runId: first.runId, metadata: { table: `work_${first.runId}` } },
      stats: { runId: first.runId, metadata: {} },
    })
    // the retried step saw the parent's materialization of copy, not a new one
    expect(seen).toEqual([{ table: `work_${first.runId}` }, { table: `work_${first.runId}` }])
    const run = (await store.getRun(second.runId))!
    expect(run).toMatchObject({ parentRunId: first.runId, rootRunId: first.runId, selection: '*' })
    expect(run.reused).toEqual({ copy: first.runId, stats: first.runId })
  })

  it('follows the lineage through several retries', async () => {
    await using store = await openStore(':memory:')
    let failing = new Set(['b', 'c'])
    const calls: string[] = []
    const step = (key: string, deps: string[]) =>
      noop(key, deps, {
        materialize: () => {
          calls.push(key)
          if (failing.has(key)) throw new NonRetriableError(`${key} broken`)
          return { from: key }
        },
      })
    const assets = [step('a', []), step('b', ['a']), step('c', ['b'])]
    const r1 = await materialize(assets, { store })
    failing = new Set(['c'])
    const r2 = await materialize(assets, { store, fromFailure: r1.runId })
    expect(r2.status).toBe('failure')
    failing = new Set()
    calls.length = 0
    const r3 = await materialize(assets, { store, fromFailure: r2.runId })
    expect(r3.status).toBe('success')
    expect(calls).toEqual(['c'])
    expect(r3.reused).toEqual({
      a: { runId: r1.runId, metadata: { from: 'a' } },
      b: { runId: r2.runId, metadata: { from: 'b' } },
    })
    expect((await store.getRun(r3.runId))?.rootRunId).toBe(r1.runId)
  })

  it('re-executes a canceled run', async () => {
    await using store = await openStore(':memory:')
    const controller = new AbortController()
    const first = await materialize(
      [
        noop('a'),
        noop('b', ['a'], {
          materialize: () => {
            controller.abort()
            return new Promise(() => {})
          },
        }),
      ],
      { store, signal: controller.signal },
    )
    expect(first.status).toBe('canceled')
    const second = await materialize([noop('a'), noop('b', ['a'])], { store, fromFailure: first.runId })
    expect(second.status).toBe('success')
    expect(Object.keys(second.steps)).toEqual(['b'])
  })

  it('keeps the parent’s selection and config unless new config is given', async () => {
    await using store = await openStore(':memory:')
    const { z } = await import('zod')
    const { asset } = await import('../../core/definitions.js')
    const seen: unknown[] = []
    let fail = true
    const a = asset({
      key: 'a',
      config: z.object({ n: z.number() }),
      materialize: (ctx) => {
        seen.push(ctx.config.n)
        if (fail) throw new NonRetriableError('x')
      },
    })
    const first = await materialize([a, noop('other')], { store, selection: 'a', config: { a: { n: 1 } } })
    fail = false
    const second = await materialize([a, noop('other')], { store, fromFailure: first.runId })
    expect(second.selection).toBe('a')
    expect(Object.keys(second.steps)).toEqual(['a'])
    expect(seen).toEqual([1, 1])
  })

  it('refuses to re-execute a successful, unknown or still running run', async () => {
    await using store = await openStore(':memory:')
    const ok = await materialize([noop('a')], { store })
    await expect(materialize([noop('a')], { store, fromFailure: ok.runId })).rejects.toThrow(
      /succeeded; there is nothing to re-execute/,
    )
    await expect(materialize([noop('a')], { store, fromFailure: 'nope-nope' })).rejects.toThrow(StoreError)
    let release!: () => void
    const running = materialize(
      [noop('a', [], { materialize: () => new Promise<void>((r) => (release = r)) })],
      {
        store,
      },
    )
    await new Promise((r) => setTimeout(r, 10))
    const [started] = await store.listRuns({ status: 'started' })
    await expect(materialize([noop('a')], { store, fromFailure: started!.id })).rejects.toThrow(
      /is started; only a failed or canceled run/,
    )
    release()
    await running
  })

  it('refuses when an asset of the parent run is no longer defined', async () => {
    await using store = await openStore(':memory:')
    const first = await materialize(
      [
        noop('a'),
        noop('b', ['a'], {
          materialize: () => {
            throw new NonRetriableError('x')
          },
        }),
      ],
      { store },
    )
    await expect(materialize([noop('a')], { store, fromFailure: first.runId })).rejects.toThrow(ConfigError)
    await expect(materialize([noop('a')], { store, fromFailure: first.runId })).rejects.toThrow(
      /included asset `b`, which is no longer defined/,
    )
  })
})
