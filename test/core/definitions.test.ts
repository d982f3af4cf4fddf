import { describe, expect, expectTypeOf, it } from 'vitest'
import { z } from 'zod'
import * as zm from 'zod/mini'
import { z as z3 } from 'zod/v3'
import { resolveEnvironment, validateConfig } from '../../core/config.js'
import { type AssetDefinition, asset, DEFAULT_RETRY, resolveRunConfig } from '../../core/definitions.js'
import { ConfigError, didYouMean, isRefreshError } from '../../core/errors.js'
import { retryDelay } from '../../core/retry.js'
import { parseWithSchema } from '../../core/schema.js'
import { noop } from '../helpers.js'

describe('asset definitions', () => {
  it('fills defaults and freezes the definition', () => {
    const a = asset({ key: 'media/copy', materialize: () => {} })
    expect(a).toMatchObject({ key: 'media/copy', deps: [], group: 'default', tags: {}, retry: DEFAULT_RETRY })
    expect(Object.isFrozen(a)).toBe(true)
  })

  it.each([
    [{ key: '' }, /key: must be letters/],
    [{ key: '1copy' }, /key: must be letters/],
    [{ key: 'a+b' }, /key: must be letters/],
    [
      { key: 'a', retry: { maxAttempts: 0 } },
      /asset `a` is invalid: retry.maxAttempts: Too small: expected number to be >=1/,
    ],
    [
      { key: 'a', retry: { backoff: 'quadratic' } },
      /retry.backoff: Invalid option: expected one of "constant"\|"linear"\|"exponential"/,
    ],
    [{ key: 'a', retry: { tries: 3 } }, /retry: Unrecognized key: "tries"/],
    [{ key: 'a', timeoutMs: -1 }, /timeoutMs: Too small: expected number to be >0/],
    [{ key: 'a', config: { batch: 1 } }, /config: must be a zod schema/],
    [{ key: 'a', deps: ['a'] }, /depends on itself/],
    [{ key: 'a', deps: ['b', 'b'] }, /lists dep `b` twice/],
  ])('rejects %j with a message naming the field', (spec, message) => {
    expect(() => asset({ materialize: () => {}, ...(spec as { key: string }) })).toThrow(message)
    try {
      asset({ materialize: () => {}, ...(spec as { key: string }) })
    } catch (error) {
      expect(isRefreshError(error)).toBe(true)
    }
  })

  it('rejects a definition without materialize', () => {
    expect(() => asset({ key: 'a' } as never)).toThrow(/materialize: must be a function/)
  })
})

