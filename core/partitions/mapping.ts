import { ConfigError, didYouMean } from '../errors.js'
import { boxesOf, productOf } from './boxes.js'
import type { PartitionsContext, PartitionsDefinition } from './definitions.js'
import type { DimensionDefinition, MultiPartitionsDefinition } from './multi.js'
import type { StaticPartitionsDefinition } from './static.js'
import { PartitionSubset, SubsetBuilder } from './subset.js'
import type { TimePartitionsDefinition } from './time.js'

/** One side of a dependency: an asset's partitions, or undefined for an unpartitioned asset. */
export type PartitionsSide = PartitionsDefinition | undefined

/**
 * How the partitions of an asset relate to those of one of its deps. Both directions work on
 * subsets (ranges), so a million partitions cost what their ranges cost:
 * - `upstreamFor`: the dep's partitions that these partitions of the asset need;
 * - `downstreamFor`: the asset's partitions that these partitions of the dep affect.
 * An unpartitioned side is a key space of one partition (index 0).
 */
export interface PartitionMapping {
  /** `identity`, `all`, `time-window`, `last`, `static`, `multi-to-single`, `multi`. */
  readonly kind: string
  /** The call that makes it, for messages: `timeWindowMapping({ startOffset: -1, endOffset: -1 })`. */
  describe(): string
  /** Why it cannot relate these two sides (a sentence), or undefined when it can. */
  check(downstream: PartitionsSide, upstream: PartitionsSide): string | undefined
  upstreamFor(
    downstream: PartitionSubset,
    downDef: PartitionsSide,
    upDef: PartitionsSide,
    ctx: PartitionsContext,
  ): PartitionSubset
  downstreamFor(
    upstream: PartitionSubset,
    upDef: PartitionsSide,
    downDef: PartitionsSide,
    ctx: PartitionsContext,
  ): PartitionSubset
}

const MAPPING = Symbol.for('refresh.partition-mapping')

export function isPartitionMapping(value: unknown): value is PartitionMapping {
  return typeof value === 'object' && value !== null && (value as { [MAPPING]?: unknown })[MAPPING] === true
}

function mapping(m: PartitionMapping): PartitionMapping {
  return Object.freeze({ [MAPPING]: true, ...m })
}

/** Size of a side's key space: 1 for an unpartitioned asset. */
function sizeOf(def: PartitionsSide, ctx: PartitionsContext): number {
  return def === undefined ? 1 : def.size(ctx)
}

function allOf(def: PartitionsSide, ctx: PartitionsContext): PartitionSubset {
  return PartitionSubset.all(sizeOf(def, ctx))
}

/**
 * The same partition on both sides. Between time partitions of the same cadence and timezone
 * (starts and ends may differ) it maps by window; between multi partitions with the same
 * dimensions, dimension by dimension.
 */
export function identityMapping(): PartitionMapping {
  return mapping({
    kind: 'identity',
    describe: () => 'identityMapping()',
    check(down, up) {
      if (!down || !up) return 'identityMapping() relates two partitioned assets'
      return identityProblem(down, up)
    },
    upstreamFor(subset, down, up, ctx) {
      return identityMap(subset, down!, up!, ctx)
    },
    downstreamFor(subset, up, down, ctx) {
      return identityMap(subset, up!, down!, ctx)
    },
  })
}

function identityProblem(a: PartitionsDefinition, b: PartitionsDefinition): string | undefined {
  if (a.signature === b.signature) return undefined
  if (a.kind === 'time' && b.kind === 'time') {
    return a.family === b.family
      ? undefined
      : `their time partitions differ (${a.describe()}; ${b.describe()}): use timeWindowMapping()`
  }
  if (a.kind === 'multi' && b.kind === 'multi') {
    const names = (d: MultiPartitionsDefinition) => d.dimensions.map((x) => x.name).join(', ')
    if (names(a) !== names(b)) return `their dimensions differ (${names(a)}; ${names(b)})`
    for (const dim of a.dimensions) {
      const problem = identityProblem(dim.definition, b.dimension(dim.name)!.definition)
      if (problem) return `dimension \`${dim.name}\`: ${problem}`
    }
    return undefined
  }
  return `their partitions differ (${a.describe()}; ${b.describe()})`
}

