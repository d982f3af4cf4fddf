/**
 * The EC2 runner: one EC2 instance per unit (per id range), the same contract as the local
 * process pool and the ECS runner. Each instance is started from a launch template (its version
 * resolved once per step and pinned, so a new version mid-run never mixes two worker images in
 * one index) with `#cloud-config` user data whose only command is the worker
 * (`refresh worker <task> <input-json> --status-file <url>`, an argument array, no shell), then
 * powers off; with `InstanceInitiatedShutdownBehavior: terminate` that terminates it.
 *
 * Progress and output travel through the status channel (status.ts, normally S3 under
 * `statusUrl`): the runner polls DescribeInstances in batches of 100 and reads each worker's
 * status. A unit succeeded when its status says so; it failed when its status says so, or when
 * its instance shut down, stopped or vanished without a final status. Every instance is tagged
 * with the run, the asset and the unit, so `recover(runIds)` finds a crashed run's instances by
 * tag and terminates them. The AWS SDK is imported with `import()` on first use only.
 */

import type { Instance, RunInstancesCommandInput } from '@aws-sdk/client-ec2'
import { Ec2Api } from '../aws/ec2.js'
import { AwsCallError, type AwsCallOptions, TAG } from '../aws/service.js'
import type { AwsSdkClient, LaunchTemplateRef } from '../aws/types.js'
import { limiter } from '../core/async.js'
import { ConfigError } from '../core/errors.js'
import {
  clientToken,
  RemoteHandle,
  type RemoteRunnerOptions,
  type RemoteRunnerStats,
  type RemoteShell,
  remoteRunner,
} from './remote.js'
import { type StatusChannel, type StatusOptions, statusChannel } from './status.js'
import type { Runner, WorkListener, WorkUnit } from './types.js'
import { cloudConfigUserData } from './user-data.js'

export type { LaunchTemplateRef }

export interface Ec2RunnerOptions extends AwsCallOptions, StatusOptions, RemoteRunnerOptions {
  /**
   * The launch template of the worker instances (AMI with `refresh` installed, instance
   * profile, network). Its version is resolved once per step (run and asset) to a number and
   * pinned for every unit and retry of that step.
   */
  launchTemplate: LaunchTemplateRef
  /** Overrides of the template, when set. */
  instanceType?: string
  subnetId?: string
  securityGroupIds?: string[]
  /** An instance profile ARN (`arn:aws:iam::...`) or name, for the worker's S3 access. */
  iamInstanceProfile?: string
  /**
   * Plain (non-secret) environment for the worker, passed through `env NAME=VALUE` in the user
   * data. Never secrets: user data is readable by anyone who can describe the instance; the
   * worker's AWS access comes from the instance profile.
   */
  environment?: Record<string, string>
  /** How the worker is invoked on the instance (default `['refresh']`, then `worker ...`). */
  program?: string[]
  /** Polls an instance may be missing from DescribeInstances (eventual consistency) before it counts as lost (default 12). */
  missingPolls?: number
  /** An EC2 client (tests pass a mocked one); default a new client with the standard credential chain. */
  client?: AwsSdkClient
}

/** What the runner did, for benchmarks and `refresh show`. */
export interface Ec2RunnerStats extends RemoteRunnerStats {
  instancesStarted: number
}

export interface Ec2Runner extends Runner {
  stats(): Ec2RunnerStats
}

const GONE = new Set(['shutting-down', 'terminated', 'stopping', 'stopped'])

