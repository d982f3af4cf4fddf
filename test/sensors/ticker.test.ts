import { describe, expect, it } from 'vitest'
import { assetCheck } from '../../core/checks.js'
import { ManualClock } from '../../core/clock.js'
import { AssetGraph } from '../../core/graph.js'
import { launchRun, materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { onRunStatus, schedule, sensor, whenMaterialized } from '../../sensors/definitions.js'
import { type TickEnv, tickSchedule, tickSensor } from '../../sensors/ticker.js'
import { noop } from '../helpers.js'

const assets = [
  noop('copy'),
  noop('reindex', ['copy']),
  noop('snapshot', ['reindex']),
  noop('promote', ['snapshot']),
]

function env(
  store: RunStore,
  clock = new ManualClock(Date.parse('2026-11-20T12:00:00Z')),
): TickEnv & { clock: ManualClock } {
  return { store, graph: AssetGraph.build(assets), runConfig: {}, clock }
}

describe('sensors', () => {
  it('persists the cursor and the tick result; requests become queued runs', async () => {
    await using store = await openStore(':memory:')
    const e = env(store)
    const seen: Array<string | null> = []
    const s = sensor({
      name: 'files',
      evaluate: (ctx) => {
        seen.push(ctx.cursor)
        const n = Number(ctx.cursor ?? 0) + 1
        return { runs: [{ selection: 'copy+', runKey: `file-${n}` }], cursor: String(n) }
      },
    })
    const first = await tickSensor(s, e)
    await tickSensor(s, e)
    expect(seen).toEqual([null, '1'])
    expect(first.tick).toMatchObject({ instigator: 'files', status: 'success', cursor: '1' })
    expect(first.outcomes[0]?.outcome).toBe('created')
    const runs = await store.listRuns()
    expect(runs.map((r) => [r.status, r.origin, r.runKey, r.plan.join(',')])).toEqual([
      ['queued', 'sensor:files', 'file-2', 'copy,reindex,snapshot,promote'],
      ['queued', 'sensor:files', 'file-1', 'copy,reindex,snapshot,promote'],
    ])
    expect((await store.getInstigator('files'))?.cursor).toBe('2')
    expect((await store.listTicks('files')).map((t) => t.status)).toEqual(['success', 'success'])
  })

  it('a repeated run key is skipped and recorded with the existing run id', async () => {
    await using store = await openStore(':memory:')
    const s = sensor({ name: 'same', evaluate: () => ({ runs: [{ selection: 'copy', runKey: 'k' }] }) })
    const first = await tickSensor(s, env(store))
    const second = await tickSensor(s, env(store))
    const runId = first.tick.runIds[0]
    expect(second.outcomes).toEqual([{ outcome: 'duplicate', runId }])
    expect(second.tick).toMatchObject({ status: 'skipped', runIds: [runId] })
    expect(second.tick.skipReason).toBe(`run key k already used by run ${runId}`)
    expect(await store.listRuns()).toHaveLength(1)
  })

  it('a failed keyed run can be re-executed from failure; the key still blocks a new request', async () => {
    await using store = await openStore(':memory:')
    const s = sensor({ name: 'keyed', evaluate: () => ({ runs: [{ selection: 'copy', runKey: 'file-1' }] }) })
    const runId = (await tickSensor(s, env(store))).tick.runIds[0]!
    const failing = [noop('copy', [], { materialize: () => Promise.reject(new Error('bad file')) })]
    expect((await launchRun(failing, runId, { store }))?.status).toBe('failure')
    const retried = await materialize([noop('copy')], { store, fromFailure: runId })
    expect(retried).toMatchObject({ status: 'success', parentRunId: runId })
    expect((await tickSensor(s, env(store))).outcomes).toEqual([{ outcome: 'duplicate', runId }])
  })

  it('a tick that throws records the error and does not advance the cursor', async () => {
    await using store = await openStore(':memory:')
    let fail = false
    const s = sensor({
      name: 'flaky',
      evaluate: (ctx) => {
        if (fail) throw new Error('upstream API down')
        return { skip: 'nothing new', cursor: `${Number(ctx.cursor ?? 0) + 1}` }
      },
    })
    await tickSensor(s, env(store))
    fail = true
    const failed = await tickSensor(s, env(store))
    expect(failed.tick).toMatchObject({ status: 'failure', cursor: '1' })
    expect(failed.tick.error?.message).toBe('upstream API down')
    expect((await store.getInstigator('flaky'))?.cursor).toBe('1')
    fail = false
    expect((await tickSensor(s, env(store))).tick.cursor).toBe('2')
  })

  it('a malformed result or an unknown selection fails the tick', async () => {
    await using store = await openStore(':memory:')
    const bad = await tickSensor(sensor({ name: 'bad', evaluate: () => ({ run: [] }) as never }), env(store))
    expect(bad.tick.status).toBe('failure')
    expect(bad.tick.error?.message).toMatch(/return \{ runs: \[\.\.\.\] \} or \{ skip: 'reason' \}/)
    const typo = await tickSensor(
      sensor({ name: 'typo', evaluate: () => ({ runs: [{ selection: 'snapshott+' }] }) }),
      env(store),
    )
    expect(typo.tick.error?.message).toMatch(/Did you mean `snapshot`/)
    expect(await store.listRuns()).toHaveLength(0)
  })

  it('a slow evaluation is bounded by its timeout and recorded as failed', async () => {
    await using store = await openStore(':memory:')
    const e = env(store)
    let aborted = false
    const slow = sensor({
      name: 'slow',
      timeoutSeconds: 5,
      evaluate: (ctx) =>
        new Promise(() => {
          ctx.signal.addEventListener('abort', () => {
            aborted = true
          })
        }),
    })
    const pending = tickSensor(slow, e)
    await e.clock.advance(5_000)
    const result = await pending
    expect(result.tick.status).toBe('failure')
    expect(result.tick.error?.message).toBe('sensor evaluation timed out after 5 s')
    expect(aborted).toBe(true)
  })

  it('guard coalesce: requests while a run is in flight become exactly one follow-up', async () => {
    await using store = await openStore(':memory:')
    let n = 0
    const s = sensor({
      name: 'snap',
      guard: { concurrency: 1, onConflict: 'coalesce' },
      evaluate: () => ({ runs: [{ selection: 'snapshot+', runKey: `r${++n}` }] }),
    })
    const e = env(store)
    const first = await tickSensor(s, e)
    const firstRun = first.tick.runIds[0]!
    // launch the first run and keep it in flight
    let release!: () => void
    const inFlight = launchRun(
      [
        ...assets.filter((a) => a.key !== 'snapshot'),
        noop('snapshot', ['reindex'], { materialize: () => new Promise<void>((r) => (release = r)) }),
      ],
      firstRun,
      { store },
    )
    await new Promise((r) => setTimeout(r, 20))
    expect((await store.getRun(firstRun))?.status).toBe('started')
    const followUps = [await tickSensor(s, e), await tickSensor(s, e), await tickSensor(s, e)]
    const followUp = followUps[0]!.tick.runIds[0]!
    expect(followUps.map((t) => t.outcomes[0]?.outcome)).toEqual(['created', 'coalesced', 'coalesced'])
    expect(followUps.map((t) => t.tick.runIds[0])).toEqual([followUp, followUp, followUp])
    expect((await store.listRuns({ status: 'queued' })).map((r) => r.id)).toEqual([followUp])
    // the follow-up cannot launch while the guard is full, and can once it frees
    expect(await store.claimQueuedRun(followUp, { pid: process.pid, host: 'h' }, Date.now())).toBe(false)
    release()
    expect((await inFlight)?.status).toBe('success')
    expect((await launchRun(assets, followUp, { store }))?.status).toBe('success')
  })

  it('guard skip: extra requests are recorded as skipped with the reason', async () => {
    await using store = await openStore(':memory:')
    let n = 0
    const s = sensor({
      name: 'once',
      guard: { concurrency: 1, onConflict: 'skip' },
      evaluate: () => ({ runs: [{ selection: 'copy', runKey: `k${++n}` }] }),
    })
    const first = await tickSensor(s, env(store))
    const second = await tickSensor(s, env(store))
    expect(second.tick.status).toBe('skipped')
    expect(second.tick.skipReason).toBe(
      `guard \`once\` is full (1 at a time; run ${first.tick.runIds[0]} is in flight)`,
    )
    expect(await store.listRuns()).toHaveLength(1)
    // a skipped key was not claimed: it can be requested again later
    expect(await store.listTicks('once')).toHaveLength(2)
  })

  it('guard queue: every request is kept and launched in order', async () => {
    await using store = await openStore(':memory:')
    let n = 0
    const s = sensor({
      name: 'q',
      guard: { concurrency: 1, onConflict: 'queue' },
      evaluate: () => ({ runs: [{ selection: 'copy', runKey: `k${++n}` }] }),
    })
    const ids = [] as string[]
    for (let i = 0; i < 3; i++) ids.push((await tickSensor(s, env(store))).tick.runIds[0]!)
    const queued = await store.queuedRuns()
    expect(queued.map((r) => [r.id, r.launchable])).toEqual([
      [ids[0], true],
      [ids[1], false],
      [ids[2], false],
    ])
    // launching out of order is refused
    expect(await store.claimQueuedRun(ids[1]!, { pid: 1, host: 'h' }, 0)).toBe(false)
    for (const id of ids) expect((await launchRun(assets, id, { store }))?.status).toBe('success')
  })

  it('whenMaterialized launches snapshot+ after a run that materialized reindex but not snapshot', async () => {
    await using store = await openStore(':memory:')
    const s = whenMaterialized('reindex', {
      name: 'snapshot_after_reindex',
      launch: 'snapshot+',
      guard: { concurrency: 1, onConflict: 'coalesce' },
    })
    const e = env(store)
    expect((await tickSensor(s, e)).tick.skipReason).toBe('no new materialization of reindex')
    // a full run snapshots after reindex: nothing to do
    await materialize(assets, { store })
    const full = await tickSensor(s, e)
    expect(full.tick.status).toBe('skipped')
    expect(full.tick.skipReason).toBe('snapshot already materialized after reindex')
    // a partial run (reindex only): launch snapshot+
    await materialize(assets, { store, selection: 'reindex' })
    const partial = await tickSensor(s, e)
    expect(partial.tick.status).toBe('success')
    const [run] = await store.listRuns({ status: 'queued' })
    expect(run).toMatchObject({
      selection: 'snapshot+',
      plan: ['snapshot', 'promote'],
      origin: 'sensor:snapshot_after_reindex',
    })
    // evaluated again: the same materialization is not requested twice
    expect((await tickSensor(s, e)).tick.status).toBe('skipped')
    expect(await store.listRuns({ status: 'queued' })).toHaveLength(1)
  })

  it('whenMaterialized does not launch on a materialization a blocking check failed on', async () => {
    await using store = await openStore(':memory:')
    const s = whenMaterialized('reindex', { name: 'snapshot_after_reindex', launch: 'snapshot+' })
    const e = env(store)
    let documents = 0
    const checks = [
      assetCheck({
        asset: 'reindex',
        name: 'not_empty',
        blocking: true,
        evaluate: () => ({ passed: documents > 0 }),
      }),
    ]
    const stopped = await materialize(assets, { store, checks })
    expect(stopped.steps.snapshot).toMatchObject({ status: 'skipped', check: 'not_empty' })
    const tick = await tickSensor(s, e)
    expect(tick.tick.status).toBe('skipped')
    expect(tick.tick.skipReason).toBe(
      `reindex of run ${stopped.runId} failed its blocking check not_empty; not launching snapshot+ on it`,
    )
    expect(await store.listRuns({ status: 'queued' })).toHaveLength(0)
    // a partial run whose check passes is launched on as before
    documents = 5
    await materialize(assets, { store, checks, selection: 'reindex' })
    expect((await tickSensor(s, e)).tick.status).toBe('success')
    expect(await store.listRuns({ status: 'queued' })).toHaveLength(1)
  })

  it('onRunStatus calls back once per run reaching the status, from when it started watching', async () => {
    await using store = await openStore(':memory:')
    const failing = [noop('copy', [], { materialize: () => Promise.reject(new Error('x')) })]
    await materialize(failing, { store })
    const notified: string[] = []
    const s = onRunStatus({ name: 'alerts', status: 'failure', notify: (run) => void notified.push(run.id) })
    const e = env(store, new ManualClock(Date.now()))
    await tickSensor(s, e)
    await new Promise((r) => setTimeout(r, 5))
    const a = await materialize(failing, { store })
    const b = await materialize(failing, { store })
    await materialize([noop('copy')], { store })
    await tickSensor(s, e)
    await tickSensor(s, e)
    expect(notified).toEqual([a.runId, b.runId])
  })
})

describe('schedules', () => {
  const nightly = (extra: Partial<Parameters<typeof schedule>[0]> = {}) =>
    schedule({ name: 'nightly', cron: '0 3 * * *', timezone: 'America/Chicago', selection: '*', ...extra })

  it('fires each tick once, with the tick time as run key; nothing for times before it was on', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, new ManualClock(Date.parse('2026-11-20T12:00:00Z')))
    expect(await tickSchedule(nightly(), e)).toEqual([]) // first sight: on from now, 03:00 today is before that
    await e.clock.advance(16 * 3_600_000) // 2026-11-21T04:00Z: not yet 03:00 CST (09:00Z)
    expect(await tickSchedule(nightly(), e)).toEqual([])
    await e.clock.advance(5 * 3_600_000 + 1) // 09:00Z
    const [fired] = await tickSchedule(nightly(), e)
    expect(fired?.tick).toMatchObject({ status: 'success', tickTime: Date.parse('2026-11-21T09:00:00Z') })
    expect((await store.listRuns())[0]).toMatchObject({
      runKey: '2026-11-21T09:00:00.000Z',
      origin: 'schedule:nightly',
      status: 'queued',
    })
    expect(await tickSchedule(nightly(), e)).toEqual([])
    expect(await store.listRuns()).toHaveLength(1)
  })

  it('missed ticks: `latest` launches only the most recent; catchUp launches up to N, oldest first', async () => {
    for (const [missed, expected] of [
      ['latest', ['2026-11-25T09:00:00.000Z']],
      [{ catchUp: 3 }, ['2026-11-23T09:00:00.000Z', '2026-11-24T09:00:00.000Z', '2026-11-25T09:00:00.000Z']],
    ] as const) {
      await using store = await openStore(':memory:')
      const e = env(store, new ManualClock(Date.parse('2026-11-20T12:00:00Z')))
      await tickSchedule(nightly({ missed }), e)
      await e.clock.advance(5 * 86_400_000) // five days without a daemon
      await tickSchedule(nightly({ missed }), e)
      expect((await store.listRuns()).map((r) => r.runKey).reverse()).toEqual(expected)
    }
  })

  it('turning a schedule back on after months does not flood the queue', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, new ManualClock(Date.parse('2026-01-01T00:00:00Z')))
    const s = nightly({ missed: { catchUp: 50 } })
    await tickSchedule(s, e)
    await store.setInstigatorStatus('nightly', 'schedule', 'off', e.clock.now())
    await e.clock.advance(120 * 86_400_000)
    expect(await tickSchedule(s, e)).toEqual([])
    await store.setInstigatorStatus('nightly', 'schedule', 'on', e.clock.now())
    expect(await tickSchedule(s, e)).toEqual([])
    await e.clock.advance(86_400_000)
    expect(await tickSchedule(s, e)).toHaveLength(1)
    expect(await store.listRuns()).toHaveLength(1)
  })

  it('a schedule that is off by default fires only once turned on', async () => {
    await using store = await openStore(':memory:')
    const e = env(store, new ManualClock(Date.parse('2026-11-20T12:00:00Z')))
    const s = nightly({ defaultStatus: 'off' })
    await e.clock.advance(86_400_000)
    expect(await tickSchedule(s, e)).toEqual([])
    await store.setInstigatorStatus('nightly', 'schedule', 'on', e.clock.now())
    await e.clock.advance(86_400_000)
    expect(await tickSchedule(s, e)).toHaveLength(1)
  })
})