/** `from`'s subset as the same partitions of `to` (checked compatible). */
function identityMap(
  subset: PartitionSubset,
  from: PartitionsDefinition,
  to: PartitionsDefinition,
  ctx: PartitionsContext,
): PartitionSubset {
  if (from.signature === to.signature) return subset.clip(to.size(ctx))
  if (from.kind === 'time' && to.kind === 'time') return windowMap(subset, from, to, 0, 0, ctx)
  if (from.kind === 'multi' && to.kind === 'multi') {
    return multiMap(subset, from, to, ctx, (dim, s) =>
      identityMap(s, from.dimension(dim)!.definition, to.dimension(dim)!.definition, ctx),
    )
  }
  throw new Error(`identityMapping between incompatible partitions: ${from.describe()}; ${to.describe()}`)
}

/** Every partition of the dep, whatever partitions of the asset (the default for an unpartitioned asset). */
export function allPartitionsMapping(): PartitionMapping {
  return mapping({
    kind: 'all',
    describe: () => 'allPartitionsMapping()',
    check: (_down, up) => (up ? undefined : 'the dep is not partitioned: it needs no mapping'),
    upstreamFor: (subset, _down, up, ctx) => (subset.isEmpty ? PartitionSubset.empty : allOf(up, ctx)),
    downstreamFor: (subset, _up, down, ctx) => (subset.isEmpty ? PartitionSubset.empty : allOf(down, ctx)),
  })
}

/** The dep's last partition (at the context's time), whatever partitions of the asset. */
export function lastPartitionMapping(): PartitionMapping {
  return mapping({
    kind: 'last',
    describe: () => 'lastPartitionMapping()',
    check: (_down, up) => (up ? undefined : 'the dep is not partitioned: it needs no mapping'),
    upstreamFor(subset, _down, up, ctx) {
      const size = sizeOf(up, ctx)
      return subset.isEmpty || size === 0 ? PartitionSubset.empty : PartitionSubset.range(size - 1, size)
    },
    downstreamFor(subset, up, down, ctx) {
      const size = sizeOf(up, ctx)
      return size > 0 && subset.contains(size - 1) ? allOf(down, ctx) : PartitionSubset.empty
    },
  })
}

export interface TimeWindowMappingOptions {
  /** Shifts the start of the window a partition needs, in partitions of the asset: -1 = one earlier. */
  startOffset?: number
  /** Shifts its end: `{ startOffset: -1, endOffset: -1 }` is "the previous partition" (yesterday's). */
  endOffset?: number
}

/**
 * Between time partitions (any cadences): a partition of the asset needs the dep's partitions
 * whose windows overlap its own, shifted by the offsets. Parts before the dep's first partition
 * or past its last are dropped.
 */
export function timeWindowMapping(options: TimeWindowMappingOptions = {}): PartitionMapping {
  const startOffset = options.startOffset ?? 0
  const endOffset = options.endOffset ?? 0
  if (!Number.isSafeInteger(startOffset) || !Number.isSafeInteger(endOffset) || startOffset > endOffset) {
    throw new ConfigError(
      `timeWindowMapping: startOffset and endOffset are whole numbers with startOffset <= endOffset (yesterday: { startOffset: -1, endOffset: -1 }), not ${JSON.stringify(options)}.`,
    )
  }
  const text =
    startOffset === 0 && endOffset === 0
      ? 'timeWindowMapping()'
      : `timeWindowMapping({ startOffset: ${startOffset}, endOffset: ${endOffset} })`
  return mapping({
    kind: 'time-window',
    describe: () => text,
    check(down, up) {
      if (down?.kind === 'time' && up?.kind === 'time') return undefined
      return `${text} relates two time partitioned assets; here ${sideName(down)} depends on ${sideName(up)}`
    },
    upstreamFor: (subset, down, up, ctx) =>
      windowMap(
        subset,
        down as TimePartitionsDefinition,
        up as TimePartitionsDefinition,
        startOffset,
        endOffset,
        ctx,
      ),
    downstreamFor: (subset, up, down, ctx) =>
      windowUnmap(
        subset,
        up as TimePartitionsDefinition,
        down as TimePartitionsDefinition,
        startOffset,
        endOffset,
        ctx,
      ),
  })
}

