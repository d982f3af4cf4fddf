import { readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, type Exec, ROOT, run, tempDir } from '../helpers.js'

/** The real CLI (dist/cli/main.js) as a child process, on a temp project with its own config. */
function project(config: string): string {
  const dir = tempDir('refresh-checks-')
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  writeFileSync(join(dir, 'refresh.config.ts'), config)
  return dir
}

function cli(dir: string, ...args: string[]): Promise<Exec> {
  return run([CLI, ...args], { cwd: dir, env: { NO_COLOR: '1' }, timeoutMs: 120_000 })
}

/**
 * source -> table -> report, and other: `table` has a blocking check that fails while a `bad` file
 * exists beside the config, a warning on `other` that always fails, and a check with config.
 */
const CONFIG = `import { asset, assetCheck, defineConfig } from 'refresh'
import { existsSync } from 'node:fs'
import { z } from 'zod'
const bad = () => existsSync(new URL('./bad', import.meta.url))
export default defineConfig({
  assets: [
    asset({ key: 'source', materialize: () => ({ rows: 3 }) }),
    asset({ key: 'table', deps: ['source'], materialize: () => ({ rows: bad() ? 0 : 3 }) }),
    asset({ key: 'report', deps: ['table'], materialize: () => ({ ok: true }) }),
    asset({ key: 'other', materialize: () => ({}) }),
  ],
  checks: [
    assetCheck({ asset: 'table', name: 'has_rows', blocking: true,
      evaluate: (ctx) => ({ passed: (ctx.metadata.rows as number) > 0, metadata: { rows: ctx.metadata.rows ?? null } }) }),
    assetCheck({ asset: 'table', name: 'at_least', blocking: true,
      config: z.object({ min: z.number().default(0) }),
      evaluate: (ctx) => ({ passed: (ctx.metadata.rows as number) >= ctx.config.min, metadata: { min: ctx.config.min } }) }),
    assetCheck({ asset: 'other', name: 'always_warns', severity: 'warn',
      evaluate: () => ({ passed: false, metadata: { note: 'just so you know' } }) }),
  ],
})
`

