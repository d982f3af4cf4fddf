import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { applyOverrides, parseOverrides } from '../../cli/overrides.js'
import { isRefreshError } from '../../core/errors.js'
import { noop } from '../helpers.js'

const assets = [
  noop('catalog', [], {
    config: z.object({
      rows: z.number().int().default(10),
      dryRun: z.boolean().default(false),
      mode: z.enum(['full', 'delta']).default('full'),
      name: z.string().optional(),
      shards: z.array(z.number()).default([]),
      s3: z.object({ bucket: z.string(), retries: z.number() }).partial().default({}),
      limit: z.union([z.number(), z.literal('all')]).default('all'),
    }),
  }),
  noop('media.copy', ['catalog'], { config: z.object({ batch: z.coerce.number().default(1) }) }),
  noop('plain'),
]

function errorOf(flags: string[]): string {
  try {
    parseOverrides(flags, assets)
  } catch (error) {
    expect(isRefreshError(error)).toBe(true)
    return (error as Error).message
  }
  throw new Error('expected an error')
}

describe('--set asset.field=value', () => {
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
      },
      'media.copy': { batch: 7 },
    })
    expect(assets[0]!.config!.parse(config.catalog)).toMatchObject({ rows: 500, limit: 50 })
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
    expect(errorOf(['catalog.rows=abc'])).toBe(
      '--set catalog.rows=abc: `catalog.rows` expects a number, not `abc`.',
    )
    expect(errorOf(['catalog.dryRun=maybe'])).toContain('expects true or false')
    expect(errorOf(['catalg.rows=1'])).toContain('`catalg` is not an asset. Did you mean `catalog`?')
    expect(errorOf(['catalog.rowz=1'])).toContain('`catalog` has no field `rowz`. Did you mean `rows`?')
    expect(errorOf(['plain.x=1'])).toContain('declares no config schema')
    expect(errorOf(['catalog'])).toContain('write it as asset.field=value')
    expect(errorOf(['catalog=1'])).toContain('name a field of `catalog`')
  })
})
