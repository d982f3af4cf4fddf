import type { PartitionsContext } from './definitions.js'
import type { MultiPartitionsDefinition } from './multi.js'
import { PartitionSubset } from './subset.js'

/**
 * Range arithmetic over the mixed-radix index of multi partitions. A range of multi indices is
 * the union of a few "boxes" (one index range per dimension, their product): at most two per
 * dimension. Mappings map each box dimension by dimension, then rebuild ranges from the product,
 * so the cost follows the number of ranges in and out, never the number of partitions.
 */

/** One index range `[lo, hi)` per dimension, in declared order. */
export type Box = ReadonlyArray<readonly [number, number]>

/** The boxes whose union is the subset. */
export function boxesOf(
  def: MultiPartitionsDefinition,
  subset: PartitionSubset,
  ctx: PartitionsContext,
): Box[] {
  const radices = def.radices(ctx)
  const size = radices.reduce((a, b) => a * b, 1)
  const strides = stridesOf(radices)
  const out: Array<Array<[number, number]>> = []
  for (const [a, b] of subset.clip(size).ranges()) decompose(a, b, radices, strides, 0, [], out)
  // significance order -> declared order
  return out.map((box) => {
    const declared = new Array<[number, number]>(box.length)
    def.significance.forEach((dim, k) => {
      declared[dim] = box[k]!
    })
    return declared
  })
}

/** The multi subset that is the product of one subset per dimension (declared order). */
export function productOf(
  def: MultiPartitionsDefinition,
  subsets: readonly PartitionSubset[],
  ctx: PartitionsContext,
): PartitionSubset {
  const radices = def.radices(ctx)
  const strides = stridesOf(radices)
  const levels = def.significance.map((dim, k) => subsets[dim]!.clip(radices[k]!))
  if (levels.some((s) => s.isEmpty)) return PartitionSubset.empty
  // below the last level that is not complete, whole blocks are taken: ranges scale by the stride
  let deepest = levels.length - 1
  while (deepest >= 0 && levels[deepest]!.size === radices[deepest]) deepest--
  if (deepest < 0) return PartitionSubset.all(radices.reduce((a, b) => a * b, 1))
  const ranges: Array<[number, number]> = []
  const walk = (level: number, base: number): void => {
    const stride = strides[level]!
    if (level === deepest) {
      for (const [lo, hi] of levels[level]!.ranges()) ranges.push([base + lo * stride, base + hi * stride])
      return
    }
    for (const i of levels[level]!.indices()) walk(level + 1, base + i * stride)
  }
  walk(0, 0)
  return PartitionSubset.fromRanges(ranges)
}

function stridesOf(radices: readonly number[]): number[] {
  const strides = new Array<number>(radices.length)
  let stride = 1
  for (let k = radices.length - 1; k >= 0; k--) {
    strides[k] = stride
    stride *= radices[k]!
  }
  return strides
}

/**
 * Splits `[a, b)` (offsets inside one block of `level`: a block holds radices[level] * strides[level]
 * indices) into boxes: a partial first digit, whole digits in between, a partial last digit.
 */
function decompose(
  a: number,
  b: number,
  radices: readonly number[],
  strides: readonly number[],
  level: number,
  prefix: ReadonlyArray<[number, number]>,
  out: Array<Array<[number, number]>>,
): void {
  const stride = strides[level]!
  const radix = radices[level]!
  const whole = (from: number): Array<[number, number]> =>
    radices.slice(from).map((r) => [0, r] as [number, number])
  if (level === radices.length - 1) {
    out.push([...prefix, [a, b]])
    return
  }
  if (a === 0 && b === radix * stride) {
    out.push([...prefix, [0, radix], ...whole(level + 1)])
    return
  }
  let lo = Math.floor(a / stride)
  const lastDigit = Math.floor((b - 1) / stride)
  if (lo === lastDigit) {
    decompose(a - lo * stride, b - lo * stride, radices, strides, level + 1, [...prefix, [lo, lo + 1]], out)
    return
  }
  if (a % stride !== 0) {
    decompose(a - lo * stride, stride, radices, strides, level + 1, [...prefix, [lo, lo + 1]], out)
    lo++
  }
  const partialLast = b % stride !== 0
  const hi = partialLast ? lastDigit : lastDigit + 1
  if (lo < hi) out.push([...prefix, [lo, hi], ...whole(level + 1)])
  if (partialLast) {
    decompose(
      0,
      b - lastDigit * stride,
      radices,
      strides,
      level + 1,
      [...prefix, [lastDigit, lastDigit + 1]],
      out,
    )
  }
}
