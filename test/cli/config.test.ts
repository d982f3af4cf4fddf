import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, configProject, type Exec, run, tempDir } from '../helpers.js'

function cli(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Exec> {
  return run([CLI, ...args], { cwd, env: { NO_COLOR: '1', REFRESH_CONFIG: '', ...env }, timeoutMs: 60_000 })
}

/** The smallest config, as the errors quote it (from its `import` to its closing `})`). */
function quotedConfig(stderr: string): string {
  const start = stderr.indexOf("import { asset, defineConfig } from 'refresh'")
  expect(start).toBeGreaterThan(-1)
  const end = stderr.indexOf('})\n', start)
  return stderr
    .slice(start, end + 2)
    .split('\n')
    .map((l) => l.replace(/^ {4}/, ''))
    .join('\n')
}

describe('loading the config', () => {
  it('a default export that is null, or none, or without assets: one paragraph naming the default export, with the smallest config', async () => {
    const cases: Array<[string, RegExp]> = [
      ['export default null\n', /the default export of .*refresh\.config\.ts is null; it must be the config/],
      ['', /refresh\.config\.ts has no default export; refresh reads the config from/],
      ['export const assets = []\n', /has no default export \(it exports `assets`\)/],
      ['export default {}\n', /the default export of .*refresh\.config\.ts declares no `assets`/],
      ['export default 42\n', /the default export of .*refresh\.config\.ts is a number/],
    ]
    for (const [config, message] of cases) {
      const dir = configProject(config)
      const r = await cli(dir, ['validate'])
      expect(r.code, config).toBe(2)
      expect(r.stderr).toMatch(message)
      expect(r.stderr).not.toContain('reading')
      expect(r.stderr).not.toContain('Required')
      expect(r.stderr).not.toMatch(/^\s+at /m)
      // the config it shows works as written
      const fixed = configProject(quotedConfig(r.stderr))
      const ok = await cli(fixed, ['run', '--plain'])
      expect(ok.stderr).toBe('')
      expect(ok.code).toBe(0)
    }
  })

  it("a building block's factory given uncalled is told to call it", async () => {
    const dir = configProject(
      `import { catalog, defineConfig } from 'refresh'\nexport default defineConfig({ assets: [catalog] })\n`,
    )
    const r = await cli(dir, ['validate'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('assets.0 is a function (`catalog`), not an asset')
    expect(r.stderr).toContain('write `catalog()`')
  })

  it('an ES module loaded as CommonJS says why and how to fix it', async () => {
    const dir = configProject(
      `import { asset, defineConfig } from 'refresh'\nexport default defineConfig({ assets: [asset({ key: 'a', materialize: () => ({}) })] })\n`,
      'refresh.config.js',
    )
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'cjs-project', type: 'commonjs' }))
    const r = await cli(dir, ['validate'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('The file was loaded as CommonJS')
    expect(r.stderr).toContain('Rename it to refresh.config.mjs, or add `"type": "module"` to package.json')
  })

  it('is found from a subdirectory (searching upward) and through REFRESH_CONFIG', async () => {
    const config = `import { asset, defineConfig } from 'refresh'\nexport default defineConfig({ assets: [asset({ key: 'only', materialize: () => ({}) })] })\n`
    const dir = configProject(config)
    const deep = join(dir, 'src', 'deep')
    mkdirSync(deep, { recursive: true })
    const fromBelow = await cli(deep, ['run', '--plain'])
    expect(fromBelow.stderr).toBe('')
    expect(fromBelow.code).toBe(0)
    // the store is beside the config, not in the working directory
    expect(existsSync(join(dir, '.refresh', 'refresh.db'))).toBe(true)
    expect(existsSync(join(deep, '.refresh'))).toBe(false)

    const elsewhere = tempDir('refresh-elsewhere-')
    const none = await cli(elsewhere, ['validate'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('or any directory above it')
    expect(none.stderr).toContain('REFRESH_CONFIG')
    const viaEnv = await cli(elsewhere, ['runs'], { REFRESH_CONFIG: join(dir, 'refresh.config.ts') })
    expect(viaEnv.code).toBe(0)
    expect(viaEnv.stdout).toMatch(/^\w{18}\s+success\s+\*/m)
    const missing = await cli(elsewhere, ['validate'], { REFRESH_CONFIG: 'nope.ts' })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('REFRESH_CONFIG=nope.ts: no such file')
  })

  it("the building blocks keep their data beside the config, whatever the working directory; `promote` finds it from the config's folder", async () => {
    const dir = configProject(
      `import { catalog, clean, copy, defineConfig, promote, reindex, replicas, snapshot } from 'refresh'
export default defineConfig({
  assets: [catalog(), copy(), clean(), reindex({ shards: 2 }), snapshot(), replicas(), promote()],
  environments: { small: () => ({ assets: [catalog({ dataDir: 'other-data' })] }) },
})
`,
    )
    const sub = join(dir, 'sub')
    mkdirSync(sub)
    const r = await cli(sub, [
      'run',
      '--plain',
      '--config',
      '../refresh.config.ts',
      '--set',
      'catalog.rows=300',
      '--set',
      'replicas.replicas=1',
    ])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(existsSync(join(dir, '.refresh', 'data', 'catalog.db'))).toBe(true)
    expect(existsSync(join(dir, '.refresh', 'data', 'current.json'))).toBe(true)
    expect(existsSync(join(sub, '.refresh'))).toBe(false)
    const promoted = await cli(dir, ['promote'])
    expect(promoted.stderr).toBe('')
    expect(promoted.code).toBe(0)
    expect(promoted.stdout).toMatch(/^current: {2}idx-\w+ \(snapshot snap-\w+/)

    // a relative dataDir, in an environment block built later, is beside the config as well
    const env = await cli(sub, [
      'run',
      '--plain',
      '-c',
      '../refresh.config.ts',
      '--env',
      'small',
      '--set',
      'catalog.rows=300',
    ])
    expect(env.code).toBe(0)
    expect(existsSync(join(dir, 'other-data', 'catalog.db'))).toBe(true)
    expect(existsSync(join(sub, 'other-data'))).toBe(false)
  })
})