/** An EC2 runner: one instance per unit, polled in batches of 100, terminated when done. */
export function ec2Runner(options: Ec2RunnerOptions): Ec2Runner {
  const lt = options.launchTemplate as { id?: string; name?: string } | undefined
  if (!lt || (!lt.id && !lt.name))
    throw new ConfigError('ec2Runner: `launchTemplate` is required ({ id: "lt-..." } or { name })')
  const status = statusChannel(options, 'ec2Runner')
  const stats: Ec2RunnerStats = {
    calls: {},
    instancesStarted: 0,
    polls: 0,
    maxCallsPerPoll: { calls: 0, running: 0 },
  }
  const api = new Ec2RunnerApi(options, stats)
  const context: Ec2Context = { api, options, status, stats }
  const runner = remoteRunner<number, Ec2Handle>({
    name: 'ec2',
    pollIntervalMs: options.pollIntervalMs ?? 5000,
    stats,
    pin: () => api.pinLaunchTemplate(options.launchTemplate),
    handle: (unit, listener, shell) => new Ec2Handle(unit, listener, shell, context),
    async describe(batch) {
      const seen = await api.describeInstances(batch.map((h) => h.remoteId!))
      await Promise.all(
        batch.map((h) =>
          h
            .observe(seen.get(h.remoteId!))
            .catch((error: unknown) =>
              h.abandon(error instanceof Error ? error.message : String(error), true),
            ),
        ),
      )
    },
    onPoll: options.onPoll,
    dispose() {
      api.destroy()
      status.close()
    },
    recover: (runIds) => terminateOrphanInstances({ ...options, runIds }),
  })
  return { ...runner, stats: () => structuredClone(stats) }
}

interface Ec2Context {
  api: Ec2RunnerApi
  options: Ec2RunnerOptions
  status: StatusChannel
  stats: Ec2RunnerStats
}

class Ec2Handle extends RemoteHandle<number> {
  private readonly context: Ec2Context
  private statusUrl = ''
  private missing = 0

  constructor(unit: WorkUnit, listener: WorkListener, shell: RemoteShell<number>, context: Ec2Context) {
    super(unit, listener, shell)
    this.context = context
  }

  async launch(): Promise<void> {
    const { api, options } = this.context
    const { unit } = this
    try {
      const version = await this.shell.pin(unit)
      this.statusUrl = await this.context.status.prepare(unit)
      if (this.stopReason !== undefined) {
        this.settle({ status: 'stopped', reason: this.stopReason, durationMs: this.ms })
        return
      }
      const env = Object.entries(options.environment ?? {}).map(([k, v]) => `${k}=${v}`)
      let userData: string
      const command = [
        ...(env.length > 0 ? ['env', ...env] : []),
        ...(options.program ?? ['refresh']),
        'worker',
        unit.task,
        JSON.stringify(unit.input),
        '--status-file',
        this.statusUrl,
      ]
      try {
        userData = cloudConfigUserData({
          runcmd: [command],
          power_state: { mode: 'poweroff', condition: true },
        })
      } catch (error) {
        // too large for EC2: another attempt would be just as large
        this.fail(`${unit.id}: ${(error as Error).message}`, false)
        return
      }
      const tags = [
        { Key: TAG.run, Value: unit.runId ?? 'none' },
        { Key: TAG.asset, Value: unit.asset ?? 'none' },
        { Key: TAG.shard, Value: unit.id },
        { Key: TAG.managedBy, Value: 'refresh' },
      ]
      const lt = options.launchTemplate
      const profile = options.iamInstanceProfile
      const out = await api.runInstances(() => this.stopReason !== undefined, {
        MinCount: 1,
        MaxCount: 1,
        LaunchTemplate: {
          ...('id' in lt ? { LaunchTemplateId: lt.id } : { LaunchTemplateName: lt.name }),
          Version: String(version),
        },
        ...(options.instanceType ? { InstanceType: options.instanceType as never } : {}),
        ...(options.subnetId ? { SubnetId: options.subnetId } : {}),
        ...(options.securityGroupIds ? { SecurityGroupIds: options.securityGroupIds } : {}),
        ...(profile
          ? { IamInstanceProfile: profile.startsWith('arn:') ? { Arn: profile } : { Name: profile } }
          : {}),
        UserData: userData,
        InstanceInitiatedShutdownBehavior: 'terminate',
        TagSpecifications: [
          { ResourceType: 'instance', Tags: tags },
          { ResourceType: 'volume', Tags: tags },
        ],
        // the same for the same (run, unit, attempt): a call retried after a lost answer or a
        // capacity error gets the instance the first call started, never a second one
        ClientToken: clientToken(unit),
      })
      if (out === undefined) {
        // stopped while it waited for a launch slot: nothing was started
        this.settle({ status: 'stopped', reason: this.stopReason ?? 'stopped', durationMs: this.ms })
        return
      }
      const id = out.Instances?.[0]?.InstanceId
      if (!id) {
        this.fail(`${unit.id}: EC2 RunInstances answered without an instance`, true)
        return
      }
      this.remoteId = id
      this.context.stats.instancesStarted++
      this.shell.onRunning(this)
      if (this.stopReason !== undefined) await this.stopRemote(this.stopReason)
    } catch (error) {
      const retriable = !(error instanceof AwsCallError) || error.retriable
      this.fail(`${unit.id}: ${error instanceof Error ? error.message : String(error)}`, retriable)
    }
  }

