/**
 * Runs launched by the daemon as ECS tasks, for real: the daemon (in this process, or a real
 * `refresh daemon`) launches through `ecsRunLauncher` against the ECS harness, whose RunTask
 * starts the real `refresh launch RUN_ID` process with the task definition's environment
 * (REFRESH_STORE, as ECS gives it from Secrets Manager), whose DescribeTasks reports that process
 * RUNNING, then STOPPED with its exit code, and whose StopTask sends it SIGTERM, then SIGKILL after
 * the task definition's stop timeout. The store is a real Postgres server, shared by the daemon
 * and the tasks as it is in production.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ListTasksCommand, StopTaskCommand } from '@aws-sdk/client-ecs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadResolved } from '../../cli/config-options.js'
import { AssetGraph } from '../../core/graph.js'
import { newRunId } from '../../core/ids.js'
import type { RunLauncher } from '../../core/launcher.js'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import type { RunRecord } from '../../core/store/types.js'
import { Daemon, type DaemonOptions } from '../../daemon/daemon.js'
import { ecsRunLauncher } from '../../daemon/ecs-launcher.js'
import type { DaemonEvent } from '../../daemon/events.js'
import { checkInstigators } from '../../sensors/definitions.js'
import { CLI, ROOT, run, tempDir, until } from '../helpers.js'
import { startPostgres, type TestPostgres } from '../postgres.js'
import { alive, CLUSTER, EcsHarness } from '../runners/ecs-harness.js'
import { readRecords } from '../runners/records.js'

const RUN_DEF = {
  family: 'refresh-run',
  arn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/refresh-run:3',
  container: 'refresh',
}

const CONFIG = `
import { asset, defineConfig, ecsRunLauncher, whenMaterialized } from 'refresh'
const wait = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
  })
const reindex = asset({
  key: 'reindex',
  async materialize(ctx) {
    await wait(Number(process.env.REINDEX_MS ?? 0), ctx.signal)
    return { docs: 1, pid: process.pid }
  },
})
const snapshot = asset({
  key: 'snapshot',
  deps: ['reindex'],
  async materialize(ctx) {
    // a step that does not yield (CPU-bound work): its process cannot see a cancel
    // (after a moment, for the step's start to be written)
    const block = Number(process.env.SNAPSHOT_BLOCK_MS ?? 0)
    if (block > 0) {
      await new Promise((resolve) => setTimeout(resolve, 500))
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, block)
    }
    await wait(Number(process.env.SNAPSHOT_MS ?? 0), ctx.signal)
    return { pid: process.pid }
  },
})
export default defineConfig({
  assets: [reindex, snapshot],
  sensors: [
    whenMaterialized('reindex', {
      name: 'snapshot_after_reindex',
      launch: 'snapshot+',
      guard: { concurrency: 1, onConflict: 'coalesce' },
    }),
  ],
  environments: {
    aws: () => ({
      runLauncher: ecsRunLauncher({
        cluster: '${CLUSTER}',
        taskDefinition: '${RUN_DEF.family}',
        region: 'us-east-1',
        pollIntervalMs: 100,
      }),
    }),
  },
})
`

let pg: TestPostgres
beforeAll(async () => {
  pg = await startPostgres()
}, 180_000)
afterAll(async () => {
  await pg?.stop()
})

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function project(): string {
  const dir = tempDir()
  writeFileSync(join(dir, 'refresh.config.ts'), CONFIG)
  return dir
}

/** The ECS harness for run tasks: `refresh launch` processes in `dir`, the store from the task definition. */
function harness(dir: string, url: string): EcsHarness {
  const h = new EcsHarness({
    stateDir: join(dir, 'ecs'),
    entryPoint: [],
    taskDefinition: RUN_DEF,
    taskEnvironment: { REFRESH_STORE: url },
    cwd: dir,
    stopTimeoutMs: 1_000,
  })
  cleanups.push(() => h.restore())
  return h
}