/** Downstream partition i needs the span [boundary(i + so), boundary(i + eo + 1)) of time. */
function windowMap(
  subset: PartitionSubset,
  down: TimePartitionsDefinition,
  up: TimePartitionsDefinition,
  startOffset: number,
  endOffset: number,
  ctx: PartitionsContext,
): PartitionSubset {
  const out = new SubsetBuilder(up.size(ctx))
  for (const [a, b] of subset.ranges()) {
    const from = down.boundary(a + startOffset)
    const until = down.boundary(b + endOffset)
    if (until > from) out.add(up.indexAt(from), up.indexAt(until - 1) + 1)
  }
  return out.build()
}

/** The downstream partitions whose shifted spans overlap the upstream partitions' time. */
function windowUnmap(
  subset: PartitionSubset,
  up: TimePartitionsDefinition,
  down: TimePartitionsDefinition,
  startOffset: number,
  endOffset: number,
  ctx: PartitionsContext,
): PartitionSubset {
  const out = new SubsetBuilder(down.size(ctx))
  for (const [a, b] of subset.ranges()) {
    // downstream indices j whose windows overlap the upstream time: [lo, hi]
    const lo = down.indexAt(up.boundary(a))
    const hi = down.indexAt(up.boundary(b) - 1)
    // i needs j in [i + startOffset, i + endOffset]
    out.add(lo - endOffset, hi - startOffset + 1)
  }
  return out.build()
}

/**
 * Between static partitions: the dep's key -> the asset's key(s) that need it (as Dagster's
 * StaticPartitionMapping). Keys of either side left out relate to nothing.
 */
export function staticMapping(
  downstreamKeysByUpstreamKey: Readonly<Record<string, string | readonly string[]>>,
): PartitionMapping {
  if (typeof downstreamKeysByUpstreamKey !== 'object' || downstreamKeysByUpstreamKey === null) {
    throw new ConfigError(
      "staticMapping takes { upstreamKey: downstreamKey or [keys] }: `staticMapping({ us: 'na' })`.",
    )
  }
  const pairs: Array<[string, string]> = []
  for (const [upKey, downKeys] of Object.entries(downstreamKeysByUpstreamKey)) {
    for (const downKey of typeof downKeys === 'string' ? [downKeys] : downKeys) pairs.push([upKey, downKey])
  }
  const text = `staticMapping(${JSON.stringify(downstreamKeysByUpstreamKey)})`
  const map = (
    subset: PartitionSubset,
    from: StaticPartitionsDefinition,
    to: StaticPartitionsDefinition,
    fromSide: 0 | 1,
  ) => {
    const wanted = new Set(from.keysOf(subset.clip(from.size()), { now: 0 }))
    const out: number[] = []
    for (const pair of pairs) if (wanted.has(pair[fromSide])) out.push(to.indexOf(pair[1 - fromSide]!))
    return PartitionSubset.fromIndices(out)
  }
  return mapping({
    kind: 'static',
    describe: () => text,
    check(down, up) {
      if (down?.kind !== 'static' || up?.kind !== 'static') {
        return `staticMapping relates two static partitioned assets; here ${sideName(down)} depends on ${sideName(up)}`
      }
      for (const [upKey, downKey] of pairs) {
        if (!up.keyList.includes(upKey)) {
          return `the dep has no partition \`${upKey}\`.${didYouMean(upKey, up.keyList)} Its keys: ${up.keyList.join(', ')}`
        }
        if (!down.keyList.includes(downKey)) {
          return `the asset has no partition \`${downKey}\`.${didYouMean(downKey, down.keyList)} Its keys: ${down.keyList.join(', ')}`
        }
      }
      return undefined
    },
    upstreamFor: (subset, down, up) =>
      map(subset, down as StaticPartitionsDefinition, up as StaticPartitionsDefinition, 1),
    downstreamFor: (subset, up, down) =>
      map(subset, up as StaticPartitionsDefinition, down as StaticPartitionsDefinition, 0),
  })
}

