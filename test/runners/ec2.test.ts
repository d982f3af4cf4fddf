import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { catalog } from '../../assets/catalog.js'
import { clean } from '../../assets/clean.js'
import { copy } from '../../assets/copy.js'
import { reindex } from '../../assets/reindex.js'
import { S3Store } from '../../aws/s3.js'
import type { RunEvent } from '../../core/events.js'
import { materialize } from '../../core/materialize.js'
import { type Ec2RunnerOptions, ec2Runner, terminateOrphanInstances } from '../../runners/ec2.js'
import { runUnits } from '../../runners/run-units.js'
import { parseCloudConfigUserData } from '../../runners/user-data.js'
import { killOnceWorkersRun, ROOT, tempDir, until } from '../helpers.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'
import { Ec2Harness, type Ec2HarnessOptions, TEMPLATE_ID, TEMPLATE_NAME } from './ec2-harness.js'
import { alive } from './ecs-harness.js'

const BUCKET = 'refresh-test'
const WORK = `s3://${BUCKET}/work/`
let s3: LocalS3
const store = new S3Store({ where: 'the test' })
beforeAll(async () => {
  s3 = await startLocalS3([BUCKET])
})
afterAll(async () => {
  await store.close()
  await s3.close()
})

const harnesses: Ec2Harness[] = []
afterEach(() => {
  for (const h of harnesses.splice(0)) h.restore()
})

