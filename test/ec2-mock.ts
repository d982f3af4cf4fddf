/**
 * A stateful stand-in for EC2, driven through aws-sdk-client-mock, for the EBS snapshot backend,
 * the EC2 replica fleet and `refresh doctor`. Volumes are local directories: CreateSnapshot really
 * copies the volume's directory, and its Progress rises over a few DescribeSnapshots calls until
 * it completes. RunInstances with a block device mapping from a snapshot starts an "instance" with
 * the private IP 127.0.0.N (Linux routes all of 127/8 to loopback): its user data is decoded, the
 * mount of the device is emulated by putting the snapshot's directory where the mount point was,
 * and its runcmd really runs (`refresh serve` as `node dist/cli/main.js serve`, bound to the
 * instance's IP). TerminateInstances kills that process. Everything is kept in memory.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import {
  CreateSnapshotCommand,
  type CreateSnapshotCommandInput,
  DeleteSnapshotCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  DescribeLaunchTemplatesCommand,
  type DescribeLaunchTemplatesCommandInput,
  DescribeLaunchTemplateVersionsCommand,
  type DescribeLaunchTemplateVersionsCommandInput,
  DescribeSnapshotsCommand,
  type DescribeSnapshotsCommandInput,
  DescribeVolumesCommand,
  type DescribeVolumesCommandInput,
  EC2Client,
  type Filter,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  type Snapshot,
  type Tag,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2'
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock'
import { clientConfig } from '../aws/service.js'
import { parseCloudConfigUserData } from '../runners/user-data.js'

export type Unhealthy =
  /** Serves a copy of the snapshot whose manifest claims 2 documents more than its shards hold. */
  | 'damaged'
  /** Runs nothing: no answer on its port. */
  | 'down'

export interface Ec2MockOptions {
  /** Where snapshots are copied to and instances' logs written. */
  stateDir: string
  /** The volumes: id -> the local directory that stands for it. */
  volumes?: Record<string, string>
  /** Whether new snapshots are encrypted (default true). */
  encrypted?: boolean
  /** DescribeSnapshots calls a pending snapshot takes to complete (default 3). */
  progressSteps?: number
  /** Snapshots never complete (for waiter timeouts). */
  stuck?: boolean
  /** Launch templates by id and by name, with their default version (default `lt-0replica` / `refresh-replica`, version 4). */
  launchTemplates?: Array<{ id: string; name: string; version: number }>
  /** Actions answered with UnauthorizedOperation (DryRun checks too). */
  deny?: string[]
  /** The n-th instance launched (1-based) is unhealthy in this way. */
  unhealthy?: (n: number) => Unhealthy | undefined
  /** The first instance's last IP octet (default 10). */
  firstIp?: number
  /** Environment for the instances' processes. */
  env?: NodeJS.ProcessEnv
  /**
   * Continue from what an earlier mock on the same stateDir saved (`save()`): its snapshots and
   * its counters, so that snapshot ids, instance ids and IPs never repeat across CLI processes.
   */
  persist?: boolean
  /**
   * Mock every EC2Client of this process (the class), not just `client`: for a refresh CLI
   * process under test, whose config makes its own clients (test/aws-stand-ins.ts).
   */
  mockAll?: boolean
  /**
   * Where RunInstances and TerminateInstances are recorded in order, with their instance ids:
   * share one with test/elb-mock.ts to assert the order of calls across both services.
   */
  journal?: JournalEntry[]
}

/** One call recorded by a mock, with the instance ids it was about. */
export interface JournalEntry {
  action: string
  ids: string[]
}

interface SnapshotRecord {
  id: string
  volumeId: string
  dir: string
  state: 'pending' | 'completed' | 'error'
  describes: number
  encrypted: boolean
  tags: Tag[]
  startTime: Date
  runId?: string
}

