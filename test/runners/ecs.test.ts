import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { catalog } from '../../assets/catalog.js'
import { clean } from '../../assets/clean.js'
import { copy } from '../../assets/copy.js'
import { reindex } from '../../assets/reindex.js'
import { S3Store } from '../../aws/s3.js'
import { classifyAwsError } from '../../aws/service.js'
import type { RunEvent } from '../../core/events.js'
import { materialize } from '../../core/materialize.js'
import { type EcsRunnerOptions, ecsRunner, stopOrphanTasks } from '../../runners/ecs.js'
import { runUnits } from '../../runners/run-units.js'
import { killOnceWorkersRun, ROOT, tempDir, until } from '../helpers.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'
import { alive, CLUSTER, EcsHarness, FAMILY, type HarnessOptions, TASK_DEF_ARN } from './ecs-harness.js'

const harnesses: EcsHarness[] = []
afterEach(() => {
  for (const h of harnesses.splice(0)) h.restore()
})

function setup(options: Partial<HarnessOptions> = {}, runnerOptions: Partial<EcsRunnerOptions> = {}) {
  const dir = tempDir()
  const harness = new EcsHarness({ stateDir: join(dir, 'ecs'), ...options })
  harnesses.push(harness)
  const polls: Array<{ running: number; calls: number }> = []
  const runner = ecsRunner({
    cluster: CLUSTER,
    taskDefinition: FAMILY,
    statusDir: join(dir, 'status'),
    client: harness.client,
    launchType: 'FARGATE',
    networkConfiguration: {
      awsvpcConfiguration: { subnets: ['subnet-1'], securityGroups: ['sg-1'], assignPublicIp: 'DISABLED' },
    },
    environment: { REFRESH_LOG: 'debug' },
    pollIntervalMs: 50,
    backoffMs: 5,
    onPoll: (p) => polls.push(p),
    ...runnerOptions,
  })
  const dataDir = join(dir, 'data')
  const assets = [
    catalog({ dataDir }),
    copy({ dataDir }),
    clean({ dataDir }),
    reindex({ dataDir, shards: 8, runner }),
  ]
  return { dir, harness, runner, polls, assets, store: join(dir, 'refresh.db') }
}

const CONFIG = { catalog: { rows: 4000 }, reindex: { shardRetryDelayMs: 0 } }

