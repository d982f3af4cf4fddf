import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, type Exec, ROOT, run, tempDir, until } from '../helpers.js'

/**
 * Kills (SIGKILL) a real `refresh run` of the default config mid-step, then runs again, and looks
 * at what is left in the data directory: nothing written under a temporary name may survive the
 * next run.
 */
function project(): { dir: string; data: string } {
  const dir = tempDir('refresh-leftovers-')
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  writeFileSync(join(dir, 'refresh.config.ts'), readFileSync(join(ROOT, 'refresh.config.ts'), 'utf8'))
  return { dir, data: join(dir, '.refresh', 'data') }
}

function cli(dir: string, ...args: string[]): Promise<Exec> {
  return run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' }, timeoutMs: 120_000 })
}

interface Live {
  child: ChildProcess
  stdout(): string
  done: Promise<void>
}

function start(dir: string, ...args: string[]): Live {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: dir,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  child.stdout!.on('data', (d) => {
    stdout += d
  })
  child.stderr!.resume()
  const done = new Promise<void>((resolve) => child.on('close', () => resolve()))
  return { child, stdout: () => stdout, done }
}

function runIdOf(live: Live): string {
  const id = /run (\w{18}) started/.exec(live.stdout())?.[1]
  if (!id) throw new Error(`no run id in:\n${live.stdout()}`)
  return id
}

/** Every path under `dir` whose name marks it as temporary, in any form refresh ever used. */
function temporaries(dir: string): string[] {
  const found: string[] = []
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name)
      if (/^\.partial-|\.tmp$|\.building(-journal)?$|\.download$|^\.ranges-|^\.export-/.test(entry.name))
        found.push(path.slice(dir.length + 1))
      else if (entry.isDirectory()) walk(path)
    }
  }
  if (existsSync(dir)) walk(dir)
  return found.sort()
}

async function killed(live: Live): Promise<void> {
  live.child.kill('SIGKILL')
  await live.done
}

describe('a killed `refresh run` leaves nothing behind', () => {
  it('killed while generating the catalog, then canceled: the next run removes the partial catalog', async () => {
    const { dir, data } = project()
    const live = start(dir, 'run', '--plain', '--set', 'catalog.rows=3000000')
    // the file system says when: the catalog is written under a name of its own (with its run id)
    let id: string | undefined
    await until(
      () => {
        const partial = existsSync(data) ? readdirSync(data).find((n) => n !== 'catalog.db') : undefined
        id = partial && /[0-9a-z]{18}/.exec(partial)?.[0]
        return id !== undefined
      },
      'the catalog being written',
      60_000,
    )
    await killed(live)
    expect(temporaries(data)).not.toEqual([])

    // closed by a path that runs no recovery hook: the sweep must still find it (ended, process gone)
    const cancel = await cli(dir, 'cancel', id!)
    expect(cancel.code).toBe(0)
    const next = await cli(dir, 'run', '--plain', '--set', 'catalog.rows=2000')
    expect(next.code).toBe(0)
    expect(next.stderr).toContain(`cleaned up what catalog left behind for ${id}`)
    expect(temporaries(data)).toEqual([])
  }, 180_000)

  it('killed while writing a snapshot: `refresh retry` removes the partial snapshot', async () => {
    const { dir, data } = project()
    const live = start(dir, 'run', '--plain', '--set', 'catalog.rows=1000000')
    const snapshots = join(data, 'snapshots')
    // polled fast: the snapshot is written in about half a second
    await until(
      () => existsSync(snapshots) && readdirSync(snapshots).some((n) => n.startsWith('.')),
      'a snapshot being written',
      120_000,
    )
    const id = runIdOf(live)
    await killed(live)
    expect(temporaries(data)).not.toEqual([])

    const retry = await cli(dir, 'retry', id, '--plain')
    expect(retry.code).toBe(0)
    expect(retry.stdout).toMatch(/snapshot +succeeded/)
    expect(temporaries(data)).toEqual([])
  }, 240_000)
})