  /** Its state cannot be known: terminate the instance (so that a retry does not run beside it) and fail. */
  async abandon(message: string, retriable: boolean): Promise<void> {
    let detail = ''
    try {
      await this.context.api.terminateInstances([this.remoteId!])
    } catch (error) {
      detail = `; TerminateInstances failed too (${error instanceof Error ? error.message : String(error)}), so instance ${this.remoteId} may still run`
    }
    this.fail(`${this.unit.id} (instance ${this.remoteId}): ${message}${detail}`, retriable)
  }

  /** A poll: DescribeInstances saw the instance (or not); its status decides. */
  async observe(instance: Instance | undefined): Promise<void> {
    if (this.settled || this.stopReason !== undefined) return
    // read after the describe: a worker writes its final status before it powers off
    const status = await this.context.status.read(this.statusUrl)
    if (this.settled || this.stopReason !== undefined) return
    if (status && !(status instanceof Error)) this.report(status.done, status.total)
    const where = `${this.unit.id} (instance ${this.remoteId})`
    if (status && !(status instanceof Error) && status.state === 'succeeded') {
      await this.context.status.discard(this.statusUrl)
      // it powers off and terminates by itself; terminating now frees it at once
      await this.context.api.terminateInstances([this.remoteId!]).catch(() => undefined)
      this.settle({ status: 'succeeded', output: status.output, durationMs: this.ms })
      return
    }
    if (status && !(status instanceof Error) && status.state === 'failed') {
      await this.context.api.terminateInstances([this.remoteId!]).catch(() => undefined)
      this.fail(`${where} the worker failed: ${status.error}`, true)
      return
    }
    if (instance === undefined) {
      // a new instance may take a moment to show up in DescribeInstances
      if (++this.missing < (this.context.options.missingPolls ?? 12)) return
      await this.abandon('EC2 no longer knows the instance', true)
      return
    }
    this.missing = 0
    const state = instance.State?.Name ?? 'unknown'
    if (!GONE.has(state)) return
    if (state === 'stopping' || state === 'stopped') {
      await this.context.api.terminateInstances([this.remoteId!]).catch(() => undefined)
    }
    const reason = instance.StateReason?.Message ?? instance.StateTransitionReason ?? 'no reason given'
    const unreadable = status instanceof Error ? `; ${status.message}` : ''
    this.fail(
      `${where} is ${state} (${reason}) and its worker wrote no final status to ${this.statusUrl}${unreadable}; its console output (aws ec2 get-console-output --instance-id ${this.remoteId}) shows why.`,
      true,
    )
  }

  protected async stopRemote(reason: string): Promise<void> {
    try {
      await this.context.api.terminateInstances([this.remoteId!])
      this.settle({ status: 'stopped', reason, durationMs: this.ms })
    } catch (error) {
      // the instance still runs: say so rather than report it stopped
      this.settle({
        status: 'failed',
        error: `could not terminate instance ${this.remoteId}: ${error instanceof Error ? error.message : String(error)}; terminate it with \`aws ec2 terminate-instances --instance-ids ${this.remoteId}\`.`,
        exitCode: null,
        signal: null,
        durationMs: this.ms,
        retriable: false,
      })
    }
  }
}

/** The config field an EC2 validation error is most likely about. */
function fieldOf(action: string, name: string, message: string): string {
  if (/LaunchTemplate/i.test(name) || /launch ?template/i.test(message)) return 'launchTemplate'
  if (/Subnet/i.test(name) || /subnet/i.test(message)) return 'subnetId'
  if (/Group/i.test(name) || /security ?group/i.test(message)) return 'securityGroupIds'
  if (/InstanceType|Unsupported/i.test(name) || /instance ?type/i.test(message)) return 'instanceType'
  if (/instance ?profile|iam/i.test(message)) return 'iamInstanceProfile'
  if (/user ?data/i.test(message)) return 'environment'
  if (action === 'DescribeLaunchTemplateVersions') return 'launchTemplate'
  return 'ec2Runner options'
}