function launcherFor(h: EcsHarness, environment: Record<string, string> = {}): RunLauncher {
  return ecsRunLauncher({
    cluster: CLUSTER,
    taskDefinition: RUN_DEF.family,
    client: h.client,
    launchType: 'FARGATE',
    networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-1'], securityGroups: ['sg-1'] } },
    environment,
    pollIntervalMs: 100,
    backoffMs: 5,
  })
}

interface Running {
  store: RunStore
  events: DaemonEvent[]
  stop(): Promise<void>
}

/** A daemon in this process, as `refresh daemon` makes it, on the config in `dir`. */
async function startDaemon(
  dir: string,
  url: string,
  launcher: RunLauncher,
  options: Partial<DaemonOptions> & { sensors?: boolean } = {},
): Promise<Running> {
  const { loaded, resolved } = await loadResolved({}, dir)
  const instigators =
    options.sensors === false
      ? []
      : checkInstigators(loaded.config.sensors ?? [], loaded.config.schedules ?? [], loaded.file)
  const store = await openStore(url)
  const events: DaemonEvent[] = []
  const daemon = new Daemon({
    store,
    graph: AssetGraph.build(resolved.assets),
    runConfig: resolved.config,
    guards: resolved.guards,
    instigators,
    launcher,
    configFile: loaded.file,
    onEvent: (e) => events.push(e),
    loopMs: 50,
    graceMs: 5_000,
    cancelGraceMs: 3_000,
    ...options,
  })
  const done = daemon.run()
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    daemon.stop()
    await done
    await launcher.close()
    await store.close()
  }
  cleanups.push(stop)
  return { store, events, stop }
}

function queue(store: RunStore, selection: string, plan: string[], origin = 'schedule:nightly') {
  const id = newRunId(Date.now())
  return store.requestRun({ id, selection, plan, config: {}, origin, now: Date.now() }).then((outcome) => {
    expect(outcome).toEqual({ outcome: 'created', runId: id })
    return id
  })
}

async function runEnded(store: RunStore, runId: string, ms = 30_000): Promise<RunRecord> {
  let run: RunRecord | undefined
  await until(
    async () => {
      run = await store.getRun(runId)
      return run !== undefined && ['success', 'failure', 'canceled'].includes(run.status)
    },
    `run ${runId} to end`,
    ms,
  )
  return run!
}

async function stepRunning(store: RunStore, runId: string, step: string): Promise<void> {
  await until(
    async () => (await store.getSteps(runId)).some((s) => s.key === step && s.status === 'running'),
    `step ${step} of ${runId} to run`,
  )
}

