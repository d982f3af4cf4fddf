import { describe, expect, it } from 'vitest'
import { z as z4 } from 'zod'
import * as zm from 'zod/mini'
import { z as z3 } from 'zod/v3'
import { applyOverrides, parseOverrides } from '../../cli/overrides.js'
import { assetCheck } from '../../core/checks.js'
import type { AssetDefinition } from '../../core/definitions.js'
import { isRefreshError } from '../../core/errors.js'
import { parseWithSchema } from '../../core/schema.js'
import { noop } from '../helpers.js'

// the same schemas in zod 3 and zod 4: a config may use either (zod is a peer dependency); every
// call below has the same meaning in both, so zod 3 is typed as zod 4 to share them
const zods = [
  ['zod 3', z3 as unknown as typeof z4],
  ['zod 4', z4],
] as const

function errorOf(flags: string[], assets: readonly AssetDefinition[]): string {
  try {
    parseOverrides(flags, assets)
  } catch (error) {
    expect(isRefreshError(error)).toBe(true)
    return (error as Error).message
  }
  throw new Error('expected an error')
}

describe.each(zods)('--set asset.field=value, %s schemas', (_, z) => {
  const catalogConfig = z.object({
    rows: z.number().int().default(10),
    dryRun: z.boolean().default(false),
    mode: z.enum(['full', 'delta']).default('full'),
    name: z.string().optional(),
    shards: z.array(z.number()).default([]),
    s3: z.object({ bucket: z.string(), retries: z.number() }).partial().default({}),
    limit: z.union([z.number(), z.literal('all')]).default('all'),
    when: z.preprocess((v) => v, z.number()).optional(),
    lazy: z.lazy(() => z.object({ depth: z.number() })).optional(),
  })
  const assets = [
    noop('catalog', [], { config: catalogConfig }),
    noop('media.copy', ['catalog'], { config: z.object({ batch: z.coerce.number().default(1) }) }),
    noop('plain'),
  ]
  const errorFor = (flags: string[]) => errorOf(flags, assets)

  it('coerces each value to what the schema expects at its path', () => {
    const overrides = parseOverrides(
      [
        'catalog.rows=500',
        'catalog.dryRun=true',
        'catalog.mode=delta',
        'catalog.name=123',
        'catalog.shards=1,2,3',
        'catalog.s3.retries=4',
        'catalog.s3.bucket=media',
        'catalog.limit=50',
        'media.copy.batch=7',
        'catalog.when=12',
        'catalog.lazy.depth=2',
      ],
      assets,
    )
    const config = applyOverrides({ catalog: { rows: 1, mode: 'full' } }, overrides)
    expect(config).toEqual({
      catalog: {
        rows: 500,
        dryRun: true,
        mode: 'delta',
        name: '123',
        shards: [1, 2, 3],
        s3: { retries: 4, bucket: 'media' },
        limit: 50,
        when: 12,
        lazy: { depth: 2 },
      },
      'media.copy': { batch: 7 },
    })
    expect(parseWithSchema(catalogConfig, config.catalog)).toMatchObject({
      success: true,
      data: { rows: 500, limit: 50 },
    })
  })

  it('takes JSON for arrays and objects, and leaves a union literal as text', () => {
    const [shards, s3, limit] = parseOverrides(
      ['catalog.shards=[4,5]', 'catalog.s3={"bucket":"b"}', 'catalog.limit=all'],
      assets,
    )
    expect(shards!.value).toEqual([4, 5])
    expect(s3!.value).toEqual({ bucket: 'b' })
    expect(limit!.value).toBe('all')
  })

  it('does not change the config it is laid over', () => {
    const base = { catalog: { rows: 1 } }
    applyOverrides(base, parseOverrides(['catalog.rows=2'], assets))
    expect(base).toEqual({ catalog: { rows: 1 } })
  })

  it('names the problem and the fix', () => {
    expect(errorFor(['catalog.rows=abc'])).toBe(
      '--set catalog.rows=abc: `catalog.rows` expects a number, not `abc`.',
    )
    expect(errorFor(['catalog.dryRun=maybe'])).toContain('expects true or false')
    expect(errorFor(['catalg.rows=1'])).toContain('`catalg` is not an asset. Did you mean `catalog`?')
    expect(errorFor(['catalog.rowz=1'])).toContain('`catalog` has no field `rowz`. Did you mean `rows`?')
    expect(errorFor(['plain.x=1'])).toContain('declares no config schema')
    expect(errorFor(['catalog'])).toContain('write it as asset.field=value')
    expect(errorFor(['catalog=1'])).toContain('name a field of `catalog`')
  })

  it('rejects a field the schema does not declare, at any depth', () => {
    expect(errorFor(['catalog.nosuch=1'])).toBe(
      '--set catalog.nosuch=1: `catalog` has no field `nosuch`. Fields: rows, dryRun, mode, name, shards, s3, limit, when, lazy.',
    )
    expect(errorFor(['catalog.s3.region=eu'])).toContain('`catalog.s3` has no field `region`.')
    expect(errorFor(['catalog.lazy.deep=1'])).toContain('`catalog.lazy` has no field `deep`.')
  })
})

