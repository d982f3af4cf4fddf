import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { layout } from '../../assets/layout.js'
import { dropUnusedIndexes, rollbackPromotion } from '../../assets/promote.js'
import { searchPromoted, toFtsQuery } from '../../assets/search.js'
import { readAlias, readManifest, readReplica } from '../../assets/state.js'
import type { RunEvent } from '../../core/events.js'
import { materialize } from '../../core/materialize.js'
import { tempDir } from '../helpers.js'
import { chain, small } from './chain.js'

describe('the refresh chain on embedded backends', () => {
  it('catalog -> copy -> clean -> reindex -> snapshot -> replicas -> promote, then a query finds hits', async () => {
    const dir = tempDir()
    const dataDir = join(dir, 'data')
    const events: RunEvent[] = []
    const result = await materialize(chain(dataDir), {
      store: join(dir, 'refresh.db'),
      config: small(),
      onEvent: (e) => events.push(e),
    })
    expect(result.status).toBe('success')
    const m = (key: string) => result.materializations[key]!.metadata as Record<string, unknown>

    // the catalog is dirty in every way clean has a rule for, and clean counts each rule
    expect(m('catalog')).toMatchObject({ rows: 3000, generated: true })
    expect(m('copy')).toMatchObject({ rows: 3000 })
    const cleaned = m('clean')
    for (const rule of [
      'droppedNoUrl',
      'droppedLicense',
      'urlsFixed',
      'blankTitles',
      'titlesNormalized',
      'tagsLowAccuracy',
      'tagsDenied',
      'tagsDuplicate',
    ]) {
      expect(cleaned[rule], rule).toBeGreaterThan(0)
    }
    expect(cleaned.rows).toBe(3000 - (cleaned.droppedNoUrl as number) - (cleaned.droppedLicense as number))

    // the index has every cleaned row, in 3 shards, each timed
    const index = m('reindex')
    expect(index).toMatchObject({ documents: cleaned.rows, shards: 3, runner: 'local-processes' })
    expect(index.shardTimings).toHaveLength(3)
    const progress = events.filter((e) => e.type === 'step:progress' && e.step === 'reindex')
    expect(progress.at(-1)).toMatchObject({ done: cleaned.rows, total: cleaned.rows })

    // the snapshot's manifest matches the files on disk
    const paths = layout(dataDir)
    const snap = m('snapshot').snapshot as string
    const manifest = readManifest(paths, snap)!
    expect(manifest).toMatchObject({ id: snap, index: index.index, documents: cleaned.rows, shards: 3 })
    for (const f of manifest.files) {
      const sha = createHash('sha256')
        .update(readFileSync(join(paths.snapshot(snap), f.name)))
        .digest('hex')
      expect(sha).toBe(f.sha256)
    }

    // both replicas serve it, the alias points at it, and a query goes through a replica
    expect(m('replicas')).toMatchObject({ updated: ['replica-1', 'replica-2'], previousSnapshot: null })
    expect(readReplica(paths, 'replica-2')).toMatchObject({ snapshot: snap, previous: null })
    expect(readAlias(paths)).toMatchObject({ current: { snapshot: snap, index: index.index }, previous: [] })
    const found = searchPromoted(dataDir, 'fox', 5)
    expect(found).toMatchObject({ snapshot: snap, replica: 'replica-1', documents: cleaned.rows })
    expect(found.hits.length).toBeGreaterThan(0)
    expect(found.hits[0]!.url).toMatch(/^https:\/\//)
  })

  it('a second run replaces the index and keeps one previous; rollback goes back to it', async () => {
    const dir = tempDir()
    const dataDir = join(dir, 'data')
    const store = join(dir, 'refresh.db')
    const first = await materialize(chain(dataDir), { store, config: small() })
    const second = await materialize(chain(dataDir), { store, config: small() })
    const third = await materialize(chain(dataDir), { store, config: small() })
    expect([first.status, second.status, third.status]).toEqual(['success', 'success', 'success'])
    expect(third.materializations.catalog!.metadata).toMatchObject({ generated: false })
    const snap = (r: typeof first) => r.materializations.snapshot!.metadata.snapshot as string
    const idx = (r: typeof first) => r.materializations.reindex!.metadata.index as string
    const paths = layout(dataDir)

    // current = third, previous = second; the first index is dropped, its snapshot kept (keep 3)
    expect(readAlias(paths)).toMatchObject({
      current: { snapshot: snap(third) },
      previous: [{ snapshot: snap(second) }],
    })
    expect(third.materializations.promote!.metadata).toMatchObject({
      previous: idx(second),
      dropped: [idx(first)],
    })
    expect(existsSync(paths.index(idx(first)))).toBe(false)
    expect(existsSync(paths.index(idx(second)))).toBe(true)

    // a previous snapshot that is gone cannot be rolled back to; nothing changes
    const kept = `${paths.snapshot(snap(second))}.away`
    renameSync(paths.snapshot(snap(second)), kept)
    await expect(rollbackPromotion(dataDir)).rejects.toThrow(
      new RegExp(
        `the snapshot ${snap(second)} is gone from .*snapshots; it cannot be rolled out \\(or back\\) to`,
      ),
    )
    expect(readAlias(paths)!.current.snapshot).toBe(snap(third))
    expect(readReplica(paths, 'replica-1')!.snapshot).toBe(snap(third))
    renameSync(kept, paths.snapshot(snap(second)))

    const back = await rollbackPromotion(dataDir)
    expect(back).toMatchObject({ from: { snapshot: snap(third) }, to: { snapshot: snap(second) } })
    expect(back.replicas).toEqual(['replica-1', 'replica-2'])
    expect(readReplica(paths, 'replica-1')!.snapshot).toBe(snap(second))
    expect(searchPromoted(dataDir, 'river')).toMatchObject({ snapshot: snap(second), replica: 'replica-1' })
    await expect(rollbackPromotion(dataDir)).rejects.toThrow(/no previous index to roll back to/)
  })

  it('promote drops older unused indexes but keeps a newer one that waits for its snapshot', () => {
    const paths = layout(join(tempDir(), 'data'))
    for (const name of ['idx-01a', 'idx-01b', 'idx-01c', 'idx-01d'])
      mkdirSync(paths.index(name), { recursive: true })
    const entry = (index: string) => ({ index, snapshot: `snap-${index}`, runId: index, promotedAt: '' })
    const dropped = dropUnusedIndexes(paths, {
      version: 1,
      current: entry('idx-01c'),
      previous: [entry('idx-01b')],
    })
    expect(dropped).toEqual(['idx-01a'])
    expect(readdirSync(paths.indexes).sort()).toEqual(['idx-01b', 'idx-01c', 'idx-01d'])
  })

  it('reads user text as words, never as FTS5 syntax', () => {
    expect(toFtsQuery('red "fox" OR -cat*')).toBe('"red" "fox" "OR" "cat"')
    expect(toFtsQuery('  ')).toBe('')
  })
})
