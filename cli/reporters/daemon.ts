import type { DaemonEvent, DaemonEventListener } from '../../daemon/events.js'
import { describeOutcome } from '../../sensors/ticker.js'
import { formatCounts, formatDuration, formatTime, pruneScope } from '../format.js'

/** The one line of text a daemon event reads as. */
export function describeDaemonEvent(e: DaemonEvent): string {
  switch (e.type) {
    case 'starting':
      return `refresh daemon on ${e.store}: ${e.instigators} sensor(s) and schedule(s) from ${e.config}`
    case 'http':
      return `serving /healthz, /readyz and /metrics on http://${e.address}`
    case 'lease:waiting':
      return `another daemon holds the lease (${e.holder}); waiting to take over if it stops renewing it (${Math.ceil(e.expiresInMs / 1000)} s)`
    case 'lease:acquired':
      return `holding the daemon lease as ${e.holder}`
    case 'lease:lost':
      return `lost the daemon lease to ${e.holder}; waiting`
    case 'daemons:changed':
      return `${e.daemons.length} daemon(s) share the store (${e.daemons.join(', ')}); this one evaluates ${e.instigators} sensor(s) and schedule(s)`
    case 'tick':
      if (e.status === 'skipped') return `${e.kind} ${e.name}: skipped (${e.skipReason ?? ''})`
      if (e.status === 'failure') return `${e.kind} ${e.name}: failed: ${e.error ?? 'unknown error'}`
      return `${e.kind} ${e.name}: ${e.outcomes.map(describeOutcome).join(', ')}`
    case 'sensor:log':
      return `${e.name}: ${e.message}`
    case 'parked:replayed': {
      const o = e.outcome
      const text = o.outcome === 'failed' ? `failed: ${o.reason}` : describeOutcome(o)
      return `replayed parked request #${e.requestId} (${e.origin}, ${e.selection}): ${text}`
    }
    case 'run:launched':
      return `launched run ${e.runId} (${e.selection}${e.partition === null ? '' : `, partition ${e.partition}`}, from ${e.origin}) as ${e.task ? `ECS task ${e.task.split('/').at(-1)}` : `pid ${e.pid}`}`
    case 'automation:requested':
      return `automation (tick ${e.tick}): ${e.runs
        .map(
          (r) =>
            `${r.assets.join(',')}${r.partitionKey === null ? '' : ` [${r.partitionKey}]`} ${describeOutcome(r.outcome)}`,
        )
        .join('; ')}`
    case 'backfill:submitted':
      return `backfill ${e.backfillId}: ${e.runs} run(s) submitted; ${e.done} done, ${e.failed} failed of ${e.total}`
    case 'backfill:ended':
      return `backfill ${e.backfillId} ${e.status}: ${e.succeeded} succeeded, ${e.failed} failed, ${e.skipped} skipped of ${e.total}`
    case 'runs:held':
      return `${e.queued} queued run(s) wait: ${e.running} of --max-runs ${e.maxRuns} in flight`
    case 'run:exited': {
      const how = e.signal ? `signal ${e.signal}` : `exit ${e.code}`
      return `run ${e.runId} ended ${e.status} (${how})${e.stderrTail ? `: ${e.stderrTail}` : ''}`
    }
    case 'run:recovered':
      return `run ${e.runId} marked ${e.status === 'canceled' ? 'canceled' : 'failed'}: ${e.reason}`
    case 'launcher:recovered':
      return e.error
        ? `could not stop the tasks of interrupted run(s) ${e.runIds.join(', ')}: ${e.error}`
        : `stopped ${e.stopped.length} task(s) still running for interrupted run(s) ${e.runIds.join(', ')}`
    case 'recovery:hook': {
      const what = `${e.asset} left behind${e.runIds.length ? ` for ${e.runIds.join(', ')}` : ''}`
      return e.error ? `could not clean up what ${what}: ${e.error}` : `cleaned up what ${what}`
    }
    case 'stopping':
      return `stopping: ${e.running} run(s) in flight may finish within ${Math.round(e.graceMs / 1000)} s`
    case 'run:canceling':
      return `canceling run ${e.runId} (${e.reason})`
    case 'run:stopping':
      return `stopping run ${e.runId} (${e.reason}): ${e.how}`
    case 'stopped':
      return 'daemon stopped'
    case 'error':
      return e.stack && !e.message.startsWith('could not') ? `${e.message}\n${e.stack}` : e.message
    case 'prune:start':
      return `pruning runs and ticks ${pruneScope(e)}${e.keptForAlias ? `, keeping the ${e.keptForAlias} run(s) the promoted alias refers to` : ''}`
    case 'prune:done': {
      const how = `in ${formatDuration(e.durationMs)} (${e.batches} batch${e.batches === 1 ? '' : 'es'}; the longest took ${formatDuration(e.longestBatchMs)})`
      return e.complete
        ? `pruned ${formatCounts(e.deleted)} ${pruneScope(e)} ${how}; next prune in 24 h`
        : `prune stopped early, having deleted ${formatCounts(e.deleted)} ${how}; the rest goes at the next prune`
    }
    case 'alert':
      return e.failures.length === 0
        ? `alert sent: ${e.alert}${e.asset ? ` (asset ${e.asset})` : e.runId ? ` (run ${e.runId})` : ''}`
        : e.failures
            .map(
              (f) =>
                `alert ${e.alert} not delivered to the ${f.target} after ${f.attempts} attempts: ${f.error}`,
            )
            .join('\n')
  }
}

/**
 * Prints daemon events: one timestamped line each (warnings and errors say so; the start and
 * listening banners stand alone, as the first lines of the log), or with `json`
 * one JSON object per event: its typed fields, plus `event` (its type) and `message` (the line).
 */
export function daemonReporter(write: (line: string) => void, json: boolean): DaemonEventListener {
  return (e) => {
    const message = describeDaemonEvent(e)
    if (json) {
      const { type, ...fields } = e
      write(JSON.stringify({ ...fields, event: type, message }))
      return
    }
    // the banner lines (what starts, where it listens) stand alone; the daemon's doings are timed
    if (e.type === 'starting' || e.type === 'http') return write(message)
    const prefix = e.level === 'info' || e.level === 'debug' ? '' : `${e.level}: `
    write(`${formatTime(e.ts)} ${prefix}${message}`)
  }
}
