/**
 * A fault campaign: `refresh run` of the default refresh, SIGKILLed at random points (the pid
 * alone, or its whole process group), then checked from outside the way a user would look:
 * A. the killed run reads as interrupted, with a duration, not as running;
 * B. every step the killed run printed as succeeded is succeeded in the store;
 * C. once the next run recovers the dead ones, no file written under a temporary name is left;
 * D. no worker process of the killed run outlives it.
 */
import { copyFileSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, ROOT, run, startCli, tempDir } from '../helpers.js'

const TRIALS = 30
const ROWS = '200000'

interface Trial {
  group: boolean
  delayMs: number
  runId: string | null
  printedSucceeded: string[]
}

/** Every file below `dir`, as paths relative to it. */
function walk(dir: string, prefix = ''): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name
    if (entry.isDirectory()) out.push(path, ...walk(join(dir, entry.name), path))
    else out.push(path)
  }
  return out
}

/** Processes whose command line mentions `marker` (this test's own project folder). */
function processesMentioning(marker: string): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
      const cwd = readFileSync(`/proc/${entry}/environ`, 'utf8')
      if (cmdline.includes(marker) || cwd.includes(marker)) pids.push(Number(entry))
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids
}

describe('SIGKILL at random points of the default refresh', () => {
  it(`leaves nothing of A-D behind over ${TRIALS} trials (the pid alone, and its process group)`, async () => {
    const cwd = tempDir('refresh-campaign-')
    copyFileSync(join(ROOT, 'refresh.config.ts'), join(cwd, 'refresh.config.ts'))
    // one whole run first: its length bounds the random kill points
    const t0 = Date.now()
    const whole = await run([CLI, 'run', '--plain', '--set', `catalog.rows=${ROWS}`], { cwd })
    expect(whole.code, whole.stderr).toBe(0)
    const span = Date.now() - t0
    // a fixed seed: a failure can be replayed
    let seed = 20261125
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed / 2 ** 31
    }
    const listRuns = async () =>
      (await run([CLI, 'runs', '--json', '--limit', String(TRIALS + 5)], { cwd })).stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { id: string; status: string; durationMs: number | null })
    const known = new Set((await listRuns()).map((r) => r.id))
    const trials: Trial[] = []
    for (let i = 0; i < TRIALS; i++) {
      // anywhere in a run's life, its start-up included
      const trial: Trial = {
        group: i % 2 === 1,
        delayMs: Math.round(random() * span),
        runId: null,
        printedSucceeded: [],
      }
      // its own process group, so that the whole group can be killed as a terminal's Ctrl-\\ would
      const live = startCli(['run', '--plain', '--set', `catalog.rows=${ROWS}`], {
        cwd,
        detached: true,
        env: { REFRESH_CAMPAIGN: cwd },
      })
      await new Promise((r) => setTimeout(r, trial.delayMs))
      const printed = live.stdout()
      try {
        process.kill(trial.group ? -live.child.pid! : live.child.pid!, 'SIGKILL')
      } catch {
        // it finished first
      }
      await live.done
      trial.printedSucceeded = [...printed.matchAll(/^\S+ (\w+)\s+succeeded/gm)].map((m) => m[1]!)
      const where = `trial ${i} (${trial.group ? 'group' : 'pid'} at ${trial.delayMs} ms)`
      // D: nothing it started goes on (workers notice their parent is gone)
      const deadline = Date.now() + 3_000
      let left = processesMentioning(cwd)
      while (left.length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100))
        left = processesMentioning(cwd)
      }
      expect(left, `${where}: processes left`).toEqual([])
      // the run it created, if it got that far (the store knows it even when nothing was printed)
      const runs = await listRuns()
      trial.runId = runs.find((r) => !known.has(r.id))?.id ?? null
      for (const r of runs) known.add(r.id)
      if (trial.runId === null) continue
      // A: the run reads as interrupted (or as what it finished as), never as still running
      const listed = runs.find((r) => r.id === trial.runId)
      expect(listed?.status, `${where}: ${JSON.stringify(listed)}`).not.toBe('started')
      // B: what was printed as succeeded is succeeded in the store
      const show = await run([CLI, 'show', trial.runId, '--json'], { cwd })
      const shown = JSON.parse(show.stdout) as {
        run: { startedAt: number }
        steps: Array<{ key: string; status: string; startedAt: number | null; endedAt: number | null }>
      }
      const steps = shown.steps
      // A (its duration): at least as long as what the store saw it do, never a stale 0 ms
      if (listed?.status === 'interrupted') {
        const seen = Math.max(0, ...steps.map((s) => (s.endedAt ?? s.startedAt ?? 0) - shown.run.startedAt))
        expect(listed.durationMs, `${where}: ${JSON.stringify(listed)}`).toBeGreaterThanOrEqual(seen)
      }
      for (const key of trial.printedSucceeded)
        expect(steps.find((s) => s.key === key)?.status, `${where}: step ${key} printed as succeeded`).toBe(
          'succeeded',
        )
      trials.push(trial)
    }
    // the campaign killed runs in flight, both ways (not only processes still starting up)
    expect(trials.filter((t) => t.group).length).toBeGreaterThan(TRIALS / 4)
    expect(trials.filter((t) => !t.group).length).toBeGreaterThan(TRIALS / 4)
    // C: the next run recovers the dead ones; nothing written under a temporary name is left
    const last = await run([CLI, 'run', '--plain', '--set', `catalog.rows=${ROWS}`], { cwd })
    expect(last.code, last.stderr).toBe(0)
    const leftovers = walk(join(cwd, '.refresh')).filter((p) => /\.tmp$|\.tmp\/|(^|\/)\.partial-/.test(p))
    expect(leftovers).toEqual([])
    const all = await run([CLI, 'runs', '--json', '--limit', String(TRIALS + 5)], { cwd })
    expect(all.stdout).not.toContain('"status":"started"')
    expect(all.stdout).not.toContain('"status":"interrupted"')
  }, 600_000)
})
