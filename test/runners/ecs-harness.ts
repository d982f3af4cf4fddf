/**
 * A stand-in ECS control plane for tests and benchmarks, driven through aws-sdk-client-mock.
 * In `process` mode, RunTask really starts the image's entry point (`node dist/cli/main.js worker
 * <command>` for the worker image; `node dist/cli/main.js <command>`, so `refresh launch RUN_ID`,
 * for a run task) as a local child process with the task definition's environment and the
 * overrides' command and environment, and
 * DescribeTasks, StopTask and ListTasks answer from that process's state. Every task is also
 * kept as a JSON file under `stateDir`, so a second harness (in the process that survives a
 * SIGKILLed orchestrator) sees the tasks the first one started and can stop them.
 * In `simulated` mode no process starts: a task runs for a given time, then "exits" 0 after
 * writing the worker's status file, which is what the runner reads.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { constants } from 'node:os'
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
import { readRecords, writeRecord } from './records.js'

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
  /** The image's entry point after `node dist/cli/main.js` (default `['worker']`; a run task's: `[]`). */
  entryPoint?: string[]
  /** The task definition ECS knows (default: family `refresh-worker`, revision 7, container `worker`). */
  taskDefinition?: { family: string; arn: string; container: string }
  /**
   * The container's environment from the task definition, as ECS gives it to the container (its
   * `environment`, and its `secrets` resolved from Secrets Manager): never in a RunTask request.
   */
  taskEnvironment?: Record<string, string>
  /** The container's working directory (default: this process's). */
  cwd?: string
  /** StopTask sends SIGTERM, then SIGKILL this much later (the task definition's `stopTimeout`; default never). */
  stopTimeoutMs?: number
}

interface TaskRecord {
  arn: string
  pid: number | null
  /** The process's command line. */
  argv: string[]
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

  private readonly def: { family: string; arn: string; container: string }

  constructor(options: HarnessOptions) {
    this.options = options
    this.def = options.taskDefinition ?? { family: FAMILY, arn: TASK_DEF_ARN, container: 'worker' }
    this.capacityLeft = options.capacityFailures ?? 0
    this.loseNext = options.loseFirstResponse ?? false
    mkdirSync(join(options.stateDir, 'tasks'), { recursive: true })
    for (const t of readRecords<TaskRecord>(join(options.stateDir, 'tasks'))) {
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
      if (input.taskDefinition !== this.def.family && input.taskDefinition !== this.def.arn) {
        throw Object.assign(new Error('Unable to describe task definition.'), {
          name: 'ClientException',
          $metadata: { httpStatusCode: 400 },
          $fault: 'client',
        })
      }
      const secrets = Object.keys(options.taskEnvironment ?? {}).map((name) => ({
        name,
        valueFrom: `arn:aws:secretsmanager:us-east-1:123456789012:secret:${name}`,
      }))
      return {
        taskDefinition: {
          taskDefinitionArn: this.def.arn,
          containerDefinitions: [{ name: this.def.container, essential: true, secrets }],
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
      argv: [],
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
    const args = [CLI, ...(this.options.entryPoint ?? ['worker']), ...t.command]
    if (this.options.hold) args.unshift('--import', pathToFileURL(holdScript(this.options.stateDir)).href)
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'ignore', log],
      // the test's environment (startLocalS3's endpoint and credentials, so `statusUrl` and
      // reindex `transfer` reach the local S3 server), then the task definition's, then the
      // task's overrides
      env: { ...this.hostEnvironment(), ...this.options.taskEnvironment, ...env },
      ...(this.options.cwd ? { cwd: this.options.cwd } : {}),
    })
    closeSync(log)
    t.pid = child.pid ?? null
    t.argv = [process.execPath, ...args]
    this.children.set(t.arn, child)
    child.on('exit', (code, signal) => {
      t.lastStatus = 'STOPPED'
      t.desiredStatus = 'STOPPED'
      // a container killed by a signal exits 128 + its number, as Docker reports it
      t.exitCode = code ?? (signal ? 128 + (constants.signals[signal] ?? 15) : null)
      t.stopCode ??= 'EssentialContainerExited'
      t.stoppedReason ??= 'Essential container in task exited'
      this.save(t)
    })
    this.save(t)
  }

  /**
   * What a task inherits from this process: all of its environment, except that a task with an
   * environment of its own (`taskEnvironment`) gets no REFRESH_* setting of the host's, as a
   * container gets none of the daemon host's.
   */
  private hostEnvironment(): NodeJS.ProcessEnv {
    if (this.options.taskEnvironment === undefined) return process.env
    return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('REFRESH_')))
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
      const child = this.children.get(t.arn)!
      child.kill('SIGTERM')
      if (this.options.stopTimeoutMs !== undefined) {
        // as ECS does once the task definition's stopTimeout is over
        setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
        }, this.options.stopTimeoutMs).unref()
      }
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
        const at = t.command.indexOf('--status-file')
        const status = at >= 0 ? t.command[at + 1] : undefined
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
    const container: Container = { name: this.def.container, lastStatus: t.lastStatus }
    if (t.exitCode !== null) container.exitCode = t.exitCode
    return {
      taskArn: t.arn,
      clusterArn: `arn:aws:ecs:us-east-1:123456789012:cluster/${CLUSTER}`,
      taskDefinitionArn: this.def.arn,
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
    writeRecord(join(this.options.stateDir, 'tasks'), t.arn.split('/').at(-1)!, t)
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
