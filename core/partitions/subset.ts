/**
 * A set of partitions of one definition, as sorted ranges of indices into its ordered key space.
 *
 * Invariant (kept by every constructor): `bounds` is `[start0, end0, start1, end1, ...]` with
 * integer `0 <= start < end`, ranges sorted, disjoint and never touching (`end_k < start_k+1`), so
 * two equal sets have equal bounds. Memory and every set operation are O(ranges), never
 * O(partitions): a million partitions with a thousand gaps is a thousand and one ranges.
 * Subsets are immutable: `add`, `union` and the others return a new subset.
 */
export class PartitionSubset {
  static readonly empty = new PartitionSubset([])

  private sizeMemo: number | undefined

  private readonly bounds: readonly number[]

  private constructor(bounds: readonly number[]) {
    this.bounds = bounds
  }

  /** The indices `[start, end)`. */
  static range(start: number, end: number): PartitionSubset {
    checkIndex(start, 'start')
    checkIndex(end, 'end')
    return end > start ? new PartitionSubset([start, end]) : PartitionSubset.empty
  }

  /** The indices `[0, size)`: every partition of a key space of that size. */
  static all(size: number): PartitionSubset {
    return PartitionSubset.range(0, size)
  }

  /** Ranges `[start, end)` in any order, overlapping or not. O(r log r). */
  static fromRanges(ranges: Iterable<readonly [number, number]>): PartitionSubset {
    const list: Array<readonly [number, number]> = []
    for (const range of ranges) {
      checkIndex(range[0], 'start')
      checkIndex(range[1], 'end')
      if (range[1] > range[0]) list.push(range)
    }
    list.sort((a, b) => a[0] - b[0])
    const bounds: number[] = []
    for (const [start, end] of list) {
      const last = bounds.length - 1
      if (last > 0 && start <= bounds[last]!) bounds[last] = Math.max(bounds[last]!, end)
      else bounds.push(start, end)
    }
    return new PartitionSubset(bounds)
  }

  /** Single indices in any order, duplicates allowed. O(n log n). */
  static fromIndices(indices: Iterable<number>): PartitionSubset {
    const sorted = Float64Array.from(indices).sort()
    const bounds: number[] = []
    for (const i of sorted) {
      checkIndex(i, 'index')
      const last = bounds.length - 1
      if (last > 0 && i <= bounds[last]!) bounds[last] = Math.max(bounds[last]!, i + 1)
      else bounds.push(i, i + 1)
    }
    return new PartitionSubset(bounds)
  }

  /**
   * Reads what `toJSON` wrote: `[start, length, gap, length, gap, length, ...]` (each gap counted
   * from the end of the range before). Throws on anything else.
   */
  static fromJSON(value: unknown): PartitionSubset {
    if (!Array.isArray(value) || (value.length > 0 && value.length % 2 !== 0)) {
      throw new TypeError(
        `a partition subset is written as [start, length, gap, length, ...], not ${preview(value)}`,
      )
    }
    const bounds: number[] = []
    let at = 0
    for (let i = 0; i < value.length; i += 2) {
      const skip = value[i]
      const length = value[i + 1]
      const minSkip = i === 0 ? 0 : 1
      if (!Number.isSafeInteger(skip) || skip < minSkip || !Number.isSafeInteger(length) || length < 1) {
        throw new TypeError(
          `a partition subset has a bad ${i === 0 ? 'start' : 'gap'} or length at position ${i} of ${preview(value)}: ${i === 0 ? 'the start is 0 or more' : 'gaps are 1 or more'}, lengths 1 or more`,
        )
      }
      const start = at + skip
      bounds.push(start, start + length)
      at = start + length
    }
    return new PartitionSubset(bounds)
  }

  /** `fromJSON` of a JSON text. */
  static deserialize(text: string): PartitionSubset {
    return PartitionSubset.fromJSON(JSON.parse(text))
  }

  /** Compact JSON: `[start, length, gap, length, ...]`; small numbers even far into the key space. */
  toJSON(): number[] {
    const out: number[] = []
    let at = 0
    for (let i = 0; i < this.bounds.length; i += 2) {
      out.push(this.bounds[i]! - at, this.bounds[i + 1]! - this.bounds[i]!)
      at = this.bounds[i + 1]!
    }
    return out
  }

  serialize(): string {
    return JSON.stringify(this.toJSON())
  }

  /** The number of partitions in the subset. */
  get size(): number {
    if (this.sizeMemo === undefined) {
      let size = 0
      for (let i = 0; i < this.bounds.length; i += 2) size += this.bounds[i + 1]! - this.bounds[i]!
      this.sizeMemo = size
    }
    return this.sizeMemo
  }

  get isEmpty(): boolean {
    return this.bounds.length === 0
  }

  /** The number of ranges (what memory and operations cost). */
  get rangeCount(): number {
    return this.bounds.length / 2
  }

  /** The smallest index, undefined when empty. */
  get first(): number | undefined {
    return this.bounds[0]
  }

  /** The largest index, undefined when empty. */
  get last(): number | undefined {
    return this.bounds.length === 0 ? undefined : this.bounds[this.bounds.length - 1]! - 1
  }

