/**
 * The shape of an automation condition (`asset({ automation: eager() })`): a tree of operands
 * joined by `and`, `or` and `not`, built by the constructors in sensors/automation/conditions.ts
 * and evaluated per partition by the daemon. Only the shape lives here, so that an asset can hold
 * a condition without `core/` importing the evaluator.
 */

/** The operands a condition is made of. */
export const AUTOMATION_OPERANDS = [
  'missing',
  'in_progress',
  'any_deps_updated',
  'all_deps_updated_since_cron',
  'any_deps_missing',
  'any_deps_in_progress',
  'checks_passed',
  'newly_updated',
  'cron_tick_passed',
  'since_last_requested',
] as const
export type AutomationOperand = (typeof AUTOMATION_OPERANDS)[number]

export type AutomationNodeKind = 'and' | 'or' | 'not' | AutomationOperand

/** A cron an operand follows, in an IANA timezone. */
export interface AutomationCron {
  readonly expression: string
  readonly timezone: string
}

const CONDITION = Symbol.for('refresh.automation-condition')

/** A node of a condition: an operand, or `and`/`or`/`not` of its children. */
export interface AutomationCondition {
  readonly [CONDITION]: true
  readonly kind: AutomationNodeKind
  /** How the node is written (`eager()`, `missing()`, `cronTickPassed('0 3 * * *')`): shown by `refresh automation`. */
  readonly label: string
  readonly children: readonly AutomationCondition[]
  /** For the cron operands. */
  readonly cron?: AutomationCron
}

export function isAutomationCondition(value: unknown): value is AutomationCondition {
  return (
    typeof value === 'object' && value !== null && (value as { [CONDITION]?: unknown })[CONDITION] === true
  )
}

/** Makes a frozen node (the constructors in sensors/automation/conditions.ts call this). */
export function automationNode(
  kind: AutomationNodeKind,
  label: string,
  children: readonly AutomationCondition[] = [],
  cron?: AutomationCron,
): AutomationCondition {
  const node: AutomationCondition = {
    [CONDITION]: true,
    kind,
    label,
    children: Object.freeze([...children]),
    ...(cron ? { cron: Object.freeze({ ...cron }) } : {}),
  }
  return Object.freeze(node)
}

/** Every node of a tree, depth first (the tree itself first). */
export function conditionNodes(root: AutomationCondition): AutomationCondition[] {
  const out: AutomationCondition[] = []
  const walk = (n: AutomationCondition) => {
    out.push(n)
    for (const c of n.children) walk(c)
  }
  walk(root)
  return out
}

/** A cron's identity in an asset's state: the expression and its timezone. */
export function cronId(cron: AutomationCron): string {
  return `${cron.expression}@${cron.timezone}`
}
