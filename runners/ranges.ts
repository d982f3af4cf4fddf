/** A half-open id range: `lo <= id < hi`. */
export type IdRange = readonly [lo: number, hi: number]

/**
 * Splits the half-open span [lo, hi) into `count` contiguous half-open ranges of near-equal
 * size that cover it exactly: every id falls in exactly one range (no id lost between workers).
 * When the span is smaller than `count`, the trailing ranges are empty.
 */
export function splitRange(lo: number, hi: number, count: number): IdRange[] {
  if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || hi < lo) {
    throw new RangeError(`splitRange: [${lo}, ${hi}) is not a span of whole numbers`)
  }
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`splitRange: count ${count} must be >= 1`)
  const span = hi - lo
  const base = Math.floor(span / count)
  const extra = span % count
  const out: IdRange[] = []
  let start = lo
  for (let i = 0; i < count; i++) {
    const end = start + base + (i < extra ? 1 : 0)
    out.push([start, end])
    start = end
  }
  return out
}
