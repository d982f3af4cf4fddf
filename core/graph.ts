import { DirectedGraph } from 'graphology'
import type { AssetDefinition } from './definitions.js'
import { didYouMean, GraphError } from './errors.js'
import { type PartitionMapping, resolvePartitionMapping } from './partitions/mapping.js'

/**
 * The asset graph: nodes are asset keys, an edge runs from a dep to the asset that needs it.
 * Built once per definition set and checked before anything runs: duplicate keys, missing deps
 * and cycles are each rejected with one message that names the fix.
 */
export class AssetGraph {
  readonly graph: DirectedGraph
  readonly assets: ReadonlyMap<string, AssetDefinition>
  /** Every key in topological order; ties broken by declaration order. */
  readonly order: readonly string[]
  private readonly rank: Map<string, number>

  private constructor(graph: DirectedGraph, assets: Map<string, AssetDefinition>, order: string[]) {
    this.graph = graph
    this.assets = assets
    this.order = order
    this.rank = new Map(order.map((key, i) => [key, i]))
  }

  static build(definitions: readonly AssetDefinition[]): AssetGraph {
    const assets = new Map<string, AssetDefinition>()
    for (const def of definitions) {
      if (assets.has(def.key)) {
        throw new GraphError(`asset key \`${def.key}\` is defined twice; asset keys must be unique.`)
      }
      assets.set(def.key, def)
    }
    const graph = new DirectedGraph({ multi: false, allowSelfLoops: false })
    for (const key of assets.keys()) graph.addNode(key)
    for (const def of assets.values()) {
      for (const dep of def.deps) {
        if (!assets.has(dep)) {
          throw new GraphError(
            `asset \`${def.key}\` depends on \`${dep}\`, which is not defined.${didYouMean(dep, assets.keys())}`,
          )
        }
        // a partitioned asset reading its own earlier partitions is no edge: it runs once per run
        if (dep !== def.key) graph.addDirectedEdge(dep, def.key)
      }
    }
    // partitions: every dependency between partitioned assets has a mapping that fits (ConfigError)
    for (const def of assets.values()) {
      for (const dep of def.deps) resolvePartitionMapping(def, assets.get(dep)!, def.partitionMappings[dep])
    }
    return new AssetGraph(graph, assets, topologicalOrder(assets))
  }

  has(key: string): boolean {
    return this.assets.has(key)
  }

  /** Position of a key in the topological order. */
  indexOf(key: string): number {
    return this.rank.get(key) ?? -1
  }

  /** Sorts keys into plan order (topological, declaration order for ties). */
  sort(keys: Iterable<string>): string[] {
    return [...keys].sort((a, b) => this.indexOf(a) - this.indexOf(b))
  }

  /** Keys reachable upstream (direction 'up') or downstream, up to `depth` layers (Infinity = all). */
  walk(start: string, direction: 'up' | 'down', depth: number): Set<string> {
    const seen = new Set<string>()
    let frontier = [start]
    for (let layer = 0; layer < depth && frontier.length > 0; layer++) {
      const next: string[] = []
      for (const key of frontier) {
        const neighbors = direction === 'up' ? this.graph.inNeighbors(key) : this.graph.outNeighbors(key)
        for (const n of neighbors) {
          if (!seen.has(n)) {
            seen.add(n)
            next.push(n)
          }
        }
      }
      frontier = next
    }
    return seen
  }

  deps(key: string): readonly string[] {
    return this.assets.get(key)?.deps ?? []
  }

  dependents(key: string): string[] {
    return this.graph.outNeighbors(key)
  }

  /**
   * How `key`'s partitions relate to those of its dep `dep` (explicit or default; checked when
   * the graph was built); undefined when the dep is unpartitioned.
   */
  partitionMapping(key: string, dep: string): PartitionMapping | undefined {
    const def = this.assets.get(key)
    const upstream = this.assets.get(dep)
    if (!def || !upstream || !def.deps.includes(dep)) {
      throw new GraphError(`asset \`${key}\` has no dep \`${dep}\`.`)
    }
    return resolvePartitionMapping(def, upstream, def.partitionMappings[dep])
  }
}

/**
 * Kahn's algorithm over declaration order (a min-heap of declaration indices keeps the plan
 * stable and readable). Leftover nodes mean a cycle; one is found and reported as a path.
 */
function topologicalOrder(assets: Map<string, AssetDefinition>): string[] {
  const keys = [...assets.keys()]
  const index = new Map(keys.map((k, i) => [k, i]))
  const indegree = new Int32Array(keys.length)
  const dependents: number[][] = keys.map(() => [])
  keys.forEach((key, i) => {
    for (const dep of assets.get(key)!.deps) {
      if (dep === key) continue
      indegree[i]!++
      dependents[index.get(dep)!]!.push(i)
    }
  })
  const heap = new MinHeap()
  for (let i = 0; i < keys.length; i++) if (indegree[i] === 0) heap.push(i)
  const order: string[] = []
  while (heap.size > 0) {
    const i = heap.pop()
    order.push(keys[i]!)
    for (const d of dependents[i]!) {
      indegree[d]!--
      if (indegree[d] === 0) heap.push(d)
    }
  }
  if (order.length !== keys.length) {
    const remaining = new Set(keys.filter((_, i) => indegree[i]! > 0))
    const cycle = findCycle(remaining, assets)
    throw new GraphError(
      `the asset graph has a cycle: ${cycle.join(' -> ')} (each arrow points from a dep to the asset that needs it). Remove one of these deps.`,
    )
  }
  return order
}

/** Walks deps inside the nodes left by Kahn's algorithm until a key repeats (iterative, no recursion). */
function findCycle(remaining: Set<string>, assets: Map<string, AssetDefinition>): string[] {
  const start = [...remaining][0]!
  const path: string[] = []
  const position = new Map<string, number>()
  let current = start
  for (;;) {
    const seenAt = position.get(current)
    if (seenAt !== undefined) return [...path.slice(seenAt), current].reverse()
    position.set(current, path.length)
    path.push(current)
    // every remaining node has at least one dep that is also remaining
    current = assets.get(current)!.deps.find((d) => remaining.has(d))!
  }
}

/** A binary min-heap of integers (plan indices). */
export class MinHeap {
  private items: number[] = []
  get size(): number {
    return this.items.length
  }
  push(value: number): void {
    const items = this.items
    items.push(value)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (items[parent]! <= value) break
      items[i] = items[parent]!
      i = parent
    }
    items[i] = value
  }
  pop(): number {
    const items = this.items
    const top = items[0]!
    const last = items.pop()!
    if (items.length > 0) {
      let i = 0
      const n = items.length
      for (;;) {
        const l = 2 * i + 1
        if (l >= n) break
        const r = l + 1
        const c = r < n && items[r]! < items[l]! ? r : l
        if (items[c]! >= last) break
        items[i] = items[c]!
        i = c
      }
      items[i] = last
    }
    return top
  }
  peek(): number | undefined {
    return this.items[0]
  }
}