describe('the daemon launches runs as ECS tasks (real `refresh launch` processes, Postgres store)', () => {
  it('launches a queued run, then the run its sensor requests, each as a task against the shared store', async () => {
    const dir = project()
    const url = await pg.freshUrl()
    const h = harness(dir, url)
    const daemon = await startDaemon(dir, url, launcherFor(h, { LOG_FORMAT: 'plain' }))
    const scheduled = await queue(daemon.store, 'reindex', ['reindex'])
    expect(await runEnded(daemon.store, scheduled)).toMatchObject({ status: 'success' })
    let sensed: RunRecord | undefined
    await until(async () => {
      sensed = (await daemon.store.listRuns()).find((r) => r.origin === 'sensor:snapshot_after_reindex')
      return sensed?.status === 'success'
    }, 'the sensor’s run to succeed')
    const runs = [(await daemon.store.getRun(scheduled))!, sensed!]
    await daemon.stop()

    // each run executed in its task's own process
    const tasks = [...h.tasks.values()]
    expect(tasks).toHaveLength(2)
    expect(runs.map((r) => r.ownerPid).sort()).toEqual(tasks.map((t) => t.pid).sort())
    for (const t of tasks) expect(t.argv.slice(1)).toEqual([CLI, 'launch', t.startedBy])

    // one pinned revision; each task started by its run, tagged, with its token
    expect(h.calls.DescribeTaskDefinition).toBe(1)
    expect(h.runTaskInputs.map((i) => i.taskDefinition)).toEqual([RUN_DEF.arn, RUN_DEF.arn])
    expect(h.runTaskInputs.map((i) => i.startedBy)).toEqual([scheduled, sensed!.id])
    for (const input of h.runTaskInputs) {
      expect(input.clientToken).toMatch(/^[0-9a-f]{64}$/)
      const tags = Object.fromEntries((input.tags ?? []).map((t) => [t.key, t.value]))
      expect(tags).toMatchObject({ 'refresh:run': input.startedBy, 'refresh:managed-by': 'refresh' })
      expect(input.overrides?.containerOverrides?.[0]).toEqual({
        name: 'refresh',
        command: ['launch', input.startedBy],
        environment: [{ name: 'LOG_FORMAT', value: 'plain' }],
      })
    }
    expect(Object.fromEntries((h.runTaskInputs[1]!.tags ?? []).map((t) => [t.key, t.value]))).toMatchObject({
      'refresh:origin': 'sensor:snapshot_after_reindex',
    })

    // the daemon said where each run went and how it ended
    const launched = daemon.events.filter((e) => e.type === 'run:launched')
    expect(launched.map((e) => e.task)).toEqual(tasks.map((t) => t.arn))
    expect(launched.every((e) => e.pid === undefined)).toBe(true)
    const exited = daemon.events.filter((e) => e.type === 'run:exited')
    expect(exited.map((e) => [e.status, e.code])).toEqual([
      ['success', 0],
      ['success', 0],
    ])

    // the store's password: not in any ECS request, command line or daemon event
    const sent = JSON.stringify(h.mock.calls().map((c) => c.args[0].input))
    for (const text of [sent, JSON.stringify(tasks.map((t) => t.argv)), JSON.stringify(daemon.events)]) {
      expect(text).not.toContain(pg.password)
      expect(text).not.toContain(url)
    }
  })

  it('cancel: the daemon stops the task with StopTask, the run ends canceled, and no task outlives it', async () => {
    const dir = project()
    const url = await pg.freshUrl()
    const h = harness(dir, url)
    // a step that never yields: only stopping its task stops it
    const daemon = await startDaemon(dir, url, launcherFor(h, { SNAPSHOT_BLOCK_MS: '60000' }), {
      sensors: false,
    })
    const runId = await queue(daemon.store, 'reindex+', ['reindex', 'snapshot'])
    await stepRunning(daemon.store, runId, 'snapshot')
    await new Promise((r) => setTimeout(r, 1_000)) // the step blocks its process by now
    const task = [...h.tasks.values()][0]!
    expect(await daemon.store.requestCancel(runId, Date.now())).toBe('started')

    const ended = await runEnded(daemon.store, runId)
    expect(ended.status).toBe('canceled')
    expect((await daemon.store.getSteps(runId)).map((s) => [s.key, s.status])).toEqual([
      ['reindex', 'succeeded'],
      ['snapshot', 'canceled'],
    ])
    const stops = h.mock.commandCalls(StopTaskCommand).map((c) => c.args[0].input)
    expect(stops).toEqual([expect.objectContaining({ cluster: CLUSTER, task: task.arn })])
    await until(() => h.running().length === 0 && !alive(task.pid!), 'the task to be gone')
    expect(daemon.events).toContainEqual(
      expect.objectContaining({ type: 'run:canceling', runId, reason: 'cancel requested' }),
    )
    expect(daemon.events).toContainEqual(expect.objectContaining({ type: 'run:exited', runId, code: 137 }))
    await daemon.stop()
  })

  it('a task that dies: seen stopped through DescribeTasks, its run recovered as interrupted, then resumed', async () => {
    const dir = project()
    const url = await pg.freshUrl()
    const h = harness(dir, url)
    const daemon = await startDaemon(dir, url, launcherFor(h, { SNAPSHOT_MS: '60000' }), { sensors: false })
    const runId = await queue(daemon.store, 'reindex+', ['reindex', 'snapshot'])
    await stepRunning(daemon.store, runId, 'snapshot')
    const task = [...h.tasks.values()][0]!
    process.kill(task.pid!, 'SIGKILL')

    const ended = await runEnded(daemon.store, runId)
    expect(ended).toMatchObject({ status: 'failure', error: { name: 'InterruptedError' } })
    expect(daemon.events).toContainEqual(
      expect.objectContaining({
        type: 'run:exited',
        runId,
        status: 'started',
        code: 137,
        stderrTail: expect.stringMatching(/EssentialContainerExited/),
      }),
    )
    // the daemon reports the recovery after the store has the run closed: wait for its event
    await until(
      () => daemon.events.some((e) => e.type === 'run:recovered' && e.runId === runId),
      'the recovery event',
    )
    expect(daemon.events).toContainEqual(
      expect.objectContaining({ type: 'run:recovered', runId, status: 'failure' }),
    )
    // the launcher looked for tasks of the run left running (none: it died), and stopped none
    await until(() => (h.calls.ListTasks ?? 0) > 0, 'the launcher’s recovery')
    expect(h.mock.commandCalls(ListTasksCommand)[0]!.args[0].input).toMatchObject({ startedBy: runId })
    expect(h.calls.StopTask).toBeUndefined()
    await daemon.stop()

    // resumable from failure: reindex is reused, snapshot runs
    const retry = await run([CLI, 'retry', runId, '--plain'], { cwd: dir, env: { REFRESH_STORE: url } })
    expect(retry.code, retry.stderr + retry.stdout).toBe(0)
    await using store = await openStore(url)
    const child = (await store.listRuns()).find((r) => r.parentRunId === runId)
    expect(child).toMatchObject({ status: 'success', plan: ['snapshot'], reused: { reindex: runId } })
  })

  it('--max-runs: at most N runs at once, described together; the rest wait their turn', async () => {
    const dir = project()
    const url = await pg.freshUrl()
    const h = harness(dir, url)
    const daemon = await startDaemon(dir, url, launcherFor(h, { REINDEX_MS: '1200' }), {
      sensors: false,
      maxRuns: 2,
    })
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push(await queue(daemon.store, 'reindex', ['reindex']))
    const runs = await Promise.all(ids.map((id) => runEnded(daemon.store, id, 60_000)))
    expect(runs.map((r) => r.status)).toEqual(Array(5).fill('success'))
    expect(maxOverlap(runs)).toBe(2)
    expect(h.calls.RunTask).toBe(5)
    // the two tasks in flight are described in one call
    const described = h.mock.calls().filter((c) => c.args[0].constructor.name === 'DescribeTasksCommand')
    expect(described.some((c) => (c.args[0].input as { tasks: string[] }).tasks.length === 2)).toBe(true)
    expect(daemon.events).toContainEqual(expect.objectContaining({ type: 'runs:held', maxRuns: 2 }))
    await daemon.stop()
  })
})

