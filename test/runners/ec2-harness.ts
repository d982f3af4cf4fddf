/**
 * A stand-in EC2 control plane for tests, driven through aws-sdk-client-mock (the EC2 twin of
 * ecs-harness.ts). RunInstances decodes the instance's `#cloud-config` user data and really runs
 * each `runcmd` entry as a local process (`refresh` is `node dist/cli/main.js`; a leading
 * `env NAME=VALUE...` sets variables), with this process's environment (so the local S3 server's
 * variables reach the worker). DescribeInstances answers from the process state: `running` while
 * it runs; after it exits `shutting-down`, then `terminated` (what `power_state: poweroff` does
 * with `InstanceInitiatedShutdownBehavior: terminate`). TerminateInstances kills the process.
 * Every instance is kept as a JSON file under `stateDir`, so a second harness (in the process
 * that survives a SIGKILLed orchestrator) sees the instances the first one started.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  DescribeLaunchTemplateVersionsCommand,
  type DescribeLaunchTemplateVersionsCommandInput,
  EC2Client,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2'
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock'
import { parseCloudConfigUserData } from '../../runners/user-data.js'
import { alive, CLI, holdScript } from './ecs-harness.js'

export const TEMPLATE_ID = 'lt-0123456789abcdef0'
export const TEMPLATE_NAME = 'refresh-worker'

export interface Ec2HarnessOptions {
  /** Where instances are kept (one JSON file each) and worker logs written. */
  stateDir: string
  /** The first N RunInstances calls fail with InsufficientInstanceCapacity and start nothing. */
  capacityFailures?: number
  /** The first RunInstances call starts its instance, then fails as a timed-out call would. */
  loseFirstResponse?: boolean
  /** Hold every started worker before it runs until it is killed (cancel and crash tests). */
  hold?: boolean
  /** Changes a runcmd entry before it runs (for example a bad input for one range). */
  rewrite?(argv: string[]): string[]
  /** The launch template's latest and default version numbers (a test may change them mid-run). */
  versions?: { latest: number; default: number }
}

export interface InstanceRecord {
  id: string
  pid: number | null
  clientToken: string
  tags: Record<string, string>
  runcmd: string[][]
  launchTemplateVersion: string | null
  state: 'pending' | 'running' | 'shutting-down' | 'terminated'
  exitCode: number | null
  stateReason: { Code: string; Message: string } | null
  /** How many describes have seen it shutting down (the next one after that sees it terminated). */
  shuttingDownSeen: number
}

export class Ec2Harness {
  readonly client: EC2Client
  readonly mock: AwsClientStub<EC2Client>
  readonly instances = new Map<string, InstanceRecord>()
  readonly runInputs: RunInstancesCommandInput[] = []
  readonly describeInputs: DescribeInstancesCommandInput[] = []
  readonly calls: Record<string, number> = {}
  readonly versions: { latest: number; default: number }
  private readonly children = new Map<string, ChildProcess>()
  private readonly byToken = new Map<string, string>()
  private readonly options: Ec2HarnessOptions
  private capacityLeft: number
  private loseNext: boolean
  private seq = 0
  private restored = false

