import { CanceledError } from './errors.js'

/**
 * Time, injected: the executor, retries and timeouts read it from here so that tests can drive
 * time by hand instead of sleeping.
 */
export interface Clock {
  now(): number
  /** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms, signal) {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal))
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }, ms)
      const onAbort = () => {
        clearTimeout(timer)
        reject(abortReason(signal!))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  },
}

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new CanceledError()
}

/**
 * A clock that only moves when told to. `advance(ms)` fires every sleep that falls due, in order,
 * letting the promise chains they unblock run before firing the next.
 */
export class ManualClock implements Clock {
  private current: number
  private sleepers: Array<{ at: number; seq: number; resolve: () => void }> = []
  private seq = 0
  /** Every sleep requested so far, in ms, in order (for assertions on backoff). */
  readonly sleeps: number[] = []

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start
  }

  now(): number {
    return this.current
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms)
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal))
      const sleeper = { at: this.current + ms, seq: this.seq++, resolve }
      this.sleepers.push(sleeper)
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((s) => s !== sleeper)
          reject(abortReason(signal))
        },
        { once: true },
      )
    })
  }

  /** Number of sleeps waiting to fire. */
  get pending(): number {
    return this.sleepers.length
  }

  async advance(ms: number): Promise<void> {
    const target = this.current + ms
    for (;;) {
      await flushMicrotasks()
      this.sleepers.sort((a, b) => a.at - b.at || a.seq - b.seq)
      const next = this.sleepers[0]
      if (!next || next.at > target) break
      this.sleepers.shift()
      this.current = Math.max(this.current, next.at)
      next.resolve()
    }
    this.current = target
    await flushMicrotasks()
  }

  /** Advances time until no sleeper is left, firing each in turn (bounded, for safety). */
  async runAll(limit = 10_000): Promise<void> {
    for (let i = 0; i < limit; i++) {
      await flushMicrotasks()
      const next = [...this.sleepers].sort((a, b) => a.at - b.at || a.seq - b.seq)[0]
      if (!next) return
      await this.advance(next.at - this.current)
    }
    throw new Error(`ManualClock.runAll: still sleeping after ${limit} advances`)
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}