describe('asset checks in the CLI', () => {
  it('run, checks, show and --json report check results; a blocking failure skips what is downstream; retry after the fix', async () => {
    const dir = project(CONFIG)
    writeFileSync(join(dir, 'bad'), '')
    const failed = await cli(dir, 'run', '--plain')
    expect(failed.code, failed.stderr).toBe(1)
    expect(failed.stdout).toMatch(
      /table\s+check has_rows FAILED \(blocking: what is downstream is skipped\)\s+rows=0/,
    )
    expect(failed.stdout).toMatch(/other\s+check always_warns failed \(warning\)/)
    expect(failed.stdout).toMatch(/report\s+skipped: check table:has_rows failed/)
    const runId = /run (\S+) failure/.exec(failed.stdout)![1]!

    const checks = await cli(dir, 'checks')
    expect(checks.code, checks.stderr).toBe(0)
    const lines = checks.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^ASSET\s+CHECK\s+RESULT\s+SEVERITY\s+RUN\s+EVALUATED\s+DETAIL$/)
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
      ['other', 'always_warns', 'failed'],
      ['table', 'at_least', 'passed'],
      ['table', 'has_rows', 'FAILED'],
    ])
    const json = (await cli(dir, 'checks', 'table', '--json')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(json.map((r) => [r.check, r.passed, r.runId, r.partitionKey])).toEqual([
      ['at_least', true, runId, null],
      ['has_rows', false, runId, null],
    ])
    expect(json[1]).toMatchObject({ severity: 'error', blocking: true, metadata: { rows: 0 } })

    const status = await cli(dir, 'status')
    expect(status.stdout).toMatch(/checks: 2 of 3 failing: other:always_warns, table:has_rows/)
    expect(JSON.parse((await cli(dir, 'status', '--json')).stdout).checks).toMatchObject({
      total: 3,
      failing: [
        { asset: 'other', check: 'always_warns', blocking: false },
        { asset: 'table', check: 'has_rows', blocking: true, runId },
      ],
    })

    const show = await cli(dir, 'show', runId)
    expect(show.code, show.stderr).toBe(0)
    expect(show.stdout).toMatch(/report\s+skipped\s+check table:has_rows failed/)
    expect(show.stdout).toMatch(/check FAILED\s+has_rows\s+rows=0/)
    const shown = JSON.parse((await cli(dir, 'show', runId, '--json')).stdout)
    // in the order evaluated: other runs beside source -> table, so only table's two are ordered
    const names: string[] = shown.checks.map((c: { check: string }) => c.check)
    expect(names.filter((n) => n !== 'always_warns')).toEqual(['has_rows', 'at_least'])
    expect(names).toContain('always_warns')
    expect(shown.steps.find((s: { key: string }) => s.key === 'report').reason).toBe('table:has_rows')

    // the data is fixed; the retry runs table and its checks again, then report
    rmSync(join(dir, 'bad'))
    const retried = await cli(dir, 'retry', runId, '--json')
    expect(retried.code, retried.stderr).toBe(0)
    const events = retried.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    const evaluated = events.filter((e) => e.type === 'check:evaluated')
    expect(evaluated.map((e) => [e.asset, e.check, e.passed])).toEqual([
      ['table', 'has_rows', true],
      ['table', 'at_least', true],
    ])
    expect(events.filter((e) => e.type === 'step:success').map((e) => e.step)).toEqual(['table', 'report'])

    // a check's config from --set; a wrong field is named
    const strict = await cli(dir, 'run', 'table', '--plain', '--set', 'checks.table.at_least.min=10')
    expect(strict.code, strict.stderr).toBe(1)
    expect(strict.stdout).toMatch(/check at_least FAILED/)
    const typo = await cli(dir, 'run', '--plain', '--set', 'checks.table.at_least.mni=10')
    expect(typo.code).toBe(2)
    expect(typo.stderr).toMatch(/`checks.table.at_least` has no field `mni`. Did you mean `min`\?/)
    const plan = await cli(dir, 'run', '--dry-run', '--set', 'checks.table.at_least.min=2')
    expect(plan.code, plan.stderr).toBe(0)
    expect(plan.stdout).toMatch(
      /check has_rows \(blocking\)\n\s+check at_least \(blocking\)\s+config \{"min":2\}/,
    )
    expect(plan.stdout).toMatch(/check always_warns \(warn\)/)
    const noCheck = await cli(dir, 'run', '--plain', '--set', 'checks.table.nope.min=1')
    expect(noCheck.code).toBe(2)
    expect(noCheck.stderr).toMatch(/asset `table` has no check `nope`/)
  })

  it('validate names a check on an unknown asset and a bad check config; both exit 2', async () => {
    const dir = project(
      CONFIG.replace("asset: 'other', name: 'always_warns'", "asset: 'otehr', name: 'always_warns'"),
    )
    const unknown = await cli(dir, 'validate')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(
      /check `always_warns` is on asset `otehr`, which is not defined. Did you mean `other`\?/,
    )
    const bad = project(
      CONFIG.replace('assets: [', "config: { checks: { table: { at_least: { min: 'x' } } } },\n  assets: ["),
    )
    const invalid = await cli(bad, 'validate')
    expect(invalid.code).toBe(2)
    expect(invalid.stderr).toMatch(/config for check `table:at_least` is invalid: min:/)
    expect((await cli(project(CONFIG), 'validate')).code).toBe(0)
  })

  it('the default refresh: a failing count check leaves the promoted index untouched', async () => {
    const dir = tempDir('refresh-checks-default-')
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    writeFileSync(join(dir, 'refresh.config.ts'), readFileSync(join(ROOT, 'refresh.config.ts'), 'utf8'))
    const small = ['--set', 'catalog.rows=2000', '--set', 'replicas.replicas=1']
    const first = await cli(dir, 'run', '--plain', ...small)
    expect(first.code, first.stdout + first.stderr).toBe(0)
    expect(first.stdout).toMatch(/reindex\s+check not_empty passed/)
    expect(first.stdout).toMatch(/reindex\s+check count_within passed/)
    expect(first.stdout).toMatch(/snapshot\s+check checksums passed/)
    const aliasFile = join(dir, '.refresh/data/current.json')
    const promoted = readFileSync(aliasFile, 'utf8')

    // the same data, but the check asks for 1% more documents than promoted: it cannot pass
    const second = await cli(
      dir,
      'run',
      '--plain',
      ...small,
      '--set',
      'checks.reindex.count_within.maxDropPercent=-1',
    )
    expect(second.code, second.stdout + second.stderr).toBe(1)
    expect(second.stdout).toMatch(/reindex\s+check count_within FAILED.*dropPercent=0.*maxDropPercent=-1/)
    for (const step of ['snapshot', 'replicas', 'promote'])
      expect(second.stdout).toMatch(new RegExp(`${step}\\s+skipped: check reindex:count_within failed`))
    expect(readFileSync(aliasFile, 'utf8')).toBe(promoted)
    const latest = (await cli(dir, 'checks', 'reindex', '--json')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(latest.map((r) => [r.check, r.passed])).toEqual([
      ['count_within', false],
      ['not_empty', true],
    ])
  })
})
