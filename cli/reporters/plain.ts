import type { RunEvent, RunEventListener } from '../../core/events.js'
import { firstLine, formatDuration, formatMetadata, formatTime } from '../format.js'

export interface PlainReporterOptions {
  /**
   * Print `debug` log lines too (`refresh logs` shows every event). A run's own report, like the
   * live view, shows info and above; `--json` and `refresh logs` keep the rest.
   */
  debug?: boolean
}

/**
 * One plain line per event, each prefixed with its time: no colors, spinners or redraws, so it
 * reads well in CI logs and pipes. Progress is printed when it crosses a tenth of the total or
 * every few seconds.
 */
export function plainReporter(
  write: (line: string) => void,
  options: PlainReporterOptions = {},
): RunEventListener {
  let width = 8
  let runId = ''
  const lastProgress = new Map<string, { tenth: number; at: number }>()
  const line = (event: RunEvent, text: string) => write(`${formatTime(event.ts)} ${text}`)
  const step = (key: string) => key.padEnd(width)

  return (event) => {
    switch (event.type) {
      case 'run:start': {
        runId = event.runId
        width = Math.max(8, ...event.steps.map((s) => s.length))
        const reused = Object.keys(event.reused)
        const parent = event.parentRunId ? ` re-executing ${event.parentRunId} from failure,` : ''
        const partition = event.partition ? ` partition ${event.partition},` : ''
        line(
          event,
          `run ${runId} started:${parent}${partition} ${event.steps.length} step${event.steps.length === 1 ? '' : 's'} (${event.selection})${reused.length ? `; reusing ${reused.join(', ')}` : ''}`,
        )
        break
      }
      case 'step:start':
        line(
          event,
          `${step(event.step)} started${event.maxAttempts > 1 ? ` (attempt ${event.attempt}/${event.maxAttempts})` : ''}`,
        )
        break
      case 'step:waiting':
        line(event, `${step(event.step)} waiting for a slot in pool ${event.pool} (limit ${event.limit})`)
        break
      case 'step:progress': {
        const tenth = event.total ? Math.floor((10 * event.done) / event.total) : -1
        const last = lastProgress.get(event.step)
        if (last && last.tenth === tenth && event.ts - last.at < 5_000) break
        lastProgress.set(event.step, { tenth, at: event.ts })
        const pct = event.total ? ` (${Math.floor((100 * event.done) / event.total)}%)` : ''
        line(
          event,
          `${step(event.step)} progress ${event.done}${event.total !== null ? `/${event.total}` : ''}${pct}`,
        )
        break
      }
      case 'step:retry':
        line(
          event,
          `${step(event.step)} attempt ${event.attempt}/${event.maxAttempts} failed: ${firstLine(event.error.message)}; retrying in ${formatDuration(event.delayMs)}`,
        )
        break
      case 'step:success': {
        const meta = formatMetadata(event.metadata)
        line(
          event,
          `${step(event.step)} succeeded in ${formatDuration(event.durationMs)}${meta ? `  ${meta}` : ''}`,
        )
        break
      }
      case 'step:failure':
        line(
          event,
          `${step(event.step)} failed after ${event.attempt} attempt${event.attempt === 1 ? '' : 's'}: ${event.error.name}: ${firstLine(event.error.message)}`,
        )
        break
      case 'step:skipped':
        line(
          event,
          event.check === undefined
            ? `${step(event.step)} skipped: upstream ${event.upstream} failed`
            : `${step(event.step)} skipped: check ${event.upstream}:${event.check} failed`,
        )
        break
      case 'check:evaluated': {
        const verdict = event.passed
          ? 'passed'
          : event.stops
            ? 'FAILED (blocking: what is downstream is skipped)'
            : `failed (${event.severity === 'warn' ? 'warning' : 'not blocking'})`
        const meta = formatMetadata(event.metadata)
        const error = event.error ? `: ${event.error.name}: ${firstLine(event.error.message)}` : ''
        line(event, `${step(event.step)} check ${event.check} ${verdict}${error}${meta ? `  ${meta}` : ''}`)
        break
      }
      case 'step:canceled':
        line(event, `${step(event.step)} canceled`)
        break
      case 'run:canceling':
        line(event, `canceling run ${event.runId}: ${event.reason}`)
        break
      case 'run:pausing':
        line(event, `pausing run ${event.runId} (${event.reason}): running steps finish, no new step starts`)
        break
      case 'run:paused':
        line(
          event,
          `run ${event.runId} paused with ${event.pending} step(s) pending; continue with: refresh resume ${event.runId}`,
        )
        break
      case 'run:resumed':
        line(
          event,
          `run ${event.runId} resumed: ${event.steps.length} step(s) to run (${event.steps.join(', ')})`,
        )
        break
      case 'log':
        if (event.level === 'debug' && !options.debug) break
        line(
          event,
          `${event.step ? step(event.step) : 'run'.padEnd(width)} ${event.level === 'info' ? '' : `${event.level}: `}${event.message}`,
        )
        break
      case 'asset:materialized':
        break
      case 'run:end': {
        const counts = [
          `${event.succeeded} succeeded`,
          event.failed ? `${event.failed} failed` : '',
          event.skipped ? `${event.skipped} skipped` : '',
          event.canceled ? `${event.canceled} canceled` : '',
          event.checksFailed
            ? `${event.checksFailed} blocking check${event.checksFailed === 1 ? '' : 's'} failed`
            : '',
        ].filter(Boolean)
        line(
          event,
          `run ${event.runId} ${event.status} in ${formatDuration(event.durationMs)}: ${counts.join(', ')}`,
        )
        if (event.status !== 'success')
          line(event, `re-execute from failure with: refresh retry ${event.runId}`)
        break
      }
    }
  }
}

/** One JSON object per line: the events exactly as the store keeps them. */
export function jsonReporter(write: (line: string) => void): RunEventListener {
  return (event) => write(JSON.stringify(event))
}
