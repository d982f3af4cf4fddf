import { spawn } from 'node:child_process'
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
    asset({ key: 'copy', materialize: () => ({}) }),
    asset({ key: 'reindex', deps: ['copy'], async materialize() { await wait(Number(process.env.REINDEX_MS ?? 0)); return {} } }),
    asset({ key: 'stats', deps: ['copy'], materialize: () => ({}) }),
  ],
  guards: [{ name: 'index_writers', selection: 'reindex', concurrency: 1 }],
})
`

describe('run guards from the CLI', () => {
  it('a second `refresh run` waits for the run holding the guard, and says which; --no-wait fails at once', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    const first = spawn(process.execPath, [CLI, 'run', '--plain'], {
      cwd: dir,
      env: { ...process.env, REINDEX_MS: '2500' },
      stdio: 'ignore',
    })
    const firstDone = new Promise<number | null>((r) => first.on('close', r))
    let holder: string | undefined
    for (let i = 0; i < 200 && !holder; i++) {
      await new Promise((r) => setTimeout(r, 50))
      try {
        await using store = await openStore(join(dir, '.refresh/refresh.db'))
        holder = (await store.listRuns({ status: 'started' }))[0]?.id
      } catch {
        // not created yet
      }
    }
    expect(holder).toBeDefined()
    const busy = await run([CLI, 'run', 'reindex', '--no-wait', '--plain'], { cwd: dir })
    expect(busy.code).toBe(1)
    expect(busy.stderr).toMatch(new RegExp(`run guard \`index_writers\` is full: run ${holder} holds it`))
    const free = await run([CLI, 'run', 'stats', '--no-wait', '--plain'], { cwd: dir })
    expect(free.code).toBe(0)
    const waited = await run([CLI, 'run', 'reindex', '--plain'], { cwd: dir })
    expect(waited.code).toBe(0)
    expect(waited.stderr).toMatch(
      new RegExp(`waiting for run ${holder}, which holds run guard \`index_writers\``),
    )
    expect(await firstDone).toBe(0)
  })
})
