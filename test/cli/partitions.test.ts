/**
 * Partitions through the real CLI: `refresh run --partition`, the partition shown by `runs`,
 * `show` and `--json`, `refresh partitions ASSET` (counts, ranges, --status, --json, stale after
 * an upstream partition changed, failed, missing), dynamic keys added and removed, and bad input
 * (exit 2 with the fix).
 */
import { describe, expect, it } from 'vitest'
import { CLI, configProject, run } from '../helpers.js'

const CONFIG = `import { asset, dailyPartitions, defineConfig, dynamicPartitions } from 'refresh'
import { existsSync } from 'node:fs'
const days = dailyPartitions({ start: '2026-11-01', end: '2026-11-21' })
export default defineConfig({
  assets: [
    asset({ key: 'events', partitions: days, materialize: (ctx) => ({ day: ctx.partition!.key, start: ctx.partition!.window!.start.toISOString() }) }),
    asset({ key: 'summary', deps: ['events'], partitions: days, materialize(ctx) {
      if (existsSync(new URL('./fail-' + ctx.partition!.key, import.meta.url))) throw new Error('no summary for ' + ctx.partition!.key)
      return { of: ctx.upstream.events?.day ?? null }
    } }),
    asset({ key: 'per_customer', partitions: dynamicPartitions('customers'), materialize: (ctx) => ({ customer: ctx.partition!.key }) }),
  ],
})
`

describe('refresh partitions', () => {
  it('runs partitions, shows them per run and per asset, folds stale, failed and missing', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) =>
      run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1', COLUMNS: '200' } })
    for (const day of ['2026-11-01', '2026-11-02', '2026-11-03', '2026-11-10']) {
      const r = await cli('run', 'events+', '--partition', day, '--plain')
      expect(r.code, r.stderr + r.stdout).toBe(0)
      expect(r.stdout).toContain(`partition ${day}`)
    }
    const json = await cli('run', 'events', '--partition', '2026-11-05', '--json')
    const start = JSON.parse(json.stdout.split('\n')[0]!) as { type: string; partition: string }
    expect(start).toMatchObject({ type: 'run:start', partition: '2026-11-05' })

    const runs = await cli('runs', '--json')
    const listed = runs.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; partition: string | null })
    expect(listed.map((r) => r.partition)).toEqual([
      '2026-11-05',
      '2026-11-10',
      '2026-11-03',
      '2026-11-02',
      '2026-11-01',
    ])
    const shown = await cli('show', listed[1]!.id)
    expect(shown.stdout).toMatch(/· partition 2026-11-10/)

    let status = await cli('partitions', 'summary')
    expect(status.code, status.stderr).toBe(0)
    expect(status.stdout).toMatch(/^summary: 20 partitions \(daily partitions/m)
    expect(status.stdout).toMatch(/materialized\s+4\s+2026-11-01\.\.2026-11-03, 2026-11-10/)
    expect(status.stdout).toMatch(/missing\s+16\s+2026-11-04\.\.2026-11-09, 2026-11-11\.\.2026-11-20/)

    // events of 2026-11-02 materialized again: summary of that day is stale; a failed summary day
    await cli('run', 'events', '--partition', '2026-11-02', '--plain')
    const { writeFileSync } = await import('node:fs')
    writeFileSync(`${dir}/fail-2026-11-04`, '')
    const failed = await cli('run', 'events+', '--partition', '2026-11-04', '--plain')
    expect(failed.code).toBe(1)
    status = await cli('partitions', 'summary', '--json')
    const body = JSON.parse(status.stdout) as {
      total: number
      counts: Record<string, number>
      ranges: Record<string, Array<[string, string]>>
    }
    expect(body.total).toBe(20)
    expect(body.counts).toEqual({ materialized: 3, failed: 1, in_progress: 0, missing: 15, stale: 1 })
    expect(body.ranges.stale).toEqual([['2026-11-02', '2026-11-02']])
    expect(body.ranges.failed).toEqual([['2026-11-04', '2026-11-04']])
    const missing = await cli('partitions', 'summary', '--status', 'missing')
    expect(missing.stdout).toMatch(/missing\s+15\s+2026-11-05\.\.2026-11-09, 2026-11-11\.\.2026-11-20/)
    // re-executing the stale day makes it current again
    await cli('run', 'summary', '--partition', '2026-11-02', '--plain')
    const after = JSON.parse((await cli('partitions', 'summary', '--json')).stdout) as {
      counts: Record<string, number>
    }
    expect(after.counts.stale).toBe(0)
    expect(after.counts.materialized).toBe(4)
  }, 120_000)

  it('adds and removes dynamic partition keys, and refuses bad input with exit 2', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' } })
    const unknown = await cli('run', 'per_customer', '--partition', 'acme', '--plain')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/acme/)
    const added = await cli('partitions', 'add', 'customers', 'acme', 'globex', 'acme')
    expect(added.code, added.stderr).toBe(0)
    expect(added.stdout).toMatch(/added 2 keys to customers: acme, globex/)
    const ok = await cli('run', 'per_customer', '--partition', 'globex', '--plain')
    expect(ok.code, ok.stderr).toBe(0)
    let status = JSON.parse((await cli('partitions', 'per_customer', '--json')).stdout) as {
      total: number
      counts: Record<string, number>
    }
    expect(status).toMatchObject({ total: 2, counts: { materialized: 1, missing: 1 } })
    const removed = await cli('partitions', 'remove', 'customers', 'acme', 'nobody')
    expect(removed.stdout).toMatch(/removed 1 key from customers: acme\nnot there: nobody/)
    status = JSON.parse((await cli('partitions', 'per_customer', '--json')).stdout)
    expect(status).toMatchObject({ total: 1, counts: { materialized: 1, missing: 0 } })

    const bad: Array<[string[], RegExp]> = [
      [['run', 'events'], /`events` is partitioned .*--partition KEY/],
      [['run', 'events', '--partition', '2026-13-01'], /2026-13-01/],
      [['run', 'events', '--partition', '2026-11-30'], /2026-11-30.*(end|past)/],
      [['partitions', 'evnts'], /no asset `evnts`.*events/],
      [
        ['partitions', 'events', '--status', 'done'],
        /--status done: expected one of materialized, failed, in_progress, missing, stale/,
      ],
      [
        ['partitions', 'add', 'custmers', 'x'],
        /no asset of the config has dynamicPartitions\('custmers'\).*customers/,
      ],
      [['partitions', 'add', 'customers'], /name the dynamic partitions and at least one key/],
      [['partitions', 'add', 'customers', 'a|b'], /cannot be a partition key/],
    ]
    for (const [args, message] of bad) {
      const r = await cli(...args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(message)
    }
  }, 120_000)

  it('a partitioned run parked during maintenance keeps its partition, shown in status, replayed with it', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) =>
      run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1', COLUMNS: '200' } })
    expect((await cli('maintenance', 'on', '--reason', 'deploy')).code).toBe(0)
    const parked = await cli('run', 'events+', '--partition', '2026-11-07', '--plain')
    expect(parked.code).toBe(3)
    expect((await cli('maintenance', 'status')).stdout).toMatch(/manual\s+events\+ \(partition 2026-11-07\)/)
    const off = await cli('maintenance', 'off')
    expect(off.code, off.stderr).toBe(0)
    const runs = (await cli('runs', '--json')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { status: string; partition: string | null })
    expect(runs.map((r) => [r.status, r.partition])).toEqual([['queued', '2026-11-07']])
  })
})