export interface MultiToSingleDimensionMappingOptions {
  /** The dimension of the multi partitioned side that the single side corresponds to. */
  dimension: string
  /** How that dimension maps to the single side; default `identityMapping()`. */
  mapping?: PartitionMapping
}

/**
 * Between multi partitions and single ones (either side): the single side relates to one
 * dimension; the other dimensions take every key (a daily asset needs every region of its day).
 */
export function multiToSingleDimensionMapping(
  options: MultiToSingleDimensionMappingOptions,
): PartitionMapping {
  const dimension = options?.dimension
  if (typeof dimension !== 'string') {
    throw new ConfigError(
      "multiToSingleDimensionMapping needs the dimension: `multiToSingleDimensionMapping({ dimension: 'date' })`.",
    )
  }
  const inner = options.mapping ?? identityMapping()
  if (!isPartitionMapping(inner)) {
    throw new ConfigError(
      'multiToSingleDimensionMapping: mapping must be a partition mapping, like identityMapping().',
    )
  }
  const text = `multiToSingleDimensionMapping({ dimension: '${dimension}'${options.mapping ? `, mapping: ${inner.describe()}` : ''} })`
  /** The multi side's dimension definition (checked). */
  const dim = (multi: PartitionsSide): DimensionDefinition =>
    (multi as MultiPartitionsDefinition).dimension(dimension)!.definition
  return mapping({
    kind: 'multi-to-single',
    describe: () => text,
    check(down, up) {
      const downMulti = down?.kind === 'multi'
      const upMulti = up?.kind === 'multi'
      if (!down || !up || downMulti === upMulti) {
        return `${text} relates multi partitions to single ones; here ${sideName(down)} depends on ${sideName(up)}`
      }
      const multi = (downMulti ? down : up) as MultiPartitionsDefinition
      const found = multi.dimension(dimension)
      if (!found) {
        const names = multi.dimensions.map((d) => d.name)
        return `${downMulti ? 'the asset' : 'the dep'}'s multi partitions have no dimension \`${dimension}\`.${didYouMean(dimension, names)} Its dimensions: ${names.join(', ')}`
      }
      const problem = downMulti ? inner.check(found.definition, up) : inner.check(down, found.definition)
      return problem ? `dimension \`${dimension}\` and the other side: ${problem}` : undefined
    },
    upstreamFor(subset, down, up, ctx) {
      if (down?.kind === 'multi') {
        // project each box on the dimension, then map it to the dep
        return inner.upstreamFor(project(subset, down, dimension, ctx), dim(down), up, ctx)
      }
      return expand(
        inner.upstreamFor(subset, down, dim(up), ctx),
        up as MultiPartitionsDefinition,
        dimension,
        ctx,
      )
    },
    downstreamFor(subset, up, down, ctx) {
      if (up?.kind === 'multi') {
        return inner.downstreamFor(project(subset, up, dimension, ctx), dim(up), down, ctx)
      }
      return expand(
        inner.downstreamFor(subset, up, dim(down), ctx),
        down as MultiPartitionsDefinition,
        dimension,
        ctx,
      )
    },
  })
}

/** The dimension's indices that a multi subset touches. */
function project(
  subset: PartitionSubset,
  multi: MultiPartitionsDefinition,
  dimension: string,
  ctx: PartitionsContext,
): PartitionSubset {
  const at = multi.dimensions.findIndex((d) => d.name === dimension)
  return PartitionSubset.fromRanges(boxesOf(multi, subset, ctx).map((box) => box[at]!))
}