describe('ecsRunner against the ECS harness (real worker processes)', () => {
  it('reindexes 8 ranges: one pinned task definition, one task per range, tagged, batched polls', async () => {
    const { harness, runner, polls, assets, store } = setup()
    const events: RunEvent[] = []
    const result = await materialize(assets, { store, config: CONFIG, onEvent: (e) => events.push(e) })
    expect(result.status).toBe('success')
    const rows = result.materializations.clean!.metadata.rows as number
    const index = result.materializations.reindex!.metadata
    expect(index).toMatchObject({ documents: rows, shards: 8, runner: 'ecs' })

    // the task definition is resolved once and every task uses the pinned revision
    expect(harness.calls.DescribeTaskDefinition).toBe(1)
    expect(harness.calls.RunTask).toBe(8)
    const inputs = harness.runTaskInputs
    expect(new Set(inputs.map((i) => i.taskDefinition))).toEqual(new Set([TASK_DEF_ARN]))
    expect(new Set(inputs.map((i) => i.clientToken)).size).toBe(8)
    for (const [n, input] of inputs.entries()) {
      expect(input).toMatchObject({
        cluster: CLUSTER,
        launchType: 'FARGATE',
        startedBy: result.runId,
        networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-1'] } },
      })
      expect(input.clientToken).toMatch(/^[0-9a-f]{64}$/)
      const tags = Object.fromEntries((input.tags ?? []).map((t) => [t.key, t.value]))
      expect(tags['refresh:run']).toBe(result.runId)
      expect(tags['refresh:asset']).toBe('reindex')
      expect(tags['refresh:shard']).toMatch(/^shard-\d$/)
      const override = input.overrides!.containerOverrides![0]!
      expect(override.name).toBe('worker')
      expect(override.command![0]).toBe('index-shard')
      expect(override.command![2]).toBe('--status-file')
      expect(override.environment).toEqual([{ name: 'REFRESH_LOG', value: 'debug' }])
      expect(n).toBeLessThan(8)
    }

    // status polling: never more than ceil(running/100) DescribeTasks calls per poll
    expect(polls.length).toBeGreaterThan(0)
    for (const p of polls) expect(p.calls).toBeLessThanOrEqual(Math.ceil(p.running / 100))
    expect(runner.stats().maxCallsPerPoll.calls).toBe(1)

    // progress from the workers' status files reaches the step
    const progress = events.filter((e) => e.type === 'step:progress' && e.step === 'reindex')
    expect(progress.at(-1)).toMatchObject({ done: rows, total: rows })
    // every worker process has exited
    for (const pid of harness.pids()) expect(alive(pid)).toBe(false)
  })

  it('retries RunTask capacity failures with backoff, then starts every range', async () => {
    const { harness, assets, store } = setup({ capacityFailures: 3 })
    const result = await materialize(assets, { store, config: CONFIG })
    expect(result.status).toBe('success')
    expect(harness.calls.RunTask).toBe(11)
    expect(harness.tasks.size).toBe(8)
  })

  it('retries one range that exits 1 alone, with the worker error in the log', async () => {
    const { harness, assets, store } = setup({
      // the first attempt of shard 2 reads a source that does not exist: the task throws, exits 1
      rewrite: (command) => {
        const input = JSON.parse(command[1]!) as Record<string, unknown>
        if (input.shard !== 2 || !command[3]!.endsWith('attempt-1.json')) return command
        return [
          command[0]!,
          JSON.stringify({ ...input, source: '/nonexistent/clean.db' }),
          ...command.slice(2),
        ]
      },
    })
    const events: RunEvent[] = []
    const result = await materialize(assets, { store, config: CONFIG, onEvent: (e) => events.push(e) })
    expect(result.status).toBe('success')
    const timings = result.materializations.reindex!.metadata.shardTimings as Array<{ attempts: number }>
    expect(timings.map((t) => t.attempts)).toEqual([1, 1, 2, 1, 1, 1, 1, 1])
    expect(harness.tasks.size).toBe(9)
    const warn = events.find((e) => e.type === 'log' && e.level === 'warn') as { message: string }
    expect(warn.message).toMatch(/shard-2 attempt 1\/3 failed: shard-2 \(task \d+\) EssentialContainerExited/)
    expect(warn.message).toMatch(/container worker exited 1/)
    expect(warn.message).toMatch(/the source database \/nonexistent\/clean.db does not exist/)
    expect(warn.message).toMatch(/retrying this shard alone/)
  })

  it('cancel stops every task with StopTask and the worker processes are gone', async () => {
    const { harness, assets, store } = setup({ hold: true })
    const abort = new AbortController()
    const pending = materialize(assets, { store, config: CONFIG, signal: abort.signal })
    await until(() => harness.running().length === 8, '8 running tasks')
    abort.abort()
    const result = await pending
    expect(result.status).toBe('canceled')
    expect(harness.calls.StopTask).toBe(8)
    await until(
      () => harness.running().length === 0 && harness.pids().every((pid) => !alive(pid)),
      'the workers to exit',
      5000,
    )
  })

  it('a RunTask retried after a lost answer reuses its clientToken and starts one task', async () => {
    const { harness, assets, store } = setup({ loseFirstResponse: true })
    const result = await materialize(assets, { store, config: CONFIG })
    expect(result.status).toBe('success')
    expect(harness.calls.RunTask).toBe(9)
    expect(harness.tasks.size).toBe(8)
    // the lost call was the first one; its retry carried the same token and got the same task
    const tokens = harness.runTaskInputs.map((i) => i.clientToken)
    expect(new Set(tokens).size).toBe(8)
    expect(tokens.filter((t) => t === tokens[0])).toHaveLength(2)
  })

  it('after the orchestrator is SIGKILLed, stopOrphanTasks finds its tasks by startedBy and stops them', async () => {
    const dir = tempDir()
    const stateDir = join(dir, 'ecs')
    await killOnceWorkersRun(
      [
        join(ROOT, 'test/fixtures/ecs-orchestrator.mjs'),
        join(dir, 'data'),
        stateDir,
        join(dir, 'status'),
        join(dir, 'refresh.db'),
      ],
      join(stateDir, 'tasks'),
      4,
    )

    // the next start: a new harness over the same ECS state, as ECS would still have the tasks
    const harness = new EcsHarness({ stateDir })
    harnesses.push(harness)
    const orphans = harness.running()
    expect(orphans).toHaveLength(4)
    const runIds = [...new Set(orphans.map((t) => t.startedBy))]
    expect(runIds).toHaveLength(1)
    // what crash recovery does: the runner's recover hook (reindex's asset hook calls it)
    const runner = ecsRunner({
      cluster: CLUSTER,
      taskDefinition: 'refresh-worker',
      statusDir: stateDir,
      client: harness.client,
    })
    const stopped = await runner.recover!(runIds)
    await runner.close()
    expect(stopped.sort()).toEqual(orphans.map((t) => t.arn).sort())
    expect(harness.calls).toMatchObject({ ListTasks: 1, StopTask: 4 })
    await until(() => harness.pids().every((pid) => !alive(pid)), 'the orphaned workers to exit', 5000)
    expect(await stopOrphanTasks({ cluster: CLUSTER, runIds, client: harness.client })).toEqual([])
  })
})

