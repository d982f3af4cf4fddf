import { describe, expect, it } from 'vitest'
import { splitRange } from '../../runners/ranges.js'

describe('splitRange', () => {
  it('covers the span with half-open ranges, each id in exactly one (random bounds and counts)', () => {
    let seed = 42
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    for (let trial = 0; trial < 500; trial++) {
      const lo = rand(1000) - 500
      const hi = lo + rand(2000)
      const count = 1 + rand(40)
      const ranges = splitRange(lo, hi, count)
      expect(ranges).toHaveLength(count)
      expect(ranges[0]![0]).toBe(lo)
      expect(ranges.at(-1)![1]).toBe(hi)
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBe(ranges[i - 1]![1])
      const sizes = ranges.map(([a, b]) => b - a)
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(hi - lo)
    }
  })

  it('rejects a bad count or span', () => {
    expect(() => splitRange(0, 10, 0)).toThrow(/count 0/)
    expect(() => splitRange(10, 0, 2)).toThrow(/not a span/)
  })
})