function setup(options: Partial<Ec2HarnessOptions> = {}, runnerOptions: Partial<Ec2RunnerOptions> = {}) {
  const dir = tempDir()
  const harness = new Ec2Harness({ stateDir: join(dir, 'ec2'), ...options })
  harnesses.push(harness)
  const polls: Array<{ running: number; calls: number }> = []
  const runner = ec2Runner({
    launchTemplate: { name: TEMPLATE_NAME },
    statusUrl: WORK,
    subnetId: 'subnet-1',
    instanceType: 'm7i.large',
    client: harness.client,
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
    reindex({ dataDir, shards: 8, runner, transfer: WORK }),
  ]
  return { dir, harness, runner, polls, assets, store: join(dir, 'refresh.db') }
}

const CONFIG = { catalog: { rows: 4000 }, reindex: { shardRetryDelayMs: 0 } }

/** Shard 2's first attempt reads an input that is not in S3: its worker fails and exits 1. */
const failShard2Once = (argv: string[]) => {
  const at = argv.indexOf('worker')
  const input = JSON.parse(argv[at + 2]!) as Record<string, unknown>
  if (input.shard !== 2 || !argv.at(-1)!.endsWith('attempt-1.json')) return argv
  const copy = [...argv]
  copy[at + 2] = JSON.stringify({ ...input, source: `s3://${BUCKET}/missing/clean.db` })
  return copy
}

describe('ec2Runner against the EC2 harness (real worker processes, a real local S3)', {
  timeout: 90_000,
}, () => {
  it('reindexes 8 ranges through S3: one instance per range, pinned template, tagged, batched polls', async () => {
    const { harness, runner, polls, assets, store: db } = setup()
    const events: RunEvent[] = []
    const result = await materialize(assets, { store: db, config: CONFIG, onEvent: (e) => events.push(e) })
    expect(result.status).toBe('success')
    const rows = result.materializations.clean!.metadata.rows as number
    const index = result.materializations.reindex!.metadata
    expect(index).toMatchObject({ documents: rows, shards: 8, runner: 'ec2' })
    const timings = index.shardTimings as Array<{ sha256: string; bytes: number; attempts: number }>
    for (const t of timings) {
      expect(t.sha256).toMatch(/^[0-9a-f]{64}$/)
      expect(t.bytes).toBeGreaterThan(0)
    }
    // the shards were downloaded into the local index
    expect(readdirSync(index.dir as string).sort()).toEqual(
      Array.from({ length: 8 }, (_, n) => `shard-00${n}.db`),
    )

    // the launch template version is resolved once ($Default = 2) and pinned for every instance
    expect(harness.calls.DescribeLaunchTemplateVersions).toBe(1)
    expect(harness.calls.RunInstances).toBe(8)
    expect(harness.instances.size).toBe(8)
    const tokens = new Set<string>()
    for (const input of harness.runInputs) {
      expect(input).toMatchObject({
        MinCount: 1,
        MaxCount: 1,
        LaunchTemplate: { LaunchTemplateName: TEMPLATE_NAME, Version: '2' },
        InstanceInitiatedShutdownBehavior: 'terminate',
        SubnetId: 'subnet-1',
        InstanceType: 'm7i.large',
      })
      expect(input.ClientToken).toMatch(/^[0-9a-f]{64}$/)
      tokens.add(input.ClientToken!)
      expect(input.TagSpecifications!.map((t) => t.ResourceType)).toEqual(['instance', 'volume'])
      for (const spec of input.TagSpecifications!) {
        const tags = Object.fromEntries((spec.Tags ?? []).map((t) => [t.Key, t.Value]))
        expect(tags).toMatchObject({
          'refresh:run': result.runId,
          'refresh:asset': 'reindex',
          'refresh:managed-by': 'refresh',
        })
        expect(tags['refresh:shard']).toMatch(/^shard-\d$/)
      }
      const config = parseCloudConfigUserData(input.UserData!)
      expect(config.power_state).toEqual({ mode: 'poweroff', condition: true })
      expect(config.runcmd).toHaveLength(1)
      const argv = config.runcmd[0]!
      expect(argv.slice(0, 5)).toEqual(['env', 'REFRESH_LOG=debug', 'refresh', 'worker', 'index-shard'])
      const unitInput = JSON.parse(argv[5]!) as { source: string; output: string; shard: number }
      // each worker downloads its own range of the cleaned table, not the whole table
      expect(unitInput.source).toBe(`${WORK}runs/${result.runId}/reindex/input/range-00${unitInput.shard}.db`)
      expect(unitInput.output).toBe(
        `${WORK}runs/${result.runId}/reindex/shards/shard-00${unitInput.shard}.db`,
      )
      expect(argv.slice(6)).toEqual([
        '--status-file',
        `${WORK}runs/${result.runId}/status/shard-${unitInput.shard}.attempt-1.json`,
      ])
    }
    expect(tokens.size).toBe(8)

    // the input and the shards went through S3 (the inputs above name them), and that scratch is
    // removed once the shards are home
    expect(await store.list(BUCKET, `work/runs/${result.runId}/reindex/`)).toEqual([])

    // polling: never more than ceil(running/100) DescribeInstances calls per poll, by instance id
    expect(polls.length).toBeGreaterThan(0)
    for (const p of polls) expect(p.calls).toBeLessThanOrEqual(Math.ceil(p.running / 100))
    expect(runner.stats().maxCallsPerPoll.calls).toBe(1)
    for (const input of harness.describeInputs) {
      expect(input.Filters?.[0]?.Name).toBe('instance-id')
      expect(input.Filters![0]!.Values!.length).toBeLessThanOrEqual(100)
    }

    // progress from the S3 statuses reaches the step; every instance is gone
    const progress = events.filter((e) => e.type === 'step:progress' && e.step === 'reindex')
    expect(progress.at(-1)).toMatchObject({ done: rows, total: rows })
    expect(harness.running()).toEqual([])
    for (const pid of harness.pids()) expect(alive(pid)).toBe(false)
  })

  it('retries InsufficientInstanceCapacity with backoff, then starts every range', async () => {
    const { harness, assets, store: db } = setup({ capacityFailures: 3 })
    const result = await materialize(assets, { store: db, config: CONFIG })
    expect(result.status).toBe('success')
    expect(harness.calls.RunInstances).toBe(11)
    expect(harness.instances.size).toBe(8)
  })

  it('retries one range whose worker exits 1 alone, on the same pinned template version', async () => {
    const {
      harness,
      assets,
      store: db,
    } = setup(
      {
        rewrite: (argv) => {
          // a new template version appears mid-step: the retry must not pick it up
          harness.versions.latest = 4
          return failShard2Once(argv)
        },
      },
      { launchTemplate: { id: TEMPLATE_ID, version: '$Latest' } },
    )
    const events: RunEvent[] = []
    const result = await materialize(assets, { store: db, config: CONFIG, onEvent: (e) => events.push(e) })
    expect(result.status).toBe('success')
    const timings = result.materializations.reindex!.metadata.shardTimings as Array<{ attempts: number }>
    expect(timings.map((t) => t.attempts)).toEqual([1, 1, 2, 1, 1, 1, 1, 1])
    expect(harness.instances.size).toBe(9)
    // every unit was started once, shard 2 twice
    const shards = harness.runInputs.map(
      (i) => i.TagSpecifications![0]!.Tags!.find((t) => t.Key === 'refresh:shard')!.Value,
    )
    expect(shards.filter((s) => s === 'shard-2')).toHaveLength(2)
    expect(new Set(shards).size).toBe(8)
    expect(harness.calls.DescribeLaunchTemplateVersions).toBe(1)
    expect(new Set(harness.runInputs.map((i) => i.LaunchTemplate?.Version))).toEqual(new Set(['3']))
    const warn = events.find((e) => e.type === 'log' && e.level === 'warn') as { message: string }
    expect(warn.message).toMatch(
      /shard-2 attempt 1\/3 failed: shard-2 \(instance i-[0-9a-f]+\) the worker failed/,
    )
    expect(warn.message).toMatch(/missing\/clean\.db does not exist/)
    expect(warn.message).toMatch(/retrying this shard alone/)

    // the next run resolves the template again and gets the new version
    const again = await materialize(assets, { store: db, config: CONFIG })
    expect(again.status).toBe('success')
    expect(harness.calls.DescribeLaunchTemplateVersions).toBe(2)
    expect(harness.runInputs.slice(9).every((i) => i.LaunchTemplate?.Version === '4')).toBe(true)
  })

  it('fails an instance that powers off without a final status, naming its state and reason', async () => {
    const { harness, runner } = setup({
      // the worker is not there: the instance runs a command that exits at once and powers off
      rewrite: () => [process.execPath, '-e', 'process.exit(0)'],
    })
    const unit = {
      id: 'shard-0',
      task: 'index-shard',
      input: {},
      runId: 'r-lost',
      asset: 'reindex',
      attempt: 1,
    }
    const result = await runner.start(unit).result
    expect(result).toMatchObject({ status: 'failed', retriable: true })
    if (result.status === 'failed') {
      expect(result.error).toMatch(
        /shard-0 \(instance i-\w+\) is (shutting-down|terminated) \(Client\.InstanceInitiatedShutdown.*\) and its worker wrote no final status to s3:\/\/refresh-test\/work\/runs\/r-lost\/status\/shard-0\.attempt-1\.json/,
      )
    }
    expect(harness.instances.size).toBe(1)
    await runner.close()
  })

  it('polls 250 instances with ceil(running/100) DescribeInstances calls', async () => {
    const { harness, runner, polls } = setup(
      // a small process instead of the worker: it runs a moment, then the instance powers off
      { rewrite: () => ['sleep', '1'] },
      { launchConcurrency: 50 },
    )
    const units = Array.from({ length: 250 }, (_, n) => ({
      id: `shard-${n}`,
      task: 'index-shard',
      input: {},
      runId: 'r-many',
      asset: 'reindex',
      attempt: 1,
    }))
    const results = await Promise.all(units.map((u) => runner.start(u).result))
    await runner.close()
    // no worker wrote a status: every unit failed, each named by its instance's state
    expect(results.every((r) => r.status === 'failed' && /wrote no final status/.test(r.error))).toBe(true)
    expect(harness.instances.size).toBe(250)
    expect(harness.calls.DescribeLaunchTemplateVersions).toBe(1)
    for (const p of polls) expect(p.calls).toBeLessThanOrEqual(Math.ceil(p.running / 100))
    expect(runner.stats().maxCallsPerPoll.calls).toBe(3)
    expect(runner.stats().maxCallsPerPoll.running).toBeGreaterThan(200)
  })

  it('cancel terminates every instance and the worker processes are gone', async () => {
    const { harness, assets, store: db } = setup({ hold: true })
    const abort = new AbortController()
    const pending = materialize(assets, { store: db, config: CONFIG, signal: abort.signal })
    await until(() => harness.running().length === 8, '8 running instances')
    abort.abort()
    const result = await pending
    expect(result.status).toBe('canceled')
    expect(harness.calls.TerminateInstances).toBe(8)
    await until(
      () => harness.running().length === 0 && harness.pids().every((pid) => !alive(pid)),
      'the workers to exit',
      5000,
    )
  })

  it('a RunInstances retried after a lost answer reuses its ClientToken and starts one instance', async () => {
    const { harness, assets, store: db } = setup({ loseFirstResponse: true })
    const result = await materialize(assets, { store: db, config: CONFIG })
    expect(result.status).toBe('success')
    expect(harness.calls.RunInstances).toBe(9)
    expect(harness.instances.size).toBe(8)
    const tokens = harness.runInputs.map((i) => i.ClientToken)
    expect(new Set(tokens).size).toBe(8)
    expect(tokens.filter((t) => t === tokens[0])).toHaveLength(2)
  })

  it('after the orchestrator is SIGKILLed, recover finds its instances by tag and terminates them', async () => {
    const dir = tempDir()
    const stateDir = join(dir, 'ec2')
    await killOnceWorkersRun(
      [
        join(ROOT, 'test/fixtures/ec2-orchestrator.mjs'),
        join(dir, 'data'),
        stateDir,
        join(dir, 'refresh.db'),
      ],
      join(stateDir, 'instances'),
      4,
      s3.env,
    )

    // the next start: a new harness over the same EC2 state, as EC2 would still run the instances
    const harness = new Ec2Harness({ stateDir })
    harnesses.push(harness)
    const orphans = harness.running()
    expect(orphans).toHaveLength(4)
    const runIds = [...new Set(orphans.map((i) => i.tags['refresh:run']!))]
    expect(runIds).toHaveLength(1)
    // what crash recovery does: the runner's recover hook (reindex's asset hook calls it)
    const runner = ec2Runner({
      launchTemplate: { name: TEMPLATE_NAME },
      statusUrl: WORK,
      client: harness.client,
    })
    const terminated = await runner.recover!(runIds)
    await runner.close()
    expect(terminated.sort()).toEqual(orphans.map((i) => i.id).sort())
    expect(harness.calls).toMatchObject({ DescribeInstances: 1, TerminateInstances: 1 })
    await until(() => harness.pids().every((pid) => !alive(pid)), 'the orphaned workers to exit', 5000)
    expect(harness.running()).toEqual([])
    expect(await terminateOrphanInstances({ runIds, client: harness.client })).toEqual([])
  })
})

describe('ec2Runner options and AWS errors', () => {
  it('requires a launch template and a status channel', () => {
    expect(() => ec2Runner({ statusUrl: WORK } as unknown as Ec2RunnerOptions)).toThrow(
      /ec2Runner: `launchTemplate` is required/,
    )
    expect(() => ec2Runner({ launchTemplate: { name: TEMPLATE_NAME } })).toThrow(
      /ec2Runner: `statusUrl` \(an S3 prefix, s3:\/\/bucket\/prefix\/\) or `statusDir`.* is required/,
    )
    expect(() => ec2Runner({ launchTemplate: { name: TEMPLATE_NAME }, statusUrl: '/tmp/x' })).toThrow(
      /ec2Runner\(\{ statusUrl \}\).*is not an S3 URL/,
    )
  })

  it('does not retry an access-denied RunInstances, and names the permission', async () => {
    const dir = tempDir()
    const harness = new Ec2Harness({ stateDir: join(dir, 'ec2') })
    harnesses.push(harness)
    const { RunInstancesCommand } = await import('@aws-sdk/client-ec2')
    let calls = 0
    harness.mock.on(RunInstancesCommand).callsFake(() => {
      calls++
      throw Object.assign(
        new Error(
          'You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ec2:RunInstances',
        ),
        { name: 'UnauthorizedOperation', $metadata: { httpStatusCode: 403 }, $fault: 'client' },
      )
    })
    const runner = ec2Runner({
      launchTemplate: { name: TEMPLATE_NAME },
      statusUrl: WORK,
      client: harness.client,
      backoffMs: 1,
    })
    const units = [{ id: 'shard-0', task: 'index-shard', input: {}, runId: 'r1', asset: 'reindex' }]
    await expect(runUnits(runner, units, { maxAttempts: 3, retryDelayMs: 0 })).rejects.toThrow(
      /shard-0 failed after 1 attempt: shard-0: EC2 RunInstances was denied \(UnauthorizedOperation: .*\)\. The IAM policy of these credentials needs `ec2:RunInstances`/,
    )
    expect(calls).toBe(1)
    await runner.close()
  })

  it('names `launchTemplate` when the template does not exist, without retrying', async () => {
    const dir = tempDir()
    const harness = new Ec2Harness({ stateDir: join(dir, 'ec2') })
    harnesses.push(harness)
    const runner = ec2Runner({
      launchTemplate: { name: 'no-such-template' },
      statusUrl: WORK,
      client: harness.client,
      backoffMs: 1,
    })
    const units = [{ id: 'shard-0', task: 'index-shard', input: {}, runId: 'r1', asset: 'reindex' }]
    await expect(runUnits(runner, units, { maxAttempts: 3, retryDelayMs: 0 })).rejects.toThrow(
      /EC2 DescribeLaunchTemplateVersions rejected the request \(InvalidLaunchTemplateName\.NotFoundException: .*\); check `launchTemplate` in ec2Runner/,
    )
    expect(harness.calls.DescribeLaunchTemplateVersions).toBe(1)
    expect(harness.calls.RunInstances).toBeUndefined()
    await runner.close()
  })
})