/** Every multi partition whose dimension index is in the subset. */
function expand(
  subset: PartitionSubset,
  multi: MultiPartitionsDefinition,
  dimension: string,
  ctx: PartitionsContext,
): PartitionSubset {
  return productOf(
    multi,
    multi.dimensions.map((d) => (d.name === dimension ? subset : d.definition.all(ctx))),
    ctx,
  )
}

/**
 * Between multi partitions, dimension by dimension: `{ date: timeWindowMapping({ startOffset: -1,
 * endOffset: -1 }) }` maps the dates to the day before and each other dimension to itself.
 * Keys are dimension names of both sides; a dimension of the dep that the asset lacks takes every key.
 */
export function multiPartitionMapping(
  byDimension: Readonly<Record<string, PartitionMapping>> = {},
): PartitionMapping {
  for (const [name, m] of Object.entries(byDimension)) {
    if (!isPartitionMapping(m)) {
      throw new ConfigError(
        `multiPartitionMapping: dimension \`${name}\` must map with a partition mapping, like identityMapping().`,
      )
    }
  }
  const text = `multiPartitionMapping({ ${Object.entries(byDimension)
    .map(([name, m]) => `${name}: ${m.describe()}`)
    .join(', ')} })`
  /** The mapping of an upstream dimension, or undefined when the asset has no such dimension. */
  const dimensionMapping = (name: string, down: MultiPartitionsDefinition, up: MultiPartitionsDefinition) => {
    const explicit = byDimension[name]
    if (explicit) return explicit
    const other = down.dimension(name)
    return other ? defaultMapping(other.definition, up.dimension(name)!.definition) : undefined
  }
  return mapping({
    kind: 'multi',
    describe: () => text,
    check(down, up) {
      if (down?.kind !== 'multi' || up?.kind !== 'multi') {
        return `${text} relates two multi partitioned assets; here ${sideName(down)} depends on ${sideName(up)}`
      }
      for (const name of Object.keys(byDimension)) {
        const names = (d: MultiPartitionsDefinition) => d.dimensions.map((x) => x.name)
        if (!up.dimension(name) || !down.dimension(name)) {
          const side = up.dimension(name) ? down : up
          return `${side === down ? 'the asset' : 'the dep'} has no dimension \`${name}\`.${didYouMean(name, names(side))} Its dimensions: ${names(side).join(', ')}`
        }
      }
      for (const dim of up.dimensions) {
        const other = down.dimension(dim.name)
        if (!other) continue
        const m = byDimension[dim.name] ?? defaultMapping(other.definition, dim.definition)
        const problem = m ? m.check(other.definition, dim.definition) : 'no mapping relates them by default'
        if (problem) return `dimension \`${dim.name}\`: ${problem}`
      }
      return undefined
    },
    upstreamFor(subset, downSide, upSide, ctx) {
      const down = downSide as MultiPartitionsDefinition
      const up = upSide as MultiPartitionsDefinition
      return unionOf(
        boxesOf(down, subset, ctx).map((box) =>
          productOf(
            up,
            up.dimensions.map((dim) => {
              const m = dimensionMapping(dim.name, down, up)
              if (!m) return dim.definition.all(ctx)
              const at = down.dimensions.findIndex((d) => d.name === dim.name)
              const range = PartitionSubset.range(box[at]![0], box[at]![1])
              return m.upstreamFor(range, down.dimensions[at]!.definition, dim.definition, ctx)
            }),
            ctx,
          ),
        ),
      )
    },
    downstreamFor(subset, upSide, downSide, ctx) {
      const down = downSide as MultiPartitionsDefinition
      const up = upSide as MultiPartitionsDefinition
      return unionOf(
        boxesOf(up, subset, ctx).map((box) =>
          productOf(
            down,
            down.dimensions.map((dim) => {
              const at = up.dimensions.findIndex((d) => d.name === dim.name)
              if (at < 0) return dim.definition.all(ctx)
              const m = dimensionMapping(dim.name, down, up)!
              const range = PartitionSubset.range(box[at]![0], box[at]![1])
              return m.downstreamFor(range, up.dimensions[at]!.definition, dim.definition, ctx)
            }),
            ctx,
          ),
        ),
      )
    },
  })
}

