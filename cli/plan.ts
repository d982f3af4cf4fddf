import { CHECKS_CONFIG_KEY, checkId, checksByAsset, resolveCheckConfig } from '../core/checks.js'
import type { ResolvedConfig } from '../core/config.js'
import { resolveRunConfig } from '../core/definitions.js'
import { didYouMean } from '../core/errors.js'
import { buildGraph } from '../core/materialize.js'
import { resolveSelection } from '../core/selection.js'
import type { Io } from './io.js'

/**
 * `refresh run --dry-run`: the plan a run would execute, in order, with each step's deps and its
 * validated run config (defaults applied) and its asset checks. Checks what a run checks before it
 * starts: the graph, the selection, the run config, the checks and theirs.
 */
export function printPlan(
  resolved: ResolvedConfig,
  selection: string[],
  config: Record<string, unknown>,
  io: Io,
  json: boolean,
): void {
  const { graph, text, keys, runConfig, checks, checkConfig } = checkPlan(resolved, selection, config)
  const steps = keys.map((key) => {
    const def = graph.assets.get(key)!
    const own = (checks.get(key) ?? []).map((c) => ({
      name: c.name,
      blocking: c.blocking,
      severity: c.severity,
      config: checkConfig.get(checkId(key, c.name)) ?? null,
    }))
    return {
      key,
      deps: [...def.deps],
      group: def.group,
      pool: def.pool ?? null,
      config: runConfig[key],
      checks: own,
    }
  })
  if (json) {
    io.out(JSON.stringify({ selection: text, environment: resolved.environment ?? null, steps }))
    return
  }
  const env = resolved.environment ? `, environment ${resolved.environment}` : ''
  io.out(
    `plan: ${keys.length} step${keys.length === 1 ? '' : 's'} (${text}${env}); nothing is run (--dry-run)`,
  )
  const width = Math.max(...keys.map((k) => k.length))
  steps.forEach((s, i) => {
    const deps = s.deps.length ? `after ${s.deps.join(', ')}` : 'no deps'
    const cfg = s.config && Object.keys(s.config).length ? `  config ${JSON.stringify(s.config)}` : ''
    const pool = s.pool ? `  pool ${s.pool}` : ''
    io.out(`${String(i + 1).padStart(3)}. ${s.key.padEnd(width)}  ${deps}${pool}${cfg}`)
    for (const c of s.checks) {
      const kind = c.blocking && c.severity === 'error' ? 'blocking' : c.severity
      io.out(
        `     ${' '.repeat(width)}  check ${c.name} (${kind})${c.config ? `  config ${JSON.stringify(c.config)}` : ''}`,
      )
    }
  })
}

/**
 * Checks the graph, the selection and the run config, as `materialize` does, before a run opens
 * (and perhaps creates) the store: bad input leaves nothing behind.
 */
export function checkPlan(resolved: ResolvedConfig, selection: string[], config: Record<string, unknown>) {
  const graph = buildGraph(resolved.assets)
  const text = selection.length > 0 ? selection.join(',') : '*'
  const keys = graph.sort(resolveSelection(graph, text))
  const runConfig = resolveRunConfig(graph.assets, keys, config, (key) =>
    didYouMean(key, graph.assets.keys()),
  )
  const checks = checksByAsset(resolved.checks, graph.assets)
  const checkConfig = resolveCheckConfig(
    checks,
    graph.has(CHECKS_CONFIG_KEY) ? undefined : runConfig[CHECKS_CONFIG_KEY],
  )
  return { graph, text, keys, runConfig, checks, checkConfig }
}
