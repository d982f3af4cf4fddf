/**
 * The ECS run launcher on its own, against the ECS harness in simulated mode (no process, no
 * store): its options, what its RunTask requests carry and never carry, batched DescribeTasks,
 * StopTask, failures to start. The runs it launches for real are in ecs-runs.test.ts.
 */
import { join } from 'node:path'
import { DescribeTasksCommand, RunTaskCommand, StopTaskCommand } from '@aws-sdk/client-ecs'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveEnvironment, validateConfig } from '../../core/config.js'
import { ConfigError } from '../../core/errors.js'
import type { LaunchedRun, LaunchRequest } from '../../core/launcher.js'
import type { RunRecord } from '../../core/store/types.js'
import { type EcsRunLauncherOptions, ecsRunLauncher, launchToken } from '../../daemon/ecs-launcher.js'
import { noop, tempDir, until } from '../helpers.js'
import { CLUSTER, EcsHarness, type HarnessOptions } from '../runners/ecs-harness.js'

const RUN_DEF = {
  family: 'refresh-run',
  arn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/refresh-run:3',
  container: 'refresh',
}
const STORE = 'postgres://refresh:s3cret-pw@db.internal:5432/refresh'

const harnesses: EcsHarness[] = []
afterEach(() => {
  for (const h of harnesses.splice(0)) h.restore()
})

function setup(harness: Partial<HarnessOptions> = {}, options: Partial<EcsRunLauncherOptions> = {}) {
  const h = new EcsHarness({
    stateDir: join(tempDir(), 'ecs'),
    mode: 'simulated',
    simulate: () => ({ ms: 150, output: {} }),
    taskDefinition: RUN_DEF,
    ...harness,
  })
  harnesses.push(h)
  const launcher = ecsRunLauncher({
    cluster: CLUSTER,
    taskDefinition: RUN_DEF.family,
    client: h.client,
    launchType: 'FARGATE',
    networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-1'], securityGroups: ['sg-1'] } },
    pollIntervalMs: 50,
    backoffMs: 5,
    ...options,
  })
  const errors: string[] = []
  const launch = (run: RunRecord, environment?: string): LaunchedRun =>
    launcher.launch(request(run, environment, (m) => errors.push(m)))
  return { harness: h, launcher, launch, errors }
}

function request(
  run: RunRecord,
  environment: string | undefined,
  onError: (m: string) => void,
): LaunchRequest {
  return { run, environment, configFile: '/srv/refresh.config.ts', storeLocation: STORE, onError }
}

let seq = 0
function queued(extra: Partial<RunRecord> = {}): RunRecord {
  const id = `run${(++seq).toString().padStart(4, '0')}`
  return {
    id,
    status: 'queued',
    selection: 'snapshot+',
    plan: ['snapshot'],
    reused: {},
    config: {},
    tags: {},
    origin: 'sensor:snapshot_after_reindex',
    runKey: null,
    parentRunId: null,
    rootRunId: null,
    partitionKey: null,
    createdAt: 1,
    startedAt: null,
    endedAt: null,
    ownerPid: null,
    ownerHost: null,
    heartbeatAt: null,
    cancelRequestedAt: null,
    error: null,
    guard: null,
    guardLimit: null,
    launchedBy: null,
    ...extra,
  }
}

