import { formatDuration, formatMetadata } from '../format.js'
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
    case 'succeeded':
      return p.attempts > 1 ? `succeeded (attempt ${p.attempts})` : 'succeeded'
    case 'failed':
      return `failed after ${p.attempts} attempt${p.attempts === 1 ? '' : 's'}`
    case 'skipped':
      return `skipped (${p.upstream} failed)`
    case 'canceled':
      return 'canceled'
  }
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
  const pr = step.progress
  if (!pr) return ''
  const rate = pr.rate !== null ? ` ${formatRate(pr.rate)}` : ''
  if (pr.total === null || pr.total <= 0) return `${pr.done}${rate}`
  const ratio = Math.min(1, Math.max(0, pr.done / pr.total))
  const filled = Math.round(ratio * width)
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${pr.done}/${pr.total}${rate}`
}

export function formatRate(perSecond: number): string {
  if (perSecond >= 10_000) return `${Math.round(perSecond / 1000)}k/s`
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`
  return `${perSecond.toFixed(perSecond >= 10 ? 0 : 1)}/s`
}

/** The detail after a row: metadata when it succeeded, the error when it failed or retries. */
export function detailText(step: StepView): string {
  const p = step.phase
  if (p.status === 'succeeded') return formatMetadata(p.metadata, 4)
  if (p.status === 'failed') return p.error
  if (p.status === 'retrying') return `attempt ${p.attempt} failed: ${p.error}`
  if (p.status === 'running' && step.lastLog) return step.lastLog
  return ''
}

export function headerText(state: ViewState): string {
  const n = state.steps.length
  const parent = state.parentRunId ? `, re-executing ${state.parentRunId} from failure` : ''
  const reused = state.reused.length ? `; reusing ${state.reused.join(', ')}` : ''
  return `run ${state.runId} · ${n} step${n === 1 ? '' : 's'} (${state.selection})${parent}${reused}`
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
  ].filter(Boolean)
  const status = end.status === 'canceled' && state.canceling ? `canceled (${state.canceling})` : end.status
  const lines = [`${status} · ${counts.join(', ')} · ${formatDuration(end.durationMs)} · run ${state.runId}`]
  if (end.status === 'paused') lines.push(`continue with: refresh resume ${state.runId}`)
  else if (end.status !== 'success') lines.push(`re-execute from failure: refresh retry ${state.runId}`)
  return lines
}
