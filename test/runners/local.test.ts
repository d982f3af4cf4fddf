import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { localProcessRunner } from '../../runners/local.js'
import { runUnits, UnitsFailedError } from '../../runners/run-units.js'
import type { Runner, WorkHandle, WorkUnit } from '../../runners/types.js'
import { tempDir } from '../helpers.js'

/**
 * A stand-in worker, run as a real child process: it reads its behaviour from its input
 * (`{ mode, ms }`), reports progress over IPC and exits the way it is told to.
 */
const SCRIPT = `
const [, , task, json] = process.argv
const input = JSON.parse(json)
const send = (m) => new Promise((r) => process.send(m, undefined, undefined, r))
const main = async () => {
  await send({ type: 'progress', done: 1, total: 2 })
  if (input.mode === 'exit') { process.stderr.write('boom on purpose\\n'); process.exit(4) }
  if (input.mode === 'crash') process.kill(process.pid, 'SIGKILL')
  if (input.mode === 'hang') await new Promise((r) => setTimeout(r, 60_000))
  if (input.mode === 'flaky' && input.attempt < 2) process.exit(5)
  await send({ type: 'progress', done: 2, total: 2 })
  await send({ type: 'result', output: { task, value: input.value ?? null, pid: process.pid } })
  process.disconnect()
}
main()
`

function runnerIn(dir: string, processes = 2) {
  const script = join(dir, 'worker.cjs')
  writeFileSync(script, SCRIPT)
  return localProcessRunner({
    processes,
    killGraceMs: 500,
    command: (unit: WorkUnit) => ({
      file: process.execPath,
      args: [script, unit.task, JSON.stringify({ ...unit.input, attempt: unit.attempt })],
    }),
  })
}

const unit = (id: string, input: WorkUnit['input']): WorkUnit => ({ id, task: 'test', input, attempt: 1 })

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Keeps every handle the runner hands out, with its process id. */
function spyRunner(inner: Runner) {
  const handles: Array<WorkHandle & { pid?: number }> = []
  const runner: Runner = {
    name: inner.name,
    close: () => inner.close(),
    [Symbol.asyncDispose]: () => inner.close(),
    start: (u, l) => {
      const h = inner.start(u, l)
      handles.push(h)
      return h
    },
  }
  return { runner, handles }
}

describe('localProcessRunner', () => {
  it('runs a unit in its own process, with progress and a result', async () => {
    const runner = runnerIn(tempDir())
    const progress: number[] = []
    const handle = runner.start(unit('a', { mode: 'ok', value: 7 }), {
      onProgress: (p) => progress.push(p.done),
    })
    const result = await handle.result
    expect(result.status).toBe('succeeded')
    if (result.status !== 'succeeded') return
    expect(result.output.value).toBe(7)
    expect(result.output.pid).not.toBe(process.pid)
    expect(progress).toEqual([1, 2])
  })

  it('reports a non-zero exit with its code and stderr, and a crash with its signal', async () => {
    const runner = runnerIn(tempDir())
    const exit = await runner.start(unit('x', { mode: 'exit' })).result
    expect(exit).toMatchObject({ status: 'failed', exitCode: 4 })
    if (exit.status === 'failed') expect(exit.error).toMatch(/exited with code 4: boom on purpose/)
    const crash = await runner.start(unit('y', { mode: 'crash' })).result
    expect(crash).toMatchObject({ status: 'failed', signal: 'SIGKILL' })
  })

  it('stop kills the process', async () => {
    const runner = runnerIn(tempDir())
    let pid = 0
    const handle = runner.start(unit('h', { mode: 'hang' }), {
      onProgress: () => {
        pid = (handle as unknown as { pid: number }).pid
      },
    })
    while (pid === 0) await new Promise((r) => setTimeout(r, 10))
    expect(alive(pid)).toBe(true)
    await handle.stop('test')
    expect(await handle.result).toMatchObject({ status: 'stopped', reason: 'test' })
    expect(alive(pid)).toBe(false)
  })

  it('runs at most `processes` units at once; the rest wait', async () => {
    await using runner = runnerIn(tempDir(), 1)
    const a = runner.start(unit('a', { mode: 'hang' }))
    const b = runner.start(unit('b', { mode: 'ok' }))
    await new Promise((r) => setTimeout(r, 300))
    expect(b.where).toBeUndefined()
    await a.stop()
    expect((await b.result).status).toBe('succeeded')
  })
})

describe('runUnits', () => {
  it('retries a failed unit alone; the others run once', async () => {
    const runner = runnerIn(tempDir())
    const attempts: string[] = []
    const out = await runUnits(
      runner,
      [
        { id: 'u0', task: 't', input: { mode: 'ok', value: 0 } },
        { id: 'u1', task: 't', input: { mode: 'flaky', value: 1 } },
        { id: 'u2', task: 't', input: { mode: 'ok', value: 2 } },
      ],
      {
        maxAttempts: 3,
        retryDelayMs: 0,
        onAttempt: (u, r) => attempts.push(`${u.id}#${u.attempt}:${r.status}`),
      },
    )
    expect(out.map((o) => o.output.value)).toEqual([0, 1, 2])
    expect(out.map((o) => o.attempts)).toEqual([1, 2, 1])
    expect(attempts.sort()).toEqual(['u0#1:succeeded', 'u1#1:failed', 'u1#2:succeeded', 'u2#1:succeeded'])
  })

  it('fails after the last attempt and stops the units still running', async () => {
    const { runner, handles } = spyRunner(runnerIn(tempDir(), 3))
    const error = await runUnits(
      runner,
      [
        { id: 'slow', task: 't', input: { mode: 'hang' } },
        { id: 'bad', task: 't', input: { mode: 'exit' } },
      ],
      { maxAttempts: 2, retryDelayMs: 0 },
    ).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UnitsFailedError)
    expect((error as Error).message).toMatch(/bad failed after 2 attempts: .*exited with code 4/)
    const slow = handles.find((h) => h.unit.id === 'slow')!
    expect(await slow.result).toMatchObject({ status: 'stopped' })
    expect(alive(slow.pid!)).toBe(false)
  })

  it('on abort, stops every unit and rejects with the reason', async () => {
    const { runner, handles } = spyRunner(runnerIn(tempDir(), 3))
    const controller = new AbortController()
    let started = 0
    const promise = runUnits(
      runner,
      [1, 2, 3].map((i) => ({ id: `h${i}`, task: 't', input: { mode: 'hang' } })),
      {
        maxAttempts: 1,
        retryDelayMs: 0,
        signal: controller.signal,
        onProgress: () => {
          started++
        },
      },
    )
    while (started < 3) await new Promise((r) => setTimeout(r, 10))
    const pids = handles.map((h) => h.pid!)
    expect(pids.every(alive)).toBe(true)
    controller.abort(new Error('canceled by test'))
    await expect(promise).rejects.toThrow('canceled by test')
    expect(pids.some(alive)).toBe(false)
  })
})
