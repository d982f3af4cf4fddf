import { randomBytes } from 'node:crypto'

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz' // Crockford base32, lowercase

/**
 * Run ids sort by creation time as strings (10 characters of milliseconds, then 8 random ones),
 * so listing runs newest first is an index scan and a prefix of an id is easy to type.
 */
export function newRunId(now: number): string {
  const ms = Math.max(0, Math.floor(now))
  // monotonic within a process: ids made in the same millisecond (or with a clock that went
  // back) keep their creation order, by counting up from the previous random part
  if (ms <= lastTime) {
    lastRandom = increment(lastRandom)
  } else {
    lastTime = ms
    const bytes = randomBytes(8)
    lastRandom = Array.from(bytes, (b) => b % 16) // leave headroom so that increments rarely carry out
  }
  let time = ''
  let t = lastTime
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32]! + time
    t = Math.floor(t / 32)
  }
  return time + lastRandom.map((d) => ALPHABET[d]!).join('')
}

let lastTime = -1
let lastRandom: number[] = []

function increment(digits: number[]): number[] {
  const out = [...digits]
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i]! < 31) {
      out[i]!++
      return out
    }
    out[i] = 0
  }
  // 32^8 ids in one millisecond: move to the next millisecond instead
  lastTime++
  return out
}
