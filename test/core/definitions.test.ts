import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { resolveEnvironment, validateConfig } from '../../core/config.js'
import { asset, DEFAULT_RETRY } from '../../core/definitions.js'
import { ConfigError, didYouMean, isRefreshError } from '../../core/errors.js'
import { retryDelay } from '../../core/retry.js'
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
      /asset `a` is invalid: retry.maxAttempts: Number must be greater than or equal to 1/,
    ],
    [{ key: 'a', retry: { backoff: 'quadratic' } }, /retry.backoff: Invalid enum value/],
    [{ key: 'a', retry: { tries: 3 } }, /Unrecognized key\(s\) in object: 'tries'/],
    [{ key: 'a', timeoutMs: -1 }, /timeoutMs: Number must be greater than 0/],
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
      /f.ts is invalid: pools.db: Number must be greater than or equal to 1/,
    )
    expect(() => validateConfig({ assets: [noop('a')], asets: [] }, 'f.ts')).toThrow(
      /Unrecognized key\(s\) in object: 'asets'/,
    )
    expect(() => validateConfig({ assets: [] }, 'f.ts')).toThrow(/assets: declare at least one asset/)
    expect(() => validateConfig(undefined, 'f.ts')).toThrow(ConfigError)
    expect(() => validateConfig(undefined, 'f.ts')).toThrow(/must export a config as its default export/)
  })

  it('validates an asset’s run config with its schema', () => {
    const a = asset({ key: 'a', config: z.object({ n: z.number() }), materialize: () => {} })
    expect(a.config?.safeParse({ n: 1 }).success).toBe(true)
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
