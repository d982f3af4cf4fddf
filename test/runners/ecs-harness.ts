/**
 * A stand-in ECS control plane for tests and benchmarks, driven through aws-sdk-client-mock.
 * In `process` mode, RunTask really starts the worker entry point (`node dist/cli/main.js worker
 * <command>`) as a local child process with the overrides' command and environment, and
 * DescribeTasks, StopTask and ListTasks answer from that process's state. Every task is also
 * kept as a JSON file under `stateDir`, so a second harness (in the process that survives a
 * SIGKILLed orchestrator) sees the tasks the first one started and can stop them.
 * In `simulated` mode no process starts: a task runs for a given time, then "exits" 0 after
 * writing the worker's status file, which is what the runner reads.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  type Container,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  ListTasksCommand,
  RunTaskCommand,
  type RunTaskCommandInput,
  StopTaskCommand,
  type Task,
} from '@aws-sdk/client-ecs'
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock'

const ROOT = resolve(import.meta.dirname, '..', '..')
export const CLI = join(ROOT, 'dist', 'cli', 'main.js')
export const CLUSTER = 'refresh-test'
export const FAMILY = 'refresh-worker'
export const TASK_DEF_ARN = `arn:aws:ecs:us-east-1:123456789012:task-definition/${FAMILY}:7`

export interface HarnessOptions {
  /** Where tasks are kept (one JSON file each) and worker logs written. */
  stateDir: string
  mode?: 'process' | 'simulated'
  /** The first N RunTask calls answer with a capacity failure and start nothing. */
  capacityFailures?: number
  /** The first RunTask call starts its task, then fails as a timed-out call would (the SDK retries it). */
  loseFirstResponse?: boolean
  /** Hold every started worker before it runs until it is stopped (for cancel and crash tests). */
  hold?: boolean
  /** Changes a task's container command before it starts (for example a bad input for one range). */
  rewrite?(command: string[]): string[]
  /** Mock every ECSClient of this process (the class), for a refresh CLI process under test (test/aws-stand-ins.ts). */
  mockAll?: boolean
  /** Simulated mode: how long a task runs, and what its worker reports. */
  simulate?(command: string[]): { ms: number; output: Record<string, unknown> }
}

interface TaskRecord {
  arn: string
  pid: number | null
  startedBy: string
  clientToken: string
  tags: Array<{ key?: string; value?: string }>
  command: string[]
  desiredStatus: 'RUNNING' | 'STOPPED'
  lastStatus: 'RUNNING' | 'STOPPED'
  exitCode: number | null
  stopCode: string | null
  stoppedReason: string | null
  /** Simulated mode: when the task ends (ms since the epoch). */
  endsAt?: number
}

export class EcsHarness {
  readonly client: ECSClient
  readonly mock: AwsClientStub<ECSClient>
  readonly tasks = new Map<string, TaskRecord>()
  readonly runTaskInputs: RunTaskCommandInput[] = []
  readonly calls: Record<string, number> = {}
  private readonly children = new Map<string, ChildProcess>()
  private readonly byToken = new Map<string, string>()
  private readonly options: HarnessOptions
  private capacityLeft: number
  private loseNext: boolean
  private seq = 0
  private restored = false

