import { type ChildProcess, spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { JsonObject } from '../core/json.js'
import type { Runner, WorkHandle, WorkListener, WorkResult, WorkUnit } from './types.js'

export interface LocalProcessRunnerOptions {
  /** Processes at once; more units wait in a queue (default: the number of CPUs). */
  processes?: number
  /**
   * The program and arguments for a unit (default: `node <dist/runners/worker.js> <task> <input>`).
   * Always an argument array: nothing goes through a shell.
   */
  command?: (unit: WorkUnit) => { file: string; args: string[] }
  /** How long a stopped process has after SIGTERM before SIGKILL (default 2000 ms). */
  killGraceMs?: number
  /** Extra environment for the processes. */
  env?: Record<string, string>
}

/** The compiled worker entry point. Workers always run built JS, also when tests run the TS sources. */
export function workerEntry(): string {
  const here = fileURLToPath(import.meta.url)
  return here.endsWith('.ts')
    ? join(dirname(here), '..', 'dist', 'runners', 'worker.js')
    : join(dirname(here), 'worker.js')
}

const STDERR_TAIL = 4000

/**
 * A pool of local OS processes: one process per unit, at most `processes` at once. Progress and
 * the result travel over Node's IPC channel (`{ type: 'progress' | 'result', ... }` messages);
 * stop is SIGTERM, then SIGKILL after a grace period; a unit succeeded only if its process
 * exited 0 after sending a result.
 */
export function localProcessRunner(options: LocalProcessRunnerOptions = {}): Runner {
  const limit = options.processes ?? availableParallelism()
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`localProcessRunner: processes must be a whole number >= 1, not ${limit}`)
  }
  const command =
    options.command ??
    ((unit: WorkUnit) => ({
      file: process.execPath,
      args: [workerEntry(), unit.task, JSON.stringify(unit.input)],
    }))
  const grace = options.killGraceMs ?? 2000
  const queue: Array<() => void> = []
  const live = new Set<LocalHandle>()
  let running = 0
  let closed = false

  const release = () => {
    running--
    const next = queue.shift()
    if (next) next()
  }

  const close = async (): Promise<void> => {
    closed = true
    await Promise.all([...live].map((h) => h.stop('the runner is closed')))
  }
  return {
    name: 'local-processes',
    close,
    [Symbol.asyncDispose]: close,
    start(unit: WorkUnit, listener: WorkListener = {}): WorkHandle {
      const handle = new LocalHandle(unit, listener, grace)
      if (closed) {
        handle.settle({ status: 'stopped', reason: 'the runner is closed', durationMs: 0 })
        return handle
      }
      live.add(handle)
      void handle.result.then(() => live.delete(handle))
      const launch = () => {
        if (handle.stopReason !== undefined) {
          handle.settle({ status: 'stopped', reason: handle.stopReason, durationMs: 0 })
          release()
          return
        }
        const { file, args } = command(unit)
        handle.launch(file, args, options.env)
        void handle.result.then(release)
      }
      if (running < limit) {
        running++
        launch()
      } else {
        queue.push(() => {
          running++
          launch()
        })
      }
      return handle
    },
  }
}

class LocalHandle implements WorkHandle {
  readonly unit: WorkUnit
  readonly result: Promise<WorkResult>
  stopReason: string | undefined
  private child: ChildProcess | undefined
  private settled = false
  private resolve!: (result: WorkResult) => void
  private readonly listener: WorkListener
  private readonly grace: number

  constructor(unit: WorkUnit, listener: WorkListener, grace: number) {
    this.unit = unit
    this.listener = listener
    this.grace = grace
    this.result = new Promise((resolve) => {
      this.resolve = resolve
    })
  }

  get where(): string | undefined {
    return this.child?.pid === undefined ? undefined : `pid ${this.child.pid}`
  }

  /** The process id while the unit runs (tests check that a stop really ended it). */
  get pid(): number | undefined {
    return this.child?.pid
  }

  settle(result: WorkResult): void {
    if (this.settled) return
    this.settled = true
    this.resolve(result)
  }

  launch(file: string, args: string[], env: Record<string, string> | undefined): void {
    const started = performance.now()
    let output: JsonObject | undefined
    let reported: string | undefined
    let stderr = ''
    const child = spawn(file, args, {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: env ? { ...process.env, ...env } : process.env,
      serialization: 'json',
    })
    this.child = child
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL)
    })
    child.on('message', (message: unknown) => {
      const m = message as {
        type?: unknown
        done?: unknown
        total?: unknown
        output?: unknown
        error?: unknown
      }
      if (m?.type === 'progress' && typeof m.done === 'number') {
        this.listener.onProgress?.({ done: m.done, total: typeof m.total === 'number' ? m.total : null })
      } else if (m?.type === 'result' && typeof m.output === 'object' && m.output !== null) {
        output = m.output as JsonObject
      } else if (m?.type === 'error' && typeof m.error === 'string') {
        reported = m.error
      }
    })
    child.on('error', (error) => {
      this.settle({
        status: 'failed',
        error: `could not start ${file}: ${error.message}`,
        exitCode: null,
        signal: null,
        durationMs: performance.now() - started,
      })
    })
    child.on('close', (code, signal) => {
      const durationMs = performance.now() - started
      if (this.stopReason !== undefined) {
        this.settle({ status: 'stopped', reason: this.stopReason, durationMs })
      } else if (code === 0 && output !== undefined) {
        this.settle({ status: 'succeeded', output, durationMs })
      } else {
        const how =
          signal !== null
            ? `was killed by ${signal}`
            : code === 0
              ? 'exited 0 without reporting a result'
              : `exited with code ${code}`
        const detail = reported ?? lastLines(stderr)
        this.settle({
          status: 'failed',
          error: `${this.unit.id} (${this.where ?? 'not started'}) ${how}${detail ? `: ${detail}` : ''}`,
          exitCode: code,
          signal,
          durationMs,
        })
      }
    })
    if (this.stopReason !== undefined) child.kill('SIGTERM')
  }

  async stop(reason = 'stopped'): Promise<void> {
    if (this.settled) return
    this.stopReason ??= reason
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      // queued (or already gone): the launch or close path settles it
      if (child === undefined) this.settle({ status: 'stopped', reason, durationMs: 0 })
      await this.result
      return
    }
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), this.grace)
    timer.unref()
    await this.result
    clearTimeout(timer)
  }
}

function lastLines(text: string): string {
  const lines = text.trim().split('\n').filter(Boolean)
  return lines.slice(-3).join(' | ')
}
