/**
 * Several daemons on one Postgres store, as real processes: they split the queue and the sensors
 * between them, each run and each tick exactly once, and one that is killed is taken over.
 */
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { configProject, ROOT, run, startCli, until } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'

let server: TestPostgres
beforeAll(async () => {
  server = await startPostgres()
})
afterAll(async () => {
  await server?.stop()
})

describe('several daemons on one Postgres store', () => {
  it('two daemons racing for 1,000 queued runs launch and execute each exactly once, both doing work', async () => {
    const location = await server.freshUrl('race')
    {
      await using store = await openStore(location)
      for (let i = 0; i < 1_000; i++) {
        await store.requestRun({
          id: `run-${String(i).padStart(4, '0')}`,
          selection: 'snapshot',
          plan: ['snapshot'],
          config: {},
          origin: 'test',
          now: i,
        })
      }
    }
    const fixture = join(ROOT, 'test/fixtures/race-daemon.mjs')
    const results = await Promise.all(
      [0, 1].map(() => run([fixture, location, '16', '500'], { timeoutMs: 120_000 }).then((r) => r)),
    )
    const outputs = results.map((r) => {
      expect(r.code, r.stderr).toBe(0)
      return JSON.parse(r.stdout) as { launched: string[]; executed: string[]; errors: string[] }
    })
    for (const o of outputs) {
      expect(o.errors).toEqual([])
      expect(o.executed.length).toBeGreaterThan(0)
    }
    const launched = outputs.flatMap((o) => o.launched)
    const executed = outputs.flatMap((o) => o.executed)
    expect(executed).toHaveLength(1_000)
    expect(new Set(executed).size).toBe(1_000)
    // launch claims: no run was launched by both (not only started once)
    expect(new Set(launched).size).toBe(launched.length)
    await using store = await openStore(location)
    expect(await store.countRuns()).toMatchObject({ success: 1_000, queued: 0, started: 0 })
    const schema = new URL(location).searchParams.get('schema')!
    const starts = await server.sql<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${schema}".events WHERE type = 'run:start'`,
    )
    expect(starts).toEqual([{ n: 1_000 }])
  }, 180_000)

  it('sensors are split between two daemons, each tick evaluated once; a SIGKILLed daemon is taken over', async () => {
    const location = await server.freshUrl('sensors')
    const names = Array.from({ length: 8 }, (_, i) => `s${i}`)
    const dir = configProject(`import { asset, defineConfig, sensor } from 'refresh'
export default defineConfig({
  assets: [asset({ key: 'a', materialize: () => ({}) })],
  sensors: ${JSON.stringify(names)}.map((name) =>
    sensor({ name, intervalSeconds: 1, evaluate: () => ({ skip: \`by \${process.pid} at \${Date.now()}\` }) }),
  ),
})
`)
    const env = { REFRESH_STORE: location }
    const ports = [await freePort(), await freePort()]
    const a = startCli(['daemon', '--json', '--http', String(ports[0])], {
      cwd: dir,
      env,
      killAfterMs: 120_000,
    })
    const b = startCli(['daemon', '--json', '--http', String(ports[1])], {
      cwd: dir,
      env,
      killAfterMs: 120_000,
    })
    await using store = await openStore(location)
    const ticksBy = async () => {
      const out = new Map<string, Array<{ pid: number; at: number }>>()
      for (const name of names) {
        out.set(
          name,
          (await store.listTicks(name, 1_000)).map((t) => {
            const m = /^by (\d+) at/.exec(t.skipReason ?? '')
            return { pid: Number(m?.[1]), at: t.tickTime }
          }),
        )
      }
      return out
    }
    const pids = [a.child.pid!, b.child.pid!]
    try {
      // both do useful work: each evaluates some of the sensors
      await until(async () => {
        const all = [...(await ticksBy()).values()].flat()
        return pids.every((pid) => all.some((t) => t.pid === pid))
      }, 'both daemons to evaluate sensors')
      const status = await run([join(ROOT, 'dist/cli/main.js'), 'status', '--json'], { cwd: dir, env })
      expect(status.code, status.stderr).toBe(0)
      const daemons = (
        JSON.parse(status.stdout) as { daemons: Array<{ pid: number; instigators: string[] }> }
      ).daemons
      expect(daemons.map((d) => d.pid).sort()).toEqual([...pids].sort())
      expect(status.stdout).not.toContain(server.password)
      // both are healthy: on a shared store each holds its own presence, one of them the daemon lease
      for (const port of ports) {
        const health = await fetch(`http://127.0.0.1:${port}/healthz`)
        const body = (await health.json()) as { checks: { lease: { detail: string } } }
        expect(health.status, JSON.stringify(body)).toBe(200)
        expect(body.checks.lease.detail).toMatch(
          /^alive as .*, one of 2 daemon\(s\); the daemon lease is held by /,
        )
      }
      a.child.kill('SIGKILL')
      const killedAt = Date.now()
      await a.done
      // the survivor takes over the killed daemon's sensors once its presence lease expires
      await until(
        async () =>
          [...(await ticksBy()).values()].every((ticks) =>
            ticks.some((t) => t.pid === pids[1] && t.at > killedAt),
          ),
        'the surviving daemon to evaluate every sensor',
        30_000,
      )
      // each tick was evaluated by one daemon: never two evaluations of a sensor in one interval
      for (const [name, ticks] of await ticksBy()) {
        const times = ticks.map((t) => t.at).sort((x, y) => x - y)
        for (let i = 1; i < times.length; i++) {
          expect(
            times[i]! - times[i - 1]!,
            `${name}: two ticks ${times[i]! - times[i - 1]!} ms apart`,
          ).toBeGreaterThanOrEqual(900)
        }
      }
      b.child.kill('SIGTERM')
      expect((await b.done).code).toBe(0)
      expect(b.stdout()).toMatch(/"event":"daemons:changed"/)
    } finally {
      a.child.kill('SIGKILL')
      b.child.kill('SIGKILL')
    }
  }, 120_000)
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  await new Promise((r) => server.close(r))
  return port
}
