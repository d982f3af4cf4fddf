import { cutEnd, formatDuration, formatMetadata } from '../format.js'
import type { StepStatusText, StepView, ViewState } from './state.js'

/** The text of the terminal view, as pure functions of a view state and `now`. */

export const SYMBOLS: Record<StepStatusText, string> = {
  pending: '·',
  waiting: '…',
  running: '●',
  retrying: '↻',
  succeeded: '✓',
  failed: '✗',
  skipped: '⊘',
  canceled: '⊘',
}

/** "running", "retrying in 3 s (attempt 2/3)", "failed after 3 attempts", ... */
export function stateText(step: StepView, now: number): string {
  const p = step.phase
  switch (p.status) {
    case 'pending':
      return 'waiting'
    case 'waiting':
      return `waiting for pool ${p.pool} (${p.limit})`
    case 'running':
      return p.maxAttempts > 1 ? `running (attempt ${p.attempt}/${p.maxAttempts})` : 'running'
    case 'retrying': {
      const seconds = Math.max(0, Math.ceil((p.retryAt - now) / 1000))
      return `retrying in ${seconds} s (attempt ${p.attempt + 1}/${p.maxAttempts})`
    }
    case 'succeeded': {
      const checks = checksText(step)
      const text = p.attempts > 1 ? `succeeded (attempt ${p.attempts})` : 'succeeded'
      return checks ? `${text}, ${checks}` : text
    }
    case 'failed':
      return `failed after ${p.attempts} attempt${p.attempts === 1 ? '' : 's'}`
    case 'skipped':
      return p.check === undefined
        ? `skipped (${p.upstream} failed)`
        : `skipped (check ${p.upstream}:${p.check} failed)`
    case 'canceled':
      return 'canceled'
  }
}

/** The step's checks in a few words: `checks 2/3 passed (failed: not_empty)`; empty without checks. */
export function checksText(step: StepView): string {
  const checks = step.checks ?? []
  if (checks.length === 0) return ''
  const failed = checks.filter((c) => !c.passed)
  const passed = checks.length - failed.length
  if (failed.length === 0) return `checks ${passed}/${checks.length} passed`
  const names = failed.map((c) =>
    c.stops ? `${c.name} (blocking)` : c.severity === 'warn' ? `${c.name} (warn)` : c.name,
  )
  return `checks ${passed}/${checks.length} passed, failed: ${names.join(', ')}`
}

/** Time spent so far (running) or in all (finished); empty before the step starts. */
export function elapsedText(step: StepView, now: number): string {
  const p = step.phase
  if (p.status === 'succeeded' || p.status === 'failed') return formatDuration(p.durationMs)
  if (step.startedAt === null) return ''
  return formatDuration((step.endedAt ?? now) - step.startedAt)
}

/** `[██████░░░░] 600/1000 120/s`; without a total, only the count and the rate. */
export function progressText(step: StepView, width = 16): string {
  return progressVariants(step, width)[0] ?? ''
}

/**
 * The progress of a running step from the fullest to the barest: the bar (`width` cells, then
 * narrower down to 4), then the count and the rate, then the count alone. A narrow terminal
 * takes the first that fits; the count is never cut.
 */
export function progressVariants(step: StepView, width = 16): string[] {
  const pr = step.progress
  if (!pr) return []
  const rate = pr.rate !== null ? ` ${formatRate(pr.rate)}` : ''
  if (pr.total === null || pr.total <= 0) return [`${pr.done}${rate}`, `${pr.done}`]
  const ratio = Math.min(1, Math.max(0, pr.done / pr.total))
  const counts = `${pr.done}/${pr.total}`
  const bars: string[] = []
  for (let cells = width; cells >= 4; cells -= 2) {
    const filled = Math.round(ratio * cells)
    bars.push(`${'█'.repeat(filled)}${'░'.repeat(cells - filled)} ${counts}${rate}`)
  }
  return [...bars, `${counts}${rate}`, counts, `${Math.floor(ratio * 100)}%`]
}

