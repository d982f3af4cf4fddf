/**
 * The worker entry point: `node worker.js <task> <input-json>`, and the code behind
 * `refresh worker <task> <input-json> [--status-file PATH]` (the same code on local processes,
 * ECS tasks and EC2). It runs one task and reports progress and its result to whoever started
 * it: over Node's IPC channel when there is one (the local process pool), else as JSON lines on
 * stdout; and, with a status file, as a small JSON object that a remote runner polls.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import type { S3Store } from '../aws/s3.js'
import { isInputError } from '../core/errors.js'
import type { JsonObject } from '../core/json.js'
import { type IndexShardInput, indexShard, type TaskReporter } from '../search/index-shard.js'

/** The tasks a worker can run, by name. */
export const TASKS: Record<string, (input: JsonObject, report: TaskReporter) => Promise<JsonObject>> = {
  'index-shard': (input, report) => indexShard(input as unknown as IndexShardInput, report),
}

export type Message =
  | { type: 'progress'; done: number; total: number }
  | { type: 'result'; output: JsonObject }
  | { type: 'error'; error: string }

/**
 * What a worker writes to its status file (`--status-file`): replaced whole (by rename for a
 * file, by PutObject for an `s3://` URL), so a reader sees the previous or the next state, never
 * half of one. The remote runners (ECS, EC2) poll it for progress and read the output from it
 * once the task has stopped (the exit code alone carries no output); see status.ts.
 */
export type WorkerStatus =
  | { state: 'running'; done: number; total: number | null; at: string }
  | { state: 'succeeded'; done: number; total: number | null; output: JsonObject; at: string }
  | { state: 'failed'; done: number; total: number | null; error: string; at: string }

export interface WorkerOptions {
  /**
   * Where to keep a `WorkerStatus` up to date: a file (at most two writes a second, plus the
   * last) or an `s3://bucket/key` URL (a PutObject at most every 2 s, plus the first and the
   * last). A final status that cannot be written fails the worker: nobody would see its result.
   */
  statusFile?: string
  /** Where the messages go instead of IPC or stdout (in-process callers, tests). */
  onMessage?(message: Message): Promise<void> | void
  /** Called after each status write that succeeded (tests). */
  onStatus?(status: WorkerStatus): void
  /** The S3 store for an `s3://` status (default a new one). */
  s3?: S3Store
  /** The least time between two S3 status writes while the task runs (default 2000 ms). */
  statusIntervalMs?: number
}

/** Runs a worker invocation; returns the exit code (0 only with a result reported). */
export async function workerMain(argv: readonly string[], options: WorkerOptions = {}): Promise<number> {
  const [task, inputText] = argv
  const base: (message: Message) => Promise<void> = options.onMessage
    ? async (m) => {
        await options.onMessage!(m)
      }
    : messenger()
  let status: StatusSink
  try {
    status = await statusSink(options)
  } catch (error) {
    await base({ type: 'error', error: (error as Error).message })
    return exitCodeOf(error)
  }
  const send = async (message: Message) => {
    status.update(message)
    await base(message)
  }
  /** Ends with the final status written; a final status that could not be written fails the worker. */
  const finish = async (message: Message, code: number): Promise<number> => {
    status.update(message)
    try {
      await status.close()
    } catch (error) {
      await base({ type: 'error', error: (error as Error).message })
      return code === 0 ? 1 : code
    }
    await base(message)
    return code
  }
  const run = task === undefined ? undefined : TASKS[task]
  if (run === undefined || inputText === undefined) {
    const error = `usage: worker <task> <input-json>; tasks: ${Object.keys(TASKS).join(', ')}${task ? ` (not ${task})` : ''}`
    return finish({ type: 'error', error }, 2)
  }
  let input: JsonObject
  try {
    input = JSON.parse(inputText) as JsonObject
  } catch (cause) {
    return finish(
      { type: 'error', error: `the input of task ${task} is not JSON: ${(cause as Error).message}` },
      2,
    )
  }
  let last = 0
  let output: JsonObject
  // a worker started over IPC (the local process pool) stops when its parent is gone
  const parent = options.onMessage || typeof process.send !== 'function' ? undefined : watchParent()
  try {
    output = await run(input, {
      progress(done, total) {
        // at most about ten messages a second, and always the first and the last
        const now = performance.now()
        if (done !== 0 && done !== total && now - last < 100) return
        last = now
        void send({ type: 'progress', done, total })
      },
      // read just before the task completes anything: the parent is checked then, not only on events
      get signal() {
        parent?.check()
        return parent?.signal
      },
    })
  } catch (error) {
    // nobody is left to tell
    if (parent?.signal.aborted) return 1
    return finish(
      { type: 'error', error: error instanceof Error ? error.message : String(error) },
      exitCodeOf(error),
    )
  } finally {
    parent?.close()
  }
  return finish({ type: 'result', output }, 0)
}

