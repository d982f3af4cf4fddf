/** What the building blocks that work in slices (copy, clean) share; see `yieldSlice` in core/async.ts. */

/** How a sliced table operation is driven. */
export interface SliceOptions {
  /** Aborts the work at the next slice; its partial output is discarded at once. */
  signal?: AbortSignal
  /** Rows done so far, of the table's rows (once per slice). */
  progress?(done: number, total: number): void
  /** Rows per slice (default: the operation's own, about 10-20 ms of work). */
  sliceRows?: number
}

/** The largest SQLite integer: the upper bound of the last slice of ids. */
export const MAX_ROWID = 2n ** 63n - 1n