describe('--set with zod 4 mini schemas', () => {
  const assets = [
    noop('source', [], {
      config: zm.object({ rows: zm._default(zm.number(), 5), on: zm.optional(zm.boolean()) }),
    }),
  ]

  it('coerces by the schema and rejects unknown fields', () => {
    expect(parseOverrides(['source.rows=7', 'source.on=yes'], assets).map((o) => o.value)).toEqual([7, true])
    expect(errorOf(['source.nosuch=1'], assets)).toContain('`source` has no field `nosuch`.')
    expect(errorOf(['source.rows=many'], assets)).toContain('expects a number')
  })
})

describe('--set checks.ASSET.CHECK.field=value', () => {
  const assets = [noop('media'), noop('media.v2'), noop('other')]
  const checks = [
    assetCheck({
      asset: 'media.v2',
      name: 'within',
      config: z4.object({ maxDropPercent: z4.number().default(10), strict: z4.boolean().default(false) }),
      evaluate: () => ({ passed: true }),
    }),
    assetCheck({ asset: 'media', name: 'plain', evaluate: () => ({ passed: true }) }),
  ]
  const fail = (flag: string, list: readonly AssetDefinition[] = assets) => {
    try {
      parseOverrides([flag], list, checks)
    } catch (error) {
      expect(isRefreshError(error)).toBe(true)
      return (error as Error).message
    }
    throw new Error('expected an error')
  }

  it('finds the longest asset key with checks, coerces by the check’s schema, and nests the value', () => {
    const overrides = parseOverrides(
      ['checks.media.v2.within.maxDropPercent=-5', 'checks.media.v2.within.strict=true'],
      assets,
      checks,
    )
    expect(overrides).toEqual([
      { asset: 'checks', path: ['media.v2', 'within', 'maxDropPercent'], value: -5 },
      { asset: 'checks', path: ['media.v2', 'within', 'strict'], value: true },
    ])
    expect(applyOverrides({ other: {} }, overrides)).toEqual({
      other: {},
      checks: { 'media.v2': { within: { maxDropPercent: -5, strict: true } } },
    })
  })

  it('names what is wrong: the asset, the check, the field, the value', () => {
    expect(fail('checks.other.x.y=1')).toMatch(/`other` has no checks. .*Assets with checks: media.v2, media/)
    expect(fail('checks.media.v2.whithin.maxDropPercent=1')).toMatch(
      /has no check `whithin`. Did you mean `within`\?/,
    )
    expect(fail('checks.media.v2.within.maxDrop=1')).toMatch(
      /has no field `maxDrop`. Did you mean `maxDropPercent`\?/,
    )
    expect(fail('checks.media.v2.within.maxDropPercent=lots')).toMatch(/expects a number, not `lots`/)
    expect(fail('checks.media.plain.x=1')).toMatch(/check `media:plain` declares no config schema/)
    expect(fail('checks.media.v2.within=1')).toMatch(/name a field of check `media.v2:within`/)
    // an asset named `checks` keeps its own --set
    expect(fail('checks.rows=x', [...assets, noop('checks')])).toMatch(/declares no config schema/)
  })
})
