import { RefreshError } from '../errors.js'

/**
 * A partition key that names no partition of a definition (`--from`, `--to`, a run's partition):
 * the message names the key, the format keys have, and the nearest keys that exist. Bad input,
 * like a selection: its code is `selection` (the CLI exits 2).
 */
export class PartitionKeyError extends RefreshError {
  readonly key: string
  /** Existing keys close to the bad one (by time, or by spelling), best first. */
  readonly nearest: readonly string[]
  constructor(key: string, message: string, nearest: readonly string[] = []) {
    const hint = nearest.length > 0 ? ` Nearest: ${nearest.map((k) => `\`${k}\``).join(', ')}.` : ''
    super('selection', `partition key \`${key}\` ${message}${hint}`)
    this.name = 'PartitionKeyError'
    this.key = key
    this.nearest = nearest
  }
}
