import { ConfigError } from '../errors.js'
import {
  isPartitionsDefinition,
  type KeySpace,
  type PartitionContext,
  PartitionsBase,
  type PartitionsContext,
  type TimeWindow,
} from './definitions.js'
import { PartitionKeyError } from './errors.js'
import { type DynamicPartitionsDefinition, KEY_SEPARATOR, type StaticPartitionsDefinition } from './static.js'
import type { TimePartitionsDefinition } from './time.js'

/** What a dimension of multi partitions may be (multi partitions do not nest). */
export type DimensionDefinition =
  | TimePartitionsDefinition
  | StaticPartitionsDefinition
  | DynamicPartitionsDefinition

export interface PartitionDimension {
  readonly name: string
  readonly definition: DimensionDefinition
}

const NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/

/**
 * Partitions over the product of several dimensions (date x region x shard): a key joins one key
 * of each dimension with `|`, in declared order (`2026-03-01|eu|3`).
 *
 * The index is mixed-radix over the dimensions, so a subset of the product is ranges like any
 * other. The dimension whose key space grows (time or dynamic; at most one) is the most
 * significant digit, the others follow in declared order: growth only appends indices, and an
 * index stays the same partition forever, which stored subsets rely on.
 */
export class MultiPartitionsDefinition extends PartitionsBase {
  readonly kind = 'multi' as const
  readonly signature: string
  readonly keyFormat: string
  /** The dimensions in declared order (the order of the parts of a key). */
  readonly dimensions: readonly PartitionDimension[]
  /** Positions in `dimensions`, most significant digit of the index first. */
  readonly significance: readonly number[]

  constructor(dimensions: Readonly<Record<string, DimensionDefinition>>) {
    super()
    if (typeof dimensions !== 'object' || dimensions === null || Object.keys(dimensions).length < 2) {
      throw new ConfigError(
        'multiPartitions takes two or more named dimensions: `multiPartitions({ date: dailyPartitions({...}), region: staticPartitions([...]) })`.',
      )
    }
    const dims: PartitionDimension[] = []
    for (const [name, definition] of Object.entries(dimensions)) {
      if (!NAME.test(name)) {
        throw new ConfigError(
          `multiPartitions: dimension name \`${name}\` must be letters, digits, \`_\`, \`-\`, starting with a letter or \`_\`.`,
        )
      }
      if (!isPartitionsDefinition(definition)) {
        throw new ConfigError(
          `multiPartitions: dimension \`${name}\` must be a partitions definition (dailyPartitions(...), staticPartitions([...]), ...).`,
        )
      }
      if ((definition as { kind: string }).kind === 'multi') {
        throw new ConfigError(
          `multiPartitions: dimension \`${name}\` is itself multi partitions; list its dimensions in this one instead.`,
        )
      }
      dims.push({ name, definition })
    }
    const growing = dims.filter((d) => d.definition.kind !== 'static')
    if (growing.length > 1) {
      throw new ConfigError(
        `multiPartitions: dimensions ${growing.map((d) => `\`${d.name}\``).join(' and ')} both gain keys over time (time or dynamic); at most one may, so that a partition keeps its index. Make the others staticPartitions([...]).`,
      )
    }
    this.dimensions = Object.freeze(dims)
    const first = growing[0] ? dims.indexOf(growing[0]) : -1
    this.significance = Object.freeze([
      ...(first >= 0 ? [first] : []),
      ...dims.map((_, i) => i).filter((i) => i !== first),
    ])
    this.signature = `multi:{${dims.map((d) => `${d.name}=${d.definition.signature}`).join(',')}}`
    this.keyFormat = `\`${dims.map((d) => d.name).join(KEY_SEPARATOR)}\` (${dims.map((d) => d.definition.keyFormat).join(KEY_SEPARATOR)})`
  }

  describe(): string {
    return `multi partitions (${this.dimensions.map((d) => d.name).join(' x ')})`
  }

  /** The dimension called `name`; undefined when there is none. */
  dimension(name: string): PartitionDimension | undefined {
    return this.dimensions.find((d) => d.name === name)
  }

  /** The time dimension, if one of the dimensions is time partitions. */
  get timeDimension(): PartitionDimension | undefined {
    return this.dimensions.find((d) => d.definition.kind === 'time')
  }

