import type { ResolvedConfig } from '../core/config.js'
import { CanceledError, isInputErrorInfo } from '../core/errors.js'
import type { RunEventListener } from '../core/events.js'
import { materialize } from '../core/materialize.js'
import { openStore } from '../core/store/open.js'
import type { RunStore } from '../core/store/run-store.js'
import { canRedraw, colorsWanted, EXIT, type Io, whenOutputCloses } from './io.js'
import { applyOverrides, type Override } from './overrides.js'
import { jsonReporter, plainReporter } from './reporters/plain.js'
import type { TtyView } from './view/tty.js'

export type OutputMode = 'tty' | 'plain' | 'json'

/** `--json` wins, then `--plain`; the live view only on a terminal that can redraw, outside CI. */
export function outputMode(options: { plain?: boolean; json?: boolean }, io: Io): OutputMode {
  if (options.json) return 'json'
  if (options.plain || !canRedraw(io)) return 'plain'
  return 'tty'
}

export interface ExecuteRequest {
  /** Selection terms (a union); none = every asset. */
  selection?: string[]
  /** Re-execute this run from failure instead. */
  fromFailure?: string
  /** Run config per asset; undefined on a retry = the parent run's config. */
  config?: Record<string, Record<string, unknown>>
  /** `--set` flags laid over the parent run's config on a retry. */
  overrides?: readonly Override[]
  concurrency?: number
  output: OutputMode
  /** Run even while maintenance mode is on. */
  force?: boolean
  /** `false` (`--no-wait`): fail at once when a run guard of the config is full. */
  wait?: boolean
  /** `--partition KEY`: the partition to build of the selection's partitioned assets. */
  partition?: string
}

/**
 * Runs (or re-executes) and reports it: the live view on a terminal, else one line or one JSON
 * object per event. Crashed runs are recovered first. Ctrl-C once cancels gracefully; twice
 * closes the run as canceled at once and exits 130, so nothing is ever left `started`.
 */
