import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, run, tempDir } from '../helpers.js'

const CONFIG = `
import { asset, defineConfig, schedule, sensor, whenMaterialized } from 'refresh'
export default defineConfig({
  assets: [asset({ key: 'reindex', materialize: () => ({}) }), asset({ key: 'snapshot', deps: ['reindex'], materialize: () => ({}) })],
  sensors: [
    whenMaterialized('reindex', { name: 'snapshot_after_reindex', launch: 'snapshot+' }),
    sensor({ name: 'broken', evaluate: () => { throw new Error('bucket not found') } }),
  ],
  schedules: [schedule({ name: 'nightly', cron: '0 3 * * *', timezone: 'America/Chicago', defaultStatus: 'off' })],
})
`

describe('refresh sensors / schedules / ticks', () => {
  it('lists, turns on and off, ticks, and shows tick history', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir })

    const list = await cli('sensors')
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).toMatch(
      /snapshot_after_reindex\s+on \(default\)\s+1 s\s+-\s+due\s+when `reindex` materializes, launch `snapshot\+`/,
    )

    const schedules = await cli('schedules')
    expect(schedules.stdout).toMatch(/nightly\s+off \(default\)\s+0 3 \* \* \* \(America\/Chicago\)\s+-\s+-/)
    expect((await cli('schedules', 'on', 'nightly')).stdout).toMatch(
      /schedule nightly is on \(no tick before now will fire\)/,
    )
    expect((await cli('schedules')).stdout).toMatch(
      /nightly\s+on\s+0 3 \* \* \* \(America\/Chicago\)\s+-\s+\d{4}-\d\d-\d\d \d\d:00:00/,
    )

    await cli('run', 'reindex', '--plain')
    const tick = await cli('sensors', 'tick', 'snapshot_after_reindex')
    expect(tick.code).toBe(0)
    expect(tick.stdout).toMatch(/sensor snapshot_after_reindex: created run \S+/)
    const again = await cli('sensors', 'tick', 'snapshot_after_reindex')
    expect(again.stdout).toMatch(/skipped: no new materialization of reindex/)

    const broken = await cli('sensors', 'tick', 'broken')
    expect(broken.code).toBe(1)
    expect(broken.stdout).toMatch(/sensor broken: failed: bucket not found/)
    expect((await cli('sensors')).stdout).toMatch(
      /broken\s+on \(default\)\s+30 s\s+\S+ \S+ failure: bucket not found\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/,
    )

    const ticks = await cli('ticks', 'snapshot_after_reindex')
    expect(ticks.stdout.split('\n')[0]).toMatch(/TICK\s+STATUS\s+RUNS\s+REASON/)
    expect(ticks.stdout).toMatch(/skipped\s+-\s+no new materialization of reindex/)
    expect(ticks.stdout).toMatch(/success\s+\S{18}/)

    expect((await cli('sensors', 'off', 'snapshot_after_reindex')).stdout).toMatch(/is off/)
    expect((await cli('sensors')).stdout).toMatch(/snapshot_after_reindex\s+off\s/)
  })

  it('names unknown sensors and actions with a suggestion, exit 2', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    const unknown = await run([CLI, 'sensors', 'off', 'snapshot_after_reindx'], { cwd: dir })
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(
      /no sensor `snapshot_after_reindx` in the config. Did you mean `snapshot_after_reindex`\?/,
    )
    const action = await run([CLI, 'schedules', 'pause', 'nightly'], { cwd: dir })
    expect(action.code).toBe(2)
    expect(action.stderr).toMatch(/the action is one of list, on, off, tick/)
    const ticks = await run([CLI, 'ticks', 'nightl'], { cwd: dir })
    expect(ticks.code).toBe(2)
    expect(ticks.stderr).toMatch(/Did you mean `nightly`/)
  })

  it('partitions: a sensor tick and the tick history name the requested partition; partitioned schedules are listed so', async () => {
    const dir = tempDir()
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      `
import { asset, dailyPartitions, defineConfig, schedule, sensor } from 'refresh'
const days = dailyPartitions({ start: '2026-01-01' })
export default defineConfig({
  assets: [asset({ key: 'events', partitions: days, materialize: (ctx) => ({ day: ctx.partition.key }) })],
  sensors: [sensor({ name: 'late_files', evaluate: () => ({ runs: [{ selection: 'events', runKey: 'f1', partitionKey: '2026-01-05' }] }) })],
  schedules: [schedule({ name: 'daily', cron: '0 1 * * *', selection: 'events', partitioned: true })],
})
`,
    )
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir })
    const tick = await cli('sensors', 'tick', 'late_files')
    expect(tick.code, tick.stderr).toBe(0)
    expect(tick.stdout).toMatch(/sensor late_files: created run \S+ \(partition 2026-01-05\)/)
    const ticks = await cli('ticks', 'late_files')
    expect(ticks.stdout).toMatch(/success\s+\S{18} \(2026-01-05\)/)
    expect((await cli('runs')).stdout).toMatch(/2026-01-05/)
    // the daemon's launcher runs `refresh launch RUN_ID`: the run builds the requested partition
    const runId = /created run (\S+)/.exec(tick.stdout)![1]!
    const launched = await cli('launch', runId)
    expect(launched.code, launched.stderr).toBe(0)
    const shown = JSON.parse((await cli('runs', '--json')).stdout.trim().split('\n')[0]!) as {
      status: string
      partition: string
    }
    expect(shown).toMatchObject({ status: 'success', partition: '2026-01-05' })
    expect((await cli('schedules')).stdout).toMatch(
      /daily\s+on \(default\)\s+0 1 \* \* \* \(UTC\), partitioned/,
    )
    const json = JSON.parse((await cli('schedules', '--json')).stdout.trim()) as { partitioned: boolean }
    expect(json.partitioned).toBe(true)
  })

  it('refuses a partitioned schedule over assets of several partitions definitions, naming it, exit 2', async () => {
    const dir = tempDir()
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      `
import { asset, dailyPartitions, defineConfig, hourlyPartitions, schedule } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'days', partitions: dailyPartitions({ start: '2026-01-01' }), materialize: () => ({}) }),
    asset({ key: 'hours', partitions: hourlyPartitions({ start: '2026-01-01' }), materialize: () => ({}) }),
  ],
  schedules: [schedule({ name: 'mixed', cron: '0 1 * * *', selection: '*', partitioned: true })],
})
`,
    )
    const validate = await run([CLI, 'validate'], { cwd: dir })
    expect(validate.code).toBe(2)
    expect(validate.stderr).toMatch(/schedule `mixed` is partitioned, but its selection mixes partitions/)
  })
})