  constructor(options: HarnessOptions) {
    this.options = options
    this.capacityLeft = options.capacityFailures ?? 0
    this.loseNext = options.loseFirstResponse ?? false
    mkdirSync(join(options.stateDir, 'tasks'), { recursive: true })
    for (const file of readdirSync(join(options.stateDir, 'tasks'))) {
      const t = JSON.parse(readFileSync(join(options.stateDir, 'tasks', file), 'utf8')) as TaskRecord
      this.tasks.set(t.arn, t)
      this.byToken.set(t.clientToken, t.arn)
      this.seq = Math.max(this.seq, Number(t.arn.split('/').at(-1)))
    }
    this.client = new ECSClient({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
    })
    this.mock = options.mockAll ? mockClient(ECSClient) : mockClient(this.client)
    const count = (name: string) => {
      this.calls[name] = (this.calls[name] ?? 0) + 1
    }
    this.mock.on(DescribeTaskDefinitionCommand).callsFake((input: { taskDefinition?: string }) => {
      count('DescribeTaskDefinition')
      if (input.taskDefinition !== FAMILY && input.taskDefinition !== TASK_DEF_ARN) {
        throw Object.assign(new Error('Unable to describe task definition.'), {
          name: 'ClientException',
          $metadata: { httpStatusCode: 400 },
          $fault: 'client',
        })
      }
      return {
        taskDefinition: {
          taskDefinitionArn: TASK_DEF_ARN,
          containerDefinitions: [{ name: 'worker', essential: true }],
        },
      }
    })
    this.mock.on(RunTaskCommand).callsFake((input: RunTaskCommandInput) => {
      count('RunTask')
      return this.runTask(input)
    })
    this.mock.on(DescribeTasksCommand).callsFake((input: { tasks?: string[] }) => {
      count('DescribeTasks')
      if ((input.tasks?.length ?? 0) > 100) {
        throw Object.assign(new Error('tasks can have at most 100 items'), {
          name: 'InvalidParameterException',
          $metadata: { httpStatusCode: 400 },
        })
      }
      const tasks: Task[] = []
      const failures: Array<{ arn: string; reason: string }> = []
      for (const arn of input.tasks ?? []) {
        const t = this.refresh(arn)
        if (t) tasks.push(this.describe(t))
        else failures.push({ arn, reason: 'MISSING' })
      }
      return { tasks, failures }
    })
    this.mock.on(StopTaskCommand).callsFake((input: { task?: string; reason?: string }) => {
      count('StopTask')
      const t = this.tasks.get(input.task ?? '')
      if (!t) {
        throw Object.assign(new Error('The referenced task was not found.'), {
          name: 'InvalidParameterException',
          $metadata: { httpStatusCode: 400 },
        })
      }
      this.stop(t, input.reason ?? 'stopped')
      return { task: this.describe(t) }
    })
    this.mock.on(ListTasksCommand).callsFake((input: { startedBy?: string; desiredStatus?: string }) => {
      count('ListTasks')
      const arns = [...this.tasks.keys()].filter((arn) => {
        const t = this.refresh(arn)!
        return t.startedBy === input.startedBy && t.desiredStatus === (input.desiredStatus ?? 'RUNNING')
      })
      return { taskArns: arns }
    })
  }

  /** Process ids of the workers this harness (or an earlier one on the same state) started. */
  pids(): number[] {
    return [...this.tasks.values()].map((t) => t.pid).filter((p): p is number => p !== null)
  }

  running(): TaskRecord[] {
    return [...this.tasks.keys()].map((arn) => this.refresh(arn)!).filter((t) => t.lastStatus === 'RUNNING')
  }

  restore(): void {
    this.restored = true
    this.mock.restore()
    for (const child of this.children.values()) if (child.exitCode === null) child.kill('SIGKILL')
  }

  private runTask(input: RunTaskCommandInput) {
    this.runTaskInputs.push(input)
    const token = input.clientToken ?? ''
    const known = this.byToken.get(token)
    if (known) return { tasks: [this.describe(this.refresh(known)!)], failures: [] }
    if (this.capacityLeft > 0) {
      this.capacityLeft--
      return {
        tasks: [],
        failures: [
          { arn: 'arn:aws:ecs:us-east-1:123456789012:container-instance/x', reason: 'RESOURCE:MEMORY' },
        ],
      }
    }
    const arn = `arn:aws:ecs:us-east-1:123456789012:task/${CLUSTER}/${++this.seq}`
    const override = input.overrides?.containerOverrides?.[0]
    const command = this.options.rewrite
      ? this.options.rewrite(override?.command ?? [])
      : (override?.command ?? [])
    const env: Record<string, string> = {}
    for (const e of override?.environment ?? []) if (e.name) env[e.name] = e.value ?? ''
    const t: TaskRecord = {
      arn,
      pid: null,
      startedBy: input.startedBy ?? '',
      clientToken: token,
      tags: input.tags ?? [],
      command,
      desiredStatus: 'RUNNING',
      lastStatus: 'RUNNING',
      exitCode: null,
      stopCode: null,
      stoppedReason: null,
    }
    this.tasks.set(arn, t)
    this.byToken.set(token, arn)
    if (this.options.mode === 'simulated') {
      t.endsAt = Date.now() + (this.options.simulate?.(command).ms ?? 0)
    } else {
      this.spawnWorker(t, env)
    }
    if (this.loseNext) {
      this.loseNext = false
      // as a request that reached ECS but whose answer was lost: no $metadata, so it is retried
      throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET' })
    }
    return { tasks: [this.describe(t)], failures: [] }
  }

