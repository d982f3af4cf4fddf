import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { newRunId } from '../../core/ids.js'
import { openStore } from '../../core/store/open.js'
import { CLI, ROOT, run, tempDir } from '../helpers.js'

const CONFIG = `
import { asset, assetCheck, defineConfig } from 'refresh'
const wait = (ms) => new Promise((r) => setTimeout(r, ms))
const url = process.env.WEBHOOK_URL
const argv = process.env.ALERT_ARGV ? JSON.parse(process.env.ALERT_ARGV) : undefined
export default defineConfig({
  assets: [
    asset({ key: 'copy', materialize: () => ({ rows: 1 }) }),
    asset({ key: 'slow', deps: ['copy'], async materialize() { await wait(Number(process.env.SLOW_MS ?? 0)); return { rows: 1 } } }),
    asset({ key: 'broken', materialize() { throw new Error('upstream catalog unreachable') } }),
  ],
  ...(process.env.FAILING_CHECK ? { checks: [
    assetCheck({ asset: 'slow', name: 'warns', severity: 'warn', evaluate: () => ({ passed: false }) }),
    assetCheck({ asset: 'slow', name: 'passes', evaluate: () => ({ passed: true }) }),
  ] } : {}),
  ...(url || argv ? { alerts: {
    ...(url ? { webhook: { url } } : {}),
    ...(argv ? { command: { argv } } : {}),
    expectedDurationMs: Number(process.env.EXPECTED_MS ?? 3600000),
  } } : {}),
})
`

const children: ChildProcess[] = []
const servers: Server[] = []
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r))
})

function project(): string {
  const dir = tempDir()
  writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
  return dir
}

interface DaemonProcess {
  child: ChildProcess
  output(): string
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  exited: Promise<number | null>
  url: string
}

async function startDaemon(
  dir: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [CLI, 'daemon', '--grace-seconds', '2', '--http', '0', ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let out = ''
  const waiters = new Set<() => void>()
  const onData = (d: Buffer) => {
    out += d.toString()
    for (const w of waiters) w()
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)))
  const waitFor = (pattern: RegExp, timeoutMs = 15_000) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(out)
        if (m) {
          clearTimeout(timer)
          waiters.delete(check)
          resolve(m)
        }
      }
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${pattern}; output:\n${out}`)),
        timeoutMs,
      )
      waiters.add(check)
      check()
    })
  const address = (await waitFor(/on http:\/\/(\S+)/))[1]!
  const d = { child, output: () => out, waitFor, exited, url: `http://${address}` }
  await until(async () => (await get(d.url, '/readyz')).status === 200)
  return d
}

