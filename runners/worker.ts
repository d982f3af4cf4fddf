/**
 * The worker entry point: `node worker.js <task> <input-json>`, and the code behind
 * `refresh worker <task> <input-json> [--status-file PATH]` (the same code on local processes,
 * ECS tasks and EC2). It runs one task and reports progress and its result to whoever started
 * it: over Node's IPC channel when there is one (the local process pool), else as JSON lines on
 * stdout; and, with a status file, as a small JSON object that a remote runner polls.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import type { JsonObject } from '../core/json.js'
import { type IndexShardInput, indexShard, type TaskReporter } from './index-shard.js'

/** The tasks a worker can run, by name. */
export const TASKS: Record<string, (input: JsonObject, report: TaskReporter) => JsonObject> = {
  'index-shard': (input, report) => indexShard(input as unknown as IndexShardInput, report),
}

type Message =
  | { type: 'progress'; done: number; total: number }
  | { type: 'result'; output: JsonObject }
  | { type: 'error'; error: string }

/**
 * What a worker writes to its status file (`--status-file`): replaced whole by rename, so a
 * reader sees the previous or the next state, never half of one. The ECS runner polls it for
 * progress and reads the output from it once the task has stopped (the exit code alone carries
 * no output). Today the file is on a directory shared by the orchestrator and the tasks (EFS, a
 * bind mount); S3 (`runs/<runId>/status/<unit>.json`) is the planned transport.
 */
export type WorkerStatus =
  | { state: 'running'; done: number; total: number | null; at: string }
  | { state: 'succeeded'; done: number; total: number | null; output: JsonObject; at: string }
  | { state: 'failed'; done: number; total: number | null; error: string; at: string }

export interface WorkerOptions {
  /** Where to keep a `WorkerStatus` up to date (at most two writes a second, plus the last). */
  statusFile?: string
}

/** Runs a worker invocation; returns the exit code (0 only with a result reported). */
export async function workerMain(argv: readonly string[], options: WorkerOptions = {}): Promise<number> {
  const [task, inputText] = argv
  const send = withStatusFile(messenger(), options.statusFile)
  const run = task === undefined ? undefined : TASKS[task]
  if (run === undefined || inputText === undefined) {
    await send({
      type: 'error',
      error: `usage: worker <task> <input-json>; tasks: ${Object.keys(TASKS).join(', ')}${task ? ` (not ${task})` : ''}`,
    })
    return 2
  }
  let input: JsonObject
  try {
    input = JSON.parse(inputText) as JsonObject
  } catch (cause) {
    await send({ type: 'error', error: `the input of task ${task} is not JSON: ${(cause as Error).message}` })
    return 2
  }
  let last = 0
  try {
    const output = run(input, {
      progress(done, total) {
        // at most about ten messages a second, and always the first and the last
        const now = performance.now()
        if (done !== 0 && done !== total && now - last < 100) return
        last = now
        void send({ type: 'progress', done, total })
      },
    })
    await send({ type: 'result', output })
    return 0
  } catch (error) {
    await send({ type: 'error', error: error instanceof Error ? error.message : String(error) })
    return 1
  }
}

/** Mirrors the messages into the status file, if there is one. */
function withStatusFile(
  send: (message: Message) => Promise<void>,
  file: string | undefined,
): (message: Message) => Promise<void> {
  if (file === undefined) return send
  let done = 0
  let total: number | null = null
  let lastWrite = 0
  const write = (status: WorkerStatus) => {
    const tmp = `${file}.${process.pid}.tmp`
    try {
      writeFileSync(tmp, JSON.stringify(status))
      renameSync(tmp, file)
    } catch (cause) {
      rmSync(tmp, { force: true })
      throw new Error(`could not write the worker status file ${file}: ${(cause as Error).message}`, {
        cause,
      })
    }
  }
  write({ state: 'running', done, total, at: new Date().toISOString() })
  return async (message) => {
    const at = new Date().toISOString()
    if (message.type === 'progress') {
      done = message.done
      total = message.total
      const now = performance.now()
      if (done === 0 || done === total || now - lastWrite >= 500) {
        lastWrite = now
        write({ state: 'running', done, total, at })
      }
    } else if (message.type === 'result') {
      write({ state: 'succeeded', done, total, output: message.output, at })
    } else {
      write({ state: 'failed', done, total, error: message.error, at })
    }
    await send(message)
  }
}

function messenger(): (message: Message) => Promise<void> {
  if (typeof process.send === 'function') {
    return (message) =>
      new Promise((resolve) => {
        process.send!(message, undefined, undefined, () => resolve())
      })
  }
  return async (message) => {
    process.stdout.write(`${JSON.stringify(message)}\n`)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const code = await workerMain(process.argv.slice(2))
  process.disconnect?.()
  process.exitCode = code
}
