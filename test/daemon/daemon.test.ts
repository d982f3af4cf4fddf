import { type ChildProcess, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { CLI, run, tempDir, until } from '../helpers.js'

const CONFIG = `
import { asset, defineConfig, whenMaterialized, schedule } from 'refresh'
const wait = (ms) => new Promise((r) => setTimeout(r, ms))
const reindex = asset({ key: 'reindex', materialize: () => ({ docs: 1 }) })
const snapshot = asset({
  key: 'snapshot',
  deps: ['reindex'],
  async materialize() {
    await wait(Number(process.env.SNAPSHOT_MS ?? 0))
    return { id: Date.now() }
  },
})
export default defineConfig({
  assets: [reindex, snapshot],
  sensors: [
    whenMaterialized('reindex', {
      name: 'snapshot_after_reindex',
      launch: 'snapshot+',
      guard: { concurrency: 1, onConflict: 'coalesce' },
    }),
  ],
  schedules: [schedule({ name: 'nightly', cron: '0 3 * * *', timezone: 'America/Chicago', defaultStatus: 'off' })],
})
`

interface Daemon {
  child: ChildProcess
  output: () => string
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const daemons: ChildProcess[] = []
afterEach(() => {
  for (const d of daemons.splice(0)) if (d.exitCode === null) d.kill('SIGKILL')
})

function startDaemon(
  dir: string,
  env: Record<string, string> = {},
  grace = '5',
  extra: string[] = [],
): Daemon {
  const child = spawn(process.execPath, [CLI, 'daemon', '--grace-seconds', grace, ...extra], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  daemons.push(child)
  let out = ''
  const waiters: Array<() => void> = []
  const onData = (d: Buffer) => {
    out += d.toString()
    for (const w of waiters) w()
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('close', (code, signal) => r({ code, signal })),
  )
  return {
    child,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(out)
          if (m) {
            clearTimeout(timer)
            resolve(m[0])
          }
        }
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${pattern}; output:\n${out}`)),
          timeoutMs,
        )
        waiters.push(check)
        check()
      })
    },
  }
}

function project(): string {
  const dir = tempDir()
  writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
  return dir
}

describe('refresh daemon (real processes)', () => {
  it('launches the snapshot sensor’s run after a partial run, and exits 0 on SIGTERM', async () => {
    const dir = project()
    const daemon = startDaemon(dir)
    await daemon.waitFor(/holding the daemon lease/)
    const partial = await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    expect(partial.code, partial.stderr).toBe(0)
    await daemon.waitFor(/run \S+ ended success/)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    const launched = (await store.listRuns()).find((r) => r.origin === 'sensor:snapshot_after_reindex')
    expect(launched).toMatchObject({ status: 'success', selection: 'snapshot+', plan: ['snapshot'] })
    daemon.child.kill('SIGTERM')
    expect(await daemon.exited).toEqual({ code: 0, signal: null })
    expect(await store.getLease('daemon')).toBeUndefined()
  })

  it('a second daemon waits, then takes over within seconds when the first is killed', async () => {
    const dir = project()
    const first = startDaemon(dir)
    await first.waitFor(/holding the daemon lease/)
    const second = startDaemon(dir)
    await second.waitFor(/another daemon holds the lease/)
    first.child.kill('SIGKILL')
    await first.exited
    const killedAt = Date.now()
    await second.waitFor(/holding the daemon lease/)
    expect(Date.now() - killedAt).toBeLessThan(15_000)
    // the survivor does the work: one sensor run per partial run, launched once
    await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    await second.waitFor(/run \S+ ended success/)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect((await store.listRuns()).filter((r) => r.origin === 'sensor:snapshot_after_reindex')).toHaveLength(
      1,
    )
    expect(first.output()).not.toMatch(/launched run/)
  })

  it('recovers a run whose process was killed', async () => {
    const dir = project()
    const daemon = startDaemon(dir, { SNAPSHOT_MS: '60000' })
    await daemon.waitFor(/holding the daemon lease/)
    await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    const line = await daemon.waitFor(/launched run \S+ .* as pid \d+/)
    const pid = Number(/pid (\d+)/.exec(line)![1])
    const runId = /launched run (\S+)/.exec(line)![1]!
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    // killed once it runs the run (a process killed before that fails the run as not started)
    await until(async () => (await store.getRun(runId))?.status === 'started', 'the run to start')
    process.kill(pid, 'SIGKILL')
    await daemon.waitFor(/marked failed: its process \(pid \d+\) is gone/)
    expect(await store.getRun(runId)).toMatchObject({
      status: 'failure',
      error: { name: 'InterruptedError' },
    })
    daemon.child.kill('SIGTERM')
    expect((await daemon.exited).code).toBe(0)
  })

  it('on SIGTERM, lets a running run finish within the grace period, then exits 0', async () => {
    const dir = project()
    const daemon = startDaemon(dir, { SNAPSHOT_MS: '1500' })
    await daemon.waitFor(/holding the daemon lease/)
    await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    const line = await daemon.waitFor(/launched run \S+/)
    const runId = line.split(' ')[2]!
    daemon.child.kill('SIGTERM')
    expect((await daemon.exited).code).toBe(0)
    expect(daemon.output()).toMatch(/1 run\(s\) in flight may finish within 5 s/)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect((await store.getRun(runId))?.status).toBe('success')
  })

  it('on SIGTERM, cancels a run that outlives the grace period, cleanly', async () => {
    const dir = project()
    const daemon = startDaemon(dir, { SNAPSHOT_MS: '60000' }, '1')
    await daemon.waitFor(/holding the daemon lease/)
    await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    const line = await daemon.waitFor(/launched run \S+/)
    const runId = line.split(' ')[2]!
    await new Promise((r) => setTimeout(r, 300))
    daemon.child.kill('SIGTERM')
    expect((await daemon.exited).code).toBe(0)
    expect(daemon.output()).toMatch(/canceling run \S+ \(grace period over\)/)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect((await store.getRun(runId))?.status).toBe('canceled')
    expect((await store.getSteps(runId)).map((s) => s.status)).toEqual(['canceled'])
  })

  it('a run whose process dies before starting it is failed, not relaunched forever', async () => {
    const dir = tempDir()
    // the config loads in the daemon but throws in the run's own process
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      CONFIG.replace(
        'import { asset',
        "if (process.argv.includes('launch')) throw new Error('cannot reach the catalog')\nimport { asset",
      ),
    )
    const daemon = startDaemon(dir)
    await daemon.waitFor(/holding the daemon lease/)
    await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    await daemon.waitFor(/run \S+ ended failure \(exit 2\).*cannot reach the catalog/)
    await new Promise((r) => setTimeout(r, 1000))
    expect(daemon.output().match(/launched run/g)).toHaveLength(1)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    const failed = (await store.listRuns()).find((r) => r.origin === 'sensor:snapshot_after_reindex')
    expect(failed?.status).toBe('failure')
    expect(failed?.error?.message).toMatch(/before starting it/)
  })

  it('--json prints each daemon event as one object with its typed fields', async () => {
    const dir = project()
    const daemon = startDaemon(dir, { SNAPSHOT_MS: '10' }, '5', ['--json'])
    await daemon.waitFor(/"event":"lease:acquired"/)
    await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    await daemon.waitFor(/"event":"run:exited"/)
    daemon.child.kill('SIGTERM')
    expect((await daemon.exited).code).toBe(0)
    const events = daemon
      .output()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    const byType = (type: string) => events.filter((e) => e.event === type)
    expect(byType('starting')[0]).toMatchObject({
      level: 'info',
      instigators: 2,
      store: expect.stringContaining('refresh.db'),
    })
    expect(byType('lease:acquired')[0]).toMatchObject({
      holder: expect.any(String),
      message: expect.stringMatching(/^holding the daemon lease as /),
    })
    const tick = byType('tick').find((e) => e.status === 'success')
    expect(tick).toMatchObject({
      kind: 'sensor',
      name: 'snapshot_after_reindex',
      outcomes: [{ outcome: 'created' }],
    })
    const launched = byType('run:launched')[0]
    expect(launched).toMatchObject({ origin: 'sensor:snapshot_after_reindex', pid: expect.any(Number) })
    expect(byType('run:exited')[0]).toMatchObject({ runId: launched!.runId, status: 'success', code: 0 })
    expect(byType('stopped')).toHaveLength(1)
    for (const e of events) expect(typeof e.ts === 'number' && typeof e.message === 'string').toBe(true)
  })
})