export interface InstanceRecord {
  id: string
  n: number
  state: 'pending' | 'running' | 'shutting-down' | 'terminated'
  ip: string
  tags: Tag[]
  snapshotId: string | null
  launchTime: Date
  describes: number
  child: ChildProcess | null
  /** The command it ran (after the mount was emulated), for assertions. */
  command: string[] | null
  log: string
}

/** Not from ./helpers.js: that imports vitest, and this mock also runs inside CLI processes (aws-stand-ins.ts). */
const CLI = join(resolve(import.meta.dirname, '..'), 'dist', 'cli', 'main.js')

export const LAUNCH_TEMPLATE = { id: 'lt-0replica', name: 'refresh-replica', version: 4 }

function awsError(name: string, message: string, status = 400): Error {
  return Object.assign(new Error(message), {
    name,
    $metadata: { httpStatusCode: status },
    $fault: status >= 500 ? 'server' : 'client',
  })
}

export class Ec2Mock {
  readonly client: EC2Client
  readonly mock: AwsClientStub<EC2Client>
  readonly snapshots = new Map<string, SnapshotRecord>()
  readonly instances = new Map<string, InstanceRecord>()
  readonly volumes: Map<string, string>
  readonly calls: Record<string, number> = {}
  readonly runInstancesInputs: RunInstancesCommandInput[] = []
  readonly createSnapshotInputs: CreateSnapshotCommandInput[] = []
  /** Snapshot ids deleted, in order. */
  readonly deleted: string[] = []
  readonly deny: Set<string>
  /** RunInstances and TerminateInstances in order (the `journal` option when given). */
  readonly journal: JournalEntry[]
  /** The n-th instance launched (1-based) is unhealthy in this way (settable between rollouts). */
  unhealthy: ((n: number) => Unhealthy | undefined) | undefined
  private readonly options: Ec2MockOptions
  private readonly byToken = new Map<string, string[]>()
  private seq = 0
  /** Instances RunInstances started (their IPs and 1-based numbers follow it). */
  private launched = 0
  private clock = Date.parse('2026-01-01T00:00:00Z')

