/** Small async helpers: an abortable sleep, a concurrency limit, a turn of the event loop between slices of work. */

/** Sleeps, or returns early when the signal aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** Runs at most `n` of the given calls at once. */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0
  const queue: Array<() => void> = []
  return async (fn) => {
    if (active >= n) await new Promise<void>((r) => queue.push(r))
    else active++
    try {
      return await fn()
    } finally {
      const next = queue.shift()
      if (next) next()
      else active--
    }
  }
}

/**
 * Ends one slice of synchronous work (a batch of SQLite rows): the event loop gets a turn before
 * the next slice (timers, signals, I/O: the run's events are written, the view redraws, a cancel
 * request is polled), then the signal's reason is thrown if it aborted meanwhile. Work that would
 * hold the loop for seconds calls it every few milliseconds of work.
 */
export async function yieldSlice(signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve))
  signal?.throwIfAborted()
}
