import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { GuardBusyError } from '../../core/errors.js'
import { launchRun, materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import { noop, tempDir } from '../helpers.js'

const guards = [{ name: 'index_writers', selection: 'reindex,promote', concurrency: 1 }]
// for asset sets without promote (a guard's selection must name defined assets)
const reindexGuard = [{ name: 'index_writers', selection: 'reindex', concurrency: 1 }]

function gate() {
  let open!: () => void
  const promise = new Promise<void>((r) => {
    open = r
  })
  return { promise, open }
}

describe('run guards of the config, for every entry point', () => {
  it('a second run touching the guarded assets waits for the first, saying which run it waits for', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hold = gate()
    const started = gate()
    const order: string[] = []
    const slow = [
      noop('copy'),
      noop('reindex', ['copy'], {
        materialize: async (ctx) => {
          order.push(`reindex ${ctx.runId}`)
          started.open()
          await hold.promise
        },
      }),
      noop('promote', ['reindex']),
    ]
    const first = materialize(slow, { store, guards })
    await started.promise
    const waits: Array<{ guard: string; runId: string }> = []
    const second = materialize([noop('copy'), noop('reindex', ['copy']), noop('promote', ['reindex'])], {
      store,
      guards,
      selection: 'promote',
      guardPollMs: 10,
      onWait: (w) => waits.push(w),
    })
    await new Promise((r) => setTimeout(r, 80))
    const [running] = await store.listRuns({ status: 'started' })
    expect(await store.listRuns()).toHaveLength(1) // the second run is not recorded while it waits
    expect(waits).toEqual([{ guard: 'index_writers', runId: running!.id }])
    hold.open()
    expect((await first).status).toBe('success')
    expect((await second).status).toBe('success')
    expect(await store.runHolds((await second).runId)).toEqual([{ key: 'index_writers', limit: 1 }])
  })

  it('with wait: false, fails at once naming the run that holds the guard', async () => {
    await using store = await openStore(':memory:')
    const hold = gate()
    const started = gate()
    const first = materialize(
      [
        noop('reindex', [], {
          materialize: async () => {
            started.open()
            await hold.promise
          },
        }),
      ],
      { store, guards: reindexGuard },
    )
    await started.promise
    const holder = (await store.listRuns({ status: 'started' }))[0]!.id
    const attempt = materialize([noop('reindex')], { store, guards: reindexGuard, wait: false })
    await expect(attempt).rejects.toThrow(GuardBusyError)
    await expect(
      materialize([noop('reindex')], { store, guards: reindexGuard, wait: false }),
    ).rejects.toThrow(`run guard \`index_writers\` is full: run ${holder} holds it.`)
    // a run that touches no guarded asset does not wait
    expect(
      (
        await materialize([noop('reindex'), noop('stats')], {
          store,
          guards: reindexGuard,
          selection: 'stats',
        })
      ).status,
    ).toBe('success')
    hold.open()
    await first
  })

  it('a queued run (daemon) waits while a manual run holds the guard, and the reverse', async () => {
    await using store = await openStore(':memory:')
    await store.requestRun({
      id: 'queued',
      selection: 'reindex',
      plan: ['reindex'],
      config: {},
      origin: 'sensor:s',
      holds: [{ key: 'index_writers', limit: 1 }],
      now: 1,
    })
    const hold = gate()
    const started = gate()
    const manual = materialize(
      [
        noop('reindex', [], {
          materialize: async () => {
            started.open()
            await hold.promise
          },
        }),
      ],
      { store, guards: reindexGuard },
    )
    await started.promise
    expect((await store.queuedRuns())[0]?.launchable).toBe(false)
    expect(await launchRun([noop('reindex')], 'queued', { store })).toBeUndefined()
    hold.open()
    await manual
    expect((await launchRun([noop('reindex')], 'queued', { store }))?.status).toBe('success')
  })

  it('rejects a guard whose selection names no asset', async () => {
    await expect(
      materialize([noop('reindex')], { guards: [{ name: 'g', selection: 'reindx', concurrency: 1 }] }),
    ).rejects.toThrow(
      /run guard `g`: the selection names `reindx`, which is not an asset. Did you mean `reindex`\?/,
    )
  })
})
