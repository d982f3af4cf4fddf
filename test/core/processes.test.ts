import { existsSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { materialize } from '../../core/materialize.js'
import { recoverRuns } from '../../core/recovery.js'
import { openStore } from '../../core/store/open.js'
import { noop, ROOT, run, tempDir } from '../helpers.js'

const fixture = (name: string) => join(ROOT, 'test/fixtures', name)

describe('across processes', () => {
  it('a pool limits steps across runs in different processes sharing the store', async () => {
    const dir = tempDir()
    const storeFile = join(dir, 'refresh.db')
    const counterFile = join(dir, 'counter.db')
    await (await openStore(storeFile)).close()
    const counter = new Database(counterFile)
    counter.exec('CREATE TABLE c (cur INTEGER, peak INTEGER); INSERT INTO c VALUES (0, 0)')
    counter.close()
    const runs = await Promise.all(
      ['x', 'y', 'z'].map((label) =>
        run([fixture('pool-child.mjs'), storeFile, counterFile, label, '4', '60', '2']),
      ),
    )
    for (const r of runs) expect(r.stdout.trim(), r.stderr).toBe('success')
    const db = new Database(counterFile, { readonly: true })
    const { cur, peak } = db.prepare('SELECT cur, peak FROM c').get() as { cur: number; peak: number }
    db.close()
    expect(cur).toBe(0)
    // 12 steps wanting 8 at a time per process: never more than the pool's 2, and the pool was used fully
    expect(peak).toBe(2)
    await using store = await openStore(storeFile)
    expect(await store.poolUsage()).toEqual([])
  })

  it('a pool limits steps within one run', async () => {
    let cur = 0
    let peak = 0
    const work = async () => {
      cur++
      peak = Math.max(peak, cur)
      await new Promise((r) => setTimeout(r, 5))
      cur--
    }
    const assets = Array.from({ length: 6 }, (_, i) => noop(`p${i}`, [], { pool: 'api', materialize: work }))
    const result = await materialize([...assets, noop('free')], { concurrency: 6, pools: { api: 2 } })
    expect(result.status).toBe('success')
    expect(peak).toBe(2)
  })

  it('a pool without a limit is an error before the run', async () => {
    await expect(materialize([noop('p', [], { pool: 'api' })])).rejects.toThrow(
      'asset `p` uses pool `api`, which has no limit; set one with `pools: { "api": 1 }`.',
    )
  })

  it('a run whose process was killed is marked failed as interrupted, and re-executes from failure', async () => {
    const dir = tempDir()
    const storeFile = join(dir, 'refresh.db')
    const marker = join(dir, 'marker')
    const child = run([fixture('killed-run.mjs'), storeFile, marker])
    for (let i = 0; i < 500 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 20))
    const pid = Number(readFileSync(marker, 'utf8'))
    process.kill(pid, 'SIGKILL')
    expect((await child).signal).toBe('SIGKILL')

    await using store = await openStore(storeFile)
    const [stuck] = await store.listRuns()
    expect(stuck?.status).toBe('started')
    // a live run of this process is never taken
    expect(await store.recoverInterruptedRuns({ runIds: ['none'] })).toEqual([])
    const recovered = await store.recoverInterruptedRuns()
    expect(recovered).toEqual([{ runId: stuck!.id, reason: `its process (pid ${pid}) is gone` }])
    expect(await store.recoverInterruptedRuns()).toEqual([])
    const run1 = (await store.getRun(stuck!.id))!
    expect(run1.status).toBe('failure')
    expect(run1.error?.name).toBe('InterruptedError')
    expect((await store.getSteps(stuck!.id)).map((s) => [s.key, s.status])).toEqual([
      ['a', 'succeeded'],
      ['b', 'failed'],
      ['c', 'canceled'],
    ])
    expect((await store.getAttempts(stuck!.id, 'b'))[0]?.status).toBe('failed')
    const events = await store.getEvents(stuck!.id)
    expect(events.at(-1)?.type).toBe('run:end')

    const calls: string[] = []
    const again = await materialize(
      [
        noop('a', [], { materialize: () => void calls.push('a') }),
        noop('b', ['a'], {
          materialize: (ctx) => {
            calls.push('b')
            return { saw: ctx.upstream.a ?? null }
          },
        }),
        noop('c', ['b'], { materialize: () => void calls.push('c') }),
      ],
      { store, fromFailure: stuck!.id },
    )
    expect(again.status).toBe('success')
    expect(calls).toEqual(['b', 'c'])
    expect(again.materializations.b?.metadata).toEqual({ saw: { table: 'work_1' } })
  })

  it('recovery calls the recover hook of each asset the interrupted run planned, once, and reports errors', async () => {
    const dir = tempDir()
    const storeFile = join(dir, 'refresh.db')
    const marker = join(dir, 'marker')
    const child = run([fixture('killed-run.mjs'), storeFile, marker])
    for (let i = 0; i < 500 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 20))
    process.kill(Number(readFileSync(marker, 'utf8')), 'SIGKILL')
    await child
    await using store = await openStore(storeFile)
    const [stuck] = await store.listRuns()
    const calls: Array<[string, readonly string[]]> = []
    const recovery = await recoverRuns(store, [
      noop('a'),
      noop('b', ['a'], { recover: (ids) => void calls.push(['b', ids]) }),
      noop('c', ['b'], {
        recover: () => {
          throw new Error('ECS unreachable')
        },
      }),
      noop('elsewhere', [], { recover: (ids) => void calls.push(['elsewhere', ids]) }),
    ])
    expect(recovery.recovered.map((r) => r.runId)).toEqual([stuck!.id])
    expect(calls).toEqual([['b', [stuck!.id]]])
    expect(recovery.hooks.map((h) => [h.asset, h.error?.message ?? null])).toEqual([
      ['b', null],
      ['c', 'ECS unreachable'],
    ])
    // nothing left to recover: no hook runs again
    expect(
      (await recoverRuns(store, [noop('b', [], { recover: () => void calls.push(['again', []]) })])).hooks,
    ).toEqual([])
  })

  it('a run owned by another host is interrupted only when its heartbeat is stale', async () => {
    await using store = await openStore(':memory:')
    const now = 1_000_000_000
    const base = { selection: '*', plan: ['a'], config: {}, status: 'started' as const }
    await store.createRun({ ...base, id: 'fresh', now: now - 30_000, owner: { pid: 1, host: 'elsewhere' } })
    await store.createRun({ ...base, id: 'stale', now: now - 120_000, owner: { pid: 1, host: 'elsewhere' } })
    await store.createRun({
      ...base,
      id: 'mine',
      now: now - 120_000,
      owner: { pid: process.pid, host: hostname() },
    })
    expect((await store.recoverInterruptedRuns({ now })).map((r) => r.runId)).toEqual(['stale'])
    expect((await store.getRun('fresh'))?.status).toBe('started')
    expect((await store.getRun('mine'))?.status).toBe('started')
  })
})
