import { describe, expect, it } from 'vitest'
import type { RunEvent } from '../../core/events.js'
import { launchRun, materialize, resumeRun } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { noop } from '../helpers.js'

describe('pause and resume', () => {
  it('pauses after running steps finish, keeps pending steps, and resumes without re-running finished ones', async () => {
    await using store = await openStore(':memory:')
    const calls: string[] = []
    const assets = [
      noop('copy', [], {
        materialize: () => {
          calls.push('copy')
          return { table: 't1' }
        },
      }),
      noop('clean', ['copy'], {
        materialize: async (ctx) => {
          calls.push('clean')
          // another process asks for a pause while this step runs: it still finishes
          await store.requestPause(ctx.runId, Date.now())
          return new Promise((r) => setTimeout(() => r({ rows: 2 }), 300))
        },
      }),
      noop('reindex', ['clean'], {
        materialize: (ctx) => {
          calls.push('reindex')
          return { from: ctx.upstream.clean ?? null }
        },
      }),
    ]
    const events: RunEvent[] = []
    const first = await materialize(assets, { store, cancelPollMs: 20, onEvent: (e) => events.push(e) })
    expect(first.status).toBe('paused')
    expect(calls).toEqual(['copy', 'clean'])
    expect(events.map((e) => e.type)).toContain('run:pausing')
    expect(events.at(-1)).toMatchObject({ type: 'run:paused', pending: 1, succeeded: 2 })
    expect((await store.getRun(first.runId))?.status).toBe('paused')
    expect((await store.getSteps(first.runId)).map((s) => [s.key, s.status])).toEqual([
      ['copy', 'succeeded'],
      ['clean', 'succeeded'],
      ['reindex', 'pending'],
    ])

    calls.length = 0
    const resumed = await resumeRun(assets, first.runId, { store })
    expect(resumed?.status).toBe('success')
    expect(resumed?.runId).toBe(first.runId)
    expect(calls).toEqual(['reindex'])
    expect(resumed?.materializations.reindex?.metadata).toEqual({ from: { rows: 2 } })
    expect((await store.getRun(first.runId))?.status).toBe('success')
    expect((await store.getEvents(first.runId)).some((e) => e.type === 'run:resumed')).toBe(true)
  })

  it('a paused run handed to the daemon (queued again) runs only the steps it had left', async () => {
    await using store = await openStore(':memory:')
    const calls: string[] = []
    const assets = [
      noop('copy', [], {
        materialize: async (ctx) => {
          calls.push('copy')
          await store.requestPause(ctx.runId, Date.now())
          return new Promise((r) => setTimeout(() => r({ table: 't' }), 100))
        },
      }),
      noop('reindex', ['copy'], {
        materialize: (ctx) => {
          calls.push('reindex')
          return { from: ctx.upstream.copy ?? null }
        },
      }),
    ]
    const first = await materialize(assets, { store, cancelPollMs: 20 })
    expect(first.status).toBe('paused')
    expect(await store.requeuePausedRun(first.runId)).toBe(true)
    expect(await store.requeuePausedRun(first.runId)).toBe(false)
    expect((await store.queuedRuns()).map((r) => r.id)).toEqual([first.runId])
    const launched = await launchRun(assets, first.runId, { store })
    expect(launched?.status).toBe('success')
    expect(calls).toEqual(['copy', 'reindex'])
    expect(launched?.materializations.reindex?.metadata).toEqual({ from: { table: 't' } })
  })

  it('refuses to pause a run that is not started, and to resume one that is not paused', async () => {
    await using store = await openStore(':memory:')
    const done = await materialize([noop('a')], { store })
    await expect(store.requestPause(done.runId, Date.now())).rejects.toThrow(
      /is success; only a started run can be paused/,
    )
    await expect(store.requestPause('nope-nope-nope', Date.now())).rejects.toThrow(/no run `nope-nope-nope`/)
    await expect(resumeRun([noop('a')], done.runId, { store })).rejects.toThrow(
      /only a paused run can be resumed/,
    )
  })

  it('a paused run holds its guard slot', async () => {
    await using store = await openStore(':memory:')
    const guard = { key: 'snap', concurrency: 1, onConflict: 'coalesce' as const }
    const base = { selection: 'a', plan: ['a', 'b'], config: {}, origin: 'sensor:s', guard }
    await store.requestRun({ ...base, id: 'first', now: 1 })
    const assets = [
      noop('a', [], {
        materialize: async (ctx) => {
          await store.requestPause(ctx.runId, Date.now())
          return new Promise((r) => setTimeout(() => r({}), 100))
        },
      }),
      noop('b', ['a']),
    ]
    expect((await launchRun(assets, 'first', { store, cancelPollMs: 20 }))?.status).toBe('paused')
    expect(await store.requestRun({ ...base, id: 'second', now: 2 })).toEqual({
      outcome: 'created',
      runId: 'second',
    })
    expect(await store.claimQueuedRun('second', { pid: 1, host: 'h' }, 3)).toBe(false)
    expect((await resumeRun([noop('a'), noop('b', ['a'])], 'first', { store }))?.status).toBe('success')
    expect(await store.claimQueuedRun('second', { pid: 1, host: 'h' }, 4)).toBe(true)
  })
})
