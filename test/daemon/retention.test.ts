import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { startCli, tempDir } from '../helpers.js'

const DAY = 86_400_000

const CONFIG = `
import { asset, defineConfig } from 'refresh'
export default defineConfig({
  assets: [asset({ key: 'copy', materialize: () => ({ rows: 1 }) })],
  retention: { olderThan: '30d' },
})
`

async function endedRun(store: RunStore, id: string, endedAt: number): Promise<void> {
  await store.createRun({
    id,
    selection: '*',
    plan: ['copy'],
    config: {},
    status: 'started',
    owner: { pid: 1, host: 'elsewhere' },
    now: endedAt - 1_000,
  })
  await store.write({
    events: [{ type: 'log', runId: id, ts: endedAt - 500, step: null, level: 'info', message: 'hello' }],
    steps: [],
    attempts: [],
    materializations: [],
  })
  await store.finishRun(id, 'success', endedAt)
}

describe('the daemon and retention', () => {
  it('prunes once a day: at start when it never did, not again after a restart within the day', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
    const file = join(dir, '.refresh/refresh.db')
    {
      await using store = await openStore(file)
      await endedRun(store, 'old-one', Date.now() - 40 * DAY)
      await endedRun(store, 'recent-one', Date.now() - DAY)
    }
    const first = startCli(['daemon', '--grace-seconds', '5'], { cwd: dir, killAfterMs: 30_000 })
    await first.waitFor(/pruned 1 run, 1 step, 1 event older than 30d in .*; next prune in 24 h/)
    expect(first.stdout()).toMatch(/pruning runs and ticks older than 30d\n/)
    first.child.kill('SIGTERM')
    expect((await first.done).code).toBe(0)
    let pruneAt: number
    {
      await using store = await openStore(file)
      expect((await store.listRuns()).map((r) => r.id)).toEqual(['recent-one'])
      const last = JSON.parse((await store.getSetting('last_prune'))!.value)
      expect(last).toMatchObject({ olderThan: '30d', keepFailed: '30d', deleted: { runs: 1, events: 1 } })
      expect(last.by).toMatch(/:\d+:/)
      pruneAt = last.at
      await endedRun(store, 'old-two', Date.now() - 40 * DAY)
      await endedRun(store, 'recent-two', Date.now() - DAY)
    }

    // restarted within the day: the store says when it last pruned
    const second = startCli(['daemon', '--grace-seconds', '5'], { cwd: dir, killAfterMs: 30_000 })
    await second.waitFor(/holding the daemon lease/)
    await new Promise((r) => setTimeout(r, 1_500))
    second.child.kill('SIGTERM')
    const done = await second.done
    expect(done.code).toBe(0)
    expect(done.stdout).not.toMatch(/prun/)
    await using store = await openStore(file)
    expect((await store.listRuns()).map((r) => r.id).sort()).toEqual(['old-two', 'recent-one', 'recent-two'])
    expect(JSON.parse((await store.getSetting('last_prune'))!.value).at).toBe(pruneAt)
  })
})
