import { beforeAll, describe, expect, it } from 'vitest'
import { NODE_TYPES, packedRepo, tsconfig, type UserProject } from './packed.js'

/**
 * zod is a peer dependency: a project brings its own, 3.25+ or 4, and its config's schemas must
 * type-check against refresh's types and be what `--set` and the run config are checked with.
 * One project per major, each with the packed refresh and that zod from the registry.
 */

// a user's config as the README shows it; the `@ts-expect-error` line proves ctx.config is typed
const CONFIG = `import { asset, defineConfig } from 'refresh'
import { z } from 'zod'

const source = asset({
  key: 'source',
  config: z.object({
    rows: z.number().int().min(0).default(3),
    mode: z.enum(['full', 'delta']).default('full'),
    s3: z.object({ bucket: z.string() }).partial().default({}),
  }),
  materialize(ctx) {
    const rows: number = ctx.config.rows
    const mode: 'full' | 'delta' = ctx.config.mode
    // @ts-expect-error rows is a number, not a string
    const wrong: string = ctx.config.rows
    return { rows, mode, wrong }
  },
})
const sink = asset({ key: 'sink', deps: ['source'], materialize: () => ({}) })

export default defineConfig({ assets: [source, sink], config: { source: { rows: 5 } } })
`

const repo = packedRepo()

describe.each([
  ['zod 3', 'zod@3'],
  ['zod 4', 'zod@4'],
])('a project with %s', (_, zod) => {
  let project: UserProject
  beforeAll(async () => {
    project = await repo.install([zod, NODE_TYPES])
    project.write('tsconfig.json', tsconfig({ skipLibCheck: true }))
    project.write('refresh.config.ts', CONFIG)
  }, 360_000)

  it('type-checks a config whose schemas come from its zod', async () => {
    const result = await project.tsc()
    expect(result.stdout + result.stderr).toBe('')
    expect(result.code).toBe(0)
  })

  it('validates the run config and --set with its zod', async () => {
    const ok = await project.refresh(
      'run',
      '--dry-run',
      '--set',
      'source.rows=7',
      '--set',
      'source.s3.bucket=b',
    )
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
    expect(ok.stdout).toContain('config {"rows":7,"mode":"full","s3":{"bucket":"b"}}')

    const unknown = await project.refresh('run', '--dry-run', '--set', 'source.nosuch=1')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toBe(
      'refresh: --set source.nosuch=1: `source` has no field `nosuch`. Fields: rows, mode, s3.\n',
    )
    const deep = await project.refresh('run', '--dry-run', '--set', 'source.s3.region=eu')
    expect(deep.code).toBe(2)
    expect(deep.stderr).toContain('`source.s3` has no field `region`.')

    const typed = await project.refresh('run', '--dry-run', '--set', 'source.rows=many')
    expect(typed.code).toBe(2)
    expect(typed.stderr).toContain('`source.rows` expects a number, not `many`.')

    const invalid = await project.refresh('run', '--dry-run', '--set', 'source.rows=-1')
    expect(invalid.code).toBe(2)
    expect(invalid.stderr).toMatch(/^refresh: config for asset `source` is invalid: rows: .*0/)
  })
})