  /** Each dimension's size, in significance order (the radices of the index). */
  radices(ctx: PartitionsContext): number[] {
    return this.significance.map((i) => this.dimensions[i]!.definition.size(ctx))
  }

  size(ctx: PartitionsContext): number {
    return this.radices(ctx).reduce((a, b) => a * b, 1)
  }

  /** Each dimension's index (declared order) for a multi index. */
  coordinates(index: number, ctx: PartitionsContext, radices = this.radices(ctx)): number[] {
    const out = new Array<number>(this.dimensions.length)
    let rest = index
    for (let k = this.significance.length - 1; k >= 0; k--) {
      const r = radices[k]!
      out[this.significance[k]!] = rest % r
      rest = Math.floor(rest / r)
    }
    return out
  }

  /** The multi index of one index per dimension (declared order). */
  indexOfCoordinates(
    coordinates: readonly number[],
    ctx: PartitionsContext,
    radices = this.radices(ctx),
  ): number {
    let index = 0
    for (let k = 0; k < this.significance.length; k++)
      index = index * radices[k]! + coordinates[this.significance[k]!]!
    return index
  }

  keyAt(index: number, ctx: PartitionsContext): string {
    const radices = this.radices(ctx)
    this.checkIndex(
      index,
      radices.reduce((a, b) => a * b, 1),
    )
    return this.coordinates(index, ctx, radices)
      .map((c, i) => this.dimensions[i]!.definition.keyAt(c, ctx))
      .join(KEY_SEPARATOR)
  }

  /** The radices are computed once, not per key. */
  override space(ctx: PartitionsContext): KeySpace {
    const radices = this.radices(ctx)
    const size = radices.reduce((a, b) => a * b, 1)
    const spaces = this.dimensions.map((d) => d.definition.space(ctx))
    return {
      size,
      keyAt: (index) => {
        this.checkIndex(index, size)
        return this.coordinates(index, ctx, radices)
          .map((c, i) => spaces[i]!.keyAt(c))
          .join(KEY_SEPARATOR)
      },
    }
  }

  indexOf(key: string, ctx: PartitionsContext): number {
    return this.indexOfCoordinates(this.split(key, ctx).coordinates, ctx)
  }

  protected details(_index: number, key: string, ctx: PartitionsContext): PartitionContext {
    const { parts, coordinates } = this.split(key, ctx)
    const keys: Record<string, string> = {}
    let window: TimeWindow | undefined
    this.dimensions.forEach((d, i) => {
      keys[d.name] = parts[i]!
      if (d.definition.kind === 'time') window = d.definition.windowAt(coordinates[i]!)
    })
    return window ? { key, keys, window } : { key, keys }
  }

  /** The key's parts and each dimension's index; errors name the dimension. */
  private split(key: string, ctx: PartitionsContext): { parts: string[]; coordinates: number[] } {
    const parts = key.split(KEY_SEPARATOR)
    if (parts.length !== this.dimensions.length) {
      throw new PartitionKeyError(
        key,
        `has ${parts.length} part${parts.length === 1 ? '' : 's'}; keys of ${this.describe()} have ${this.dimensions.length}, joined with \`|\`: ${this.keyFormat}.`,
      )
    }
    const coordinates = parts.map((part, i) => {
      const dim = this.dimensions[i]!
      try {
        return dim.definition.indexOf(part, ctx)
      } catch (error) {
        if (!(error instanceof PartitionKeyError)) throw error
        const nearest = error.nearest.map((near) =>
          parts.map((p, j) => (j === i ? near : p)).join(KEY_SEPARATOR),
        )
        throw new PartitionKeyError(key, `has a bad \`${dim.name}\` part: ${error.message}`, nearest)
      }
    })
    return { parts, coordinates }
  }
}

/**
 * Partitions over the product of named dimensions, any number of them (two or more), at most one
 * of them time or dynamic. Keys join the dimensions' keys with `|`, in declared order.
 */
export function multiPartitions(
  dimensions: Readonly<Record<string, DimensionDefinition>>,
): MultiPartitionsDefinition {
  return new MultiPartitionsDefinition(dimensions)
}
