import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../core/errors.js'
import { PartitionKeyError } from '../../core/partitions/errors.js'
import { multiPartitions } from '../../core/partitions/multi.js'
import { dynamicPartitions, staticPartitions } from '../../core/partitions/static.js'
import { dailyPartitions } from '../../core/partitions/time.js'

function thrown(fn: () => unknown): Error {
  try {
    fn()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected an error, none was thrown')
}

const ctx = { now: new Date('2026-01-04T00:00:00Z') }

describe('static and dynamic partitions', () => {
  it('static keys keep their order; an unknown key names the close ones', () => {
    const def = staticPartitions(['us-east', 'us-west', 'eu-central'])
    expect(def.keys(ctx)).toEqual(['us-east', 'us-west', 'eu-central'])
    expect(def.indexOf('eu-central', ctx)).toBe(2)
    const error = thrown(() => def.indexOf('us-wset', ctx)) as PartitionKeyError
    expect(error).toBeInstanceOf(PartitionKeyError)
    expect(error.code).toBe('selection')
    expect(error.message).toContain('`us-wset` is not a key of static partitions (3 keys)')
    expect(error.nearest).toEqual(['us-west'])
  })

  it('static keys are unique, non-empty and free of `|`', () => {
    expect(() => staticPartitions(['a', 'a'])).toThrow(/lists `a` twice/)
    expect(() => staticPartitions(['a|b'])).toThrow(/contains `\|`/)
    expect(() => staticPartitions([])).toThrow(ConfigError)
    expect(() => staticPartitions([''])).toThrow(ConfigError)
  })

  it('dynamic keys come from the lookup, in the order they were added', () => {
    const added: string[] = ['acme']
    const def = dynamicPartitions('customers')
    const lookup = { now: 0, dynamic: (name: string) => (name === 'customers' ? [...added] : []) }
    expect(def.keys(lookup)).toEqual(['acme'])
    added.push('globex')
    expect(def.indexOf('globex', lookup)).toBe(1)
    expect(thrown(() => def.indexOf('initech', lookup)).message).toContain(
      'is not a key of dynamic partitions `customers`',
    )
    expect(thrown(() => def.size({ now: 0 })).message).toContain('pass `dynamic: (name) => keys`')
    expect(() => dynamicPartitions('has space')).toThrow(ConfigError)
  })
})

describe('multi partitions', () => {
  const date = dailyPartitions({ start: '2026-01-01' })
  const region = staticPartitions(['us', 'eu'])
  const shard = staticPartitions(['0', '1', '2'])

  it('three dimensions: keys join dimension keys with | in declared order, every key round-trips', () => {
    const def = multiPartitions({ region, date, shard })
    expect(def.size(ctx)).toBe(2 * 3 * 3)
    const keys = def.keys(ctx)
    expect(new Set(keys).size).toBe(18)
    expect(keys.slice(0, 4)).toEqual([
      'us|2026-01-01|0',
      'us|2026-01-01|1',
      'us|2026-01-01|2',
      'eu|2026-01-01|0',
    ])
    keys.forEach((key, i) => {
      expect(def.indexOf(key, ctx)).toBe(i)
    })
    expect(def.keyFormat).toBe('`region|date|shard` (one of us, eu|`YYYY-MM-DD`|one of 0, 1, 2)')
  })

  it('the dimension that grows with time leads the index: an index keeps its key as days pass', () => {
    const def = multiPartitions({ region, date, shard })
    const later = { now: new Date('2026-03-01T00:00:00Z') }
    const before = def.keys(ctx)
    expect(def.keys(later).slice(0, before.length)).toEqual(before)
    expect(def.size(later)).toBe(59 * 6)
  })

  it('ctx.partition holds each dimension key and the time window', () => {
    const def = multiPartitions({ region, date, shard })
    expect(def.partitionContext('eu|2026-01-02|1', ctx)).toEqual({
      key: 'eu|2026-01-02|1',
      keys: { region: 'eu', date: '2026-01-02', shard: '1' },
      window: { start: new Date('2026-01-02T00:00:00Z'), end: new Date('2026-01-03T00:00:00Z') },
    })
    const plain = multiPartitions({ region, shard })
    expect(plain.partitionContext('us|2', ctx)).toEqual({ key: 'us|2', keys: { region: 'us', shard: '2' } })
  })

  it('a bad part names its dimension, and the nearest keys are whole keys', () => {
    const def = multiPartitions({ region, date, shard })
    const error = thrown(() => def.indexOf('eu|2026-01-09|1', ctx)) as PartitionKeyError
    expect(error.message).toContain('partition key `eu|2026-01-09|1` has a bad `date` part')
    expect(error.message).toContain('does not exist yet')
    expect(error.nearest).toEqual(['eu|2026-01-03|1'])
    expect(thrown(() => def.indexOf('eu|2026-01-02', ctx)).message).toContain(
      'has 2 parts; keys of multi partitions (region x date x shard) have 3',
    )
  })

  it('at most one dimension may grow; dimensions are named and not nested', () => {
    expect(() => multiPartitions({ date, customer: dynamicPartitions('customers') })).toThrow(
      /`date` and `customer` both gain keys over time/,
    )
    expect(() => multiPartitions({ region })).toThrow(/two or more named dimensions/)
    expect(() => multiPartitions({ 'bad name': region, shard })).toThrow(ConfigError)
    // biome-ignore lint/suspicious/noExplicitAny: a nested multi is refused at run time
    const nested = multiPartitions({ region, shard }) as any
    expect(() => multiPartitions({ nested, date })).toThrow(/is itself multi partitions/)
  })
})