/** Multi -> multi with the same dimension names, each dimension mapped by `each`. */
function multiMap(
  subset: PartitionSubset,
  from: MultiPartitionsDefinition,
  to: MultiPartitionsDefinition,
  ctx: PartitionsContext,
  each: (dimension: string, subset: PartitionSubset) => PartitionSubset,
): PartitionSubset {
  return unionOf(
    boxesOf(from, subset, ctx).map((box) =>
      productOf(
        to,
        to.dimensions.map((dim) => {
          const at = from.dimensions.findIndex((d) => d.name === dim.name)
          return each(dim.name, PartitionSubset.range(box[at]![0], box[at]![1]))
        }),
        ctx,
      ),
    ),
  )
}

function unionOf(subsets: readonly PartitionSubset[]): PartitionSubset {
  return subsets.reduce((a, b) => a.union(b), PartitionSubset.empty)
}

function sideName(def: PartitionsSide): string {
  return def ? def.describe() : 'an unpartitioned asset'
}

/**
 * The mapping a dependency gets when none is given, or undefined when none relates them:
 * identity between the same partitions, time windows between time partitions, dimension by
 * dimension between multi partitions, the one matching dimension between multi and single.
 */
export function defaultMapping(
  down: PartitionsDefinition,
  up: PartitionsDefinition,
): PartitionMapping | undefined {
  if (!identityProblem(down, up)) return identityMapping()
  if (down.kind === 'time' && up.kind === 'time') return timeWindowMapping()
  if (down.kind === 'multi' && up.kind === 'multi') {
    const m = multiPartitionMapping()
    return m.check(down, up) ? undefined : m
  }
  if (down.kind === 'multi' || up.kind === 'multi') {
    const multi = (down.kind === 'multi' ? down : up) as MultiPartitionsDefinition
    const single = (down.kind === 'multi' ? up : down) as DimensionDefinition
    const matches = multi.dimensions.filter((d) => !identityProblem(d.definition, single))
    if (matches.length === 1) return multiToSingleDimensionMapping({ dimension: matches[0]!.name })
  }
  return undefined
}

/** An asset or dep, as the dependency check names it. */
export interface PartitionedAsset {
  readonly key: string
  readonly partitions: PartitionsDefinition | undefined
}

/**
 * The mapping of one dependency: the explicit one (checked), or the default. Undefined when the
 * dep is unpartitioned (nothing to map). A `ConfigError` names both assets and the fix when no
 * mapping can relate them.
 */
export function resolvePartitionMapping(
  asset: PartitionedAsset,
  dep: PartitionedAsset,
  explicit: PartitionMapping | undefined,
): PartitionMapping | undefined {
  const down = asset.partitions
  const up = dep.partitions
  const where = `asset \`${asset.key}\`${down ? ` (${down.describe()})` : ''} depends on \`${dep.key}\`${up ? ` (${up.describe()})` : ''}`
  if (explicit) {
    if (!up) {
      throw new ConfigError(
        `${where}, which is not partitioned, yet maps it with ${explicit.describe()}; remove \`${dep.key}\` from \`${asset.key}\`'s partitionMappings.`,
      )
    }
    const problem = explicit.check(down, up)
    if (problem) {
      throw new ConfigError(
        `${where} with ${explicit.describe()}, which cannot relate them: ${problem}. Fix \`${asset.key}\`'s partitionMappings.${dep.key}.`,
      )
    }
    return explicit
  }
  if (!up) return undefined
  if (!down) return allPartitionsMapping()
  const found = defaultMapping(down, up)
  if (found) return found
  throw new ConfigError(
    `${where}, and no mapping relates their partitions by default. Say how in \`${asset.key}\`: \`partitionMappings: { '${dep.key}': ... }\` with allPartitionsMapping(), lastPartitionMapping(), staticMapping({...}), timeWindowMapping({...}), multiToSingleDimensionMapping({ dimension }) or multiPartitionMapping({...}); or give both the same partitions.`,
  )
}