describe('config file validation', () => {
  it('accepts a config and lays an environment over it', () => {
    const a = noop('a')
    const b = noop('b')
    const config = validateConfig(
      {
        assets: [a],
        config: { a: { rows: 1, label: 'x' } },
        pools: { db: 1 },
        environments: { aws: { assets: [b], config: { a: { rows: 2 } }, pools: { db: 4 }, concurrency: 16 } },
      },
      'refresh.config.ts',
    )
    expect(resolveEnvironment(config, undefined, 'f')).toMatchObject({
      assets: [a],
      config: { a: { rows: 1 } },
      pools: { db: 1 },
    })
    expect(resolveEnvironment(config, 'aws', 'f')).toMatchObject({
      assets: [b],
      config: { a: { rows: 2, label: 'x' } },
      pools: { db: 4 },
      concurrency: 16,
    })
    expect(() => resolveEnvironment(config, 'prod', 'refresh.config.ts')).toThrow(
      'refresh.config.ts has no environment `prod`; it has: aws.',
    )
  })

  it('builds a lazy environment only when it is chosen, and names it when it cannot be built', () => {
    const a = noop('a')
    let built = 0
    const config = validateConfig(
      {
        assets: [a],
        environments: {
          aws: () => {
            built++
            if (!process.env.REFRESH_TEST_BUCKET) throw new Error('set REFRESH_TEST_BUCKET')
            return { assets: [noop('b')] }
          },
          bad: () => ({ asets: [] }) as never,
        },
      },
      'refresh.config.ts',
    )
    expect(resolveEnvironment(config, undefined, 'f').assets).toEqual([a])
    expect(built).toBe(0)
    expect(() => resolveEnvironment(config, 'aws', 'refresh.config.ts')).toThrow(
      'refresh.config.ts: environment `aws` could not be built: set REFRESH_TEST_BUCKET',
    )
    process.env.REFRESH_TEST_BUCKET = 'b'
    try {
      expect(resolveEnvironment(config, 'aws', 'f').assets.map((x) => x.key)).toEqual(['b'])
    } finally {
      delete process.env.REFRESH_TEST_BUCKET
    }
    expect(() => resolveEnvironment(config, 'bad', 'f')).toThrow(/environment `bad` is invalid: .*asets/)
  })

  it('names the file and the path of each bad field', () => {
    expect(() => validateConfig({ assets: [noop('a'), { key: 'b' }] }, 'refresh.config.ts')).toThrow(
      'refresh.config.ts is invalid: assets[1]: must be an asset made with asset({...})',
    )
    expect(() => validateConfig({ assets: [noop('a')], pools: { db: 0 } }, 'f.ts')).toThrow(
      /f.ts is invalid: pools.db: Too small: expected number to be >=1/,
    )
    expect(() => validateConfig({ assets: [noop('a')], asets: [] }, 'f.ts')).toThrow(
      /Unrecognized key: "asets"/,
    )
    expect(() => validateConfig({ assets: [] }, 'f.ts')).toThrow(/assets: declare at least one asset/)
    expect(() => validateConfig(undefined, 'f.ts')).toThrow(ConfigError)
    expect(() => validateConfig(undefined, 'f.ts')).toThrow(/must export a config as its default export/)
  })

  it('validates an asset’s run config with its schema', () => {
    const a = asset({ key: 'a', config: z.object({ n: z.number() }), materialize: () => {} })
    expect(parseWithSchema(a.config!, { n: 1 }).success).toBe(true)
  })
})

describe('config schemas from zod 3 and zod 4 (zod is a peer dependency: the project picks)', () => {
  const check = (key: string, def: AssetDefinition, raw: unknown) =>
    resolveRunConfig(new Map([[key, def]]), [key], { [key]: raw }, () => '')

  it('types ctx.config and validates with a zod 4 classic, a zod 4 mini and a zod 3 schema', () => {
    const classic = asset({
      key: 'classic',
      config: z.object({ rows: z.number().int().default(3), mode: z.enum(['a', 'b']).optional() }),
      materialize: (ctx) => {
        expectTypeOf(ctx.config).toEqualTypeOf<{ rows: number; mode?: 'a' | 'b' | undefined }>()
      },
    })
    const mini = asset({
      key: 'mini',
      config: zm.object({ rows: zm._default(zm.number(), 3) }),
      materialize: (ctx) => {
        expectTypeOf(ctx.config).toEqualTypeOf<{ rows: number }>()
      },
    })
    const three = asset({
      key: 'three',
      config: z3.object({ rows: z3.number().int().default(3), mode: z3.enum(['a', 'b']).optional() }),
      materialize: (ctx) => {
        expectTypeOf(ctx.config).toEqualTypeOf<{ rows: number; mode?: 'a' | 'b' | undefined }>()
      },
    })
    const none = asset({
      key: 'none',
      materialize: (ctx) => {
        expectTypeOf(ctx.config).toEqualTypeOf<Record<string, never>>()
      },
    })
    expect(none.config).toBeUndefined()
    for (const def of [classic, mini, three]) {
      expect(check(def.key, def, {})).toEqual({ [def.key]: { rows: 3 } })
      expect(check(def.key, def, { rows: 7 })).toEqual({ [def.key]: { rows: 7 } })
      expect(() => check(def.key, def, { rows: 'many' })).toThrow(
        new RegExp(
          `config for asset \`${def.key}\` is invalid: rows: .*expected number, received string`,
          'i',
        ),
      )
    }
  })

  it('names the path of a nested problem whichever zod made the schema', () => {
    const four = asset({
      key: 'four',
      config: z.object({ s3: z.object({ bucket: z.string() }) }),
      materialize: () => {},
    })
    const three = asset({
      key: 'three',
      config: z3.object({ s3: z3.object({ bucket: z3.string() }) }),
      materialize: () => {},
    })
    expect(() => check('four', four, { s3: {} })).toThrow(/config for asset `four` is invalid: s3.bucket: /)
    expect(() => check('three', three, { s3: {} })).toThrow(
      /config for asset `three` is invalid: s3.bucket: Required/,
    )
  })
})

