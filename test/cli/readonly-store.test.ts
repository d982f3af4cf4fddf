import { chmodSync, copyFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, type Exec, exec, tempDir } from '../helpers.js'

const CONFIG = `import { asset, defineConfig } from 'refresh'
export default defineConfig({ assets: [asset({ key: 'a', materialize: () => ({ rows: 1 }) })] })
`

/**
 * Runs the CLI as a user who may read the store but not write it: as root (CI), as `nobody`; as
 * anyone else, with the store's file and folder made read-only (root ignores those modes).
 */
function asReader(dir: string, args: string[]): Promise<Exec> {
  const root = process.getuid?.() === 0
  return exec(root ? nodeForOthers() : process.execPath, [CLI, ...args], {
    cwd: dir,
    ...(root ? { uid: 65_534, gid: 65_534 } : {}),
  })
}

/** This Node, as a binary another user may run (a copy in a temp folder when its own is out of reach). */
function nodeForOthers(): string {
  const reachable = (file: string) => {
    for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir))
      if ((statSync(dir).mode & 0o001) === 0) return false
    return (statSync(file).mode & 0o001) !== 0
  }
  if (reachable(process.execPath)) return process.execPath
  const dir = tempDir('refresh-node-')
  chmodSync(dir, 0o755)
  const copy = join(dir, 'node')
  copyFileSync(process.execPath, copy)
  chmodSync(copy, 0o755)
  return copy
}

describe('a store this user cannot write', () => {
  it('reading commands read it; `run` says it cannot be written (exit 2), and nothing changes', async () => {
    const dir = tempDir()
    const { writeFileSync } = await import('node:fs')
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    const first = await exec(process.execPath, [CLI, 'run', '--plain'], { cwd: dir })
    expect(first.code, first.stderr).toBe(0)
    const id = /run (\w{18}) started/.exec(first.stdout)![1]!
    const storeDir = join(dir, '.refresh')
    chmodSync(dir, 0o755)
    for (const f of readdirSync(storeDir)) if (f.startsWith('refresh.db')) chmodSync(join(storeDir, f), 0o444)
    chmodSync(storeDir, 0o555)
    try {
      const before = readdirSync(storeDir).sort()
      const runs = await asReader(dir, ['runs'])
      expect(runs.code, runs.stderr).toBe(0)
      expect(runs.stdout).toMatch(new RegExp(`${id}\\s+success`))
      const show = await asReader(dir, ['show', id])
      expect(show.code, show.stderr).toBe(0)
      expect(show.stdout).toContain(`run ${id} · success`)
      const status = await asReader(dir, ['status'])
      expect(status.code, status.stderr).toBe(0)
      const run = await asReader(dir, ['run', '--plain'])
      expect(run.code).toBe(2)
      expect(run.stderr).toMatch(
        /cannot be written: .* read-only for this user\. Reading commands .* still work/,
      )
      expect(run.stderr).not.toMatch(/not a refresh store/)
      expect(readdirSync(storeDir).sort()).toEqual(before)
    } finally {
      chmodSync(storeDir, 0o755)
    }
  })
})