/** The EC2 calls the runner makes, each counted, retried when AWS throttles or lacks capacity, explained when denied. */
class Ec2RunnerApi {
  private readonly ec2: Ec2Api
  private readonly launchSlot: <T>(fn: () => Promise<T>) => Promise<T>

  constructor(
    options: Pick<Ec2RunnerOptions, 'client' | 'region' | 'callAttempts' | 'backoffMs' | 'launchConcurrency'>,
    stats: Ec2RunnerStats,
  ) {
    this.launchSlot = limiter(options.launchConcurrency ?? 10)
    this.ec2 = new Ec2Api(options, 'ec2Runner({...})', fieldOf, (a) => {
      stats.calls[a] = (stats.calls[a] ?? 0) + 1
    })
  }

  destroy(): void {
    this.ec2.destroy()
  }

  pinLaunchTemplate(lt: LaunchTemplateRef): Promise<number> {
    return this.ec2.pinLaunchTemplate(lt)
  }

  /** Starts the instance once a launch slot is free, unless `canceled()` by then (undefined). */
  runInstances(canceled: () => boolean, input: RunInstancesCommandInput) {
    const label = input.LaunchTemplate?.LaunchTemplateId ?? input.LaunchTemplate?.LaunchTemplateName
    return this.launchSlot(async () => {
      if (canceled()) return undefined
      return this.ec2.call('RunInstances', `launch template ${label}`, (sdk, c) =>
        c.send(new sdk.RunInstancesCommand(input)),
      )
    })
  }

  /**
   * The instances among `ids` that EC2 knows, by id. An `instance-id` filter rather than
   * `InstanceIds`: a just-started instance that EC2 does not list yet is left out rather than
   * failing the whole batch (InvalidInstanceID.NotFound).
   */
  async describeInstances(ids: string[]): Promise<Map<string, Instance>> {
    const found = await this.ec2.describeInstances(
      { filters: [{ Name: 'instance-id', Values: ids }] },
      'the instances of this run',
    )
    return new Map(found.flatMap((i) => (i.InstanceId ? [[i.InstanceId, i] as const] : [])))
  }

  /** Instances of these runs that still run (or could run again), by tag. */
  async instancesOfRuns(runIds: readonly string[]): Promise<string[]> {
    const found = await this.ec2.describeInstances(
      {
        filters: [
          { Name: `tag:${TAG.run}`, Values: [...runIds] },
          { Name: `tag:${TAG.managedBy}`, Values: ['refresh'] },
          { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
        ],
      },
      'the instances of interrupted runs',
    )
    return found.flatMap((i) => (i.InstanceId ? [i.InstanceId] : []))
  }

  terminateInstances(ids: string[]): Promise<void> {
    return this.ec2.terminateInstances(ids, `instances ${ids.join(', ')}`)
  }
}

export interface TerminateOrphanInstancesOptions
  extends Pick<Ec2RunnerOptions, 'client' | 'region' | 'callAttempts' | 'backoffMs'> {
  /** The interrupted runs whose instances to terminate (their `refresh:run` tag). */
  runIds: readonly string[]
}

/**
 * Crash recovery: terminates every instance of a run in `runIds` that is pending, running,
 * stopping or stopped (DescribeInstances by the `refresh:run` tag, then TerminateInstances).
 * Returns the instance ids it terminated.
 */
export async function terminateOrphanInstances(options: TerminateOrphanInstancesOptions): Promise<string[]> {
  if (options.runIds.length === 0) return []
  const api = new Ec2RunnerApi(options, {
    calls: {},
    instancesStarted: 0,
    polls: 0,
    maxCallsPerPoll: { calls: 0, running: 0 },
  })
  try {
    const ids: string[] = []
    // a filter takes up to 200 values
    for (let i = 0; i < options.runIds.length; i += 200)
      ids.push(...(await api.instancesOfRuns(options.runIds.slice(i, i + 200))))
    if (ids.length > 0) await api.terminateInstances(ids)
    return ids
  } finally {
    api.destroy()
  }
}