async function get(base: string, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(base + path, { signal: AbortSignal.timeout(10_000) })
  return { status: response.status, body: await response.text() }
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${check}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function metric(body: string, line: RegExp): number {
  const m = new RegExp(`^${line.source} (\\S+)$`, 'm').exec(body)
  return m ? Number(m[1]) : Number.NaN
}

/** A webhook receiver on 127.0.0.1 answering `status`; records each body. */
async function webhook(status = 200): Promise<{ url: string; calls: Array<Record<string, unknown>> }> {
  const calls: Array<Record<string, unknown>> = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (d) => {
      body += d
    })
    req.on('end', () => {
      calls.push(JSON.parse(body) as Record<string, unknown>)
      res.writeHead(status).end()
    })
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/T0KEN-SECRET-123`, calls }
}

/** A process that holds the store's write lock until killed. */
async function lockStore(file: string): Promise<ChildProcess> {
  const script = `
    const Database = require(${JSON.stringify(join(ROOT, 'node_modules/better-sqlite3'))})
    const db = new Database(${JSON.stringify(file)})
    db.exec('BEGIN EXCLUSIVE')
    db.prepare("INSERT OR REPLACE INTO settings (key, value, updated_at) VALUES ('lock_test', '1', 0)").run()
    process.stdout.write('locked\\n')
    setInterval(() => {}, 1000)`
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
  return child
}

describe('refresh daemon --http (real processes)', () => {
  it('/healthz is 200, then 503 naming the lease when another holder takes it over', async () => {
    const dir = project()
    const daemon = await startDaemon(dir)
    const ok = await get(daemon.url, '/healthz')
    expect(ok.status, ok.body).toBe(200)
    expect(JSON.parse(ok.body)).toMatchObject({ status: 'ok', failing: [] })
    // another holder writes the lease row, as a second daemon on another host would after a partition
    const db = new Database(join(dir, '.refresh/refresh.db'))
    db.prepare("UPDATE leases SET holder = 'other-host:42:x', expires_at = ? WHERE name = 'daemon'").run(
      Date.now() + 600_000,
    )
    db.close()
    let last = { status: 0, body: '' }
    await until(async () => {
      last = await get(daemon.url, '/healthz')
      return last.status === 503
    })
    const body = JSON.parse(last.body) as { failing: string[]; checks: Record<string, { detail: string }> }
    expect(body.failing).toContain('lease')
    expect(body.checks.lease!.detail).toBe('held by another daemon: other-host:42:x')
    await daemon.waitFor(/lost the daemon lease to other-host:42:x/)
  })

  it('/metrics answers while another process holds the write lock; /healthz says the store is busy, then recovers', async () => {
    const dir = project()
    expect((await run([CLI, 'run', 'slow+', '--plain'], { cwd: dir })).code).toBe(0)
    const daemon = await startDaemon(dir)
    const before = await get(daemon.url, '/metrics')
    expect(metric(before.body, /refresh_runs\{status="success"\}/)).toBe(1)
    const lock = await lockStore(join(dir, '.refresh/refresh.db'))
    const during = await get(daemon.url, '/metrics')
    expect(during.status).toBe(200)
    expect(metric(during.body, /refresh_runs\{status="success"\}/)).toBe(1)
    expect(during.body).toMatch(/^refresh_metrics_stale_seconds \S+$/m)
    const health = await get(daemon.url, '/healthz')
    expect(health.status).toBe(503)
    const checks = JSON.parse(health.body) as {
      failing: string[]
      checks: Record<string, { detail: string }>
    }
    expect(checks.failing).toContain('store')
    expect(checks.checks.store!.detail).toMatch(/store busy/)
    // the daemon's own loop waits on the lock: its ticks stall and /healthz says so too
    await until(async () => {
      const h = JSON.parse((await get(daemon.url, '/healthz')).body) as { failing: string[] }
      return h.failing.includes('loop')
    })
    lock.kill('SIGKILL')
    await until(async () => (await get(daemon.url, '/healthz')).status === 200)
  })

  it('/metrics has each asset check by its latest result: 1 failing, 0 passing', async () => {
    const dir = project()
    const env = { FAILING_CHECK: '1' }
    expect((await run([CLI, 'run', 'slow+', '--plain'], { cwd: dir, env })).code).toBe(0)
    const daemon = await startDaemon(dir, [], env)
    const body = (await get(daemon.url, '/metrics')).body
    expect(metric(body, /refresh_check_failing\{asset="slow",check="warns"\}/)).toBe(1)
    expect(metric(body, /refresh_check_failing\{asset="slow",check="passes"\}/)).toBe(0)
  })

  it('/metrics has each asset with a freshness policy: stale 0|1, its age and its max lag', async () => {
    const dir = project()
    const day = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString().slice(0, 10)
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      `import { asset, dailyPartitions, defineConfig } from 'refresh'
const days = dailyPartitions({ start: '${day(10)}' })
export default defineConfig({
  assets: [
    asset({ key: 'recent', freshness: { maxLag: '30d' }, materialize: () => ({}) }),
    asset({ key: 'old', freshness: { maxLag: 1 }, materialize: () => ({}) }),
    asset({ key: 'never', freshness: { maxLag: '1h' }, materialize: () => ({}) }),
    asset({ key: 'plain', materialize: () => ({}) }),
    // per partition: yesterday (UTC) is due 1 ms after it ended
    asset({ key: 'daily_done', partitions: days, freshness: { maxLag: 1 }, materialize: () => ({}) }),
    asset({ key: 'daily_gap', partitions: days, freshness: { maxLag: 1 }, materialize: () => ({}) }),
  ],
})
`,
    )
    expect((await run([CLI, 'run', 'recent,old,plain', '--plain'], { cwd: dir })).code).toBe(0)
    const yesterday = day(1)
    const built = await run([CLI, 'run', 'daily_done', '--partition', yesterday, '--plain'], { cwd: dir })
    expect(built.code, built.stderr).toBe(0)
    // the day before, materialized: it does not stand for the due one
    expect((await run([CLI, 'run', 'daily_gap', '--partition', day(2), '--plain'], { cwd: dir })).code).toBe(
      0,
    )
    const assets = await run([CLI, 'assets'], { cwd: dir, env: { COLUMNS: '250' } })
    expect(assets.stdout).toMatch(
      new RegExp(`daily_gap .*STALE for .*: partition ${yesterday} not materialized \\(max lag 1ms\\)`),
    )
    const daemon = await startDaemon(dir)
    const body = (await get(daemon.url, '/metrics')).body
    expect(metric(body, /refresh_asset_stale\{asset="daily_done"\}/)).toBe(0)
    expect(metric(body, /refresh_asset_stale\{asset="daily_gap"\}/)).toBe(1)
    expect(
      metric(
        body,
        new RegExp(`refresh_asset_stale_partition\\{asset="daily_gap",partition="${yesterday}"\\}`),
      ),
    ).toBe(1)
    expect(body).not.toMatch(/refresh_asset_stale_partition\{asset="daily_done"/)
    expect(metric(body, /refresh_asset_stale\{asset="recent"\}/)).toBe(0)
    expect(metric(body, /refresh_asset_stale\{asset="old"\}/)).toBe(1)
    expect(metric(body, /refresh_asset_stale\{asset="never"\}/)).toBe(1)
    expect(body).not.toMatch(/refresh_asset_stale\{asset="plain"\}/)
    expect(metric(body, /refresh_asset_materialization_age_seconds\{asset="old"\}/)).toBeGreaterThan(0)
    expect(metric(body, /refresh_asset_materialization_age_seconds\{asset="recent"\}/)).toBeGreaterThan(0)
    expect(body).not.toMatch(/refresh_asset_materialization_age_seconds\{asset="never"\}/)
    expect(metric(body, /refresh_asset_max_lag_seconds\{asset="recent"\}/)).toBe(30 * 86_400)
    expect(metric(body, /refresh_asset_max_lag_seconds\{asset="old"\}/)).toBe(0.001)
  })

  it('serves the last values marked stale when the store does not answer within the timeout', async () => {
    const dir = project()
    const daemon = await startDaemon(dir, ['--http-timeout-ms', '1'])
    // 3,000 runs end after the exporter started: their steps are a backlog far beyond 1 ms of work
    {
      await using store = await openStore(join(dir, '.refresh/refresh.db'))
      const t0 = Date.now()
      for (let i = 0; i < 3000; i++) {
        const now = t0 + i
        const id = newRunId(now)
        await store.createRun({
          id,
          status: 'started',
          selection: 'slow+',
          plan: ['copy', 'slow'],
          config: {},
          now,
        })
        await store.write({
          events: [
            {
              type: 'run:end',
              runId: id,
              ts: now + 5,
              status: 'success',
              durationMs: 5,
              succeeded: 2,
              failed: 0,
              skipped: 0,
              canceled: 0,
            },
          ],
          steps: ['copy', 'slow'].map((key) => ({
            runId: id,
            key,
            status: 'succeeded' as const,
            attempts: key === 'slow' ? 2 : 1,
            startedAt: now,
            endedAt: now + 2,
            error: null,
            reason: null,
          })),
          attempts: [],
          materializations: [],
        })
        await store.finishRun(id, 'success', now + 5)
      }
    }
    const stale = await get(daemon.url, '/metrics')
    expect(stale.status).toBe(200)
    expect(metric(stale.body, /refresh_metrics_stale_seconds/)).toBeGreaterThan(0)
    expect(metric(stale.body, /refresh_metrics_timeouts_total/)).toBeGreaterThanOrEqual(1)
    // the collection that timed out still lands: no step is lost, the next scrape has them
    await until(async () => {
      const body = (await get(daemon.url, '/metrics')).body
      return metric(body, /refresh_step_duration_seconds_count\{asset="slow",status="succeeded"\}/) === 3000
    })
    const body = (await get(daemon.url, '/metrics')).body
    expect(metric(body, /refresh_step_retries_total\{asset="slow"\}/)).toBe(3000)
    expect(metric(body, /refresh_runs\{status="success"\}/)).toBe(3000)
  })

  it('a port in use is one clear paragraph, exit 2, and no daemon started', async () => {
    const dir = project()
    const busy = createServer()
    servers.push(busy)
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
    const port = (busy.address() as AddressInfo).port
    const result = await run([CLI, 'daemon', '--http', String(port)], { cwd: dir })
    expect(result.code).toBe(2)
    expect(result.stderr).toBe(
      `refresh: --http 127.0.0.1:${port}: the port is in use by another process (another daemon's endpoint?). Pick a free port with --http HOST:PORT, or stop the process that holds it; the daemon did not start.\n`,
    )
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect(await store.getLease('daemon')).toBeUndefined()
    const bad = await run([CLI, 'daemon', '--http', 'localhost:http'], { cwd: dir })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--http localhost:http: expected PORT or HOST:PORT, like 9464/)
  })
})