describe('ecsRunner AWS errors', () => {
  const denied = Object.assign(
    new Error(
      'User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecs:RunTask on resource: arn:aws:ecs:us-east-1:123456789012:task-definition/refresh-worker:7',
    ),
    { name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 }, $fault: 'client' },
  )

  it('classifies denied, throttled, invalid and network errors', () => {
    expect(classifyAwsError(denied)).toBe('denied')
    expect(
      classifyAwsError(Object.assign(new Error('x'), { name: 'UnauthorizedOperation', $metadata: {} })),
    ).toBe('denied')
    expect(
      classifyAwsError(
        Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: {} }),
      ),
    ).toBe('throttled')
    expect(
      classifyAwsError(
        Object.assign(new Error('subnet not found'), { name: 'InvalidParameterException', $metadata: {} }),
      ),
    ).toBe('invalid')
    expect(classifyAwsError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe(
      'transient',
    )
  })

  it('does not retry an access-denied RunTask, and names the action and the permission', async () => {
    const dir = tempDir()
    const harness = new EcsHarness({ stateDir: join(dir, 'ecs') })
    harnesses.push(harness)
    let runTasks = 0
    harness.mock.on((await import('@aws-sdk/client-ecs')).RunTaskCommand).callsFake(() => {
      runTasks++
      throw denied
    })
    const runner = ecsRunner({
      cluster: CLUSTER,
      taskDefinition: FAMILY,
      statusDir: join(dir, 'status'),
      client: harness.client,
      backoffMs: 1,
    })
    const units = [{ id: 'shard-0', task: 'index-shard', input: {}, runId: 'r1', asset: 'reindex' }]
    await expect(runUnits(runner, units, { maxAttempts: 3, retryDelayMs: 0 })).rejects.toThrow(
      /shard-0 failed after 1 attempt: shard-0: ECS RunTask was denied \(AccessDeniedException: .*\)\. The IAM policy of these credentials needs `ecs:RunTask` on cluster refresh-test/,
    )
    expect(runTasks).toBe(1)
    await runner.close()
  })

  it('retries a throttled call, and names the config field of a validation error without retrying', async () => {
    const dir = tempDir()
    const harness = new EcsHarness({ stateDir: join(dir, 'ecs') })
    harnesses.push(harness)
    const runner = ecsRunner({
      cluster: CLUSTER,
      taskDefinition: 'no-such-family',
      statusDir: join(dir, 'status'),
      client: harness.client,
      backoffMs: 1,
    })
    const units = [{ id: 'shard-0', task: 'index-shard', input: {}, runId: 'r1', asset: 'reindex' }]
    await expect(runUnits(runner, units, { maxAttempts: 3, retryDelayMs: 0 })).rejects.toThrow(
      /ECS DescribeTaskDefinition rejected the request \(ClientException: .*\); check `taskDefinition`/,
    )
    expect(harness.calls.DescribeTaskDefinition).toBe(1)
    await runner.close()

    const { DescribeTasksCommand } = await import('@aws-sdk/client-ecs')
    let throttled = 0
    const throttling = harness.mock.on(DescribeTasksCommand)
    throttling.callsFake(() => {
      throttled++
      throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: {} })
    })
    const busy = ecsRunner({
      cluster: CLUSTER,
      taskDefinition: FAMILY,
      statusDir: join(dir, 'status'),
      client: harness.client,
      backoffMs: 1,
      callAttempts: 3,
      pollIntervalMs: 10,
    })
    const result = await busy.start({ ...units[0]!, attempt: 1 }).result
    expect(result).toMatchObject({ status: 'failed', retriable: true })
    expect(throttled).toBe(3)
    if (result.status === 'failed') expect(result.error).toMatch(/ECS DescribeTasks failed after 3 tries/)
    await busy.close()
  })
})

