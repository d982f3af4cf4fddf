import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { fileError } from '../../assets/layout.js'
import { materialize } from '../../core/materialize.js'
import { tempDir } from '../helpers.js'
import { chain, small } from './chain.js'

const mounted: string[] = []
afterEach(() => {
  for (const dir of mounted.splice(0)) spawnSync('umount', [dir])
})

/** A real, tiny file system (tmpfs of 256 KiB) to fill up; needs root, as CI and this machine have. */
function tinyDisk(): string | undefined {
  const dir = join(tempDir(), 'tiny')
  mkdirSync(dir)
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir])
  if (r.status !== 0) return undefined
  mounted.push(dir)
  return dir
}

describe('a full disk', () => {
  it('fails the step with an error that says the disk is full and names the path', async () => {
    const disk = tinyDisk()
    if (disk === undefined) {
      // no privilege to mount here: the mapping itself is still checked with the error Node gives
      const error = fileError(
        'write the catalog',
        '/data/catalog.db',
        Object.assign(new Error('no space'), { code: 'ENOSPC' }),
      )
      expect(error.message).toBe(
        'the disk is full: could not write the catalog /data/catalog.db; free some space and retry.',
      )
      return
    }
    const dataDir = join(disk, 'data')
    const result = await materialize(chain(dataDir), { config: small({ catalog: { rows: 20_000 } }) })
    expect(result.status).toBe('failure')
    expect(result.steps.catalog?.status).toBe('failed')
    expect(result.steps.catalog?.error?.message).toMatch(
      /^the disk is full: could not write the catalog \S+catalog\S*; free some space and retry\.$/,
    )
    expect(result.steps.catalog?.error?.message).toContain(dataDir)
    expect(result.steps.copy?.status).toBe('skipped')
  })
})