  constructor(options: Ec2MockOptions) {
    this.options = options
    this.volumes = new Map(Object.entries(options.volumes ?? {}))
    this.deny = new Set(options.deny ?? [])
    this.journal = options.journal ?? []
    this.unhealthy = options.unhealthy
    clientConfig({}) // no Node-version notice from the SDK in test output
    mkdirSync(join(options.stateDir, 'snapshots'), { recursive: true })
    if (options.persist) this.reload()
    this.client = new EC2Client({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
    })
    this.mock = options.mockAll ? mockClient(EC2Client) : mockClient(this.client)
    this.mock.on(DescribeLaunchTemplatesCommand).callsFake((input: DescribeLaunchTemplatesCommandInput) => {
      this.enter('DescribeLaunchTemplates', input.DryRun)
      const templates = this.options.launchTemplates ?? [LAUNCH_TEMPLATE]
      const wanted = [...(input.LaunchTemplateIds ?? []), ...(input.LaunchTemplateNames ?? [])]
      const found = templates.filter(
        (t) => wanted.length === 0 || wanted.includes(t.id) || wanted.includes(t.name),
      )
      if (wanted.length > 0 && found.length === 0)
        throw awsError(
          'InvalidLaunchTemplateName.NotFoundException',
          `The launch template ${wanted[0]} does not exist`,
        )
      return {
        LaunchTemplates: found.map((t) => ({
          LaunchTemplateId: t.id,
          LaunchTemplateName: t.name,
          DefaultVersionNumber: t.version,
          LatestVersionNumber: t.version,
        })),
      }
    })
    this.mock.on(CreateSnapshotCommand).callsFake((input: CreateSnapshotCommandInput) => {
      this.enter('CreateSnapshot', input.DryRun)
      return this.createSnapshot(input)
    })
    this.mock.on(DescribeSnapshotsCommand).callsFake((input: DescribeSnapshotsCommandInput) => {
      this.enter('DescribeSnapshots', input.DryRun)
      return { Snapshots: this.describeSnapshots(input) }
    })
    this.mock.on(DeleteSnapshotCommand).callsFake((input: { SnapshotId?: string; DryRun?: boolean }) => {
      this.enter('DeleteSnapshot', input.DryRun)
      if (!this.snapshots.has(input.SnapshotId ?? ''))
        throw awsError('InvalidSnapshot.NotFound', `The snapshot '${input.SnapshotId}' does not exist.`)
      this.snapshots.delete(input.SnapshotId!)
      this.deleted.push(input.SnapshotId!)
      return {}
    })
    this.mock.on(DescribeVolumesCommand).callsFake((input: DescribeVolumesCommandInput) => {
      this.enter('DescribeVolumes', input.DryRun)
      const ids = input.VolumeIds ?? [...this.volumes.keys()]
      for (const id of ids)
        if (!this.volumes.has(id))
          throw awsError('InvalidVolume.NotFound', `The volume '${id}' does not exist.`)
      return {
        Volumes: ids.map((VolumeId) => ({ VolumeId, State: 'in-use' as const, Encrypted: this.encrypted })),
      }
    })
    this.mock
      .on(DescribeLaunchTemplateVersionsCommand)
      .callsFake((input: DescribeLaunchTemplateVersionsCommandInput) => {
        this.enter('DescribeLaunchTemplateVersions', input.DryRun)
        const t = this.template(input.LaunchTemplateId, input.LaunchTemplateName)
        return {
          LaunchTemplateVersions: [
            {
              LaunchTemplateId: t.id,
              LaunchTemplateName: t.name,
              VersionNumber: t.version,
              DefaultVersion: true,
            },
          ],
        }
      })
    this.mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
      this.enter('RunInstances', input.DryRun)
      return this.runInstances(input)
    })
    this.mock.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
      this.enter('DescribeInstances', input.DryRun)
      const found = this.describeInstances(input)
      return { Reservations: found.length ? [{ Instances: found }] : [] }
    })
    this.mock
      .on(TerminateInstancesCommand)
      .callsFake((input: { InstanceIds?: string[]; DryRun?: boolean }) => {
        this.enter('TerminateInstances', input.DryRun)
        const changes = []
        for (const id of input.InstanceIds ?? []) {
          const i = this.instances.get(id)
          if (!i) throw awsError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
          const previous = i.state
          this.terminate(i)
          changes.push({
            InstanceId: id,
            PreviousState: { Name: previous },
            CurrentState: { Name: i.state },
          })
        }
        this.journal.push({ action: 'TerminateInstances', ids: [...(input.InstanceIds ?? [])] })
        return { TerminatingInstances: changes }
      })
  }

  private get encrypted(): boolean {
    return this.options.encrypted ?? true
  }

  /** Counts the call; answers a denied action with UnauthorizedOperation and a DryRun with DryRunOperation. */
  private enter(action: string, dryRun: boolean | undefined): void {
    this.calls[action] = (this.calls[action] ?? 0) + 1
    if (this.deny.has(action)) {
      throw awsError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403)
    }
    if (dryRun)
      throw awsError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412)
  }

  private tick(): Date {
    this.clock += 60_000
    return new Date(this.clock)
  }

  private template(id: string | undefined, name: string | undefined) {
    const all = this.options.launchTemplates ?? [LAUNCH_TEMPLATE]
    const t = all.find((x) => (id !== undefined ? x.id === id : x.name === name))
    if (!t) {
      throw id !== undefined
        ? awsError(
            'InvalidLaunchTemplateId.NotFound',
            `The specified launch template, with template ID ${id}, does not exist.`,
          )
        : awsError(
            'InvalidLaunchTemplateName.NotFoundException',
            `The specified launch template, with template name ${name}, does not exist.`,
          )
    }
    return t
  }

  /** Adds a snapshot as if made earlier (for retention tests): no files, just the record. */
  addSnapshot(s: {
    volumeId: string
    tags?: Record<string, string>
    state?: SnapshotRecord['state']
  }): string {
    const id = `snap-${String(++this.seq).padStart(17, '0')}`
    this.snapshots.set(id, {
      id,
      volumeId: s.volumeId,
      dir: join(this.options.stateDir, 'snapshots', id),
      state: s.state ?? 'completed',
      describes: 0,
      encrypted: true,
      tags: Object.entries(s.tags ?? {}).map(([Key, Value]) => ({ Key, Value })),
      startTime: this.tick(),
    })
    return id
  }

  /** Adds a running instance that runs nothing (for "in use" tests). */
  addInstance(tags: Record<string, string>): string {
    const n = ++this.seq
    const id = `i-${n.toString(16).padStart(17, '0')}`
    this.instances.set(id, {
      id,
      n,
      state: 'running',
      ip: '127.0.0.1',
      tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
      snapshotId: tags['refresh:snapshot'] ?? null,
      launchTime: this.tick(),
      describes: 0,
      child: null,
      command: null,
      log: '',
    })
    return id
  }

  private createSnapshot(input: CreateSnapshotCommandInput) {
    const volumeId = input.VolumeId ?? ''
    const source = this.volumes.get(volumeId)
    if (!source) throw awsError('InvalidVolume.NotFound', `The volume '${volumeId}' does not exist.`)
    this.createSnapshotInputs.push(input)
    const id = `snap-${String(++this.seq).padStart(17, '0')}`
    const dir = join(this.options.stateDir, 'snapshots', id)
    cpSync(source, dir, { recursive: true })
    const tags = (input.TagSpecifications ?? [])
      .filter((t) => t.ResourceType === 'snapshot')
      .flatMap((t) => t.Tags ?? [])
    const record: SnapshotRecord = {
      id,
      volumeId,
      dir,
      state: 'pending',
      describes: 0,
      encrypted: this.encrypted,
      tags,
      startTime: this.tick(),
    }
    this.snapshots.set(id, record)
    return { ...this.snapshotOf(record) }
  }

  private snapshotOf(s: SnapshotRecord): Snapshot {
    const steps = this.options.progressSteps ?? 3
    const progress =
      s.state === 'completed' ? 100 : Math.min(99, Math.floor((100 * s.describes) / (steps + 1)))
    return {
      SnapshotId: s.id,
      VolumeId: s.volumeId,
      State: s.state,
      Progress: `${progress}%`,
      Encrypted: s.encrypted,
      StartTime: s.startTime,
      OwnerId: '123456789012',
      Tags: s.tags,
    }
  }

  private describeSnapshots(input: DescribeSnapshotsCommandInput): Snapshot[] {
    const found: Snapshot[] = []
    for (const s of this.snapshots.values()) {
      if (input.SnapshotIds && !input.SnapshotIds.includes(s.id)) continue
      const fields: Record<string, string | undefined> = {
        'volume-id': s.volumeId,
        'snapshot-id': s.id,
        status: s.state,
      }
      if (!matches(input.Filters, fields, s.tags)) continue
      if (s.state === 'pending' && !this.options.stuck) {
        s.describes++
        if (s.describes > (this.options.progressSteps ?? 3)) s.state = 'completed'
      }
      found.push(this.snapshotOf(s))
    }
    if (input.SnapshotIds) {
      for (const id of input.SnapshotIds)
        if (!this.snapshots.has(id))
          throw awsError('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`)
    }
    return found
  }

  /** The snapshot's directory (the volume's files as they were when it was taken). */
  snapshotDir(id: string): string {
    const s = this.snapshots.get(id)
    if (!s) throw new Error(`no snapshot ${id}`)
    return s.dir
  }

  private runInstances(input: RunInstancesCommandInput) {
    const token = input.ClientToken ?? ''
    const known = token ? this.byToken.get(token) : undefined
    if (known) return { Instances: known.map((id) => this.instanceOf(this.instances.get(id)!)) }
    this.runInstancesInputs.push(input)
    this.template(input.LaunchTemplate?.LaunchTemplateId, input.LaunchTemplate?.LaunchTemplateName)
    const mappings = input.BlockDeviceMappings ?? []
    for (const m of mappings) {
      const id = m.Ebs?.SnapshotId
      if (!id) continue
      const s = this.snapshots.get(id)
      if (!s) throw awsError('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`)
      if (s.state !== 'completed') throw awsError('IncorrectState', `Snapshot '${id}' is not 'completed'.`)
    }
    const tags = (input.TagSpecifications ?? [])
      .filter((t) => t.ResourceType === 'instance')
      .flatMap((t) => t.Tags ?? [])
    const count = input.MaxCount ?? 1
    const ids: string[] = []
    for (let k = 0; k < count; k++) {
      const n = ++this.seq
      const launched = this.launched++
      const id = `i-${n.toString(16).padStart(17, '0')}`
      const ip = `127.0.0.${(this.options.firstIp ?? 10) + launched}`
      const record: InstanceRecord = {
        id,
        n: launched + 1,
        state: 'pending',
        ip,
        tags,
        snapshotId: mappings.find((m) => m.Ebs?.SnapshotId)?.Ebs?.SnapshotId ?? null,
        launchTime: this.tick(),
        describes: 0,
        child: null,
        command: null,
        log: join(this.options.stateDir, `${id}.log`),
      }
      this.instances.set(id, record)
      ids.push(id)
      this.boot(record, input)
    }
    if (token) this.byToken.set(token, ids)
    this.journal.push({ action: 'RunInstances', ids })
    return { Instances: ids.map((id) => this.instanceOf(this.instances.get(id)!)) }
  }

  /** Runs the instance's user data: the mounts emulated, each runcmd command started. */
  private boot(i: InstanceRecord, input: RunInstancesCommandInput): void {
    if (!input.UserData) return
    const config = parseCloudConfigUserData(input.UserData)
    const mounts: Array<[string, string]> = []
    for (const [device, mountPoint] of config.mounts ?? []) {
      const mapping = input.BlockDeviceMappings?.find((m) => m.DeviceName === device)
      if (!mapping?.Ebs?.SnapshotId) continue
      let dir = this.snapshotDir(mapping.Ebs.SnapshotId)
      const how = this.unhealthy?.(i.n)
      if (how === 'damaged') dir = this.damage(dir, i.id)
      mounts.push([mountPoint, dir])
    }
    if (this.unhealthy?.(i.n) === 'down') return
    for (const cmd of config.runcmd) {
      const args = cmd.map((a) => {
        for (const [mountPoint, dir] of mounts) {
          if (a === mountPoint) return dir
          if (a.startsWith(`${mountPoint}/`)) return dir + a.slice(mountPoint.length)
        }
        return a
      })
      const host = args.indexOf('--host')
      if (host >= 0) args[host + 1] = i.ip
      if (args[0] !== 'refresh') throw new Error(`the EC2 mock runs only refresh commands (got ${args[0]})`)
      i.command = args
      const log = openSync(i.log, 'a')
      const child = spawn(process.execPath, [CLI, ...args.slice(1)], {
        stdio: ['ignore', log, log],
        env: { ...process.env, ...this.options.env },
      })
      closeSync(log)
      i.child = child
    }
  }

  /** A copy of a snapshot's files whose manifest claims 2 more documents than its shards hold. */
  private damage(dir: string, id: string): string {
    const copy = join(this.options.stateDir, `damaged-${id}`)
    cpSync(dir, copy, { recursive: true })
    for (const manifest of findManifests(copy)) {
      const m = JSON.parse(readFileSync(manifest, 'utf8')) as { documents: number }
      m.documents += 2
      writeFileSync(manifest, JSON.stringify(m))
    }
    return copy
  }

  private terminate(i: InstanceRecord): void {
    if (i.state === 'terminated') return
    i.state = 'terminated'
    if (i.child && i.child.exitCode === null) i.child.kill('SIGTERM')
  }

  private instanceOf(i: InstanceRecord): Instance {
    return {
      InstanceId: i.id,
      State: {
        Name: i.state,
        Code: { pending: 0, running: 16, 'shutting-down': 32, terminated: 48 }[i.state],
      },
      PrivateIpAddress: i.ip,
      LaunchTime: i.launchTime,
      Tags: i.tags,
      ...(i.snapshotId
        ? { BlockDeviceMappings: [{ DeviceName: '/dev/sdf', Ebs: { VolumeId: `vol-from-${i.snapshotId}` } }] }
        : {}),
    }
  }

  private describeInstances(input: DescribeInstancesCommandInput): Instance[] {
    const found: Instance[] = []
    for (const id of input.InstanceIds ?? []) {
      if (!this.instances.has(id))
        throw awsError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
    }
    for (const i of this.instances.values()) {
      if (input.InstanceIds && !input.InstanceIds.includes(i.id)) continue
      // an instance is pending at its first look, running from then on
      if (i.state === 'pending' && i.describes++ > 0) i.state = 'running'
      if (!matches(input.Filters, { 'instance-state-name': i.state, 'instance-id': i.id }, i.tags)) continue
      found.push(this.instanceOf(i))
    }
    return found
  }

  /**
   * Writes what a later mock on the same stateDir continues from (with `persist`): the snapshots
   * and the counters. Instances are not carried over: their processes belong to this process.
   */
  save(): void {
    const state = { seq: this.seq, launched: this.launched, snapshots: [...this.snapshots.values()] }
    writeFileSync(join(this.options.stateDir, 'mock-state.json'), JSON.stringify(state))
  }

  private reload(): void {
    const file = join(this.options.stateDir, 'mock-state.json')
    if (!existsSync(file)) return
    const state = JSON.parse(readFileSync(file, 'utf8')) as {
      seq: number
      launched: number
      snapshots: Array<SnapshotRecord & { startTime: string }>
    }
    this.seq = state.seq
    this.launched = state.launched
    for (const snap of state.snapshots)
      this.snapshots.set(snap.id, { ...snap, startTime: new Date(snap.startTime) })
  }

  /** Instances not terminated. */
  live(): InstanceRecord[] {
    return [...this.instances.values()].filter((i) => i.state !== 'terminated')
  }

  /** Kills every instance's process and removes the mock. */
  restore(): void {
    for (const i of this.instances.values()) if (i.child && i.child.exitCode === null) i.child.kill('SIGKILL')
    this.mock.restore()
  }
}

/** EC2 filters: `tag:Key`, `tag-key` and the given fields; each filter matches any of its values. */
function matches(
  filters: Filter[] | undefined,
  fields: Record<string, string | undefined>,
  tags: Tag[],
): boolean {
  for (const f of filters ?? []) {
    const values = f.Values ?? []
    const name = f.Name ?? ''
    if (name.startsWith('tag:')) {
      const v = tags.find((t) => t.Key === name.slice(4))?.Value
      if (v === undefined || !values.includes(v)) return false
    } else if (name === 'tag-key') {
      if (!tags.some((t) => values.includes(t.Key ?? ''))) return false
    } else if (name in fields) {
      if (!values.includes(fields[name] ?? '')) return false
    } else {
      throw awsError('InvalidParameterValue', `The filter '${name}' is invalid`)
    }
  }
  return true
}

function findManifests(dir: string): string[] {
  const found: string[] = []
  const walk = (d: string) => {
    const m = join(d, 'manifest.json')
    if (existsSync(m)) found.push(m)
    for (const entry of readdirSync(d, { withFileTypes: true }))
      if (entry.isDirectory()) walk(join(d, entry.name))
  }
  walk(dir)
  return found
}