  private spawnWorker(t: TaskRecord, env: Record<string, string>): void {
    const log = openSync(join(this.options.stateDir, `${t.arn.split('/').at(-1)}.log`), 'a')
    const args = [CLI, 'worker', ...t.command]
    if (this.options.hold) args.unshift('--import', pathToFileURL(holdScript(this.options.stateDir)).href)
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'ignore', log],
      // the test's environment (startLocalS3's endpoint and credentials, so `statusUrl` and
      // reindex `transfer` reach the local S3 server), then the task's overrides
      env: { ...process.env, ...env },
    })
    closeSync(log)
    t.pid = child.pid ?? null
    this.children.set(t.arn, child)
    child.on('exit', (code, signal) => {
      t.lastStatus = 'STOPPED'
      t.desiredStatus = 'STOPPED'
      t.exitCode = code ?? (signal ? 128 + 15 : null)
      t.stopCode ??= 'EssentialContainerExited'
      t.stoppedReason ??= 'Essential container in task exited'
      this.save(t)
    })
    this.save(t)
  }

  private stop(t: TaskRecord, reason: string): void {
    if (t.lastStatus === 'STOPPED') return
    t.desiredStatus = 'STOPPED'
    t.stopCode = 'UserInitiated'
    t.stoppedReason = `Task stopped by user: ${reason}`
    if (this.options.mode === 'simulated') {
      t.lastStatus = 'STOPPED'
      t.exitCode = 143
    } else if (this.children.has(t.arn)) {
      this.children.get(t.arn)!.kill('SIGTERM')
    } else if (t.pid !== null && alive(t.pid)) {
      // a task started by an orchestrator that is gone: its worker is not our child
      process.kill(t.pid, 'SIGTERM')
    }
    this.save(t)
  }

  /** The task's current state (a foreign worker process is checked by its pid; a simulated one by the clock). */
  private refresh(arn: string): TaskRecord | undefined {
    const t = this.tasks.get(arn)
    if (!t || t.lastStatus === 'STOPPED') return t
    if (this.options.mode === 'simulated') {
      if (Date.now() >= (t.endsAt ?? 0)) {
        const sim = this.options.simulate?.(t.command)
        const status = t.command[t.command.indexOf('--status-file') + 1]
        if (status) {
          writeFileSync(
            status,
            JSON.stringify({
              state: 'succeeded',
              done: 1,
              total: 1,
              output: sim?.output ?? {},
              at: new Date().toISOString(),
            }),
          )
        }
        t.lastStatus = 'STOPPED'
        t.desiredStatus = 'STOPPED'
        t.exitCode = 0
        t.stopCode = 'EssentialContainerExited'
        t.stoppedReason = 'Essential container in task exited'
      }
    } else if (!this.children.has(arn) && (t.pid === null || !alive(t.pid))) {
      t.lastStatus = 'STOPPED'
      t.desiredStatus = 'STOPPED'
      this.save(t)
    }
    return t
  }

  private describe(t: TaskRecord): Task {
    const container: Container = { name: 'worker', lastStatus: t.lastStatus }
    if (t.exitCode !== null) container.exitCode = t.exitCode
    return {
      taskArn: t.arn,
      clusterArn: `arn:aws:ecs:us-east-1:123456789012:cluster/${CLUSTER}`,
      taskDefinitionArn: TASK_DEF_ARN,
      lastStatus: t.lastStatus,
      desiredStatus: t.desiredStatus,
      startedBy: t.startedBy,
      containers: [container],
      ...(t.stopCode ? { stopCode: t.stopCode as Task['stopCode'] } : {}),
      ...(t.stoppedReason ? { stoppedReason: t.stoppedReason } : {}),
    }
  }

  private save(t: TaskRecord): void {
    // after restore() the test's temp directory may be gone already
    if (this.options.mode === 'simulated' || this.restored) return
    // whole or not at all (a temp file, then a rename): tests poll these records while tasks change
    const name = `${t.arn.split('/').at(-1)}.json`
    const temp = join(this.options.stateDir, `.${name}.${process.pid}.tmp`)
    writeFileSync(temp, JSON.stringify(t))
    renameSync(temp, join(this.options.stateDir, 'tasks', name))
  }
}

/** True while the process exists and is not a zombie waiting to be reaped. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** A preload (in `stateDir`) that keeps a worker from running until it is killed, or for two minutes. */
export function holdScript(stateDir: string): string {
  const file = join(stateDir, 'hold.mjs')
  if (!existsSync(file)) {
    writeFileSync(
      file,
      'const end = Date.now() + 120_000; const a = new Int32Array(new SharedArrayBuffer(4));\nwhile (Date.now() < end) Atomics.wait(a, 0, 0, 50)\n',
    )
  }
  return file
}