  /** O(log ranges). */
  contains(index: number): boolean {
    // the last range whose start is <= index
    let lo = 0
    let hi = this.bounds.length / 2 - 1
    let found = -1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (this.bounds[2 * mid]! <= index) {
        found = mid
        lo = mid + 1
      } else hi = mid - 1
    }
    return found >= 0 && index < this.bounds[2 * found + 1]!
  }

  /** Every index `[start, end)` of `other` contained here. */
  containsAll(other: PartitionSubset): boolean {
    return other.difference(this).isEmpty
  }

  /** The subset with one index, or a range `[start, end)`, added. */
  add(index: number | readonly [number, number]): PartitionSubset {
    return this.union(typeof index === 'number' ? PartitionSubset.range(index, index + 1) : toSubset(index))
  }

  /** The subset with one index, or a range `[start, end)`, removed. */
  remove(index: number | readonly [number, number]): PartitionSubset {
    return this.difference(
      typeof index === 'number' ? PartitionSubset.range(index, index + 1) : toSubset(index),
    )
  }

  union(other: PartitionSubset): PartitionSubset {
    if (other.isEmpty) return this
    if (this.isEmpty) return other
    const a = this.bounds
    const b = other.bounds
    const out: number[] = []
    let i = 0
    let j = 0
    while (i < a.length || j < b.length) {
      let start: number
      let end: number
      if (j >= b.length || (i < a.length && a[i]! <= b[j]!)) {
        start = a[i]!
        end = a[i + 1]!
        i += 2
      } else {
        start = b[j]!
        end = b[j + 1]!
        j += 2
      }
      const last = out.length - 1
      if (last > 0 && start <= out[last]!) out[last] = Math.max(out[last]!, end)
      else out.push(start, end)
    }
    return new PartitionSubset(out)
  }

  intersect(other: PartitionSubset): PartitionSubset {
    const a = this.bounds
    const b = other.bounds
    const out: number[] = []
    let i = 0
    let j = 0
    while (i < a.length && j < b.length) {
      const start = Math.max(a[i]!, b[j]!)
      const end = Math.min(a[i + 1]!, b[j + 1]!)
      if (start < end) out.push(start, end)
      if (a[i + 1]! < b[j + 1]!) i += 2
      else j += 2
    }
    return new PartitionSubset(out)
  }

  difference(other: PartitionSubset): PartitionSubset {
    if (other.isEmpty || this.isEmpty) return this
    const a = this.bounds
    const b = other.bounds
    const out: number[] = []
    let j = 0
    for (let i = 0; i < a.length; i += 2) {
      let start = a[i]!
      const end = a[i + 1]!
      // skip removals that end before this range
      while (j < b.length && b[j + 1]! <= start) j += 2
      let k = j
      while (k < b.length && b[k]! < end) {
        if (b[k]! > start) out.push(start, b[k]!)
        start = Math.max(start, b[k + 1]!)
        if (b[k + 1]! >= end) break
        k += 2
      }
      if (start < end) out.push(start, end)
    }
    return new PartitionSubset(out)
  }

  /** The indices of `[0, size)` not in the subset. */
  complement(size: number): PartitionSubset {
    return PartitionSubset.all(size).difference(this)
  }

  /** The indices below `size` (a key space that has fewer partitions). */
  clip(size: number): PartitionSubset {
    const last = this.last
    return last === undefined || last < size ? this : this.intersect(PartitionSubset.all(size))
  }

  equals(other: PartitionSubset): boolean {
    return this.bounds.length === other.bounds.length && this.bounds.every((v, i) => v === other.bounds[i])
  }

  /** The ranges `[start, end)`, ascending. */
  *ranges(): IterableIterator<[number, number]> {
    for (let i = 0; i < this.bounds.length; i += 2) yield [this.bounds[i]!, this.bounds[i + 1]!]
  }

  /** Every index, ascending (O(size): prefer `ranges()` on large subsets). */
  *indices(): IterableIterator<number> {
    for (let i = 0; i < this.bounds.length; i += 2) {
      for (let k = this.bounds[i]!; k < this.bounds[i + 1]!; k++) yield k
    }
  }

  /** Every key, ascending, through a key space (a definition with its context). */
  *keys(space: { keyAt(index: number): string }): IterableIterator<string> {
    for (const index of this.indices()) yield space.keyAt(index)
  }

  toString(): string {
    return `PartitionSubset(${[...this.ranges()].map(([s, e]) => (e - s === 1 ? `${s}` : `${s}..${e - 1}`)).join(', ')})`
  }
}

function toSubset(range: readonly [number, number]): PartitionSubset {
  return PartitionSubset.range(range[0], range[1])
}

function checkIndex(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`a partition subset's ${what} must be a whole number of 0 or more, not ${value}`)
  }
}

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

/**
 * Collects ranges in any order (negative or out-of-range parts are clipped to `[0, size)`) and
 * builds one subset: what a mapping produces range by range.
 */
export class SubsetBuilder {
  private readonly list: Array<[number, number]> = []
  private readonly size: number
  constructor(size: number) {
    this.size = size
  }
  add(start: number, end: number): void {
    const s = Math.max(0, start)
    const e = Math.min(this.size, end)
    if (e > s) this.list.push([s, e])
  }
  build(): PartitionSubset {
    return PartitionSubset.fromRanges(this.list)
  }
}
