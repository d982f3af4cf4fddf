/**
 * One asset's condition evaluated over its partitions: every node of the tree is a subset of the
 * partitions (ranges of indices, so 10,000 partitions cost what their ranges cost), and the tree
 * comes back with each node's value, which `refresh automation` shows to say why.
 */
import { type AutomationCondition, cronId } from '../../core/automation.js'
import type { KeySpace } from '../../core/partitions/definitions.js'
import { PartitionSubset } from '../../core/partitions/subset.js'
import type { AssetState } from './state.js'

/** A dep as one asset's evaluation sees it. */
export interface DepView {
  key: string
  /** Partitions that exist now (1 when unpartitioned). */
  size: number
  materialized: PartitionSubset
  inProgress: PartitionSubset
  /** The asset's partitions that read any of these partitions of the dep. */
  mapDown(subset: PartitionSubset): PartitionSubset
}

export interface EvaluationInput {
  /** Partitions that exist now (1 when unpartitioned). */
  size: number
  state: AssetState
  inProgress: PartitionSubset
  /** Materialized since the previous evaluation. */
  newlyUpdated: PartitionSubset
  /** The asset's check names. */
  checks: readonly string[]
  deps: readonly DepView[]
  /** Keys of the asset's partitions, for the values shown (undefined when unpartitioned). */
  space: KeySpace | undefined
}

/** A node's value: how many partitions it is true for, and which (a few ranges of keys). */
export interface NodeValue {
  label: string
  trueCount: number
  total: number
  /** Partitioned: the true partitions, as up to 3 key ranges (`2026-01-01...2026-01-31`). */
  partitions?: string
  /** Partitioned, on the root only: every true partition, as `PartitionSubset.toJSON()` ranges. */
  subset?: number[]
  children?: NodeValue[]
}

export interface Evaluation {
  result: PartitionSubset
  tree: NodeValue
}

export function evaluateCondition(root: AutomationCondition, input: EvaluationInput): Evaluation {
  const all = PartitionSubset.all(input.size)
  const memo = new Map<string, PartitionSubset>()
  const operand = (node: AutomationCondition): PartitionSubset => {
    const id = node.cron ? `${node.kind}:${cronId(node.cron)}` : node.kind
    let value = memo.get(id)
    if (value === undefined) {
      value = operandValue(node, input, all).clip(input.size)
      memo.set(id, value)
    }
    return value
  }
  const walk = (node: AutomationCondition): Evaluation => {
    let result: PartitionSubset
    let children: NodeValue[] | undefined
    if (node.kind === 'and' || node.kind === 'or') {
      const evaluated = node.children.map(walk)
      children = evaluated.map((e) => e.tree)
      result = evaluated.reduce<PartitionSubset>(
        (acc, e) => (node.kind === 'and' ? acc.intersect(e.result) : acc.union(e.result)),
        node.kind === 'and' ? all : PartitionSubset.empty,
      )
    } else if (node.kind === 'not') {
      const inner = walk(node.children[0]!)
      children = [inner.tree]
      result = all.difference(inner.result)
    } else {
      result = operand(node)
    }
    const tree: NodeValue = { label: node.label, trueCount: result.size, total: input.size }
    if (input.space && !result.isEmpty) tree.partitions = describeSubset(result, input.space)
    if (children) tree.children = children
    return { result, tree }
  }
  const evaluation = walk(root)
  if (input.space) evaluation.tree.subset = evaluation.result.toJSON()
  return evaluation
}

function operandValue(
  node: AutomationCondition,
  input: EvaluationInput,
  all: PartitionSubset,
): PartitionSubset {
  const { state } = input
  const anyDep = (of: (dep: DepView) => PartitionSubset) =>
    input.deps.reduce<PartitionSubset>((acc, dep) => acc.union(dep.mapDown(of(dep))), PartitionSubset.empty)
  switch (node.kind) {
    case 'missing':
      return all.difference(state.materialized)
    case 'in_progress':
      return input.inProgress
    case 'any_deps_updated':
      return state.news
    case 'any_deps_missing':
      return anyDep((dep) => PartitionSubset.all(dep.size).difference(dep.materialized))
    case 'any_deps_in_progress':
      return anyDep((dep) => dep.inProgress)
    case 'all_deps_updated_since_cron': {
      const cron = state.crons.get(cronId(node.cron!))
      if (!cron || cron.tick === 0) return PartitionSubset.empty
      // a partition fails when some dep partition it reads was not updated since the tick
      const failing = anyDep((dep) =>
        PartitionSubset.all(dep.size).difference(cron.deps.get(dep.key) ?? PartitionSubset.empty),
      )
      return all.difference(failing)
    }
    case 'checks_passed':
      return input.checks.reduce<PartitionSubset>(
        (acc, name) => acc.intersect(state.checks.get(name) ?? PartitionSubset.empty),
        all,
      )
    case 'newly_updated':
      return input.newlyUpdated
    case 'cron_tick_passed': {
      const cron = state.crons.get(cronId(node.cron!))
      // ticks from before automation first saw the asset do not count
      if (!cron || cron.tick === 0 || cron.tick <= state.since) return PartitionSubset.empty
      return all.difference(cron.handled)
    }
    case 'since_last_requested':
      return all.difference(state.requested)
    default:
      throw new Error(`unknown automation operand ${node.kind}`)
  }
}

/** Up to 3 ranges of keys, and how many more: `2026-01-01...2026-01-31, 2026-03-04 (+2 ranges)`. */
export function describeSubset(subset: PartitionSubset, space: KeySpace): string {
  const parts: string[] = []
  let more = 0
  for (const [start, end] of subset.ranges()) {
    if (parts.length === 3) {
      more++
      continue
    }
    parts.push(end - start === 1 ? space.keyAt(start) : `${space.keyAt(start)}...${space.keyAt(end - 1)}`)
  }
  return more > 0 ? `${parts.join(', ')} (+${more} range${more === 1 ? '' : 's'})` : parts.join(', ')
}
