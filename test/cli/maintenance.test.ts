import { type ChildProcess, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import { CLI, run, tempDir } from '../helpers.js'

const CONFIG = `
import { asset, defineConfig } from 'refresh'
const wait = (ms) => new Promise((r) => setTimeout(r, ms))
export default defineConfig({
  assets: [
    asset({ key: 'copy', materialize: () => ({ rows: 1 }) }),
    asset({ key: 'clean', deps: ['copy'], async materialize() { await wait(Number(process.env.CLEAN_MS ?? 0)); return { rows: 1 } } }),
    asset({ key: 'reindex', deps: ['clean'], materialize: () => ({ docs: 1 }) }),
  ],
})
`

function project(): string {
  const dir = tempDir()
  writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
  return dir
}

function background(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: 'ignore',
  })
  return { child, done: new Promise((r) => child.on('close', (code) => r(code))) }
}

async function waitForStatus(dir: string, status: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    try {
      await using store = await openStore(join(dir, '.refresh/refresh.db'))
      const run = (await store.listRuns({ status: status as 'started' }))[0]
      if (run) return run.id
    } catch {
      // the store may not exist yet
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`no ${status} run appeared`)
}

describe('refresh maintenance / pause / resume', () => {
  it('parks `refresh run` from another process, shows it in status, replays it on off', async () => {
    const dir = project()
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir })
    const on = await cli('maintenance', 'on', '--reason', 'deploy v2', '--drain-timeout', '2s')
    expect(on.code, on.stderr).toBe(0)
    expect(on.stdout).toMatch(/maintenance mode is on \(deploy v2\): new runs are parked\./)
    expect(on.stdout).toMatch(/backup: ok: store backed up/)

    const parked = await cli('run', 'clean+', '--plain')
    expect(parked.code).toBe(3)
    expect(parked.stderr).toMatch(/maintenance mode is on \(deploy v2\): the run was parked as request #1/)

    const status = await cli('maintenance', 'status')
    expect(status.stdout).toMatch(/maintenance: ON since .* by \S+@\S+: deploy v2/)
    expect(status.stdout).toMatch(/parked requests: 1/)
    expect(status.stdout).toMatch(/1\s+\S+ \S+\s+manual\s+clean\+/)
    expect(status.stdout).toMatch(/last backup: .* ok: store backed up/)

    const off = await cli('maintenance', 'off')
    expect(off.code).toBe(0)
    expect(off.stdout).toMatch(/replayed #1 \(manual, clean\+\): created run \S+/)
    const again = await cli('maintenance', 'off')
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/maintenance mode is not on; nothing changed/)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect((await store.listRuns()).map((r) => [r.status, r.selection, r.plan.join(',')])).toEqual([
      ['queued', 'clean+', 'clean,reindex'],
    ])
  })

  it('drains a run in flight before the backup', async () => {
    const dir = project()
    const running = background(['run', '--plain'], dir, { CLEAN_MS: '1500' })
    const runId = await waitForStatus(dir, 'started')
    const on = await run([CLI, 'maintenance', 'on', '--drain-timeout', '30s'], { cwd: dir })
    expect(on.stdout).toMatch(new RegExp(`draining 1 run\\(s\\): ${runId}`))
    expect(on.stdout).toMatch(new RegExp(`drained: ${runId}`))
    expect(await running.done).toBe(0)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect((await store.getRun(runId))?.status).toBe('success')
  })

  it('pauses a run before its next step and resumes it in a new process without re-running finished steps', async () => {
    const dir = project()
    const running = background(['run', '--plain'], dir, { CLEAN_MS: '1500' })
    const runId = await waitForStatus(dir, 'started')
    const pause = await run([CLI, 'pause', runId.slice(0, 12)], { cwd: dir })
    expect(pause.code, pause.stderr).toBe(0)
    expect(pause.stdout).toMatch(/pause requested for run/)
    await running.done
    {
      await using store = await openStore(join(dir, '.refresh/refresh.db'))
      expect((await store.getRun(runId))?.status).toBe('paused')
      expect((await store.getSteps(runId)).map((s) => [s.key, s.status])).toEqual([
        ['copy', 'succeeded'],
        ['clean', 'succeeded'],
        ['reindex', 'pending'],
      ])
    }
    const resume = await run([CLI, 'resume', runId], { cwd: dir })
    expect(resume.code, resume.stderr).toBe(0)
    expect(resume.stdout).toMatch(/resumed: 1 step\(s\) to run \(reindex\)/)
    expect(resume.stdout).not.toMatch(/copy\s+started/)
    await using store = await openStore(join(dir, '.refresh/refresh.db'))
    expect((await store.getRun(runId))?.status).toBe('success')
    const paused = await run([CLI, 'pause', runId], { cwd: dir })
    expect(paused.code).toBe(2)
    expect(paused.stderr).toMatch(/is success; only a started run can be paused/)
  })
})