describe('alerts (real daemon, a local webhook)', () => {
  it('a failing run makes one webhook call with its id and retry command, not repeated after a restart', async () => {
    const dir = project()
    const hook = await webhook()
    const env = { WEBHOOK_URL: hook.url }
    const first = await startDaemon(dir, [], env)
    const failed = await run([CLI, 'run', 'broken', '--plain'], { cwd: dir, env })
    expect(failed.code).toBe(1)
    await until(() => hook.calls.length === 1)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    const runId = (await store.listRuns({ status: 'failure' }))[0]!.id
    expect(hook.calls[0]).toMatchObject({ event: 'run_failure', runId })
    expect(hook.calls[0]!.text).toContain(
      `run ${runId} (broken) failed: step broken failed: upstream catalog unreachable`,
    )
    expect(hook.calls[0]!.commands).toEqual([
      `refresh show ${runId}`,
      `refresh logs ${runId}`,
      `refresh retry ${runId}`,
    ])
    first.child.kill('SIGTERM')
    expect(await first.exited).toBe(0)
    const second = await startDaemon(dir, [], env)
    // a few iterations of the restarted daemon's watcher
    await new Promise((r) => setTimeout(r, 2_500))
    expect(hook.calls).toHaveLength(1)
    for (const text of [
      first.output(),
      second.output(),
      JSON.stringify(await store.getSetting('alerts:state')),
    ])
      expect(text).not.toContain('T0KEN-SECRET')
  })

  it('a stale asset makes one asset_stale call, not repeated after a restart; the daemon logs it', async () => {
    const dir = project()
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      `import { asset, defineConfig } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'old', freshness: { maxLag: 1 }, materialize: () => ({}) }),
    asset({ key: 'recent', freshness: { maxLag: '30d' }, materialize: () => ({}) }),
  ],
  alerts: { webhook: { url: process.env.WEBHOOK_URL } },
})
`,
    )
    const hook = await webhook()
    const env = { WEBHOOK_URL: hook.url }
    expect((await run([CLI, 'run', '--plain'], { cwd: dir, env })).code).toBe(0)
    const first = await startDaemon(dir, [], env)
    await until(() => hook.calls.length === 1)
    expect(hook.calls[0]).toMatchObject({ event: 'asset_stale', asset: 'old', runId: null })
    expect(hook.calls[0]!.text).toMatch(/asset old is stale: last materialized .* more than the max lag 1ms/)
    await first.waitFor(/alert sent: asset_stale \(asset old\)/)
    first.child.kill('SIGTERM')
    expect(await first.exited).toBe(0)
    const second = await startDaemon(dir, [], env)
    // a few iterations of the restarted daemon's watcher
    await new Promise((r) => setTimeout(r, 2_500))
    expect(hook.calls).toHaveLength(1)
    expect(second.output()).not.toContain('asset_stale')
  })

  it('webhook down: the run still succeeds, delivery is retried, the failure is recorded and shown by status', async () => {
    const dir = project()
    const hook = await webhook(500)
    const env = { WEBHOOK_URL: hook.url, SLOW_MS: '1500', EXPECTED_MS: '300' }
    const daemon = await startDaemon(dir, [], env)
    const slow = await run([CLI, 'run', 'slow+', '--plain'], { cwd: dir, env })
    expect(slow.code, slow.stderr).toBe(0)
    await daemon.waitFor(
      /warn: alert run_overdue not delivered to the webhook after 4 attempts: the webhook answered HTTP 500/,
    )
    expect(hook.calls).toHaveLength(4)
    expect(hook.calls.every((c) => c.event === 'run_overdue')).toBe(true)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect((await store.listRuns())[0]!.status).toBe('success')
    const status = await run([CLI, 'status'], { cwd: dir, env })
    expect(status.stdout).toMatch(
      /alerts: last failed delivery .*: run_overdue \(run \S+\) to the webhook after 4 attempts: the webhook answered HTTP 500/,
    )
    for (const text of [
      daemon.output(),
      status.stdout,
      JSON.stringify(await store.getSetting('alerts:failures')),
    ])
      expect(text).not.toContain('T0KEN-SECRET')
  })

  it('maintenance on/off run the alert command with an argument array, the alert as JSON on stdin', async () => {
    const dir = project()
    const script = join(dir, 'notify.mjs')
    writeFileSync(
      script,
      `import { appendFileSync, readFileSync } from 'node:fs'
appendFileSync(${JSON.stringify(join(dir, 'alerts.log'))}, JSON.stringify({ stdin: JSON.parse(readFileSync(0, 'utf8')), event: process.env.REFRESH_ALERT_EVENT, arg: process.argv[2] }) + '\\n')`,
    )
    const env = { ALERT_ARGV: JSON.stringify([process.execPath, script, 'a b; $(nope)']) }
    expect((await run([CLI, 'maintenance', 'on', '--reason', 'deploy v2'], { cwd: dir, env })).code).toBe(0)
    expect((await run([CLI, 'maintenance', 'off'], { cwd: dir, env })).code).toBe(0)
    const lines = readFileSync(join(dir, 'alerts.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { stdin: { event: string; text: string }; event: string; arg: string })
    expect(lines.map((l) => [l.event, l.stdin.event, l.arg])).toEqual([
      ['maintenance_on', 'maintenance_on', 'a b; $(nope)'],
      ['maintenance_off', 'maintenance_off', 'a b; $(nope)'],
    ])
    expect(lines[0]!.stdin.text).toBe('maintenance mode is on (deploy v2)')
  })
})

describe('refresh status', () => {
  it('shows the daemon, maintenance, runs, ticks, parked requests, the promoted index and the last run', async () => {
    const dir = project()
    const failed = await run([CLI, 'run', 'broken', '--plain'], { cwd: dir })
    expect(failed.code).toBe(1)
    const status = await run([CLI, 'status'], { cwd: dir })
    expect(status.code, status.stderr).toBe(0)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    const runId = (await store.listRuns())[0]!.id
    const lines = status.stdout.trim().split('\n')
    expect(lines.slice(1)).toEqual([
      'daemon: not running (nobody holds the daemon lease; start one with `refresh daemon`)',
      'maintenance: off',
      'runs in flight: none',
      'next ticks: no sensors or schedules in the config',
      'parked requests: 0',
      'last prune: never (`refresh prune --older-than 30d` shows what it would delete)',
      'promoted index: none (the config has no `promote` asset)',
      expect.stringMatching(
        new RegExp(
          `^last run: ${runId} failure at broken \\(broken\\) in \\d+ ms, ended .*  \`refresh show ${runId}\`$`,
        ),
      ),
    ])
    const json = JSON.parse((await run([CLI, 'status', '--json'], { cwd: dir })).stdout) as Record<
      string,
      unknown
    >
    expect(json).toMatchObject({
      daemon: null,
      maintenance: null,
      runs: [],
      parked: 0,
      lastPrune: null,
      daemons: [],
      promoted: { kind: 'none' },
      lastRun: { id: runId, status: 'failure', failedStep: 'broken' },
    })
  })
})
