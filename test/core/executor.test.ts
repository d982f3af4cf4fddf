import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ManualClock } from '../../core/clock.js'
import { asset } from '../../core/definitions.js'
import { ConfigError, NonRetriableError, RetryAfterError } from '../../core/errors.js'
import type { RunEvent } from '../../core/events.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { noop } from '../helpers.js'

/** A deferred promise: lets a test hold an asset inside `materialize` until it says so. */
function gate() {
  let open!: () => void
  const promise = new Promise<void>((resolve) => {
    open = resolve
  })
  return { promise, open }
}

describe('executor', () => {
  it('runs independent steps concurrently, up to the concurrency limit', async () => {
    let running = 0
    let peak = 0
    const work = async () => {
      running++
      peak = Math.max(peak, running)
      await new Promise((r) => setImmediate(r))
      await new Promise((r) => setImmediate(r))
      running--
    }
    const leaves = Array.from({ length: 12 }, (_, i) => noop(`leaf${i}`, [], { materialize: work }))
    const a = await materialize(leaves, { concurrency: 3 })
    expect(a.status).toBe('success')
    expect(peak).toBe(3)
    peak = 0
    await materialize(leaves, { concurrency: 1 })
    expect(peak).toBe(1)
  })

  it('starts a step only after all of its deps succeeded', async () => {
    const order: string[] = []
    const track = (key: string, deps: string[] = []) =>
      noop(key, deps, {
        materialize: async () => {
          order.push(`start ${key}`)
          await new Promise((r) => setImmediate(r))
          order.push(`end ${key}`)
        },
      })
    await materialize([track('a'), track('b'), track('c', ['a', 'b'])], { concurrency: 8 })
    expect(order.indexOf('start c')).toBeGreaterThan(order.indexOf('end a'))
    expect(order.indexOf('start c')).toBeGreaterThan(order.indexOf('end b'))
  })

  it('passes upstream metadata, config and resources to the context', async () => {
    const seen: unknown[] = []
    const up = noop('up', [], { materialize: () => ({ rows: 7 }) })
    const down = asset({
      key: 'down',
      deps: ['up'],
      config: z.object({ batch: z.number().default(100), name: z.string() }),
      materialize(ctx) {
        seen.push(ctx.upstream.up, ctx.config, ctx.resources.db, ctx.attempt, ctx.key)
        return { total: Number(ctx.upstream.up?.rows) * 2 }
      },
    })
    const result = await materialize([up, down], {
      config: { down: { name: 'x' } },
      resources: { db: 'fake-db' },
    })
    expect(seen).toEqual([{ rows: 7 }, { batch: 100, name: 'x' }, 'fake-db', 1, 'down'])
    expect(result.materializations.down?.metadata).toEqual({ total: 14 })
  })

  it('takes upstream metadata of deps outside the selection from the latest materialization', async () => {
    const store = await openStore(':memory:')
    let version = 0
    const up = noop('up', [], { materialize: () => ({ version: ++version }) })
    const seen: unknown[] = []
    const down = noop('down', ['up'], {
      materialize: (ctx) => {
        seen.push(ctx.upstream.up)
      },
    })
    await materialize([up, down], { store, selection: 'up' })
    await materialize([up, down], { store, selection: 'up' })
    await materialize([up, down], { store, selection: 'down' })
    expect(seen).toEqual([{ version: 2 }])
    await store.close()
  })

  it('a failed step skips everything downstream; siblings go on', async () => {
    const boom = noop('boom', [], {
      materialize: () => {
        throw new NonRetriableError('bad input file')
      },
    })
    const result = await materialize(
      [
        boom,
        noop('child', ['boom']),
        noop('grandchild', ['child']),
        noop('sibling'),
        noop('after', ['sibling']),
      ],
      { concurrency: 1 },
    )
    expect(result.status).toBe('failure')
    expect(result.steps.boom?.status).toBe('failed')
    expect(result.steps.boom?.error?.message).toBe('bad input file')
    expect(result.steps.child).toMatchObject({ status: 'skipped', upstream: 'boom', attempts: 0 })
    expect(result.steps.grandchild).toMatchObject({ status: 'skipped', upstream: 'boom' })
    expect(result.steps.sibling?.status).toBe('succeeded')
    expect(result.steps.after?.status).toBe('succeeded')
  })

  it('does not start a step whose other dep finishes after a failure skipped it', async () => {
    const slow = gate()
    let ran = false
    const result = materialize(
      [
        noop('fails', [], {
          materialize: () => {
            throw new NonRetriableError('x')
          },
        }),
        noop('slow', [], { materialize: () => slow.promise }),
        noop('join', ['fails', 'slow'], {
          materialize: () => {
            ran = true
          },
        }),
      ],
      { concurrency: 4 },
    )
    await new Promise((r) => setTimeout(r, 20))
    slow.open()
    const r = await result
    expect(ran).toBe(false)
    expect(r.steps.join?.status).toBe('skipped')
  })

  it('retries with the policy: attempts, exponential backoff, then succeeds', async () => {
    const clock = new ManualClock()
    let calls = 0
    const flaky = noop('flaky', [], {
      retry: { maxAttempts: 4, delayMs: 100, backoff: 'exponential' },
      materialize: (ctx) => {
        calls++
        if (ctx.attempt < 4) throw new Error(`transient ${ctx.attempt}`)
        return { ok: true }
      },
    })
    const events: RunEvent[] = []
    const pending = materialize([flaky], { clock, onEvent: (e) => events.push(e) })
    await clock.runAll()
    const result = await pending
    expect(result.status).toBe('success')
    expect(calls).toBe(4)
    expect(result.steps.flaky?.attempts).toBe(4)
    expect(clock.sleeps).toEqual([100, 200, 400])
    const retries = events.filter((e) => e.type === 'step:retry')
    expect(
      retries.map((e) => (e.type === 'step:retry' ? [e.attempt, e.nextAttempt, e.delayMs] : null)),
    ).toEqual([
      [1, 2, 100],
      [2, 3, 200],
      [3, 4, 400],
    ])
  })

  it('fails after the last attempt with the last error', async () => {
    const clock = new ManualClock()
    const always = noop('always', [], {
      retry: { maxAttempts: 3, delayMs: 50, backoff: 'linear' },
      materialize: (ctx) => {
        throw new Error(`attempt ${ctx.attempt} failed`)
      },
    })
    const pending = materialize([always], { clock })
    await clock.runAll()
    const result = await pending
    expect(result.steps.always).toMatchObject({ status: 'failed', attempts: 3 })
    expect(result.steps.always?.error?.message).toBe('attempt 3 failed')
    expect(clock.sleeps).toEqual([50, 100])
  })

  it('applies full and plus-minus jitter with the injected random source', async () => {
    for (const [jitter, expected] of [
      ['full', [25, 50]],
      ['plus-minus', [50, 150]],
    ] as const) {
      const clock = new ManualClock()
      const step = noop('j', [], {
        retry: { maxAttempts: 3, delayMs: 100, backoff: 'exponential', jitter },
        materialize: (ctx) => {
          if (ctx.attempt < 3) throw new Error('again')
        },
      })
      const pending = materialize([step], { clock, random: () => 0.25 })
      await clock.runAll()
      await pending
      // full: 0.25 * d; plus-minus: d + (2 * 0.25 - 1) * delay = d - 50
      expect(clock.sleeps).toEqual(expected)
    }
  })

  it('waits as long as a RetryAfterError says, then retries', async () => {
    const clock = new ManualClock()
    const limited = noop('limited', [], {
      retry: { maxAttempts: 2, delayMs: 10 },
      materialize: (ctx) => {
        if (ctx.attempt === 1) throw new RetryAfterError(30, 'rate limited')
        return { ok: 1 }
      },
    })
    const pending = materialize([limited], { clock })
    await clock.runAll()
    const result = await pending
    expect(result.status).toBe('success')
    expect(clock.sleeps).toEqual([30_000])
  })

  it('does not retry a NonRetriableError', async () => {
    let calls = 0
    const result = await materialize([
      noop('fatal', [], {
        retry: { maxAttempts: 5, delayMs: 0 },
        materialize: () => {
          calls++
          throw new NonRetriableError('schema mismatch')
        },
      }),
    ])
    expect(calls).toBe(1)
    expect(result.steps.fatal).toMatchObject({ status: 'failed', attempts: 1 })
  })

  it('aborts an attempt at its timeout, and retries it', async () => {
    const clock = new ManualClock()
    const aborted: unknown[] = []
    const slow = noop('slow', [], {
      timeoutMs: 1000,
      retry: { maxAttempts: 2, delayMs: 0 },
      materialize: (ctx) =>
        new Promise((resolve) => {
          if (ctx.attempt === 2) return resolve({ second: true })
          ctx.signal.addEventListener('abort', () => aborted.push(ctx.signal.reason))
        }),
    })
    const events: RunEvent[] = []
    const pending = materialize([slow], { clock, onEvent: (e) => events.push(e) })
    await clock.advance(999)
    expect(aborted).toHaveLength(0)
    await clock.advance(1)
    await clock.runAll()
    const result = await pending
    expect(aborted).toHaveLength(1)
    expect((aborted[0] as Error).name).toBe('StepTimeoutError')
    expect(result.steps.slow).toMatchObject({ status: 'succeeded', attempts: 2 })
    const retry = events.find((e) => e.type === 'step:retry')
    expect(retry?.type === 'step:retry' && retry.error.message).toBe('attempt timed out after 1000 ms')
  })

  it('cancel stops new steps, aborts running ones, and ends canceled', async () => {
    const controller = new AbortController()
    const started = gate()
    let signalSeen: AbortSignal | undefined
    let downstreamRan = false
    const running = noop('running', [], {
      materialize: (ctx) => {
        signalSeen = ctx.signal
        started.open()
        return new Promise(() => {}) // never settles on its own
      },
    })
    const later = noop('later', ['running'], {
      materialize: () => {
        downstreamRan = true
      },
    })
    const store = await openStore(':memory:')
    const pending = materialize([running, later], { store, signal: controller.signal })
    await started.promise
    controller.abort()
    const result = await pending
    expect(result.status).toBe('canceled')
    expect(signalSeen?.aborted).toBe(true)
    expect(downstreamRan).toBe(false)
    expect(result.steps.running?.status).toBe('canceled')
    expect(result.steps.later?.status).toBe('canceled')
    const run = await store.getRun(result.runId)
    expect(run?.status).toBe('canceled')
    expect((await store.getSteps(result.runId)).map((s) => s.status)).toEqual(['canceled', 'canceled'])
    expect((await store.getAttempts(result.runId)).map((a) => a.status)).toEqual(['canceled'])
    await store.close()
  })

  it('cancel during the wait before a retry ends the step canceled', async () => {
    const clock = new ManualClock()
    const controller = new AbortController()
    const pending = materialize(
      [
        noop('x', [], {
          retry: { maxAttempts: 3, delayMs: 60_000 },
          materialize: () => {
            throw new Error('down')
          },
        }),
      ],
      { clock, signal: controller.signal },
    )
    await clock.advance(0)
    expect(clock.pending).toBe(1)
    controller.abort()
    const result = await pending
    expect(result.status).toBe('canceled')
    expect(result.steps.x).toMatchObject({ status: 'canceled', attempts: 1 })
  })

  it('a run canceled before it starts runs nothing', async () => {
    let ran = false
    const result = await materialize(
      [
        noop('a', [], {
          materialize: () => {
            ran = true
          },
        }),
      ],
      { signal: AbortSignal.abort() },
    )
    expect(ran).toBe(false)
    expect(result.status).toBe('canceled')
  })

  it('cancel requested through the store by another process stops the run', async () => {
    const dir = (await import('../helpers.js')).tempDir()
    const file = `${dir}/refresh.db`
    const store = await openStore(file)
    const started = gate()
    const pending = materialize(
      [
        noop('wait', [], {
          materialize: (ctx) => {
            started.open()
            return new Promise((_, reject) =>
              ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)),
            )
          },
        }),
      ],
      { store, cancelPollMs: 20 },
    )
    await started.promise
    const other = await openStore(file)
    const [run] = await other.listRuns({ status: 'started' })
    expect(await other.requestCancel(run!.id, Date.now())).toBe('started')
    await other.close()
    const result = await pending
    expect(result.status).toBe('canceled')
    expect(result.cancelReason).toBe('cancel requested')
    await store.close()
  })

  it('rejects metadata that is not a plain JSON object, without retrying', async () => {
    const result = await materialize([
      noop('arr', [], { retry: { maxAttempts: 3, delayMs: 0 }, materialize: () => [1, 2] as never }),
    ])
    expect(result.steps.arr).toMatchObject({ status: 'failed', attempts: 1 })
    expect(result.steps.arr?.error?.message).toMatch(/plain object of metadata/)
  })

  it('validates run config before the run starts, and records nothing', async () => {
    const store = await openStore(':memory:')
    const a = asset({ key: 'a', config: z.object({ rows: z.number().int() }), materialize: () => {} })
    await expect(materialize([a], { store, config: { a: { rows: 'many' } } })).rejects.toThrow(
      /config for asset `a` is invalid: rows: Invalid input: expected number, received string/,
    )
    await expect(materialize([a], { store, config: { b: {} } })).rejects.toThrow(ConfigError)
    await expect(materialize([a], { store, config: { A: { rows: 1 } } })).rejects.toThrow(
      'config is given for `A`, which is not an asset. Did you mean `a`?',
    )
    await expect(materialize([a], { store, concurrency: 0 })).rejects.toThrow(/concurrency/)
    await expect(materialize([a], { store, selection: 'nope' })).rejects.toThrow(/not an asset/)
    expect(await store.listRuns()).toHaveLength(0)
    await store.close()
  })

  it('emits a complete, ordered event stream and persists every event', async () => {
    const store = await openStore(':memory:')
    const events: RunEvent[] = []
    const result = await materialize(
      [
        noop('a', [], {
          materialize: (ctx) => {
            ctx.log('hello')
            ctx.progress(1, 2)
            return { n: 1 }
          },
        }),
        noop('b', ['a']),
      ],
      { store, onEvent: (e) => events.push(e) },
    )
    expect(events.map((e) => `${e.type}${'step' in e && e.step ? ` ${e.step}` : ''}`)).toEqual([
      'run:start',
      'step:start a',
      'log a',
      'step:progress a',
      'asset:materialized a',
      'step:success a',
      'step:start b',
      'asset:materialized b',
      'step:success b',
      'run:end',
    ])
    const stored = await store.getEvents(result.runId)
    expect(stored.map(({ id: _, ...e }) => e)).toEqual(events)
    expect(stored.map((e) => e.id)).toEqual([...stored.map((e) => e.id)].sort((x, y) => x - y))
    await store.close()
  })

  it('reports a throwing listener after the run, which still completes', async () => {
    const store = await openStore(':memory:')
    await expect(
      materialize([noop('a')], {
        store,
        onEvent: () => {
          throw new Error('view crashed')
        },
      }),
    ).rejects.toThrow(/an onEvent listener threw/)
    expect((await store.listRuns())[0]?.status).toBe('success')
    await store.close()
  })

  it('never prints', async () => {
    const writes: unknown[] = []
    const out = process.stdout.write
    const err = process.stderr.write
    process.stdout.write = ((chunk: unknown) => {
      writes.push(chunk)
      return true
    }) as typeof process.stdout.write
    process.stderr.write = ((chunk: unknown) => {
      writes.push(chunk)
      return true
    }) as typeof process.stderr.write
    try {
      await materialize([
        noop('a', [], {
          materialize: (ctx) => {
            ctx.log('quiet')
            throw new NonRetriableError('x')
          },
        }),
        noop('b', ['a']),
      ])
    } finally {
      process.stdout.write = out
      process.stderr.write = err
    }
    expect(writes).toEqual([])
  })
})
