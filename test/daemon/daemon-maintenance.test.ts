import { type ChildProcess, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { CLI, run, tempDir, until } from '../helpers.js'

const CONFIG = `
import { asset, defineConfig, schedule, whenMaterialized } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'reindex', materialize: () => ({ docs: 1 }) }),
    asset({ key: 'snapshot', deps: ['reindex'], materialize: () => ({}) }),
  ],
  sensors: [whenMaterialized('reindex', { name: 'snapshot_after_reindex', launch: 'snapshot+' })],
  schedules: [schedule({ name: 'often', cron: '*/2 * * * * *', selection: 'snapshot' })],
})
`

const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
})

function daemon(dir: string): { child: ChildProcess; output: () => string; exited: Promise<unknown> } {
  const child = spawn(process.execPath, [CLI, 'daemon', '--grace-seconds', '5'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let out = ''
  child.stdout!.on('data', (d) => {
    out += d
  })
  child.stderr!.on('data', (d) => {
    out += d
  })
  return { child, output: () => out, exited: new Promise((r) => child.on('close', r)) }
}

describe('maintenance with a real daemon', () => {
  it('the snapshot sensor and a schedule keep ticking during maintenance: parked, then replayed once each', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    const storeFile = join(dir, '.refresh/refresh.db')
    const d = daemon(dir)
    await until(() => /holding the daemon lease/.test(d.output()), 'the lease')
    expect(
      (await run([CLI, 'maintenance', 'on', '--reason', 'deploy', '--drain-timeout', '5s'], { cwd: dir }))
        .code,
    ).toBe(0)
    // a forced partial run during maintenance: the sensor sees reindex materialized
    expect((await run([CLI, 'run', 'reindex', '--force', '--plain'], { cwd: dir })).code).toBe(0)
    const store = await openStore(storeFile)
    try {
      await until(async () => {
        const origins = (await store.listParked({ pending: true })).map((p) => p.origin)
        return origins.includes('sensor:snapshot_after_reindex') && origins.includes('schedule:often')
      }, 'both requests parked')
      await new Promise((r) => setTimeout(r, 4500)) // two more schedule ticks: still one parked request
      const parked = await store.listParked({ pending: true })
      expect(parked.filter((p) => p.origin === 'schedule:often')).toHaveLength(1)
      expect(parked.filter((p) => p.origin === 'sensor:snapshot_after_reindex')).toHaveLength(1)
      // nothing created past the gate (a schedule tick may have launched one before it closed)
      const since = (await store.getMaintenance())!.since
      expect((await store.listRuns()).filter((r) => r.origin !== 'manual' && r.createdAt >= since)).toEqual(
        [],
      )

      const off = await run([CLI, 'maintenance', 'off'], { cwd: dir })
      expect(off.code).toBe(0)
      for (const p of parked) {
        const replayed = (await store.listParked()).find((x) => x.id === p.id)!
        expect(replayed.replayedAt).not.toBeNull()
        const r = (await store.getRun(replayed.replayRunId!))!
        expect([r.origin, r.runKey]).toEqual([p.origin, p.runKey])
      }
      // the daemon launches them; each exactly once
      await until(async () => {
        const now = await store.listParked()
        for (const p of parked) {
          const replayRunId = now.find((x) => x.id === p.id)!.replayRunId
          if (replayRunId === null || (await store.getRun(replayRunId))?.status !== 'success') return false
        }
        return true
      }, 'replayed runs to finish')
      const keyed = (await store.listRuns()).filter((r) => r.origin === 'sensor:snapshot_after_reindex')
      expect(keyed).toHaveLength(1)
    } finally {
      await store.close()
    }
    d.child.kill('SIGTERM')
    await d.exited
  })

  it('a daemon killed in the middle of a replay, restarted, replays every request exactly once', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG.replace(/schedules: \[.*\],/, ''))
    const storeFile = join(dir, '.refresh/refresh.db')
    const store = await openStore(storeFile)
    const count = 3000
    try {
      await store.setMaintenanceOn({ reason: 'test', by: 'test', since: Date.now(), drainTimeoutMs: 0 })
      const guard = { key: 'one-at-a-time', concurrency: 1, onConflict: 'queue' as const }
      for (let i = 0; i < count; i++) {
        const o = await store.requestRun({
          id: `x${i}`,
          selection: 'snapshot',
          plan: ['snapshot'],
          config: {},
          origin: 'sensor:files',
          runKey: `file-${i}`,
          guard,
          now: Date.now(),
        })
        expect(o.outcome).toBe('parked')
      }
      // the gate goes off without replaying: the daemon replays
      await store.setMaintenanceOff()
      const first = daemon(dir)
      const replayed = async () => (await store.listParked()).filter((p) => p.replayedAt !== null).length
      await until(async () => (await replayed()) > 0, 'the replay to start')
      first.child.kill('SIGKILL')
      await first.exited
      const midway = await replayed()
      const second = daemon(dir)
      await until(async () => (await replayed()) === count, 'the replay to finish', 60_000)
      second.child.kill('SIGKILL')
      await second.exited
      const parked = await store.listParked()
      const runIds = parked.map((p) => p.replayRunId)
      expect(new Set(runIds).size).toBe(count)
      const runs = (await store.listRuns()).filter((r) => r.origin === 'sensor:files')
      expect(runs).toHaveLength(count)
      expect(new Set(runs.map((r) => r.runKey)).size).toBe(count)
      // in order: replayed runs were created in the order the requests arrived
      const byId = new Map(runs.map((r) => [r.id, r]))
      const keysInRunOrder = [...runs].reverse().map((r) => r.runKey)
      expect(keysInRunOrder).toEqual(parked.map((p) => byId.get(p.replayRunId!)!.runKey))
      expect(midway).toBeLessThan(count)
    } finally {
      await store.close()
    }
  })
})