export async function executeRun(
  resolved: ResolvedConfig,
  storeLocation: string,
  request: ExecuteRequest,
  io: Io,
): Promise<number> {
  const store = await openStore(storeLocation)
  let view: TtyView | undefined
  try {
    const { recoverRuns } = await import('../core/recovery.js')
    const recovery = await recoverRuns(store, resolved.assets)
    for (const r of recovery.recovered) {
      io.err(`note: run ${r.runId} was left running and is now marked failed (${r.reason}).`)
    }
    for (const h of recovery.hooks) {
      // a hook that found nothing to do (an empty list) is not news
      if (!h.error && Array.isArray(h.result) && h.result.length === 0) continue
      io.err(
        h.error
          ? `warning: could not clean up what ${h.asset} left behind${h.runIds.length ? ` for ${h.runIds.join(', ')}` : ''}: ${h.error.message}`
          : `note: cleaned up what ${h.asset} left behind for ${h.runIds.join(', ')}${Array.isArray(h.result) && h.result.length ? ` (${h.result.length})` : ''}.`,
      )
    }
    let listener: RunEventListener
    if (request.output === 'tty') {
      // ink and React load here and nowhere else
      const { mountTtyView } = await import('./view/tty.js')
      const mounted = mountTtyView(process.stdout, { color: colorsWanted(io) })
      view = mounted
      listener = (event) => mounted.onEvent(event)
    } else {
      listener = request.output === 'json' ? jsonReporter(io.out) : plainReporter(io.out)
    }

    let config = request.config
    if (request.fromFailure !== undefined && request.overrides?.length) {
      const parent = await store.findRun(request.fromFailure)
      if (parent)
        config = applyOverrides(parent.config as Record<string, Record<string, unknown>>, request.overrides)
    }
    const controller = new AbortController()
    let runId: string | undefined
    const interrupt = interruptHandler({
      store,
      controller,
      runId: () => runId,
      view: () => view,
      io,
      output: request.output,
    })
    const onSignal = (signal: NodeJS.Signals) => interrupt.onSignal(signal)
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    // the reader of the output went away (`refresh run | head -3`): cancel cleanly, say so on stderr
    let outputGone = false
    const stopWatchingOutput = whenOutputCloses(() => {
      outputGone = true
      controller.abort(new CanceledError('its output was closed (the reader of stdout went away)'))
    })
    try {
      const result = await materialize(resolved.assets, {
        store,
        checks: resolved.checks,
        selection: request.selection && request.selection.length > 0 ? request.selection : undefined,
        fromFailure: request.fromFailure,
        ...(request.partition !== undefined ? { partition: request.partition } : {}),
        config,
        resources: resolved.resources,
        pools: resolved.pools,
        concurrency: request.concurrency ?? resolved.concurrency,
        signal: controller.signal,
        force: request.force,
        guards: resolved.guards,
        wait: request.wait,
        onWait: ({ guard, runId: holder }) =>
          io.err(`waiting for run ${holder}, which holds run guard \`${guard}\` (Ctrl-C to stop waiting)`),
        onEvent: (event) => {
          if (event.type === 'run:start') runId = event.runId
          listener(event)
        },
      })
      await view?.close()
      stopWatchingOutput()
      if (outputGone)
        io.err(
          `refresh: the output was closed; run ${result.runId} ended ${result.status} (\`refresh show ${result.runId}\`).`,
        )
      // the handlers stay until the process exits (main exits once the command settles): a
      // second Ctrl-C that arrives while the run winds down still exits at once
      if (interrupt.count > 0) return EXIT.interrupted
      // a paused run is not a failure: `refresh resume` continues it
      if (result.status === 'success' || result.status === 'paused') return EXIT.ok
      // a step that failed on the configuration (AWS without credentials, say): bad input, said once
      const misconfigured = Object.values(result.steps).find(
        (s) => s.status === 'failed' && isInputErrorInfo(s.error),
      )
      if (misconfigured?.error) {
        io.err(`refresh: ${misconfigured.key}: ${misconfigured.error.message}`)
        return EXIT.usage
      }
      return EXIT.failed
    } catch (error) {
      stopWatchingOutput()
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      throw error
    }
  } finally {
    await view?.close()
    await store.close()
  }
}

export interface InterruptContext {
  store: Pick<RunStore, 'isOpen' | 'abandonRun' | 'close'>
  controller: AbortController
  runId(): string | undefined
  view(): TtyView | undefined
  io: Io
  output: OutputMode
}

/**
 * Ctrl-C (or SIGTERM) during a run. The first one aborts the run's signal: running steps get
 * their abort, nothing new starts, the run ends `canceled`. The second one does not wait: the run
 * is closed as canceled in the store right away (so nothing is left `started`) and the process
 * exits 130.
 */
export function interruptHandler(ctx: InterruptContext): {
  readonly count: number
  onSignal(signal: NodeJS.Signals): void
} {
  let count = 0
  return {
    get count() {
      return count
    },
    onSignal(signal) {
      count++
      if (count === 1) {
        if (ctx.output === 'plain') ctx.io.err(`canceling... (${signal}; press Ctrl-C again to stop at once)`)
        ctx.controller.abort(
          new CanceledError(signal === 'SIGINT' ? 'interrupted (Ctrl-C)' : `received ${signal}`),
        )
        return
      }
      if (count > 2) return
      const runId = ctx.runId()
      const close = async () => {
        if (runId !== undefined && ctx.store.isOpen)
          await ctx.store.abandonRun(runId, 'canceled', `stopped at once (${signal} twice)`, Date.now())
        await ctx.store.close()
      }
      void close()
        .catch((error: unknown) =>
          ctx.io.err(`could not mark run ${runId} canceled: ${(error as Error).message}`),
        )
        .finally(() => {
          void ctx.view()?.close()
          if (ctx.output !== 'json')
            ctx.io.err(`stopped at once${runId ? `; run ${runId} is marked canceled` : ''}.`)
          process.exit(EXIT.interrupted)
        })
    },
  }
}
