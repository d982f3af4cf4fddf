/**
 * Automation conditions: what an asset says about when it should run, evaluated per partition by
 * the daemon (sensors/automation/evaluator.ts). Composites (`eager()`, `onCron()`,
 * `onMissing()`) are `and`/`or`/`not` of the operands below, kept with their own label so that
 * `refresh automation` shows both the rule as written and what it is made of.
 *
 * Every operand is a set of partitions (of one, for an unpartitioned asset):
 * - `missing()`: never materialized;
 * - `inProgress()`: in a queued or started run, or still to be launched by an active backfill;
 * - `anyDepsUpdated()`: a dep (through the partition mapping) was materialized since the
 *   partition was last materialized or requested;
 * - `allDepsUpdatedSinceCron(cron)`: every dep partition it reads was materialized since the
 *   latest tick of `cron`;
 * - `anyDepsMissing()`, `anyDepsInProgress()`: a dep partition it reads is missing, in progress;
 * - `checksPassed()`: the latest result of each of the asset's checks passed (true when it has none);
 * - `newlyUpdated()`: materialized since the previous evaluation;
 * - `cronTickPassed(cron)`: a tick of `cron` passed since the partition was last requested (ticks
 *   before automation first saw the asset do not count);
 * - `sinceLastRequested()`: not requested by automation since it was last materialized (a
 *   request that failed is not made again until something else changes).
 */
import {
  type AutomationCondition,
  type AutomationCron,
  automationNode,
  isAutomationCondition,
} from '../../core/automation.js'
import { parseCron } from '../../core/cron.js'
import { ConfigError } from '../../core/errors.js'

export type { AutomationCondition } from '../../core/automation.js'

export interface CronOptions {
  /** IANA timezone of the cron (default UTC). */
  timezone?: string
}

function cronOf(what: string, expression: unknown, options: CronOptions | undefined): AutomationCron {
  if (typeof expression !== 'string' || expression.trim() === '') {
    throw new ConfigError(`${what} needs a cron expression, like ${what}('0 3 * * *').`)
  }
  const timezone = options?.timezone ?? 'UTC'
  // a bad expression or timezone fails where the config is loaded, naming the fix
  parseCron(expression, timezone)
  return { expression, timezone }
}

function cronLabel(name: string, cron: AutomationCron): string {
  const tz = cron.timezone === 'UTC' ? '' : `, { timezone: '${cron.timezone}' }`
  return `${name}('${cron.expression}'${tz})`
}

function operands(what: string, conditions: readonly unknown[]): AutomationCondition[] {
  if (conditions.length === 0) throw new ConfigError(`${what}() needs at least one condition.`)
  conditions.forEach((c, i) => {
    if (!isAutomationCondition(c)) {
      throw new ConfigError(
        `${what}(): argument ${i + 1} is not an automation condition; pass conditions like missing() or eager().`,
      )
    }
  })
  return conditions as AutomationCondition[]
}

/** True where every condition is. */
export function and(...conditions: AutomationCondition[]): AutomationCondition {
  const children = operands('and', conditions)
  return automationNode('and', `and(${children.map((c) => c.label).join(', ')})`, children)
}

/** True where any condition is. */
export function or(...conditions: AutomationCondition[]): AutomationCondition {
  const children = operands('or', conditions)
  return automationNode('or', `or(${children.map((c) => c.label).join(', ')})`, children)
}

/** True where the condition is not. */
export function not(condition: AutomationCondition): AutomationCondition {
  const [child] = operands('not', [condition])
  return automationNode('not', `not(${child!.label})`, [child!])
}

export function missing(): AutomationCondition {
  return automationNode('missing', 'missing()')
}

export function inProgress(): AutomationCondition {
  return automationNode('in_progress', 'inProgress()')
}

export function anyDepsUpdated(): AutomationCondition {
  return automationNode('any_deps_updated', 'anyDepsUpdated()')
}

export function allDepsUpdatedSinceCron(cron: string, options?: CronOptions): AutomationCondition {
  const c = cronOf('allDepsUpdatedSinceCron', cron, options)
  return automationNode('all_deps_updated_since_cron', cronLabel('allDepsUpdatedSinceCron', c), [], c)
}

export function anyDepsMissing(): AutomationCondition {
  return automationNode('any_deps_missing', 'anyDepsMissing()')
}

export function anyDepsInProgress(): AutomationCondition {
  return automationNode('any_deps_in_progress', 'anyDepsInProgress()')
}

export function checksPassed(): AutomationCondition {
  return automationNode('checks_passed', 'checksPassed()')
}

export function newlyUpdated(): AutomationCondition {
  return automationNode('newly_updated', 'newlyUpdated()')
}

export function cronTickPassed(cron: string, options?: CronOptions): AutomationCondition {
  const c = cronOf('cronTickPassed', cron, options)
  return automationNode('cron_tick_passed', cronLabel('cronTickPassed', c), [], c)
}

export function sinceLastRequested(): AutomationCondition {
  return automationNode('since_last_requested', 'sinceLastRequested()')
}

/** `label` for a composite: its own name, over the tree it stands for. */
function named(label: string, tree: AutomationCondition): AutomationCondition {
  return automationNode(tree.kind, label, tree.children, tree.cron)
}

/**
 * Keep the asset up to date with its deps: run it when a dep has a newer materialization, or when
 * it is missing (once: a failed attempt is not repeated until a dep changes), unless a dep is
 * missing or in progress, or it is in progress itself.
 */
export function eager(): AutomationCondition {
  return named(
    'eager()',
    and(
      or(and(missing(), sinceLastRequested()), anyDepsUpdated()),
      not(anyDepsMissing()),
      not(anyDepsInProgress()),
      not(inProgress()),
    ),
  )
}

/**
 * Run once per tick of `cron`, as soon as every dep has been updated since that tick (and the
 * asset is not in progress).
 */
export function onCron(cron: string, options?: CronOptions): AutomationCondition {
  const c = cronOf('onCron', cron, options)
  return named(
    cronLabel('onCron', c),
    and(
      cronTickPassed(c.expression, { timezone: c.timezone }),
      allDepsUpdatedSinceCron(c.expression, { timezone: c.timezone }),
      not(inProgress()),
    ),
  )
}

/** Fill in what is missing (once per partition), when its deps are there. */
export function onMissing(): AutomationCondition {
  return named(
    'onMissing()',
    and(missing(), sinceLastRequested(), not(anyDepsMissing()), not(anyDepsInProgress()), not(inProgress())),
  )
}
