/**
 * The worker entry point: `node worker.js <task> <input-json>`, and the code behind a future
 * `refresh worker <task> <input-json>` (the same code on local processes, ECS tasks and EC2).
 * It runs one task and reports progress and its result to whoever started it: over Node's IPC
 * channel when there is one (the local process pool), else as JSON lines on stdout.
 */
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

/** Runs a worker invocation; returns the exit code (0 only with a result reported). */
export async function workerMain(argv: readonly string[]): Promise<number> {
  const [task, inputText] = argv
  const send = messenger()
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
