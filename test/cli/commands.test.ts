import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, configProject, type Exec, run, tempDir } from '../helpers.js'

function cli(dir: string, ...args: string[]): Promise<Exec> {
  return run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1', REFRESH_CONFIG: '' }, timeoutMs: 60_000 })
}

/** Every line of --json output parsed. */
function jsonLines(text: string): unknown[] {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as unknown)
}

const TWO = `import { asset, defineConfig, schedule, whenMaterialized } from 'refresh'
import { existsSync } from 'node:fs'
const a = asset({ key: 'a', materialize: () => ({ n: 1 }) })
const b = asset({ key: 'b', deps: ['a'], materialize: () => {
  if (existsSync(new URL('./fail', import.meta.url))) throw new Error('b: the fail file exists')
  return { n: 2 }
} })
export default defineConfig({
  assets: [a, b],
  sensors: [whenMaterialized('a', { name: 'after_a', launch: '__LAUNCH__' })],
  schedules: [schedule({ name: 'nightly', cron: '0 3 * * *', timezone: 'UTC', selection: '__SELECTION__' })],
})
`
const config = (launch: string, selection: string) =>
  TWO.replace('__LAUNCH__', launch).replace('__SELECTION__', selection)

describe('sensors and schedules are checked against the graph', () => {
  it('`validate` refuses a schedule or sensor selection naming an unknown asset, and the daemon does not start', async () => {
    const badSchedule = configProject(config('b', 'bb+'))
    const v = await cli(badSchedule, 'validate')
    expect(v.code).toBe(2)
    expect(v.stderr).toContain('schedule `nightly`: selection `bb+`')
    expect(v.stderr).toContain('Did you mean `b`?')
    expect(v.stdout).toBe('')
    const daemon = await cli(badSchedule, 'daemon')
    expect(daemon.code).toBe(2)
    expect(daemon.stderr).toContain('schedule `nightly`: selection `bb+`')

    const badSensor = configProject(config('c+', '*'))
    const s = await cli(badSensor, 'validate')
    expect(s.code).toBe(2)
    expect(s.stderr).toContain('sensor `after_a`: launch `c+`')

    const good = configProject(config('b', 'a+'))
    const ok = await cli(good, 'validate', '--json')
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({
      valid: true,
      sensors: 1,
      schedules: 1,
      environments: [{ environment: 'default', checked: true, assets: 2, groups: 1 }],
    })
  })
})

describe('the store commands', () => {
  it('`runs` and `status` before any run: an empty answer, exit 0, no store created', async () => {
    const dir = configProject(config('b', '*'))
    const runs = await cli(dir, 'runs')
    expect(runs.stderr).toBe('')
    expect(runs.code).toBe(0)
    expect(runs.stdout).toContain('no runs yet in')
    const json = await cli(dir, 'runs', '--json')
    expect(json.code).toBe(0)
    expect(json.stdout).toBe('')
    const status = await cli(dir, 'status', '--json')
    expect(status.code).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ storeExists: false, runs: [], lastRun: null })
    expect(existsSync(join(dir, '.refresh'))).toBe(false)
  })

  it('`cancel` of a run that already ended: 0 when it succeeded, 1 when it failed', async () => {
    const dir = configProject(config('b', '*'))
    const ok = await cli(dir, 'run', '--plain')
    const okId = /run (\w{18}) started/.exec(ok.stdout)![1]!
    const cancelOk = await cli(dir, 'cancel', okId)
    expect(cancelOk.stdout).toContain(`run ${okId} already ended success; nothing to cancel.`)
    expect(cancelOk.code).toBe(0)
    writeFileSync(join(dir, 'fail'), '')
    const failed = await cli(dir, 'run', '--plain')
    expect(failed.code).toBe(1)
    const failedId = /run (\w{18}) started/.exec(failed.stdout)![1]!
    const cancelFailed = await cli(dir, 'cancel', failedId)
    expect(cancelFailed.code).toBe(1)
  })

  it('an ambiguous run id prefix says so and lists the runs it matches', async () => {
    const dir = configProject(config('b', '*'))
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const r = await cli(dir, 'run', '--plain')
      ids.push(/run (\w{18}) started/.exec(r.stdout)![1]!)
    }
    // the longest prefix all three share
    let shared = ''
    while (ids.every((id) => id.startsWith(ids[0]!.slice(0, shared.length + 1))))
      shared = ids[0]!.slice(0, shared.length + 1)
    for (const command of ['retry', 'show']) {
      const r = await cli(dir, command, shared.slice(0, 2))
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain(`run id prefix \`${shared.slice(0, 2)}\` is ambiguous: it matches 3 runs`)
      for (const id of ids) expect(r.stderr).toContain(id)
    }
    const unknown = await cli(dir, 'retry', 'zzzz')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('no run `zzzz`')
    // a unique prefix of any length is the run
    const last = ids.at(-1)!
    const unique = last.slice(0, shared.length + 1)
    if (ids.filter((id) => id.startsWith(unique)).length === 1) {
      const shown = await cli(dir, 'show', unique, '--json')
      expect(shown.code).toBe(0)
      expect((JSON.parse(shown.stdout) as { run: { id: string } }).run.id).toBe(last)
    }
  })
})