  constructor(options: Ec2HarnessOptions) {
    this.options = options
    this.versions = { ...(options.versions ?? { latest: 3, default: 2 }) }
    this.capacityLeft = options.capacityFailures ?? 0
    this.loseNext = options.loseFirstResponse ?? false
    mkdirSync(join(options.stateDir, 'instances'), { recursive: true })
    for (const file of readdirSync(join(options.stateDir, 'instances'))) {
      const i = JSON.parse(readFileSync(join(options.stateDir, 'instances', file), 'utf8')) as InstanceRecord
      this.instances.set(i.id, i)
      this.byToken.set(i.clientToken, i.id)
      this.seq = Math.max(this.seq, Number.parseInt(i.id.slice(2), 16))
    }
    this.client = new EC2Client({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
    })
    this.mock = mockClient(this.client)
    const count = (name: string) => {
      this.calls[name] = (this.calls[name] ?? 0) + 1
    }
    this.mock
      .on(DescribeLaunchTemplateVersionsCommand)
      .callsFake((input: DescribeLaunchTemplateVersionsCommandInput) => {
        count('DescribeLaunchTemplateVersions')
        if (input.LaunchTemplateId !== TEMPLATE_ID && input.LaunchTemplateName !== TEMPLATE_NAME) {
          throw awsError(
            'InvalidLaunchTemplateName.NotFoundException',
            `The specified launch template, with template name ${input.LaunchTemplateName ?? input.LaunchTemplateId}, does not exist.`,
          )
        }
        const v = input.Versions?.[0] ?? '$Default'
        const n =
          v === '$Latest' ? this.versions.latest : v === '$Default' ? this.versions.default : Number(v)
        if (!Number.isInteger(n) || n < 1 || n > this.versions.latest) {
          throw awsError(
            'InvalidLaunchTemplateId.VersionNotFound',
            `Could not find launch template version ${v}.`,
          )
        }
        return {
          LaunchTemplateVersions: [
            {
              LaunchTemplateId: TEMPLATE_ID,
              LaunchTemplateName: TEMPLATE_NAME,
              VersionNumber: n,
              DefaultVersion: n === this.versions.default,
            },
          ],
        }
      })
    this.mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
      count('RunInstances')
      return this.runInstances(input)
    })
    this.mock.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
      count('DescribeInstances')
      this.describeInputs.push(input)
      const ids = input.InstanceIds ?? []
      if (ids.length > 1000) throw awsError('InvalidParameterValue', 'too many instance ids')
      for (const f of input.Filters ?? []) {
        if ((f.Values?.length ?? 0) > 200)
          throw awsError('InvalidParameterValue', 'a filter takes up to 200 values')
      }
      const found: Instance[] = []
      for (const id of this.instances.keys()) {
        const i = this.refresh(id)!
        if (ids.length > 0 && !ids.includes(id)) continue
        if (!(input.Filters ?? []).every((f) => matches(i, f.Name ?? '', f.Values ?? []))) continue
        found.push(this.describe(i))
      }
      const unknown = ids.filter((id) => !this.instances.has(id))
      if (unknown.length > 0)
        throw awsError('InvalidInstanceID.NotFound', `The instance IDs '${unknown.join(', ')}' do not exist`)
      // each describe moves instances that were seen shutting down on to terminated
      for (const d of found) {
        const i = this.instances.get(d.InstanceId!)!
        if (i.state === 'shutting-down') {
          i.shuttingDownSeen++
          if (i.shuttingDownSeen > 1) i.state = 'terminated'
          this.save(i)
        }
      }
      return { Reservations: found.length > 0 ? [{ Instances: found }] : [] }
    })
    this.mock.on(TerminateInstancesCommand).callsFake((input: { InstanceIds?: string[] }) => {
      count('TerminateInstances')
      const unknown = (input.InstanceIds ?? []).filter((id) => !this.instances.has(id))
      if (unknown.length > 0)
        throw awsError('InvalidInstanceID.NotFound', `The instance ID '${unknown[0]}' does not exist`)
      const out = []
      for (const id of input.InstanceIds ?? []) {
        const i = this.refresh(id)!
        const previous = i.state
        this.terminate(i)
        out.push({
          InstanceId: id,
          PreviousState: { Name: previous },
          CurrentState: { Name: i.state },
        })
      }
      return { TerminatingInstances: out }
    })
  }

  /** Process ids of the workers this harness (or an earlier one on the same state) started. */
  pids(): number[] {
    return [...this.instances.values()].map((i) => i.pid).filter((p): p is number => p !== null)
  }

  /** Instances that are pending or running. */
  running(): InstanceRecord[] {
    return [...this.instances.keys()]
      .map((id) => this.refresh(id)!)
      .filter((i) => i.state === 'pending' || i.state === 'running')
  }

  restore(): void {
    this.restored = true
    this.mock.restore()
    for (const child of this.children.values()) if (child.exitCode === null) child.kill('SIGKILL')
  }

  private runInstances(input: RunInstancesCommandInput) {
    this.runInputs.push(input)
    if (input.MinCount !== 1 || input.MaxCount !== 1)
      throw awsError('InvalidParameterValue', 'refresh starts one instance a call')
    const token = input.ClientToken ?? ''
    const known = token ? this.byToken.get(token) : undefined
    if (known) return { Instances: [this.describe(this.refresh(known)!)] }
    if (this.capacityLeft > 0) {
      this.capacityLeft--
      throw Object.assign(
        new Error(
          'We currently do not have sufficient m7i.large capacity in the Availability Zone you requested (us-east-1a).',
        ),
        { name: 'InsufficientInstanceCapacity', $metadata: { httpStatusCode: 500 }, $fault: 'server' },
      )
    }
    const config = parseCloudConfigUserData(input.UserData ?? '')
    const tags: Record<string, string> = {}
    for (const spec of input.TagSpecifications ?? []) {
      if (spec.ResourceType !== 'instance') continue
      for (const t of spec.Tags ?? []) if (t.Key) tags[t.Key] = t.Value ?? ''
    }
    const id = `i-${(++this.seq).toString(16).padStart(17, '0')}`
    const i: InstanceRecord = {
      id,
      pid: null,
      clientToken: token,
      tags,
      runcmd: config.runcmd.map((argv) => (this.options.rewrite ? this.options.rewrite(argv) : argv)),
      launchTemplateVersion: input.LaunchTemplate?.Version ?? null,
      // RunInstances answers `pending`; the first describe sees it `running`
      state: 'pending',
      exitCode: null,
      stateReason: null,
      shuttingDownSeen: 0,
    }
    this.instances.set(id, i)
    if (token) this.byToken.set(token, id)
    this.boot(i)
    if (this.loseNext) {
      this.loseNext = false
      // a request that reached EC2 but whose answer was lost: no $metadata, so it is retried
      throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET' })
    }
    return { Instances: [this.describe(i)] }
  }

  /** Runs the runcmd entries in order, then "powers off" (shutting-down, then terminated). */
  private boot(i: InstanceRecord): void {
    const log = openSync(join(this.options.stateDir, `${i.id}.log`), 'a')
    const next = (n: number): void => {
      const argv = i.runcmd[n]
      if (!argv || (i.state !== 'running' && i.state !== 'pending')) {
        closeSync(log)
        this.powerOff(i)
        return
      }
      const env: Record<string, string> = {}
      let rest = argv
      if (rest[0] === 'env') {
        rest = rest.slice(1)
        while (rest[0]?.includes('=')) {
          const [k, ...v] = rest[0].split('=')
          env[k!] = v.join('=')
          rest = rest.slice(1)
        }
      }
      const hold = this.options.hold
        ? ['--import', pathToFileURL(holdScript(this.options.stateDir)).href]
        : []
      const [program, args] =
        rest[0] === 'refresh'
          ? [process.execPath, [...hold, CLI, ...rest.slice(1)]]
          : [rest[0]!, rest.slice(1)]
      const child = spawn(program, args, {
        stdio: ['ignore', log, log],
        env: { ...process.env, ...env },
      })
      i.pid = child.pid ?? null
      this.children.set(i.id, child)
      this.save(i)
      child.on('exit', (code, signal) => {
        i.exitCode = code ?? (signal ? 128 + 15 : null)
        // cloud-init goes on with the next command whatever this one's exit code
        next(n + 1)
      })
    }
    next(0)
  }

  private powerOff(i: InstanceRecord): void {
    if (i.state === 'running' || i.state === 'pending') {
      i.state = 'shutting-down'
      i.stateReason = {
        Code: 'Client.InstanceInitiatedShutdown',
        Message: 'Client.InstanceInitiatedShutdown: Instance initiated shutdown',
      }
    }
    this.save(i)
  }

  private terminate(i: InstanceRecord): void {
    if (i.state === 'terminated' || i.state === 'shutting-down') return
    i.state = 'shutting-down'
    i.stateReason = {
      Code: 'Client.UserInitiatedShutdown',
      Message: 'Client.UserInitiatedShutdown: User initiated shutdown',
    }
    const child = this.children.get(i.id)
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    else if (!child && i.pid !== null && alive(i.pid)) process.kill(i.pid, 'SIGTERM')
    this.save(i)
  }

  /** The instance's current state (the worker of an instance started by another harness is checked by its pid). */
  private refresh(id: string): InstanceRecord | undefined {
    const i = this.instances.get(id)
    if (!i || i.state === 'terminated' || i.state === 'shutting-down') return i
    if (i.state === 'pending') i.state = 'running'
    if (!this.children.has(id) && (i.pid === null || !alive(i.pid))) this.powerOff(i)
    return i
  }

  private describe(i: InstanceRecord): Instance {
    const codes = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48 }
    return {
      InstanceId: i.id,
      State: { Name: i.state, Code: codes[i.state] },
      ...(i.stateReason ? { StateReason: i.stateReason, StateTransitionReason: i.stateReason.Message } : {}),
      Tags: Object.entries(i.tags).map(([Key, Value]) => ({ Key, Value })),
    }
  }

  private save(i: InstanceRecord): void {
    // after restore() the test's temp directory may be gone already
    if (this.restored) return
    // whole or not at all (a temp file, then a rename): tests poll these records while instances change
    const temp = join(this.options.stateDir, `.${i.id}.json.${process.pid}.tmp`)
    writeFileSync(temp, JSON.stringify(i))
    renameSync(temp, join(this.options.stateDir, 'instances', `${i.id}.json`))
  }
}

function matches(i: InstanceRecord, name: string, values: string[]): boolean {
  if (name === 'instance-id') return values.includes(i.id)
  if (name === 'instance-state-name') return values.includes(i.state)
  if (name.startsWith('tag:')) return values.includes(i.tags[name.slice(4)] ?? '\u0000')
  throw awsError('InvalidParameterValue', `The filter '${name}' is invalid`)
}

function awsError(name: string, message: string): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: 400 }, $fault: 'client' })
}