/**
 * Watches the process that started this worker over IPC: its signal is aborted when the channel
 * closes (the parent died: the kernel closes its end) or when this process has been re-parented
 * (the parent is gone whatever became of the channel), noticed by `check()` at once and by a poll
 * every 100 ms. A task checks it between batches and before it completes, so a worker of a
 * killed `refresh run` stops within a batch and writes nothing into the dead run's index.
 */
function watchParent(): { signal: AbortSignal; check(): void; close(): void } {
  const controller = new AbortController()
  const ppid = process.ppid
  const gone = (why: string) => {
    if (!controller.signal.aborted) controller.abort(new Error(`the worker's parent (pid ${ppid}) ${why}`))
  }
  const check = () => {
    if (process.ppid !== ppid) gone('is gone')
    else if (!process.connected) gone('closed the channel')
  }
  const onDisconnect = () => gone('closed the channel')
  process.on('disconnect', onDisconnect)
  const timer = setInterval(check, 100)
  timer.unref()
  return {
    signal: controller.signal,
    check,
    close() {
      clearInterval(timer)
      process.off('disconnect', onDisconnect)
    },
  }
}

/** 2 for bad input (a `RefreshError`, such as an AWS SDK package that is not installed), else 1. */
function exitCodeOf(error: unknown): number {
  return isInputError(error) ? 2 : 1
}

interface StatusSink {
  /** Takes a message into the status (written now or later, as the sink's pace allows). */
  update(message: Message): void
  /** Writes the last status; rejects when it could not be written. */
  close(): Promise<void>
}

/** The status sink of the options: none, a file, or an S3 object. The first status is written before it returns. */
async function statusSink(options: WorkerOptions): Promise<StatusSink> {
  const target = options.statusFile
  if (target === undefined) return { update() {}, async close() {} }
  let done = 0
  let total: number | null = null
  let final: WorkerStatus | undefined
  const next = (message: Message): WorkerStatus => {
    const at = new Date().toISOString()
    if (message.type === 'progress') {
      done = message.done
      total = message.total
      return { state: 'running', done, total, at }
    }
    if (message.type === 'result') return { state: 'succeeded', done, total, output: message.output, at }
    return { state: 'failed', done, total, error: message.error, at }
  }
  const first: WorkerStatus = { state: 'running', done, total, at: new Date().toISOString() }

  if (!target.startsWith('s3://')) {
    let lastWrite = 0
    const write = (status: WorkerStatus) => {
      const tmp = `${target}.${process.pid}.tmp`
      try {
        writeFileSync(tmp, JSON.stringify(status))
        renameSync(tmp, target)
      } catch (cause) {
        rmSync(tmp, { force: true })
        throw new Error(`could not write the worker status file ${target}: ${(cause as Error).message}`, {
          cause,
        })
      }
      options.onStatus?.(status)
    }
    write(first)
    return {
      update(message) {
        const status = next(message)
        if (status.state !== 'running') {
          final = status
          return
        }
        const now = performance.now()
        if (done === 0 || done === total || now - lastWrite >= 500) {
          lastWrite = now
          write(status)
        }
      },
      async close() {
        if (final) write(final)
      },
    }
  }

  // S3: one PutObject at a time, the latest state wins; at most one every 2 s while running
  const { S3Store, parseS3ObjectUrl } = await import('../aws/s3.js')
  const { bucket, key } = parseS3ObjectUrl(target)
  const store = options.s3 ?? new S3Store({ where: 'refresh worker --status-file' })
  const put = async (status: WorkerStatus) => {
    try {
      await store.putJson(bucket, key, status)
    } catch (cause) {
      throw new Error(`could not write the worker status ${target}: ${(cause as Error).message}`, { cause })
    }
    options.onStatus?.(status)
  }
  await put(first)
  let lastWrite = performance.now()
  let pending: WorkerStatus | undefined
  let writing: Promise<void> = Promise.resolve()
  let timer: NodeJS.Timeout | undefined
  const flush = () => {
    timer = undefined
    const status = pending
    pending = undefined
    if (!status) return
    lastWrite = performance.now()
    writing = writing
      .then(() => put(status))
      .catch((error: Error) => {
        // a lost progress update costs nothing: the next one (or the final one) replaces it
        process.stderr.write(`refresh worker: ${error.message}\n`)
      })
  }
  return {
    update(message) {
      const status = next(message)
      if (status.state !== 'running') {
        final = status
        return
      }
      pending = status
      const wait = (options.statusIntervalMs ?? 2000) - (performance.now() - lastWrite)
      if (wait <= 0) flush()
      else timer ??= setTimeout(flush, wait)
    },
    async close() {
      if (timer) clearTimeout(timer)
      await writing
      try {
        if (final) await put(final)
      } finally {
        if (!options.s3) store.close()
      }
    },
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
  // a parent that died has closed the channel already: disconnecting again would be an error
  if (process.connected) process.disconnect()
  process.exitCode = code
}