describe('ecsRunner with S3 instead of a shared directory (a real local S3 server)', {
  timeout: 60_000,
}, () => {
  let s3: LocalS3
  const store = new S3Store({ where: 'the test' })
  beforeAll(async () => {
    s3 = await startLocalS3(['refresh-test'])
  })
  afterAll(async () => {
    await store.close()
    await s3.close()
  })

  /** The refresh chain up to reindex on the ECS harness, statuses in S3, data through `transfer`. */
  async function reindexThroughS3(shards: number, transfer: string | { bucket: string; prefix: string }) {
    const dir = tempDir()
    const harness = new EcsHarness({ stateDir: join(dir, 'ecs') })
    harnesses.push(harness)
    const runner = ecsRunner({
      cluster: CLUSTER,
      taskDefinition: FAMILY,
      statusUrl: 's3://refresh-test/ecs/',
      client: harness.client,
      launchType: 'FARGATE',
      pollIntervalMs: 50,
      backoffMs: 5,
    })
    const dataDir = join(dir, 'data')
    const events: RunEvent[] = []
    const result = await materialize(
      [
        catalog({ dataDir }),
        copy({ dataDir }),
        clean({ dataDir }),
        reindex({ dataDir, shards, runner, transfer }),
      ],
      { store: join(dir, 'refresh.db'), config: CONFIG, onEvent: (e) => events.push(e) },
    )
    await runner.close()
    return { harness, result, events }
  }

  it('needs statusUrl or statusDir, and names both when neither is set', () => {
    expect(() => ecsRunner({ cluster: CLUSTER, taskDefinition: FAMILY })).toThrow(
      /ecsRunner: `statusUrl` \(an S3 prefix, s3:\/\/bucket\/prefix\/\) or `statusDir` \(a directory shared with the workers\) is required/,
    )
  })

  it('refuses a reindex `transfer` that is not an S3 location when the asset is declared', () => {
    expect(() => reindex({ dataDir: tempDir(), transfer: '/mnt/shared' })).toThrow(
      /reindex\(\{ transfer \}\): "\/mnt\/shared" is not an S3 URL; expected s3:\/\/bucket\/prefix\//,
    )
  })

  it('reindexes 8 ranges with the statuses and the data in S3 (statusUrl + transfer)', async () => {
    const { harness, result, events } = await reindexThroughS3(8, { bucket: 'refresh-test', prefix: 'ecs' })
    expect(result.status).toBe('success')
    const rows = result.materializations.clean!.metadata.rows as number
    const index = result.materializations.reindex!.metadata
    expect(index).toMatchObject({ documents: rows, shards: 8, runner: 'ecs' })
    for (const t of index.shardTimings as Array<{ sha256?: string }>)
      expect(t.sha256).toMatch(/^[0-9a-f]{64}$/)
    for (const input of harness.runTaskInputs) {
      const command = input.overrides!.containerOverrides![0]!.command!
      expect(command[3]).toMatch(
        new RegExp(`^s3://refresh-test/ecs/runs/${result.runId}/status/shard-\\d\\.attempt-1\\.json$`),
      )
      const unit = JSON.parse(command[1]!) as { source: string; output: string }
      expect(unit.source).toMatch(new RegExp(`^s3://refresh-test/ecs/runs/${result.runId}/reindex/input/`))
      expect(unit.output).toMatch(/\/reindex\/shards\/shard-00\d\.db$/)
    }
    // a succeeded unit's status is removed, and the input and shards once they are home
    expect(await store.list('refresh-test', `ecs/runs/${result.runId}/`)).toEqual([])
    const progress = events.filter((e) => e.type === 'step:progress' && e.step === 'reindex')
    expect(progress.at(-1)).toMatchObject({ done: rows, total: rows })
    for (const pid of harness.pids()) expect(alive(pid)).toBe(false)
  })

  it('a range input that cannot go up fails the step without starting any task, naming the bucket', async () => {
    const { harness, result, events } = await reindexThroughS3(4, 's3://no-such-bucket/ecs/')
    expect(result.status).toBe('failure')
    const failure = events.find((e) => e.type === 'step:failure' && e.step === 'reindex')
    expect(failure?.type === 'step:failure' && failure.error.message).toMatch(
      /shard-\d failed after 1 attempt: the input of shard-\d could not be uploaded: the S3 bucket no-such-bucket does not exist/,
    )
    expect(harness.runTaskInputs).toHaveLength(0)
  })
})
