import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { assetCheck } from '../../core/checks.js'
import { newRunId } from '../../core/ids.js'
import { materialize } from '../../core/materialize.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { AlertWatcher, readFailures } from '../../daemon/alerts.js'
import { noop, tempDir } from '../helpers.js'

const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r))
})

async function webhook(): Promise<{ url: string; calls: Array<Record<string, unknown>> }> {
  const calls: Array<Record<string, unknown>> = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (d) => {
      body += d
    })
    req.on('end', () => {
      calls.push(JSON.parse(body) as Record<string, unknown>)
      res.writeHead(200).end()
    })
  })
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, calls }
}

/** A finished run whose `replicas` step failed with `message`. */
async function failedRun(store: RunStore, message: string): Promise<string> {
  const now = Date.now()
  const id = newRunId(now)
  await store.createRun({
    id,
    status: 'started',
    selection: 'snapshot+',
    plan: ['snapshot', 'replicas'],
    config: {},
    now,
  })
  await store.write({
    events: [],
    steps: [
      {
        runId: id,
        key: 'snapshot',
        status: 'succeeded',
        attempts: 1,
        startedAt: now,
        endedAt: now,
        error: null,
        reason: null,
      },
      {
        runId: id,
        key: 'replicas',
        status: 'failed',
        attempts: 1,
        startedAt: now,
        endedAt: now + 1,
        error: { name: 'Error', message },
        reason: null,
      },
    ],
    attempts: [],
    materializations: [],
  })
  await store.finishRun(id, 'failure', now + 1)
  return id
}

describe('AlertWatcher (a real store file, a local webhook)', () => {
  it('reports a replica rollback and the run failure once each, with the run id and commands', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const watcher = new AlertWatcher({ store, config: { webhook: { url: hook.url } } })
    await watcher.poll(Date.now() - 1)
    const id = await failedRun(
      store,
      'replica replica-2 failed while switching to s2: no rows; rolled back replica-1',
    )
    await watcher.poll(Date.now())
    await watcher.drain()
    await watcher.poll(Date.now())
    await watcher.drain()
    expect(hook.calls.map((c) => [c.event, c.runId])).toEqual([
      ['replica_rollback', id],
      ['run_failure', id],
    ])
    expect(hook.calls[1]!.commands).toContain(`refresh retry ${id}`)
    // a new watcher on the same store (a restarted daemon) does not repeat them
    const again = new AlertWatcher({ store, config: { webhook: { url: hook.url } } })
    await again.poll(Date.now())
    await again.drain()
    expect(hook.calls).toHaveLength(2)
  })

  it('reports failed checks (a warning of a successful run too) as check_failed; a blocking one also fails the run', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const watcher = new AlertWatcher({ store, config: { webhook: { url: hook.url } } })
    await watcher.poll(Date.now() - 1)
    const assets = [noop('table'), noop('report', ['table'])]
    const warn = assetCheck({
      asset: 'table',
      name: 'fresh',
      severity: 'warn',
      evaluate: () => ({ passed: false }),
    })
    const warned = await materialize(assets, { store, checks: [warn] })
    expect(warned.status).toBe('success')
    const passing = await materialize(assets, {
      store,
      checks: [assetCheck({ asset: 'table', name: 'fresh', evaluate: () => ({ passed: true }) })],
    })
    expect(passing.status).toBe('success')
    const blocking = assetCheck({
      asset: 'table',
      name: 'has_rows',
      blocking: true,
      evaluate: () => {
        throw new Error('no table')
      },
    })
    const stopped = await materialize(assets, { store, checks: [blocking] })
    expect(stopped.status).toBe('failure')
    await watcher.poll(Date.now() + 1)
    await watcher.drain()
    expect(hook.calls.map((c) => [c.event, c.runId])).toEqual([
      ['check_failed', warned.runId],
      ['check_failed', stopped.runId],
      ['run_failure', stopped.runId],
    ])
    expect(hook.calls[0]!.text).toMatch(/check failed: table:fresh \(warning\)/)
    expect(hook.calls[1]!.text).toMatch(/table:has_rows \(blocking: no table\)/)
    expect(hook.calls[2]!.text).toMatch(/failed: check table:has_rows failed/)
  })

  it('reports a sensor after N failed ticks in a row, once per streak of N', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const hook = await webhook()
    const watcher = new AlertWatcher({
      store,
      config: { webhook: { url: hook.url, events: ['sensor_failing'] }, sensorErrorThreshold: 2 },
      sensors: ['exports'],
    })
    const now = Date.now()
    await store.ensureInstigator('exports', 'sensor', now)
    await watcher.poll(now)
    const fail = (t: number) =>
      store.commitTicks([
        {
          instigator: 'exports',
          kind: 'sensor',
          tickTime: t,
          startedAt: t,
          endedAt: t,
          status: 'failure',
          error: { name: 'Error', message: 'bucket not found' },
        },
      ])
    await fail(now + 1)
    await watcher.poll(now + 1)
    await fail(now + 2)
    await watcher.poll(now + 2)
    await watcher.poll(now + 3)
    await watcher.drain()
    expect(hook.calls.map((c) => [c.event, c.name])).toEqual([['sensor_failing', 'exports']])
    expect(hook.calls[0]!.text).toMatch(/sensor exports failed 2 ticks in a row: bucket not found/)
  })

  it('an unreachable webhook: retried, then recorded without its URL', async () => {
    await using store = await openStore(join(tempDir(), 'refresh.db'))
    const closed = await webhook()
    await new Promise((r) => servers.pop()!.close(r))
    const url = closed.url.replace('/hook', '/hook/SECRET-TOKEN')
    const sent: string[] = []
    const watcher = new AlertWatcher({
      store,
      config: { webhook: { url } },
      delivery: { attempts: 2, backoffMs: 10 },
      onSent: (alert, failures) => sent.push(`${alert.event}: ${failures.map((f) => f.error).join()}`),
    })
    await watcher.poll(Date.now() - 1)
    const id = await failedRun(store, 'replica replica-1 did not answer')
    await watcher.poll(Date.now())
    await watcher.drain()
    const failures = await readFailures(store)
    expect(failures).toMatchObject([{ event: 'run_failure', runId: id, target: 'webhook', attempts: 2 }])
    expect(failures[0]!.error).toMatch(/fetch failed/)
    expect(JSON.stringify(failures) + sent.join()).not.toContain('SECRET-TOKEN')
    // given up on: out of the outbox, not retried forever
    expect(JSON.parse((await store.getSetting('alerts:state'))!.value).outbox).toEqual([])
  })
})
