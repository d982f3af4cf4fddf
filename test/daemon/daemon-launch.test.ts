/**
 * How `refresh daemon` launches runs (real processes, SQLite): the checks it makes before it
 * starts (a run launcher on other hosts needs a shared store; `--max-runs`), and `--max-runs`
 * with the default launcher. ECS tasks against Postgres are in ecs-runs.test.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { newRunId } from '../../core/ids.js'
import { openStore } from '../../core/store/open.js'
import type { RunRecord } from '../../core/store/types.js'
import { CLI, run, tempDir, until } from '../helpers.js'

const CONFIG = `
import { asset, defineConfig, ecsRunLauncher } from 'refresh'
const reindex = asset({
  key: 'reindex',
  async materialize() {
    await new Promise((r) => setTimeout(r, Number(process.env.REINDEX_MS ?? 0)))
    return { docs: 1 }
  },
})
export default defineConfig({
  assets: [reindex],
  environments: {
    aws: { runLauncher: ecsRunLauncher({ cluster: 'refresh', taskDefinition: 'refresh-run' }) },
  },
})
`

const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
})

function project(): string {
  const dir = tempDir()
  writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
  return dir
}

describe('refresh daemon: what it checks before it starts', () => {
  it('refuses a store file or `:memory:` with a run launcher on other hosts (exit 2, naming the fix)', async () => {
    const dir = project()
    const file = await run([CLI, 'daemon', '--env', 'aws'], { cwd: dir })
    expect(file.code).toBe(2)
    expect(file.stderr).toMatch(
      /runLauncher starts each run as an ECS task on another host, which cannot reach the store file .*refresh\.db\. Give the daemon and its tasks a shared store: a Postgres URL/,
    )
    const memory = await run([CLI, 'daemon', '--env', 'aws', '--store', ':memory:'], { cwd: dir })
    expect(memory.code).toBe(2)
    expect(memory.stderr).toMatch(/cannot reach the store in memory/)
  })

  it.each(['0', '-1', '1.5', 'two', ''])('--max-runs %j is a usage error (exit 2)', async (value) => {
    const result = await run([CLI, 'daemon', '--max-runs', value], { cwd: project() })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(
      /--max-runs .*expected a whole number of runs of at least 1, like --max-runs 4/,
    )
  })
})

describe('refresh daemon --max-runs (local processes)', () => {
  it('launches at most N runs at once; the others wait and launch as runs end', async () => {
    const dir = project()
    const storeFile = join(dir, '.refresh/refresh.db')
    const ids: string[] = []
    {
      await using store = await openStore(storeFile)
      for (let i = 0; i < 3; i++) {
        const id = newRunId(Date.now())
        await store.requestRun({
          id,
          selection: 'reindex',
          plan: ['reindex'],
          config: {},
          origin: 'schedule:nightly',
          now: Date.now(),
        })
        ids.push(id)
      }
    }
    const daemon = spawn(process.execPath, [CLI, 'daemon', '--max-runs', '1'], {
      cwd: dir,
      env: { ...process.env, REINDEX_MS: '700' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(daemon)
    let out = ''
    daemon.stdout.on('data', (d: Buffer) => {
      out += d.toString()
    })
    daemon.stderr.on('data', (d: Buffer) => {
      out += d.toString()
    })
    await using store = await openStore(storeFile)
    let runs: RunRecord[] = []
    await until(
      async () => {
        runs = (await store.listRuns()).filter((r) => ids.includes(r.id))
        return runs.every((r) => r.status === 'success')
      },
      'the three runs to succeed',
      30_000,
    )
    daemon.kill('SIGTERM')
    await new Promise((r) => daemon.on('close', r))
    expect(out).toMatch(/2 queued run\(s\) wait: 1 of --max-runs 1 in flight/)
    // one after the other, in the order they were queued
    const byStart = [...runs].sort((a, b) => a.startedAt! - b.startedAt!)
    expect(byStart.map((r) => r.id)).toEqual(ids)
    for (let i = 1; i < byStart.length; i++)
      expect(byStart[i]!.startedAt!).toBeGreaterThanOrEqual(byStart[i - 1]!.endedAt!)
  })
})
