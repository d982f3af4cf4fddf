/**
 * A daemon running a partitioned schedule, in process with a fake clock: it ticks at the cron
 * times, requests the partition that just closed and launches the queued run, which materializes
 * that partition (a launcher that runs `launchRun` in process, as `refresh launch RUN_ID` does in
 * its own process).
 */
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../core/clock.js'
import { type AssetContext, asset } from '../../core/definitions.js'
import { AssetGraph } from '../../core/graph.js'
import type { LaunchExit, RunLauncher } from '../../core/launcher.js'
import { launchRun } from '../../core/materialize.js'
import { dailyPartitions } from '../../core/partitions/time.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { Daemon } from '../../daemon/daemon.js'
import type { DaemonEvent } from '../../daemon/events.js'
import { schedule } from '../../sensors/definitions.js'

/** Runs each launched run in this process, against the daemon's store. */
function inProcessLauncher(assets: Parameters<typeof launchRun>[0], store: RunStore): RunLauncher {
  return {
    kind: 'in-process',
    remote: false,
    launch({ run }) {
      const exited: Promise<LaunchExit> = launchRun(assets, run.id, { store }).then(
        (result) => ({ code: result?.status === 'success' ? 0 : 1, signal: null, stderr: '' }),
        (error: Error) => ({ code: 1, signal: null, stderr: error.message }),
      )
      return { pid: undefined, exited, kill() {} }
    },
    async close() {},
  }
}

describe('daemon: partitioned schedules', () => {
  it('launches the partition that just closed at each tick, and the run materializes it', async () => {
    await using store = await openStore(':memory:')
    const days = dailyPartitions({ start: '2026-10-20', timezone: 'America/New_York' })
    const built: string[] = []
    const record = (ctx: AssetContext) => {
      built.push(`${ctx.key}:${ctx.partition?.key}`)
      return { start: ctx.partition?.window?.start.toISOString() ?? null }
    }
    const assets = [
      asset({ key: 'events', partitions: days, materialize: record }),
      asset({ key: 'summary', deps: ['events'], partitions: days, materialize: record }),
    ]
    // 23:00 EDT on Saturday 2026-10-31; the clocks go back at 02:00 on Sunday
    const clock = new ManualClock(Date.parse('2026-11-01T03:00:00Z'))
    const events: DaemonEvent[] = []
    let iterations = 0
    const waiters: Array<() => void> = []
    /** Two whole iterations of the loop from now: one surely started after the clock moved. */
    const twoIterations = async () => {
      const target = iterations + 2
      while (iterations < target) await new Promise<void>((resolve) => waiters.push(resolve))
    }
    const daemon = new Daemon({
      store,
      graph: AssetGraph.build(assets),
      runConfig: {},
      instigators: [
        schedule({
          name: 'nightly',
          cron: '30 0 * * *',
          timezone: 'America/New_York',
          selection: '*',
          partitioned: true,
        }),
      ],
      launcher: inProcessLauncher(assets, store),
      configFile: 'refresh.config.ts',
      onEvent: (e) => events.push(e),
      clock,
      // the loop sleeps in real time: a millisecond, then it reads the fake clock again
      loopMs: 1,
      onIteration: () => {
        iterations++
        for (const waiter of waiters.splice(0)) waiter()
      },
    })
    const done = daemon.run()
    const runs = async () => (await store.listRuns()).reverse()
    const succeeded = async (n: number) => (await runs()).filter((r) => r.status === 'success').length >= n
    // two nights, five minutes at a time: 00:30 EDT on 11-01, then 00:30 EST on 11-02 (a 25-hour day)
    for (let i = 0; i < 12 * 28 && !(await succeeded(2)); i++) {
      await clock.advance(5 * 60_000)
      await twoIterations()
    }
    daemon.stop()
    await done
    expect((await runs()).map((r) => [r.status, r.runKey, r.partitionKey])).toEqual([
      ['success', '2026-10-31', '2026-10-31'],
      ['success', '2026-11-01', '2026-11-01'],
    ])
    expect(built).toEqual([
      'events:2026-10-31',
      'summary:2026-10-31',
      'events:2026-11-01',
      'summary:2026-11-01',
    ])
    expect((await store.latestMaterialization('summary'))?.metadata).toEqual({
      start: '2026-11-01T04:00:00.000Z',
    })
    expect(events.flatMap((e) => (e.type === 'run:launched' ? [e.partition] : []))).toEqual([
      '2026-10-31',
      '2026-11-01',
    ])
    const ticks = (await store.listTicks('nightly')).reverse()
    expect(ticks.map((t) => [new Date(t.tickTime).toISOString(), t.status])).toEqual([
      ['2026-11-01T04:30:00.000Z', 'success'],
      ['2026-11-02T05:30:00.000Z', 'success'],
    ])
  })
})
