import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, tempDir } from '../helpers.js'
import { command } from './packed.js'

const CHECK = join(ROOT, '.ci/check-lock')

/** package.json and package-lock.json of the repository, alone in a temp directory. */
function manifests(): string {
  const dir = tempDir('refresh-lock-')
  for (const name of ['package.json', 'package-lock.json']) copyFileSync(join(ROOT, name), join(dir, name))
  return dir
}

describe('package-lock.json (the worker image and CI install with `npm ci`)', () => {
  it('is what `npm ci` installs from', async () => {
    const result = await command(CHECK, [manifests()], { cwd: ROOT })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
  })

  it('is refused, with the fix named, when it lacks the platform packages npm 11 writes', async () => {
    const dir = manifests()
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'))
    delete lock.packages['node_modules/@biomejs/cli-darwin-arm64']
    writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lock, null, 2))
    const result = await command(CHECK, [dir], { cwd: ROOT })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('Missing: @biomejs/cli-darwin-arm64')
    expect(result.stderr).toContain(
      'fix it with `npm install` (npm 11 or newer), then commit package-lock.json.',
    )
  })

  it('is checked by CI around exactly the README quick-start lines', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const quickStart = /```sh\n([^\n]*)\n([^\n]*)\n/
      .exec(readme)!
      .slice(1, 3)
      .map((line) => line.replace(/#.*$/, '').trim())
    expect(quickStart).toEqual(['npm install && npx refresh run', 'npm install && npm test'])
    const steps = readFileSync(join(ROOT, '.ci/run'), 'utf8')
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#'))
    const at = (line: string) => steps.indexOf(line)
    expect(at('.ci/check-lock')).toBeGreaterThan(-1)
    expect(at('.ci/check-lock')).toBeLessThan(at(quickStart[0]!))
    expect(at(quickStart[0]!)).toBeLessThan(at(quickStart[1]!))
    expect(
      steps.findIndex((line) => line.includes('cmp -s "$committed_lock" package-lock.json')),
    ).toBeGreaterThan(at(quickStart[1]!))
  })
})
