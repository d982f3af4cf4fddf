import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ManualClock, systemClock } from '../../core/clock.js'
import { RunParkedError } from '../../core/errors.js'
import { AssetGraph } from '../../core/graph.js'
import { launchRun, materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { maintenanceOff, maintenanceOn, replayParked } from '../../daemon/maintenance.js'
import { schedule, sensor } from '../../sensors/definitions.js'
import { tickSchedule, tickSensor } from '../../sensors/ticker.js'
import { noop, tempDir } from '../helpers.js'

const assets = [noop('copy'), noop('reindex', ['copy']), noop('snapshot', ['reindex'])]
const graph = AssetGraph.build(assets)
const env = (store: RunStore, clock = systemClock) => ({ store, graph, runConfig: {}, clock })
const on = (store: RunStore, extra: Partial<Parameters<typeof maintenanceOn>[1]> = {}) =>
  maintenanceOn(store, {
    backupDir: join(tempDir(), 'backups'),
    reason: 'deploy',
    by: 'ops@host',
    drainTimeoutMs: 5_000,
    clock: systemClock,
    pollMs: 10,
    ...extra,
  })

describe('maintenance mode', () => {
  it('parks runs requested while it is on; --force runs anyway, recorded', async () => {
    const dir = tempDir()
    await using store = await openStore(join(dir, 'refresh.db'))
    await on(store)
    const attempt = materialize(assets, { store, selection: 'copy+', config: { copy: {} } })
    await expect(attempt).rejects.toThrow(RunParkedError)
    await expect(materialize(assets, { store })).rejects.toThrow(
      /maintenance mode is on \(deploy\): the run was parked as request #2/,
    )
    expect(await store.listRuns()).toEqual([])
    expect((await store.listParked({ pending: true })).map((p) => [p.id, p.origin, p.selection])).toEqual([
      [1, 'manual', 'copy+'],
      [2, 'manual', '*'],
    ])
    const forced = await materialize(assets, { store, selection: 'copy', force: true })
    expect(forced.status).toBe('success')
    expect((await store.getRun(forced.runId))?.tags).toEqual({ 'refresh/forced': 'maintenance' })
  })

  it('sensors keep evaluating and advancing their cursors; their requests are parked, not lost', async () => {
    await using store = await openStore(':memory:')
    await on(store)
    let n = 0
    const s = sensor({
      name: 'files',
      evaluate: () => ({
        runs: [{ selection: 'copy+', runKey: `file-${Math.ceil(++n / 2)}` }],
        cursor: String(n),
      }),
    })
    const ticks = [
      await tickSensor(s, env(store)),
      await tickSensor(s, env(store)),
      await tickSensor(s, env(store)),
    ]
    expect(ticks.map((t) => t.outcomes[0])).toEqual([
      { outcome: 'parked', requestId: 1 },
      { outcome: 'parked', requestId: 1 }, // the same key again: one request
      { outcome: 'parked', requestId: 2 },
    ])
    expect((await store.getInstigator('files'))?.cursor).toBe('3')
    expect(await store.listRuns()).toEqual([])
  })

  it('schedule ticks are parked under the missed-tick policy', async () => {
    await using store = await openStore(':memory:')
    const clock = new ManualClock(Date.parse('2026-11-20T12:00:00Z'))
    const nightly = schedule({ name: 'nightly', cron: '0 3 * * *', timezone: 'UTC' })
    await tickSchedule(nightly, env(store, clock))
    await maintenanceOn(store, {
      reason: 'long',
      by: 'ops',
      drainTimeoutMs: 0,
      clock,
      pollMs: 10,
      backupDir: tempDir(),
    })
    for (let day = 0; day < 3; day++) {
      await clock.advance(86_400_000)
      await tickSchedule(nightly, env(store, clock))
    }
    expect((await store.listParked({ pending: true })).map((p) => p.runKey)).toEqual([
      '2026-11-23T03:00:00.000Z',
    ])
  })

  it('off replays parked requests once each, in order, with their original run keys', async () => {
    await using store = await openStore(':memory:')
    await on(store)
    let n = 0
    const s = sensor({
      name: 'files',
      evaluate: () => ({ runs: [{ selection: 'copy+', runKey: `file-${++n}` }] }),
    })
    await tickSensor(s, env(store))
    await expect(materialize(assets, { store, selection: 'snapshot' })).rejects.toThrow(RunParkedError)
    await tickSensor(s, env(store))
    const { state, replayed } = await maintenanceOff(env(store))
    expect(state.reason).toBe('deploy')
    expect(replayed.map((r) => [r.parked.id, r.outcome.outcome])).toEqual([
      [1, 'created'],
      [2, 'created'],
      [3, 'created'],
    ])
    const runs = (await store.listRuns()).reverse()
    expect(runs.map((r) => [r.origin, r.runKey, r.selection, r.status])).toEqual([
      ['sensor:files', 'file-1', 'copy+', 'queued'],
      ['manual', null, 'snapshot', 'queued'],
      ['sensor:files', 'file-2', 'copy+', 'queued'],
    ])
    // idempotent: nothing left to replay, and a key replayed is a key used
    expect(await replayParked(env(store))).toEqual([])
    expect((await store.listParked()).every((p) => p.replayedAt !== null)).toBe(true)
    await expect(maintenanceOff(env(store))).rejects.toThrow(/maintenance mode is not on; nothing changed/)
  })

  it('holds queued runs while on and lets them launch once off', async () => {
    await using store = await openStore(':memory:')
    await store.requestRun({
      id: 'q1',
      selection: 'copy',
      plan: ['copy'],
      config: {},
      origin: 'sensor:s',
      now: 1,
    })
    await on(store)
    expect((await store.queuedRuns())[0]?.launchable).toBe(false)
    expect(await launchRun(assets, 'q1', { store })).toBeUndefined()
    await maintenanceOff(env(store))
    expect((await launchRun(assets, 'q1', { store }))?.status).toBe('success')
  })

  it('drains in-flight runs, then backs up the store with a manifest of the data directory', async () => {
    const dir = tempDir()
    const data = join(dir, 'data')
    mkdirSync(data)
    writeFileSync(join(data, 'index.db'), 'index bytes')
    await using store = await openStore(join(dir, 'refresh.db'))
    let finished = false
    const running = materialize(
      [
        noop('slow', [], {
          materialize: () =>
            new Promise((r) =>
              setTimeout(() => {
                finished = true
                r({ done: true })
              }, 300),
            ),
        }),
      ],
      { store },
    )
    await new Promise((r) => setTimeout(r, 30))
    const result = await on(store, { dataDir: data })
    expect(finished).toBe(true)
    expect((await running).status).toBe('success')
    expect(result.drained).toHaveLength(1)
    expect(result.parked).toEqual([])
    expect(result.backup?.ok).toBe(true)
    expect(existsSync(join(result.backup!.location!, 'refresh.db'))).toBe(true)
    const manifest = JSON.parse(readFileSync(join(result.backup!.location!, 'manifest.json'), 'utf8'))
    const sha256 = createHash('sha256').update('index bytes').digest('hex')
    expect(manifest.files).toEqual([{ path: 'index.db', bytes: 11, sha256 }])
    expect(await store.lastBackup()).toEqual(result.backup)
  })

  it('past the drain timeout, cancels in-flight runs cleanly and parks them to resume from failure', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const calls: string[] = []
    const defs = [
      noop('copy', [], { materialize: () => void calls.push('copy') }),
      noop('reindex', ['copy'], {
        materialize: (ctx) => {
          calls.push('reindex')
          return new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)),
          )
        },
      }),
    ]
    const running = materialize(defs, { store, cancelPollMs: 20 })
    await new Promise((r) => setTimeout(r, 50))
    const result = await on(store, { drainTimeoutMs: 100 })
    const first = await running
    expect(first.status).toBe('canceled')
    expect(result.parked).toEqual([{ runId: first.runId, requestId: 1 }])
    const { replayed } = await maintenanceOff(env(store))
    const runId = replayed[0]?.outcome.outcome === 'created' ? replayed[0].outcome.runId : ''
    const queued = (await store.getRun(runId))!
    expect(queued).toMatchObject({
      parentRunId: first.runId,
      plan: ['reindex'],
      reused: { copy: first.runId },
    })
    calls.length = 0
    const again = await launchRun(
      [noop('copy', [], { materialize: () => void calls.push('copy') }), noop('reindex', ['copy'])],
      runId,
      { store },
    )
    expect(again?.status).toBe('success')
    expect(calls).toEqual([])
  })
})
