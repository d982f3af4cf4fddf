/**
 * Declarative automation through the real CLI and a real daemon: an eager chain follows an
 * upstream change made by `refresh run`, each asset once per change, across a daemon killed and
 * restarted; `refresh automation` explains the evaluations; `automation off|on` switches;
 * bad input exits 2.
 */
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { CLI, configProject, type LiveCli, run, startCli, until } from '../helpers.js'

const CONFIG = `import { asset, defineConfig, eager, onCron, onMissing } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'raw', materialize: () => ({ at: Date.now() }) }),
    asset({ key: 'clean', deps: ['raw'], automation: eager(), materialize: () => ({ at: Date.now() }) }),
    asset({ key: 'summary', deps: ['clean'], automation: eager(), materialize: () => ({ at: Date.now() }) }),
    asset({ key: 'lookup', automation: onMissing(), materialize: () => ({}) }),
  ],
})
`

const daemons: LiveCli[] = []
afterEach(() => {
  for (const d of daemons.splice(0)) d.child.kill('SIGKILL')
})

function daemon(dir: string): LiveCli {
  const d = startCli(['daemon', '--automation-interval', '1s'], { cwd: dir, env: { NO_COLOR: '1' } })
  daemons.push(d)
  return d
}

describe('automation through a real daemon', () => {
  it('follows an upstream change down an eager chain, once per change, across a restart', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' } })
    const materializations = async (asset: string) => {
      await using store = await openStore(join(dir, '.refresh', 'refresh.db'))
      const runs = await store.listRuns({ limit: 1000 })
      const out: string[] = []
      for (const r of runs) if ((await store.runMaterialization(r.id, asset)) !== undefined) out.push(r.id)
      return out.length
    }
    expect((await cli('run', 'raw')).code).toBe(0)
    let d = daemon(dir)
    await d.waitFor(/automation \(tick \d+\): clean,lookup created/)
    await until(async () => (await materializations('summary')) === 1, 'summary materialized', 30_000)
    expect(await materializations('lookup')).toBe(1)
    // killed and restarted: nothing runs again
    d.child.kill('SIGKILL')
    await d.done
    d = daemon(dir)
    await d.waitFor(/holding the daemon lease/)
    await new Promise((r) => setTimeout(r, 3_000))
    expect([await materializations('clean'), await materializations('summary')]).toEqual([1, 1])
    // a new raw: the chain follows
    expect((await cli('run', 'raw')).code).toBe(0)
    await until(async () => (await materializations('summary')) === 2, 'summary materialized again', 30_000)
    expect([await materializations('clean'), await materializations('lookup')]).toEqual([2, 1])

    const shown = await cli('automation', 'summary')
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.stdout).toContain('summary: eager(), on')
    expect(shown.stdout).toMatch(/tick \d+, .*: true: requested /)
    expect(shown.stdout).toContain('✓ anyDepsUpdated()')
    const listed = await cli('automation')
    expect(listed.stdout).toMatch(/clean\s+eager\(\)\s+on/)
    expect(listed.stdout).toMatch(/lookup\s+onMissing\(\)\s+on/)

    // switched off: a new raw runs nothing downstream
    expect((await cli('automation', 'off', 'clean')).stdout).toContain('automation off for clean')
    expect((await cli('status')).stdout).toContain('automation: 2 of 3 automated asset(s) on, off: clean')
    await new Promise((r) => setTimeout(r, 1_500))
    expect((await cli('run', 'raw')).code).toBe(0)
    await new Promise((r) => setTimeout(r, 3_000))
    expect(await materializations('clean')).toBe(2)
    expect((await cli('automation', '--json')).stdout).toContain(
      '"asset":"clean","condition":"eager()","on":false',
    )
    expect((await cli('automation', 'on', 'clean')).code).toBe(0)
    await until(
      async () => (await materializations('summary')) === 3,
      'clean and summary follow once on',
      30_000,
    )
  }, 120_000)

  it('refuses bad input with exit 2 and the fix', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' } })
    const unknown = await cli('automation', 'sumary')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('no asset `sumary`')
    expect(unknown.stderr).toContain('summary')
    const notAutomated = await cli('automation', 'off', 'raw')
    expect(notAutomated.code).toBe(2)
    expect(notAutomated.stderr).toContain('`raw` has no automation condition')
    const interval = await run([CLI, 'daemon', '--automation-interval', 'soon'], { cwd: dir })
    expect(interval.code).toBe(2)
    expect(interval.stderr).toContain('--automation-interval soon')
    const badConfig = configProject(CONFIG.replace('automation: eager()', "automation: 'eager'"))
    const bad = await run([CLI, 'automation'], { cwd: badConfig })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('automation: must be an automation condition')
    const badCron = configProject(CONFIG.replace('automation: onMissing()', "automation: onCron('at 3')"))
    const cron = await run([CLI, 'automation'], { cwd: badCron })
    expect(cron.code).toBe(2)
    expect(cron.stderr).toContain('cron `at 3` is invalid')
  })
})