describe('ecsRunLauncher options', () => {
  const base = { cluster: 'refresh', taskDefinition: 'refresh-run' }

  it.each([
    [{ taskDefinition: 'refresh-run' }, /`cluster` is required/],
    [{ cluster: 'refresh' }, /`taskDefinition` is required/],
    [{ ...base, environment: { REFRESH_STORE: STORE } }, /must not set REFRESH_STORE.*secrets/],
    [
      { ...base, environment: { DATABASE_URL: STORE } },
      /environment.DATABASE_URL` holds a URL with a password/,
    ],
    [{ ...base, launchType: 'FARGATE', capacityProviderStrategy: [] }, /not both/],
    [{ ...base, launchType: 'LAMBDA' }, /`launchType` must be one of/],
    [{ ...base, pollIntervalMs: 0 }, /`pollIntervalMs` must be a whole number/],
    [{ ...base, placementAttempts: 1.5 }, /`placementAttempts` must be a whole number/],
    [{ ...base, command: ['launch'] }, /`command` must be a function/],
  ])('%o is refused with a ConfigError', (options, message) => {
    const make = () => ecsRunLauncher(options as unknown as EcsRunLauncherOptions)
    expect(make).toThrow(ConfigError)
    expect(make).toThrow(message)
  })

  it('is a config’s `runLauncher`, at the top or in an environment; anything else is refused', () => {
    const launcher = ecsRunLauncher(base)
    const config = validateConfig(
      { assets: [noop('a')], environments: { aws: { runLauncher: launcher, store: STORE } } },
      'refresh.config.ts',
    )
    expect(resolveEnvironment(config, 'aws', 'refresh.config.ts').runLauncher).toBe(launcher)
    expect(resolveEnvironment(config, undefined, 'refresh.config.ts').runLauncher).toBeUndefined()
    expect(() =>
      validateConfig({ assets: [noop('a')], runLauncher: { cluster: 'x' } }, 'refresh.config.ts'),
    ).toThrow(/runLauncher: must be a run launcher, like `ecsRunLauncher\(\{ cluster, taskDefinition \}\)`/)
  })
})

describe('ecsRunLauncher against the ECS harness (simulated tasks)', () => {
  it('pins the task definition once; each task is tagged, started by its run, with its own token and no secret', async () => {
    const { harness, launch, launcher } = setup({}, { environment: { LOG_LEVEL: 'debug' } })
    const runs = [queued(), queued(), queued({ origin: 'schedule:nightly (UTC)' })]
    const launched = runs.map((r, i) => launch(r, i === 0 ? 'aws' : undefined))
    const exits = await Promise.all(launched.map((l) => l.exited))
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0])
    expect(exits[0]!.stderr).toMatch(/EssentialContainerExited/)
    expect(harness.calls.DescribeTaskDefinition).toBe(1)
    const inputs = harness.runTaskInputs
    expect(inputs).toHaveLength(3)
    for (const [i, input] of inputs.entries()) {
      const run = runs[i]!
      expect(input).toMatchObject({
        cluster: CLUSTER,
        taskDefinition: RUN_DEF.arn,
        launchType: 'FARGATE',
        startedBy: run.id,
        networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-1'] } },
        overrides: {
          containerOverrides: [
            {
              name: 'refresh',
              command: i === 0 ? ['launch', run.id, '--env', 'aws'] : ['launch', run.id],
              environment: [{ name: 'LOG_LEVEL', value: 'debug' }],
            },
          ],
        },
      })
      expect(input.clientToken).toBe(launchToken(run, 1))
      expect(Object.fromEntries((input.tags ?? []).map((t) => [t.key, t.value]))).toEqual({
        'refresh:run': run.id,
        'refresh:origin': run.origin.replace(/[()]/g, '_'),
        'refresh:managed-by': 'refresh',
      })
    }
    expect(new Set(inputs.map((i) => i.clientToken)).size).toBe(3)
    // the store location, its password: nowhere in what ECS is sent
    const sent = JSON.stringify(harness.mock.calls().map((c) => c.args[0].input))
    expect(sent).not.toContain('s3cret-pw')
    expect(sent).not.toContain('db.internal')
    expect(launched.map((l) => l.task)).toEqual([...harness.tasks.keys()])
    await launcher.close()
  })

  it('describes every launched task in one call per 100 tasks, all of them each poll', async () => {
    const { harness, launch, launcher } = setup({ simulate: () => ({ ms: 400, output: {} }) })
    const launched = Array.from({ length: 230 }, () => launch(queued()))
    await Promise.all(launched.map((l) => l.exited))
    const describes = harness.mock.commandCalls(DescribeTasksCommand).map((c) => c.args[0].input.tasks ?? [])
    expect(describes.every((tasks) => tasks.length <= 100)).toBe(true)
    // once all 230 run, a poll is three calls: 100, 100 and 30
    expect(describes.filter((t) => t.length === 100).length).toBeGreaterThanOrEqual(2)
    expect(new Set(describes.flat()).size).toBe(230)
    expect(harness.calls.RunTask).toBe(230)
    expect(harness.calls.DescribeTaskDefinition).toBe(1)
    // a poll once all had started: three calls (100, 100, 30) that cover every task, once each
    const fullPoll = describes.some((_, i) => {
      const poll = describes.slice(i, i + 3)
      return poll.flat().length === 230 && new Set(poll.flat()).size === 230
    })
    expect(fullPoll).toBe(true)
    await launcher.close()
  })

  it('kill() stops a started task with StopTask; before its task started, no task starts at all', async () => {
    const { harness, launch, launcher } = setup({ simulate: () => ({ ms: 60_000, output: {} }) })
    const running = launch(queued())
    await running.started
    running.kill('SIGTERM')
    const exit = await running.exited
    expect(exit.code).toBe(143)
    expect(exit.stderr).toMatch(/UserInitiated: Task stopped by user: refresh stopped run run\d+/)
    const stops = harness.mock.commandCalls(StopTaskCommand).map((c) => c.args[0].input)
    expect(stops).toEqual([expect.objectContaining({ cluster: CLUSTER, task: running.task })])

    const early = launch(queued())
    early.kill('SIGTERM')
    expect(await early.exited).toEqual({
      code: null,
      signal: null,
      stderr: 'stopped before its ECS task started',
    })
    expect(await early.started).toBeUndefined()
    expect(harness.calls.RunTask).toBe(1)
    await launcher.close()
  })

  it('places again when ECS has no capacity, with a fresh token each placement', async () => {
    const { harness, launch, launcher } = setup({ capacityFailures: 2 })
    const run = queued()
    expect((await launch(run).exited).code).toBe(0)
    expect(harness.runTaskInputs.map((i) => i.clientToken)).toEqual([
      launchToken(run, 1),
      launchToken(run, 2),
      launchToken(run, 3),
    ])
    await launcher.close()
  })

  it('a run whose task cannot start "exits" without a code, saying why; nothing is left to watch', async () => {
    const { harness, launch, launcher } = setup({}, { taskDefinition: 'no-such-family' })
    const exit = await launch(queued()).exited
    expect(exit.code).toBeNull()
    expect(exit.stderr).toMatch(
      /its ECS task did not start: ECS DescribeTaskDefinition rejected the request .*check `taskDefinition` in ecsRunLauncher\(\{\.\.\.\}\)/,
    )
    expect(harness.calls.RunTask).toBeUndefined()
    await launcher.close()
  })

  it('refuses to send a command that would carry the store location', async () => {
    const { harness, launch, launcher } = setup(
      {},
      {
        command: (runId) => [
          'launch',
          runId,
          '--store',
          'postgres://refresh:s3cret-pw@db.internal:5432/refresh',
        ],
      },
    )
    const exit = await launch(queued()).exited
    expect(exit.stderr).toMatch(/refusing to send the store location in RunTask/)
    expect(exit.stderr).not.toContain('s3cret-pw')
    expect(harness.mock.commandCalls(RunTaskCommand)).toHaveLength(0)
    await launcher.close()
  })

  it('keeps watching a task it cannot describe, and says so once', async () => {
    const { harness, launch, launcher, errors } = setup({ simulate: () => ({ ms: 300, output: {} }) })
    const launched = launch(queued())
    await launched.started
    harness.mock.on(DescribeTasksCommand).rejects(
      Object.assign(new Error('User is not authorized to perform: ecs:DescribeTasks'), {
        name: 'AccessDeniedException',
        $metadata: { httpStatusCode: 400 },
      }),
    )
    await until(() => errors.length > 0, 'the warning')
    await new Promise((r) => setTimeout(r, 300))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(/could not describe its ECS task .*ecs:DescribeTasks.*docs\/aws.md/)
    let settled = false
    void launched.exited.then(() => {
      settled = true
    })
    expect(settled).toBe(false)
    await launcher.close()
  })

  it('the same queued run gets the same token (an idempotent RunTask); queued again after a pause, a new one', () => {
    const run = queued()
    expect(launchToken(run, 1)).toMatch(/^[0-9a-f]{64}$/)
    expect(launchToken({ ...run }, 1)).toBe(launchToken(run, 1))
    const paused = { ...run, startedAt: 10, heartbeatAt: 20 }
    const pausedAgain = { ...run, startedAt: 10, heartbeatAt: 90 }
    expect(new Set([launchToken(run, 1), launchToken(paused, 1), launchToken(pausedAgain, 1)]).size).toBe(3)
  })
})