describe('retry delays', () => {
  const policy = { ...DEFAULT_RETRY, delayMs: 100 }
  it('grows by backoff', () => {
    expect([1, 2, 3, 4].map((n) => retryDelay({ ...policy, backoff: 'constant' }, n, Math.random))).toEqual([
      100, 100, 100, 100,
    ])
    expect([1, 2, 3, 4].map((n) => retryDelay({ ...policy, backoff: 'linear' }, n, Math.random))).toEqual([
      100, 200, 300, 400,
    ])
    expect(
      [1, 2, 3, 4].map((n) => retryDelay({ ...policy, backoff: 'exponential' }, n, Math.random)),
    ).toEqual([100, 200, 400, 800])
  })
  it('applies jitter within its bounds and the cap', () => {
    const exp = { ...policy, backoff: 'exponential' as const }
    expect(retryDelay({ ...exp, jitter: 'full' }, 3, () => 0)).toBe(0)
    expect(retryDelay({ ...exp, jitter: 'full' }, 3, () => 0.5)).toBe(200)
    expect(retryDelay({ ...exp, jitter: 'plus-minus' }, 3, () => 0)).toBe(300)
    expect(retryDelay({ ...exp, jitter: 'plus-minus' }, 3, () => 0.999999)).toBe(500)
    expect(retryDelay({ ...exp, jitter: 'plus-minus' }, 1, () => 0)).toBe(0)
    expect(retryDelay({ ...exp, maxDelayMs: 250 }, 5, Math.random)).toBe(250)
  })
})

describe('suggestions', () => {
  it('suggests close names, swaps of neighbours included, and nothing for distant ones', () => {
    expect(didYouMean('claen', ['clean', 'copy'])).toBe(' Did you mean `clean`?')
    expect(didYouMean('copyy', ['clean', 'copy'])).toBe(' Did you mean `copy`?')
    expect(didYouMean('xyz', ['clean', 'copy'])).toBe('')
  })
})

describe('run config fields', () => {
  const copy = asset({
    key: 'copy',
    config: z.object({ rows: z.number().default(10), source: z.string().optional() }),
    materialize: (ctx) => ({ rows: ctx.config.rows }),
  })
  const open = asset({
    key: 'open',
    config: z.object({ rows: z.number().default(10) }).passthrough(),
    materialize: () => ({}),
  })

  it('a field the schema does not declare is refused, in the plan or not, naming the fields there are', async () => {
    const { materialize } = await import('../../core/materialize.js')
    for (const selection of ['copy', 'open']) {
      const run = materialize([copy, open], { selection, config: { copy: { batchSize: 10 } } })
      await expect(run).rejects.toThrow(
        'config for asset `copy` has no field `batchSize`. Its fields: rows, source.',
      )
    }
    await expect(materialize([copy], { config: { copy: { row: 10 } } })).rejects.toThrow(
      'has no field `row`. Did you mean `rows`?',
    )
    // a schema that keeps unknown fields keeps accepting them
    const ok = await materialize([copy, open], { config: { open: { extra: true } } })
    expect(ok.status).toBe('success')
  })
})
