import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { interruptHandler } from '../../cli/execute.js'
import type { Io } from '../../cli/io.js'
import { openStore } from '../../core/store/sqlite.js'
import { tempDir } from '../helpers.js'

class ExitCalled extends Error {
  readonly code: number | undefined
  constructor(code: number | undefined) {
    super(`process.exit(${code})`)
    this.code = code
  }
}

afterEach(() => {
  vi.restoreAllMocks()
})

function io(): Io & { errors: string[] } {
  const errors: string[] = []
  return { out: () => {}, err: (line) => errors.push(line), isTTY: false, cwd: '.', errors }
}

describe('Ctrl-C during a run', () => {
  it('once: aborts the run signal and says so; twice: closes the run as canceled and exits 130', () => {
    const file = join(tempDir(), 'refresh.db')
    const store = openStore(file)
    const now = Date.now()
    store.createRun({
      id: 'run-interrupted-01',
      status: 'started',
      selection: '*',
      plan: ['a', 'b'],
      config: {},
      now,
      owner: { pid: process.pid, host: 'here' },
    })
    store.write({
      events: [],
      steps: [
        {
          runId: 'run-interrupted-01',
          key: 'a',
          status: 'running',
          attempts: 1,
          startedAt: now,
          endedAt: null,
          error: null,
          reason: null,
        },
      ],
      attempts: [],
      materializations: [],
    })
    const out = io()
    const controller = new AbortController()
    const handler = interruptHandler({
      store,
      controller,
      runId: () => 'run-interrupted-01',
      view: () => undefined,
      io: out,
      output: 'plain',
    })

    handler.onSignal('SIGINT')
    expect(handler.count).toBe(1)
    expect(controller.signal.aborted).toBe(true)
    expect((controller.signal.reason as Error).message).toBe('interrupted (Ctrl-C)')
    expect(out.errors).toEqual(['canceling... (SIGINT; press Ctrl-C again to stop at once)'])
    expect(store.getRun('run-interrupted-01')!.status).toBe('started')

    const exit = vi.spyOn(process, 'exit').mockImplementation((code) => {
      throw new ExitCalled(code as number | undefined)
    })
    expect(() => handler.onSignal('SIGINT')).toThrow(ExitCalled)
    expect(exit).toHaveBeenCalledWith(130)
    expect(out.errors.at(-1)).toBe('stopped at once; run run-interrupted-01 is marked canceled.')
    expect(store.isOpen).toBe(false)

    using reopened = openStore(file)
    expect(reopened.getRun('run-interrupted-01')!.status).toBe('canceled')
    expect(reopened.getSteps('run-interrupted-01').map((s) => s.status)).toEqual(['canceled', 'canceled'])
    const end = reopened.getEvents('run-interrupted-01', { types: ['run:end'] })
    expect(end).toHaveLength(1)
    expect(end[0]).toMatchObject({ type: 'run:end', status: 'canceled' })
  })
})