describe('smaller things', () => {
  it('the upstream hint names a command that works', async () => {
    const dir = configProject(`import { catalog, clean, copy, defineConfig } from 'refresh'
export default defineConfig({ assets: [catalog(), copy(), clean()], config: { catalog: { rows: 200 } } })
`)
    const partial = await cli(dir, 'run', 'clean', '--plain')
    expect(partial.code).toBe(1)
    const hint = /`(refresh run [^`]+)`/.exec(partial.stdout)?.[1]
    expect(hint, partial.stdout).toBe('refresh run +clean')
    const fixed = await cli(dir, ...hint!.split(' ').slice(1), '--plain')
    expect(fixed.stderr).toBe('')
    expect(fixed.code).toBe(0)
  })

  it('`refresh worker index-shard` with a missing source fails and leaves no file behind', async () => {
    const dir = tempDir('refresh-worker-')
    const input = {
      source: 'missing.db',
      table: 'media_clean',
      lo: 1,
      hi: 100,
      output: 'shard-000.db',
      shard: 0,
    }
    const r = await run([CLI, 'worker', 'index-shard', JSON.stringify(input)], { cwd: dir })
    expect(r.code).toBe(1)
    expect(r.stdout + r.stderr).toContain('the source database missing.db does not exist')
    expect(readdirSync(dir)).toEqual([])
  })

  it('`sensors` and `schedules` help print their default once; both, `promote`, `ticks` and `validate` answer --json', async () => {
    const dir = configProject(config('b', '*'))
    for (const kind of ['sensors', 'schedules']) {
      const help = await cli(dir, kind, '--help')
      expect(help.stdout.match(/default: "?list"?/g)).toHaveLength(1)
    }
    const sensors = jsonLines((await cli(dir, 'sensors', '--json')).stdout)
    expect(sensors).toEqual([expect.objectContaining({ name: 'after_a', kind: 'sensor', status: 'on' })])
    const schedules = jsonLines((await cli(dir, 'schedules', '--json')).stdout)
    expect(schedules).toEqual([
      expect.objectContaining({ name: 'nightly', kind: 'schedule', cron: '0 3 * * *', timezone: 'UTC' }),
    ])
    const off = await cli(dir, 'schedules', 'off', 'nightly', '--json')
    expect(JSON.parse(off.stdout)).toEqual({ name: 'nightly', kind: 'schedule', status: 'off' })
    await cli(dir, 'run', '--plain')
    const tick = await cli(dir, 'sensors', 'tick', 'after_a', '--json')
    expect(tick.code).toBe(0)
    expect(JSON.parse(tick.stdout)).toMatchObject({
      name: 'after_a',
      ticks: [{ tick: { instigator: 'after_a' } }],
    })
    const ticks = jsonLines((await cli(dir, 'ticks', 'after_a', '--json')).stdout)
    expect(ticks).toEqual([expect.objectContaining({ instigator: 'after_a' })])
    expect(JSON.parse((await cli(dir, 'validate', '--json')).stdout)).toMatchObject({ valid: true })

    const blocks =
      configProject(`import { catalog, clean, copy, defineConfig, promote, reindex, replicas, snapshot } from 'refresh'
export default defineConfig({
  assets: [catalog(), copy(), clean(), reindex({ shards: 1 }), snapshot(), replicas(), promote()],
  config: { catalog: { rows: 200 }, replicas: { replicas: 1 } },
})
`)
    const before = await cli(blocks, 'promote', '--json')
    expect(before.code).toBe(0)
    expect(JSON.parse(before.stdout)).toMatchObject({ current: null, previous: [] })
    expect((await cli(blocks, 'run', '--plain')).code).toBe(0)
    const after = JSON.parse((await cli(blocks, 'promote', '--json')).stdout) as {
      current: { index: string }
    }
    expect(after.current.index).toMatch(/^idx-/)
  })
})
