import { randomBytes } from 'node:crypto'

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz' // Crockford base32, lowercase

/**
 * Run ids sort by creation time as strings (10 characters of milliseconds, then 8 random ones),
 * so listing runs newest first is an index scan and a prefix of an id is easy to type.
 */
export function newRunId(now: number): string {
  let time = ''
  let t = Math.max(0, Math.floor(now))
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32]! + time
    t = Math.floor(t / 32)
  }
  const bytes = randomBytes(8)
  let rand = ''
  for (let i = 0; i < 8; i++) rand += ALPHABET[bytes[i]! % 32]!
  return time + rand
}
