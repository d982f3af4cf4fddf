import { describe, expect, it } from 'vitest'
import { staticPartitions } from '../../core/partitions/static.js'
import { PartitionSubset } from '../../core/partitions/subset.js'

/** A small seeded generator (mulberry32): the same "random" subsets on every run. */
function random(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomSet(next: () => number, universe: number, density: number): Set<number> {
  const set = new Set<number>()
  // runs of present and absent indices, so that ranges of several lengths occur
  let i = 0
  while (i < universe) {
    const run = 1 + Math.floor(next() * 6)
    const present = next() < density
    for (let k = i; k < Math.min(universe, i + run); k++) if (present) set.add(k)
    i += run
  }
  return set
}

const sorted = (set: Iterable<number>) => [...set].sort((a, b) => a - b)

describe('PartitionSubset', () => {
  it('matches a plain Set on union, intersection, difference, contains and size (random subsets)', () => {
    const next = random(15)
    for (let round = 0; round < 50; round++) {
      const a = randomSet(next, 200, 0.5)
      const b = randomSet(next, 200, 0.4)
      const sa = PartitionSubset.fromIndices(a)
      const sb = PartitionSubset.fromIndices(b)
      expect([...sa.indices()]).toEqual(sorted(a))
      expect(sa.size).toBe(a.size)
      expect([...sa.union(sb).indices()]).toEqual(sorted(new Set([...a, ...b])))
      expect([...sa.intersect(sb).indices()]).toEqual(sorted([...a].filter((x) => b.has(x))))
      expect([...sa.difference(sb).indices()]).toEqual(sorted([...a].filter((x) => !b.has(x))))
      expect([...sa.complement(200).indices()]).toEqual(
        sorted([...Array(200).keys()].filter((x) => !a.has(x))),
      )
      for (let i = -1; i <= 201; i++) expect(sa.contains(i)).toBe(a.has(i))
      // one spelling per set: built another way, the result is equal
      expect(sa.union(sb).equals(sb.union(sa))).toBe(true)
      expect(sa.difference(sb).union(sa.intersect(sb)).equals(sa)).toBe(true)
    }
  })

  it('add and remove single indices and ranges, merging touching ranges', () => {
    let s = PartitionSubset.range(0, 5)
    s = s.add(5).add([10, 12]).add(7)
    expect([...s.ranges()]).toEqual([
      [0, 6],
      [7, 8],
      [10, 12],
    ])
    s = s.add(6)
    expect([...s.ranges()]).toEqual([
      [0, 8],
      [10, 12],
    ])
    s = s.remove(3).remove([10, 11])
    expect([...s.ranges()]).toEqual([
      [0, 3],
      [4, 8],
      [11, 12],
    ])
    expect(s.size).toBe(8)
    expect(s.first).toBe(0)
    expect(s.last).toBe(11)
    expect(PartitionSubset.empty.last).toBeUndefined()
    expect(() => s.add(-1)).toThrow(RangeError)
  })

  it('holds 1,000,000 partitions with 10,000 scattered gaps as ranges, and serializes them compactly', () => {
    const next = random(7)
    const gaps = new Set<number>()
    while (gaps.size < 10_000) gaps.add(Math.floor(next() * 1_000_000))
    const subset = PartitionSubset.all(1_000_000).difference(PartitionSubset.fromIndices(gaps))
    expect(subset.size).toBe(990_000)
    expect(subset.rangeCount).toBeLessThanOrEqual(10_001)
    for (const gap of [...gaps].slice(0, 500)) {
      expect(subset.contains(gap)).toBe(false)
      if (!gaps.has(gap + 1) && gap + 1 < 1_000_000) expect(subset.contains(gap + 1)).toBe(true)
    }
    const text = subset.serialize()
    // [start, length, gap, length, ...]: about 2 small numbers per range, not a million
    expect(text.length).toBeLessThan(150_000)
    const back = PartitionSubset.deserialize(text)
    expect(back.equals(subset)).toBe(true)
    expect(back.size).toBe(990_000)
    expect(back.union(PartitionSubset.fromIndices(gaps)).equals(PartitionSubset.all(1_000_000))).toBe(true)
    // the missing ones are exactly the gaps
    expect([...back.complement(1_000_000).indices()]).toEqual(sorted(gaps))
  })

  it('serializes as [start, length, gap, length, ...] and refuses anything else', () => {
    const s = PartitionSubset.fromRanges([
      [100, 103],
      [110, 111],
    ])
    expect(JSON.stringify(s)).toBe('[100,3,7,1]')
    expect(PartitionSubset.fromJSON([100, 3, 7, 1]).equals(s)).toBe(true)
    expect(PartitionSubset.fromJSON([]).isEmpty).toBe(true)
    expect(() => PartitionSubset.fromJSON([1, 2, 3])).toThrow(/\[start, length, gap, length/)
    expect(() => PartitionSubset.fromJSON([1, 0])).toThrow(/lengths 1 or more/)
    expect(() => PartitionSubset.fromJSON([1, 2, 0, 2])).toThrow(/gaps are 1 or more/)
    expect(() => PartitionSubset.fromJSON({ ranges: [] })).toThrow(TypeError)
  })

  it('lists keys through a definition', () => {
    const def = staticPartitions(['a', 'b', 'c', 'd'])
    const ctx = { now: 0 }
    const s = PartitionSubset.fromIndices([0, 2, 3])
    expect(def.keysOf(s, ctx)).toEqual(['a', 'c', 'd'])
    expect(def.subsetOf(['d', 'a'], ctx).equals(PartitionSubset.fromIndices([0, 3]))).toBe(true)
  })
})
