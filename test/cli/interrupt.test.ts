import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { interruptHandler } from '../../cli/execute.js'
import type { Io } from '../../cli/io.js'
import { openStore } from '../../core/store/open.js'
import { tempDir } from '../helpers.js'

afterEach(() => {
  vi.restoreAllMocks()
})

function io(): Io & { errors: string[] } {
  const errors: string[] = []
  return { out: () => {}, err: (line) => errors.push(line), isTTY: false, cwd: '.', errors }
}

describe('Ctrl-C during a run', () => {
  it('once: aborts the run signal and says so; twice: closes the run as canceled and exits 130', async () => {
    const file = join(tempDir(), 'refresh.db')
    const store = await openStore(file)
    const now = Date.now()
    await store.createRun({
      id: 'run-interrupted-01',
      status: 'started',
      selection: '*',
      plan: ['a', 'b'],
      config: {},
      now,
      owner: { pid: process.pid, host: 'here' },
    })
    await store.write({
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
    expect((await store.getRun('run-interrupted-01'))!.status).toBe('started')

    const exited = new Promise<number | undefined>((resolve) => {
      vi.spyOn(process, 'exit').mockImplementation((code) => {
        resolve(code as number | undefined)
        return undefined as never
      })
    })
    handler.onSignal('SIGINT')
    expect(await exited).toBe(130)
    expect(out.errors.at(-1)).toBe('stopped at once; run run-interrupted-01 is marked canceled.')
    expect(store.isOpen).toBe(false)

    await using reopened = await openStore(file)
    expect((await reopened.getRun('run-interrupted-01'))!.status).toBe('canceled')
    expect((await reopened.getSteps('run-interrupted-01')).map((s) => s.status)).toEqual([
      'canceled',
      'canceled',
    ])
    const end = await reopened.getEvents('run-interrupted-01', { types: ['run:end'] })
    expect(end).toHaveLength(1)
    expect(end[0]).toMatchObject({ type: 'run:end', status: 'canceled' })
  })
})
