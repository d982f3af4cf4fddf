import { setTimeout as sleep } from 'node:timers/promises'
import { DURATION_HINT, durationMs } from './duration.js'
import { ConfigError } from './errors.js'
import type { RunStore } from './store/run-store.js'
import { PRUNE_KINDS, type PruneDeleted, type PrunePolicy } from './store/types.js'

/** `retention` in the config: what the daemon prunes once a day (`refresh prune` reads it too). */
export interface RetentionConfig {
  /** Finished runs (and ticks) older than this are pruned: `30d`, `12h`, `90m`. */
  olderThan: string
  /** Failed runs are kept until this old (default: `olderThan`); at least `olderThan`. */
  keepFailed?: string
}

/** A retention policy with its durations read: as written (for messages) and in ms. */
export interface Retention {
  olderThan: string
  keepFailed: string
  olderThanMs: number
  keepFailedMs: number
}

/**
 * Reads a retention policy. `names` say what to call each value in an error: the flags
 * (`--older-than`), or the config's fields (`retention.olderThan`).
 */
export function readRetention(
  olderThan: string,
  keepFailed: string | undefined,
  names: { olderThan: string; keepFailed: string } = {
    olderThan: '--older-than',
    keepFailed: '--keep-failed',
  },
): Retention {
  const olderThanMs = durationMs(olderThan)
  if (olderThanMs === undefined) throw new ConfigError(`${names.olderThan} ${olderThan}: ${DURATION_HINT}.`)
  if (keepFailed === undefined)
    return { olderThan, keepFailed: olderThan, olderThanMs, keepFailedMs: olderThanMs }
  const keepFailedMs = durationMs(keepFailed)
  if (keepFailedMs === undefined)
    throw new ConfigError(`${names.keepFailed} ${keepFailed}: ${DURATION_HINT}.`)
  if (keepFailedMs < olderThanMs) {
    throw new ConfigError(
      `${names.keepFailed} ${keepFailed} is shorter than ${names.olderThan} ${olderThan}: failed runs are kept at least as long as the others; give ${names.keepFailed} ${olderThan} or more, or leave it out.`,
    )
  }
  return { olderThan, keepFailed, olderThanMs, keepFailedMs }
}

/** The store's policy for a prune at `now`, keeping `keepRunIds` (what the promoted alias names). */
export function prunePolicy(retention: Retention, now: number, keepRunIds: readonly string[]): PrunePolicy {
  return {
    endedBefore: now - retention.olderThanMs,
    failedEndedBefore: now - retention.keepFailedMs,
    keepRunIds,
  }
}

/** Deleted nothing of any kind. */
export function nothingDeleted(): PruneDeleted {
  return Object.fromEntries(PRUNE_KINDS.map((k) => [k, 0])) as PruneDeleted
}

export interface PruneOptions {
  /** At most this many events (and runs, and ticks) per transaction (default 2,000). */
  batchSize?: number
  /** Stops after the batch in progress (a daemon stopping, a lease lost). */
  signal?: AbortSignal
  /** After each batch: what it deleted, how long its `pruneBatch` call took, and the totals so far. */
  onBatch?(batch: PruneDeleted, ms: number, total: PruneDeleted): void
}

export interface PruneResult {
  deleted: PruneDeleted
  batches: number
  durationMs: number
  /**
   * The longest `pruneBatch` call: its transaction (the longest the prune held the store's write
   * lock) and whatever the store did right after it (SQLite: a WAL checkpoint, without the lock).
   */
  longestBatchMs: number
  /** False when the signal stopped it before everything was deleted. */
  complete: boolean
}

export const DEFAULT_PRUNE_BATCH = 2_000

/**
 * Deletes what `policy` lets go, one short store transaction (`pruneBatch`) at a time, until a
 * batch deletes nothing. Between two batches it waits as long as the last one took, so a writer
 * waiting on the store (a run's events, a daemon's tick) gets its turn instead of polling against
 * a prune that takes the lock back at once.
 */
export async function pruneStore(
  store: Pick<RunStore, 'pruneBatch'>,
  policy: PrunePolicy,
  options: PruneOptions = {},
): Promise<PruneResult> {
  const batchSize = options.batchSize ?? DEFAULT_PRUNE_BATCH
  const deleted = nothingDeleted()
  const started = performance.now()
  let batches = 0
  let longestBatchMs = 0
  for (;;) {
    if (options.signal?.aborted) {
      return { deleted, batches, durationMs: performance.now() - started, longestBatchMs, complete: false }
    }
    const t0 = performance.now()
    const batch = await store.pruneBatch(policy, batchSize)
    const ms = performance.now() - t0
    if (PRUNE_KINDS.every((k) => batch[k] === 0)) break
    batches++
    longestBatchMs = Math.max(longestBatchMs, ms)
    for (const k of PRUNE_KINDS) deleted[k] += batch[k]
    options.onBatch?.(batch, ms, deleted)
    // real time, whatever clock the caller runs on: this is about other processes' turn at the lock
    await sleep(Math.max(1, Math.ceil(ms)))
  }
  return { deleted, batches, durationMs: performance.now() - started, longestBatchMs, complete: true }
}

/** A complete prune, kept in the store's settings: the daemon prunes again a day after the last one. */
export interface LastPrune {
  at: number
  /** `refresh prune`, or the daemon's lease holder. */
  by: string
  olderThan: string
  keepFailed: string
  deleted: PruneDeleted
  durationMs: number
  longestBatchMs: number
}

const LAST_PRUNE = 'last_prune'

export async function recordPrune(store: Pick<RunStore, 'putSetting'>, record: LastPrune): Promise<void> {
  await store.putSetting(LAST_PRUNE, JSON.stringify(record), record.at)
}

/** The last complete prune (by `refresh prune --yes` or a daemon), or null. */
export async function lastPrune(store: Pick<RunStore, 'getSetting'>): Promise<LastPrune | null> {
  const row = await store.getSetting(LAST_PRUNE)
  return row ? (JSON.parse(row.value) as LastPrune) : null
}
