import { describe, expect, it } from 'vitest'
import { CLI, configProject, type Exec, run } from '../helpers.js'

function cli(dir: string, ...args: string[]): Promise<Exec> {
  return run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1', COLUMNS: '' }, timeoutMs: 120_000 })
}

/** `old` is stale as soon as it materializes (1 ms), `recent` fresh for 30 days, `never` never runs. */
const CONFIG = `import { asset, defineConfig } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'recent', freshness: { maxLag: '30d' }, materialize: () => ({ rows: 1 }) }),
    asset({ key: 'old', freshness: { maxLag: 1 }, materialize: () => ({ rows: 2 }) }),
    asset({ key: 'never', freshness: { maxLag: '1h' }, materialize: () => ({}) }),
    asset({ key: 'plain', materialize: () => ({}) }),
  ],
})
`

describe('freshness in the CLI (real processes)', () => {
  it('`refresh assets` shows FRESHNESS, and --json the freshness of each asset', async () => {
    const dir = configProject(CONFIG)
    const ran = await cli(dir, 'run', 'recent,old,plain', '--plain')
    expect(ran.code, ran.stderr).toBe(0)
    const assets = await cli(dir, 'assets')
    expect(assets.code, assets.stderr).toBe(0)
    expect(assets.stdout).toMatch(/ASSET\s+GROUP\s+DEPS\s+MATERIALIZED\s+AGO\s+FRESHNESS\s+RUN\s+METADATA/)
    expect(assets.stdout).toMatch(/^recent\s.*ago\s+fresh \(max lag 30d\)\s+\S+\s+rows=1/m)
    expect(assets.stdout).toMatch(/^old\s.*ago\s+STALE for .+? \(max lag 1ms\)\s+\S+\s+rows=2/m)
    expect(assets.stdout).toMatch(/^never\s.*never\s+STALE: never materialized \(max lag 1h\)/m)
    expect(assets.stdout).toMatch(/^plain\s.*ago\s+-\s/m)

    const json = await cli(dir, 'assets', '--json')
    const lines = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; freshness: Record<string, unknown> | null })
    const rows = Object.fromEntries(lines.map((r) => [r.key, r.freshness]))
    expect(rows.plain).toBeNull()
    expect(rows.recent).toMatchObject({ status: 'fresh', maxLag: '30d', maxLagMs: 30 * 86_400_000 })
    expect(rows.old).toMatchObject({ status: 'stale', reason: 'too_old', maxLagMs: 1, partition: null })
    expect(rows.old!.staleSince).toBe((rows.old!.materializedAt as number) + 1)
    expect(rows.never).toEqual({ status: 'stale', reason: 'missing', maxLag: '1h', maxLagMs: 3_600_000 })
  })

  it('`refresh status` says which assets are stale; --json lists them stale first', async () => {
    const dir = configProject(CONFIG)
    expect((await cli(dir, 'run', 'recent,old', '--plain')).code).toBe(0)
    const status = await cli(dir, 'status')
    expect(status.code, status.stderr).toBe(0)
    expect(status.stdout).toMatch(
      /^freshness: 2 of 3 stale: old STALE for .+? \(max lag 1ms\), never STALE: never materialized \(max lag 1h\) {2}`refresh assets`$/m,
    )
    const json = JSON.parse((await cli(dir, 'status', '--json')).stdout) as {
      freshness: Array<{ asset: string; status: string }>
    }
    expect(json.freshness.map((f) => [f.asset, f.status])).toEqual([
      ['old', 'stale'],
      ['never', 'stale'],
      ['recent', 'fresh'],
    ])
  })

  it('a config without freshness policies shows no FRESHNESS column nor freshness line', async () => {
    const dir = configProject(
      `import { asset, defineConfig } from 'refresh'\nexport default defineConfig({ assets: [asset({ key: 'a', materialize: () => ({}) })] })\n`,
    )
    expect((await cli(dir, 'run', '--plain')).code).toBe(0)
    expect((await cli(dir, 'assets')).stdout).not.toContain('FRESHNESS')
    expect((await cli(dir, 'status')).stdout).not.toContain('freshness')
  })

  it('a bad maxLag is one clear paragraph naming the asset and the forms, exit 2', async () => {
    const dir = configProject(
      `import { asset, defineConfig } from 'refresh'\nexport default defineConfig({ assets: [asset({ key: 'table', freshness: { maxLag: '26 hours' }, materialize: () => ({}) })] })\n`,
    )
    const r = await cli(dir, 'assets')
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(
      /asset `table` freshness.maxLag "26 hours": expected a duration like 30d, 12h or 90m \(a whole number above 0, then d, h or m\), or a number of milliseconds above 0/,
    )
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })
})