/** The most runs that were started at the same moment. */
function maxOverlap(runs: RunRecord[]): number {
  const edges = runs.flatMap((r) => [
    { at: r.startedAt!, d: 1 },
    { at: r.endedAt!, d: -1 },
  ])
  edges.sort((a, b) => a.at - b.at || a.d - b.d)
  let now = 0
  let most = 0
  for (const e of edges) {
    now += e.d
    most = Math.max(most, now)
  }
  return most
}

describe('refresh daemon with `runLauncher: ecsRunLauncher(...)` (a real daemon process)', () => {
  it('launches each run as a task with `--env`; the store reaches tasks and runs only through REFRESH_STORE', async () => {
    const dir = project()
    const url = await pg.freshUrl()
    const stateDir = join(dir, 'ecs')
    const standIn = {
      stateDir,
      entryPoint: [],
      taskDefinition: RUN_DEF,
      taskEnvironment: { REFRESH_STORE: url },
      cwd: dir,
    }
    const daemon = spawnDaemon(dir, ['--env', 'aws', '--max-runs', '3'], {
      REFRESH_STORE: url,
      NODE_OPTIONS: `--import ${pathToFileURL(join(ROOT, 'test', 'fixtures', 'ecs-run-preload.mjs')).href}`,
      REFRESH_TEST_ECS_RUNS: JSON.stringify(standIn),
    })
    await daemon.waitFor(/holding the daemon lease/)
    await using store = await openStore(url)
    const runId = await queue(store, 'reindex', ['reindex'])
    await daemon.waitFor(
      new RegExp(`launched run ${runId} \\(reindex, from schedule:nightly\\) as ECS task \\d+`),
    )
    await daemon.waitFor(new RegExp(`run ${runId} ended success \\(exit 0\\)`))
    await daemon.waitFor(/run \S+ ended success/g, 2)
    // the daemon's own command line: the store is in its environment
    expect(readFileSync(`/proc/${daemon.child.pid}/cmdline`, 'utf8')).not.toContain(pg.password)
    daemon.child.kill('SIGTERM')
    expect((await daemon.exited).code).toBe(0)

    const tasks = readRecords<{ startedBy: string; command: string[]; argv: string[]; pid: number }>(
      join(stateDir, 'tasks'),
    )
    const first = tasks.find((t) => t.startedBy === runId)!
    expect(first.command).toEqual(['launch', runId, '--env', 'aws'])
    expect((await store.getRun(runId))?.ownerPid).toBe(first.pid)
    // the sensor's run too, as a task
    const sensed = (await store.listRuns()).find((r) => r.origin === 'sensor:snapshot_after_reindex')
    expect(sensed?.status).toBe('success')
    expect(tasks.map((t) => t.startedBy).sort()).toEqual([runId, sensed!.id].sort())
    const everything = JSON.stringify(tasks) + daemon.output()
    expect(everything).not.toContain(pg.password)
  })

  it('the default local launcher gives `refresh launch` the store in REFRESH_STORE, never on its command line', async () => {
    const dir = project()
    const url = await pg.freshUrl()
    const daemon = spawnDaemon(dir, [], { REFRESH_STORE: url, REINDEX_MS: '60000' })
    await daemon.waitFor(/holding the daemon lease/)
    await using store = await openStore(url)
    const runId = await queue(store, 'reindex', ['reindex'])
    const line = await daemon.waitFor(new RegExp(`launched run ${runId} .* as pid \\d+`))
    const pid = Number(/pid (\d+)/.exec(line)![1])
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    expect(argv).toContain('launch')
    expect(argv).not.toContain('--store')
    expect(argv.join(' ')).not.toContain(pg.password)
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain(`REFRESH_STORE=${url}`)
    await stepRunning(store, runId, 'reindex')
    // `refresh cancel` through the store; the daemon tells the run's process too
    const cancel = await run([CLI, 'cancel', runId], { cwd: dir, env: { REFRESH_STORE: url } })
    expect(cancel.code, cancel.stderr).toBe(0)
    expect(await runEnded(store, runId)).toMatchObject({ status: 'canceled' })
    await until(() => !alive(pid), 'the run’s process to exit')
    daemon.child.kill('SIGTERM')
    expect((await daemon.exited).code).toBe(0)
    expect(daemon.output()).not.toContain(pg.password)
  })
})

interface SpawnedDaemon {
  child: ChildProcess
  output(): string
  waitFor(pattern: RegExp, count?: number, timeoutMs?: number): Promise<string>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function spawnDaemon(dir: string, args: string[], env: Record<string, string>): SpawnedDaemon {
  const child = spawn(process.execPath, [CLI, 'daemon', '--grace-seconds', '5', ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('close', (code, signal) => r({ code, signal })),
  )
  return {
    child,
    output: () => out,
    exited,
    async waitFor(pattern, count = 1, timeoutMs = 30_000) {
      let found = ''
      await until(
        () => {
          const all = [...out.matchAll(new RegExp(pattern.source, 'g'))]
          found = all[count - 1]?.[0] ?? ''
          return all.length >= count
        },
        `${pattern} in the daemon's output:\n${out}`,
        timeoutMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${out}`)
      })
      return found
    },
  }
}