export function formatRate(perSecond: number): string {
  if (perSecond >= 10_000) return `${Math.round(perSecond / 1000)}k/s`
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`
  return `${perSecond.toFixed(perSecond >= 10 ? 0 : 1)}/s`
}

/**
 * The detail after a row: metadata when it succeeded, the error when it failed or retries, the
 * latest log line while it runs. With `max`, cut to fit: metadata by whole pairs, text at its end.
 */
export function detailText(step: StepView, max?: number): string {
  const p = step.phase
  if (p.status === 'succeeded') return formatMetadata(p.metadata, 4, max)
  let text = ''
  if (p.status === 'failed') text = p.error
  else if (p.status === 'retrying') text = `attempt ${p.attempt} failed: ${p.error}`
  else if (p.status === 'running' && step.lastLog) text = step.lastLog
  return max === undefined ? text : cutEnd(text, max)
}

/** The parts of a step's row, each drawn in its own color. */
export interface RowParts {
  symbol: string
  key: string
  elapsed: string
  state: string
  progress: string
  detail: string
}

/** Room the detail needs to say anything useful; below it the detail is left out. */
const DETAIL_MIN = 8

/**
 * A step's row laid out for a terminal `columns` wide (no limit when undefined): the symbol,
 * key, elapsed time and state always; the progress as full as fits; the detail cut to the rest,
 * two spaces after. Nothing is cut in the middle of a number.
 */
export function rowParts(step: StepView, now: number, width: number, columns?: number): RowParts {
  const head = {
    symbol: SYMBOLS[step.phase.status],
    key: step.key.padEnd(width),
    elapsed: elapsedText(step, now).padStart(7),
    state: stateText(step, now),
  }
  const headLength =
    head.symbol.length + 1 + head.key.length + 1 + head.elapsed.length + 1 + head.state.length
  const variants = step.phase.status === 'running' ? progressVariants(step) : []
  if (columns === undefined) {
    return { ...head, progress: variants[0] ?? '', detail: detailText(step) }
  }
  const progress = variants.find((v) => headLength + 1 + v.length <= columns) ?? ''
  const used = headLength + (progress ? 1 + progress.length : 0)
  const room = columns - used - 2
  return { ...head, progress, detail: room >= DETAIL_MIN ? detailText(step, room) : '' }
}

export function headerText(state: ViewState): string {
  const n = state.steps.length
  const parent = state.parentRunId ? `, re-executing ${state.parentRunId} from failure` : ''
  const reused = state.reused.length ? `; reusing ${state.reused.join(', ')}` : ''
  const partition = state.partition ? ` · partition ${state.partition}` : ''
  return `run ${state.runId} · ${n} step${n === 1 ? '' : 's'} (${state.selection})${partition}${parent}${reused}`
}

/** The closing lines: counts, duration, run id, and the retry command when something failed. */
export function summaryLines(state: ViewState): string[] {
  const end = state.end
  if (!end) return []
  const counts = [
    `${end.succeeded} succeeded`,
    end.failed ? `${end.failed} failed` : '',
    end.skipped ? `${end.skipped} skipped` : '',
    end.canceled ? `${end.canceled} canceled` : '',
    end.checksFailed ? `${end.checksFailed} blocking check${end.checksFailed === 1 ? '' : 's'} failed` : '',
  ].filter(Boolean)
  const status = end.status === 'canceled' && state.canceling ? `canceled (${state.canceling})` : end.status
  const lines = [`${status} · ${counts.join(', ')} · ${formatDuration(end.durationMs)} · run ${state.runId}`]
  if (end.status === 'paused') lines.push(`continue with: refresh resume ${state.runId}`)
  else if (end.status !== 'success') lines.push(`re-execute from failure: refresh retry ${state.runId}`)
  return lines
}
