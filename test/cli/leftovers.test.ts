import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, type Exec, type LiveCli, ROOT, run, startCli, tempDir, until } from '../helpers.js'

/**
 * Kills (SIGKILL) a real `refresh run` of the default config mid-step, then runs again, and looks
 * at what is left in the data directory: nothing written under a temporary name may survive the
 * next run, and the killed run's workers must stop by themselves.
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

function start(dir: string, ...args: string[]): LiveCli {
  return startCli(args, { cwd: dir, env: { NO_COLOR: '1' } })
}

function runIdOf(live: LiveCli): string {
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

/** The processes whose parent is `pid` (Linux: /proc, like the rest of these checks). */
function childrenOf(pid: number): number[] {
  const children: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat: string
    try {
      stat = readFileSync(join('/proc', name, 'stat'), 'utf8')
    } catch {
      continue // gone meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (ppid === pid) children.push(Number(name))
  }
  return children
}

/** A process that exists and has not exited (an exited one waits as a zombie until its new parent reaps it). */
function alive(pid: number): boolean {
  let stat: string
  try {
    stat = readFileSync(join('/proc', String(pid), 'stat'), 'utf8')
  } catch {
    return false
  }
  return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
}

/** Completed shard files of every index, built or half-built (by path). */
function completedShards(data: string): string[] {
  const indexes = join(data, 'indexes')
  if (!existsSync(indexes)) return []
  return readdirSync(indexes)
    .flatMap((index) => readdirSync(join(indexes, index)).map((f) => join(index, f)))
    .filter((f) => /shard-\d+\.db$/.test(f))
    .sort()
}

async function killed(live: LiveCli): Promise<void> {
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

  it('killed during reindex: its workers stop at once and complete no shard; the next run removes the half-built index', async () => {
    const { dir, data } = project()
    const live = start(dir, 'run', '--plain', '--set', 'catalog.rows=1000000')
    const pid = live.child.pid!
    let workers: number[] = []
    await until(
      () => {
        workers = /reindex +progress/.test(live.stdout()) ? childrenOf(pid) : []
        return workers.length > 0
      },
      'reindex workers at work',
      120_000,
    )
    const before = completedShards(data)
    await killed(live)
    await until(() => workers.every((w) => !alive(w)), `workers ${workers.join(', ')} to stop`, 2_000)
    expect(completedShards(data)).toEqual(before)

    const next = await cli(dir, 'run', '--plain', '--set', 'catalog.rows=2000')
    expect(next.code).toBe(0)
    expect(temporaries(data)).toEqual([])
  }, 240_000)

  it('killed while writing a snapshot: `refresh retry` removes the partial snapshot', async () => {
    const { dir, data } = project()
    const live = start(dir, 'run', '--plain', '--set', 'catalog.rows=1000000')
    const snapshots = join(data, 'snapshots')
    // polled fast: the snapshot is written in about half a second; the run is frozen (SIGSTOP) the
    // moment its partial snapshot is seen, so a busy machine cannot let it finish before the kill
    await until(
      () => {
        if (!existsSync(snapshots) || !readdirSync(snapshots).some((n) => n.startsWith('.'))) return false
        live.child.kill('SIGSTOP')
        return true
      },
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
