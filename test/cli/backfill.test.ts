/**
 * Backfills through the real CLI and a real daemon: `refresh backfill` records one, the daemon
 * submits its runs as capacity frees and launches them as processes; the daemon is SIGKILLed in
 * the middle and restarted, and the backfill completes with each partition run exactly once;
 * `backfills`, `backfill show` (--json), `cancel` and `retry`; bad input exits 2.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { CLI, configProject, run, until } from '../helpers.js'

const CONFIG = `import { asset, dailyPartitions, defineConfig } from 'refresh'
import { existsSync } from 'node:fs'
const days = dailyPartitions({ start: '2026-01-01', end: '2026-02-01' })
export default defineConfig({
  assets: [
    asset({ key: 'events', partitions: days, async materialize(ctx) {
      await new Promise((r) => setTimeout(r, Number(process.env.EVENT_MS ?? 0)))
      if (existsSync(new URL('./fail-' + ctx.partition!.key, import.meta.url))) throw new Error('no events for ' + ctx.partition!.key)
      return { day: ctx.partition!.key }
    } }),
  ],
})
`

const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
})

function daemon(dir: string, env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [CLI, 'daemon', '--max-runs', '3'], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'ignore'],
  })
  children.push(child)
  return child
}

interface Shown {
  id: string
  status: string
  total: number
  succeeded: number
  failed: number
  running: number
  skipped: number
}

describe('refresh backfill', () => {
  it('is driven by the daemon to the end, across a daemon killed in the middle, each partition run once', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' } })
    const requested = await cli(
      'backfill',
      'events',
      '--from',
      '2026-01-01',
      '--to',
      '2026-01-20',
      '--max-runs',
      '4',
      '--json',
    )
    expect(requested.code, requested.stderr).toBe(0)
    const { id, total } = JSON.parse(requested.stdout) as Shown
    expect(total).toBe(20)
    const show = async () =>
      JSON.parse((await cli('backfill', 'show', id.slice(0, 12), '--json')).stdout) as Shown

    let first = daemon(dir, { EVENT_MS: '300' })
    await until(async () => (await show()).succeeded >= 3, 'a few partitions done', 60_000)
    first.kill('SIGKILL')
    await new Promise((r) => first.on('close', r))
    const middle = await show()
    expect(middle.status).toBe('requested')
    expect(middle.succeeded).toBeLessThan(20)

    first = daemon(dir)
    await until(async () => (await show()).status !== 'requested', 'the backfill to end', 90_000)
    const done = await show()
    expect(done).toMatchObject({ status: 'completed', succeeded: 20, failed: 0, skipped: 0, running: 0 })

    await using store = await openStore(join(dir, '.refresh', 'refresh.db'))
    const runs = (await store.listRuns()).filter((r) => r.tags['refresh/backfill'] === id)
    // each partition succeeded exactly once; a run the kill interrupted (its process died with the
    // daemon) was re-executed from failure once, as a child run of the same partition
    const succeeded = runs.filter((r) => r.status === 'success').map((r) => r.partitionKey)
    expect(new Set(succeeded).size).toBe(20)
    expect(succeeded.length).toBe(20)
    for (const r of runs.filter((x) => x.status !== 'success')) {
      expect(r.error?.name).toBe('InterruptedError')
      expect(runs.some((c) => c.parentRunId === r.id && c.status === 'success')).toBe(true)
    }
    const list = await cli('backfills')
    expect(list.stdout).toMatch(new RegExp(`${id}\\s+completed\\s+events\\s+20\\s+20\\s+0\\s+0`))
  }, 180_000)

  it('is followed to its end: `backfill show ID --follow` and `backfill SELECTION --follow`, without a terminal', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) =>
      run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' }, timeoutMs: 90_000 })
    const requested = await cli('backfill', 'events', '--from', '2026-01-01', '--to', '2026-01-06', '--json')
    const { id } = JSON.parse(requested.stdout) as Shown
    // followed from before the daemon runs anything, to the end the daemon drives it to
    const showing = cli('backfill', 'show', id, '--follow')
    await new Promise((r) => setTimeout(r, 1000))
    daemon(dir, { EVENT_MS: '200' })
    const followed = await cli('backfill', 'events', '--partitions', '2026-01-10,2026-01-11', '--follow')
    expect(followed.code, followed.stderr).toBe(0)
    expect(followed.stdout).toMatch(/following it/)
    expect(followed.stdout.trim().split('\n').at(-1)).toMatch(
      /backfill \w+ completed: 2 done, 0 failed, 0 running, 0 skipped of 2\b/,
    )
    const shown = await showing
    expect(shown.code, shown.stderr).toBe(0)
    const lines = shown.stdout.trim().split('\n')
    expect(lines[0]).toMatch(
      new RegExp(`backfill ${id} requested: 0 done, 0 failed, 0 running, 0 skipped of 6`),
    )
    expect(lines.at(-1)).toMatch(
      new RegExp(`backfill ${id} completed: 6 done, 0 failed, 0 running, 0 skipped of 6`),
    )
    expect(lines.length).toBeGreaterThan(2)
  }, 120_000)

  it('cancels, retries what did not get done, and refuses bad input', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' } })
    const { writeFileSync } = await import('node:fs')
    writeFileSync(join(dir, 'fail-2026-01-02'), '')
    const requested = await cli(
      'backfill',
      'events',
      '--partitions',
      '2026-01-01,2026-01-02',
      '--partitions',
      '2026-01-03',
      '--json',
    )
    const { id } = JSON.parse(requested.stdout) as Shown
    const d = daemon(dir)
    const show = async (which: string) =>
      JSON.parse((await cli('backfill', 'show', which, '--json')).stdout) as Shown
    await until(async () => (await show(id)).status !== 'requested', 'the backfill to end', 60_000)
    expect(await show(id)).toMatchObject({ status: 'failed', succeeded: 2, failed: 1, total: 3 })
    const { rmSync } = await import('node:fs')
    rmSync(join(dir, 'fail-2026-01-02'))
    const retried = await cli('backfill', 'retry', id, '--json')
    expect(retried.code, retried.stderr).toBe(0)
    const retry = JSON.parse(retried.stdout) as Shown
    expect(retry.total).toBe(1)
    // followed to its end: progress objects, then backfill:end, exit 0 as it completed
    const followed = await run([CLI, 'backfill', 'show', retry.id, '--follow', '--json'], {
      cwd: dir,
      env: { NO_COLOR: '1' },
      timeoutMs: 60_000,
    })
    expect(followed.code, followed.stderr).toBe(0)
    const lines = followed.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Shown & { type: string })
    expect(lines.at(-1)).toMatchObject({ type: 'backfill:end', status: 'completed', succeeded: 1, total: 1 })
    expect(lines.slice(0, -1).every((l) => l.type === 'backfill:progress')).toBe(true)
    const text = await cli('backfill', 'show', retry.id, '--follow')
    expect(text.stdout).toMatch(/backfill \w+ completed: 1 done, 0 failed, 0 running, 0 skipped of 1/)

    // a big one canceled: it ends canceled, and no run of it is left queued
    d.kill('SIGKILL')
    const big = JSON.parse((await cli('backfill', 'events', '--max-runs', '2', '--json')).stdout) as Shown
    daemon(dir, { EVENT_MS: '2000' })
    await until(async () => (await show(big.id)).running > 0, 'runs of the big backfill', 60_000)
    const canceled = await cli('backfill', 'cancel', big.id)
    expect(canceled.code, canceled.stderr).toBe(0)
    expect(canceled.stdout).toMatch(/is canceling/)
    await until(async () => (await show(big.id)).status === 'canceled', 'the cancel to end it', 60_000)
    await using store = await openStore(join(dir, '.refresh', 'refresh.db'))
    expect(await store.listRuns({ status: ['queued', 'started'] })).toEqual([])

    const bad: Array<[string[], RegExp]> = [
      [['backfill', 'events', '--from', '2026-01-05'], /both --from and --to/],
      [['backfill', 'events', '--from', '2026-01-05', '--to', '2026-01-01'], /comes before `2026-01-05`/],
      [['backfill', 'events', '--partitions', '2026-02-30'], /2026-02-30/],
      [['backfill', 'events', '--max-runs', '0'], /--max-runs 0: expected a whole number of at least 1/],
      [['backfill', 'events', '--per-run', 'two'], /--per-run two: expected a whole number of at least 1/],
      [['backfill', 'evnts'], /evnts/],
      [['backfill', 'show', 'nope'], /no backfill `nope`/],
    ]
    for (const [args, message] of bad) {
      const r = await cli(...args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(message)
    }
  }, 180_000)
})
