import { PartitionKeyError } from './errors.js'
import type { MultiPartitionsDefinition } from './multi.js'
import type { DynamicPartitionsDefinition, StaticPartitionsDefinition } from './static.js'
import { PartitionSubset } from './subset.js'
import type { TimePartitionsDefinition } from './time.js'

/**
 * What a partitions definition needs to know beyond itself: the time (time partitions exist up
 * to it) and the keys of dynamic partitions (kept in the store). Injected, never read from a
 * global clock, so tests and backfills decide what "now" is.
 */
export interface PartitionsContext {
  /** The current time, as ms since the epoch or a Date. */
  readonly now: number | Date
  /** The keys of a dynamic partitions definition by its name, in the order they were added. */
  readonly dynamic?: DynamicPartitionsLookup
}

/**
 * The keys of the dynamic partitions definition `name`, oldest first. A key's index is its
 * position, and subsets are kept by index: the list may only grow at its end (a removed key
 * stays in place, or every stored subset is rebased).
 */
export type DynamicPartitionsLookup = (name: string) => readonly string[]

/** A time partition's window: `[start, end)`. */
export interface TimeWindow {
  readonly start: Date
  readonly end: Date
}

/** What a materialization of one partition sees as `ctx.partition`. */
export interface PartitionContext {
  /** The partition key (multi: the dimension keys joined with `|` in declared order). */
  readonly key: string
  /** Multi partitions: each dimension's key by dimension name; empty for one dimension. */
  readonly keys: Readonly<Record<string, string>>
  /** Time partitions (and multi partitions with a time dimension): the window the key covers. */
  readonly window?: TimeWindow
  /**
   * A run of several partitions (a backfill with `--per-run N`): the first and the last key and
   * every key between them; `key` is then `FIRST...LAST` and `window` spans them all.
   */
  readonly range?: { readonly from: string; readonly to: string; readonly keys: readonly string[] }
}

/** A key, checked against its definition: where it sits in the key space, and what it covers. */
export interface ParsedPartitionKey extends PartitionContext {
  /** The key's position in the definition's ordered key space. */
  readonly index: number
}

/** Turns indices into keys: a definition with its context, for `PartitionSubset.keys()`. */
export interface KeySpace {
  readonly size: number
  keyAt(index: number): string
}

export type PartitionsDefinition =
  | TimePartitionsDefinition
  | StaticPartitionsDefinition
  | DynamicPartitionsDefinition
  | MultiPartitionsDefinition

const PARTITIONS = Symbol.for('refresh.partitions')

export function isPartitionsDefinition(value: unknown): value is PartitionsDefinition {
  return (
    typeof value === 'object' && value !== null && (value as { [PARTITIONS]?: unknown })[PARTITIONS] === true
  )
}

export function nowMs(now: number | Date): number {
  return typeof now === 'number' ? now : now.getTime()
}

/**
 * What every kind of partitions shares: an ordered key space (index <-> key) whose size may
 * depend on the context, and the key-level helpers built on it.
 */
export abstract class PartitionsBase {
  readonly [PARTITIONS] = true as const
  /** Kind of definition; the union's discriminant. */
  abstract readonly kind: 'time' | 'static' | 'dynamic' | 'multi'
  /** Equal for two definitions with the same keys in the same order (identity maps between them). */
  abstract readonly signature: string
  /** How keys are written, for messages (`YYYY-MM-DD`, `one of a, b, c`). */
  abstract readonly keyFormat: string
  /** A few words for messages: `daily partitions from 2026-01-01 (UTC)`. */
  abstract describe(): string

  /** How many partitions exist in the context. */
  abstract size(ctx: PartitionsContext): number
  /** The key at an index of the ordered key space. */
  abstract keyAt(index: number, ctx: PartitionsContext): string
  /** The key's index; a `PartitionKeyError` naming the format and the nearest keys when none has it. */
  abstract indexOf(key: string, ctx: PartitionsContext): number
  /** The key's per-dimension keys and window (index known). */
  protected abstract details(index: number, key: string, ctx: PartitionsContext): PartitionContext

  /** Checks a key; returns its index, per-dimension keys and window. */
  parseKey(key: string, ctx: PartitionsContext): ParsedPartitionKey {
    const index = this.indexOf(key, ctx)
    return { ...this.details(index, key, ctx), index }
  }

  /** What `ctx.partition` holds for a key (checked). */
  partitionContext(key: string, ctx: PartitionsContext): PartitionContext {
    const { index: _, ...context } = this.parseKey(key, ctx)
    return context
  }

  /** Every partition that exists in the context. */
  all(ctx: PartitionsContext): PartitionSubset {
    return PartitionSubset.all(this.size(ctx))
  }

  /** The partitions from `from` to `to`, both included (a backfill's `--from` and `--to`). */
  subsetBetween(from: string, to: string, ctx: PartitionsContext): PartitionSubset {
    const a = this.indexOf(from, ctx)
    const b = this.indexOf(to, ctx)
    if (b < a) {
      throw new PartitionKeyError(
        to,
        `comes before \`${from}\` in ${this.describe()}; give the earlier key as --from and the later as --to.`,
      )
    }
    return PartitionSubset.range(a, b + 1)
  }

  /** The keys from `from` to `to`, both included, in order. Lists them all: prefer `subsetBetween` for many. */
  keysBetween(from: string, to: string, ctx: PartitionsContext): string[] {
    return [...this.subsetBetween(from, to, ctx).keys(this.space(ctx))]
  }

  /** Every key that exists in the context, in order. Lists them all. */
  keys(ctx: PartitionsContext): string[] {
    return [...this.all(ctx).keys(this.space(ctx))]
  }

  /** The definition bound to a context: index -> key for a subset's `keys()`. */
  space(ctx: PartitionsContext): KeySpace {
    return { size: this.size(ctx), keyAt: (index) => this.keyAt(index, ctx) }
  }

  /** The keys of a subset, in order. */
  keysOf(subset: PartitionSubset, ctx: PartitionsContext): string[] {
    return [...subset.keys(this.space(ctx))]
  }

  /** The subset holding these keys (each checked). */
  subsetOf(keys: Iterable<string>, ctx: PartitionsContext): PartitionSubset {
    return PartitionSubset.fromIndices([...keys].map((key) => this.indexOf(key, ctx)))
  }

  /** The index, checked against the size, for `keyAt`. */
  protected checkIndex(index: number, size: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new RangeError(`partition index ${index} is outside ${this.describe()} (0 to ${size - 1})`)
    }
  }
}
