import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { catalog } from '../../assets/catalog.js'
import { layout, tempOwner, tempPath } from '../../assets/layout.js'
import { snapshot } from '../../assets/snapshot.js'
import { recoverRuns } from '../../core/recovery.js'
import { openStore } from '../../core/store/open.js'
import { tempDir } from '../helpers.js'

/** The pid of a process that has exited. */
function deadPid(): number {
  const pid = spawnSync(process.execPath, ['-e', '']).pid
  if (pid === undefined) throw new Error('could not start a process')
  return pid
}

describe('temporary names', () => {
  it('carry their run in one form, beside the final name', () => {
    const file = tempPath('/data/work/01abc.db', '01abc')
    expect(file).toBe('/data/work/.partial-01abc.01abc.db')
    expect(tempOwner('.partial-01abc.01abc.db')).toBe('01abc')
    expect(tempOwner('.partial-01abc.snap-01abc')).toBe('01abc')
    for (const other of ['01abc.db', 'snap-01abc', '.partial-', 'catalog.db.01abc.tmp', '.write-test-1'])
      expect(tempOwner(other)).toBeUndefined()
    expect(() => tempPath('/data/x', 'a.b')).toThrow(/holds no/)
  })
})

describe('recovery sweeps what dead runs left under temporary names', () => {
  it('removes those of runs recovered now and of ended runs whose process is gone, never those of a live run', async () => {
    const dir = tempDir()
    const paths = layout(dir)
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const now = Date.now()
    const here = hostname()
    const base = { selection: '*', plan: ['catalog', 'snapshot'], config: {}, status: 'started' as const }
    const gone = deadPid()
    const runs = {
      // interrupted: its process is gone, recovery marks it failed now
      crashed: { owner: { pid: gone, host: here }, end: null },
      // closed by another path (`refresh cancel` of a dead run), its process gone
      canceled: { owner: { pid: gone, host: here }, end: 'canceled' as const },
      // running in this process: alive
      running: { owner: { pid: process.pid, host: here }, end: null },
      // silent for so long that recovery marks it failed, but its process (this one) is alive
      hung: { owner: { pid: process.pid, host: here }, end: null, at: now - 3_600_000 },
      // ended, but its process (this one) is still alive: it may still be winding down
      ending: { owner: { pid: process.pid, host: here }, end: 'failure' as const },
      // another host's run, ended long ago
      remote: { owner: { pid: 1, host: 'elsewhere' }, end: 'failure' as const, at: now - 300_000 },
      // another host's run that ended a moment ago: it may still be winding down
      recent: { owner: { pid: 1, host: 'elsewhere' }, end: 'failure' as const },
    }
    mkdirSync(paths.snapshots, { recursive: true })
    for (const [id, r] of Object.entries(runs)) {
      const at = 'at' in r ? r.at : now - 1000
      await store.createRun({ ...base, id, now: at, owner: r.owner })
      if (r.end) await store.finishRun(id, r.end, at)
      writeFileSync(tempPath(paths.catalog, id), 'half a catalog')
      mkdirSync(tempPath(paths.snapshot(`snap-${id}`), id))
    }
    // a run this store does not know: nobody can say it is dead
    writeFileSync(tempPath(paths.catalog, 'unknown'), '')
    writeFileSync(paths.catalog, 'the catalog')

    const recovery = await recoverRuns(
      store,
      [catalog({ dataDir: dir }), snapshot({ dataDir: dir, key: 'snapshot' })],
      now,
    )
    expect(recovery.recovered.map((r) => r.runId).sort()).toEqual(['crashed', 'hung'])
    expect(recovery.hooks.map((h) => [h.asset, [...h.runIds].sort(), h.error])).toEqual([
      ['catalog', ['canceled', 'crashed', 'remote'], undefined],
      ['snapshot', ['canceled', 'crashed', 'remote'], undefined],
    ])
    expect(readdirSync(dir).sort()).toEqual([
      '.partial-ending.catalog.db',
      '.partial-hung.catalog.db',
      '.partial-recent.catalog.db',
      '.partial-running.catalog.db',
      '.partial-unknown.catalog.db',
      'catalog.db',
      'snapshots',
    ])
    expect(readdirSync(paths.snapshots).sort()).toEqual([
      '.partial-ending.snap-ending',
      '.partial-hung.snap-hung',
      '.partial-recent.snap-recent',
      '.partial-running.snap-running',
    ])

    // nothing of a dead run is left: the next recovery calls no hook
    expect((await recoverRuns(store, [catalog({ dataDir: dir })], now)).hooks).toEqual([])
    expect(existsSync(paths.catalog)).toBe(true)
  })
})
