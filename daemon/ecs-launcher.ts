/**
 * The ECS run launcher: the daemon starts each queued run as its own ECS task running the entry
 * point it starts locally otherwise (`refresh launch RUN_ID [--env NAME]`), against the store the
 * daemon and the tasks share (Postgres), so the daemon's host stays small. The conventions are
 * the reindex runner's (runners/ecs.ts): the task definition resolved once to a pinned revision,
 * `startedBy` the run id, tags, an idempotent `clientToken`, one DescribeTasks call per 100
 * launched tasks a poll, StopTask to stop one, throttling retried with backoff by AwsService, the
 * AWS SDK loaded on the first call.
 *
 * The store location is never in a RunTask request: overrides and tags are visible to anyone who
 * may describe the task, and the location may hold a password. The task definition supplies
 * `REFRESH_STORE` itself, from Secrets Manager or SSM (`secrets`); see docs/aws.md.
 */
import { createHash } from 'node:crypto'
import type { RunTaskCommandInput, Task } from '@aws-sdk/client-ecs'
import { EcsApi, isPlacementRetriable, type PinnedTaskDefinition, shortArn } from '../aws/ecs.js'
import { backoff, TAG } from '../aws/service.js'
import type { EcsLaunchType, EcsPlacementOptions } from '../aws/types.js'
import { sleep } from '../core/async.js'
import { ConfigError } from '../core/errors.js'
import type { LaunchExit, LaunchedRun, LaunchRequest, RunLauncher } from '../core/launcher.js'
import type { RunRecord } from '../core/store/types.js'
import { DESCRIBE_BATCH } from '../runners/remote.js'

const WHERE = 'ecsRunLauncher({...})'
const LAUNCH_TYPES: readonly EcsLaunchType[] = ['EC2', 'EXTERNAL', 'FARGATE', 'MANAGED_INSTANCES']

export interface EcsRunLauncherOptions extends EcsPlacementOptions {
  /**
   * A family (`refresh-run`), `family:revision` or an ARN: resolved once, on the daemon's first
   * launch, to a pinned revision that every run it launches uses (a new revision is taken up when
   * the daemon restarts, as a new version of its config is).
   */
  taskDefinition: string
  /** The container in the task definition that runs refresh (default `refresh`). */
  container?: string
  /**
   * Plain (non-secret) environment for the container. Secrets, the store location first of all,
   * belong in the task definition's `secrets`, never here: overrides are visible to anyone who can
   * describe the task.
   */
  environment?: Record<string, string>
  /**
   * The container command for a run (default `['launch', runId]`, plus `['--env', name]` when the
   * daemon has one), after the image's entry point, which runs refresh's CLI.
   */
  command?: (runId: string, environment: string | undefined) => string[]
  /** How often launched tasks are described, all of them in one call per 100 (default 5000 ms). */
  pollIntervalMs?: number
}

/**
 * A run launcher that starts each run as its own ECS task (`refresh launch RUN_ID`). Needs a store
 * the tasks reach (Postgres): `refresh daemon` refuses a store file with it.
 */
export function ecsRunLauncher(options: EcsRunLauncherOptions): RunLauncher {
  checkOptions(options)
  return new EcsRunLauncher(options)
}

function checkOptions(options: EcsRunLauncherOptions): void {
  const bad = (what: string) => new ConfigError(`ecsRunLauncher: ${what}`)
  if (typeof options !== 'object' || options === null) {
    throw bad('pass its options: `ecsRunLauncher({ cluster, taskDefinition })`.')
  }
  if (typeof options.cluster !== 'string' || options.cluster.trim() === '')
    throw bad('`cluster` is required (a cluster name or ARN).')
  if (typeof options.taskDefinition !== 'string' || options.taskDefinition.trim() === '')
    throw bad('`taskDefinition` is required (a family name like `refresh-run`, `family:revision` or an ARN).')
  if (options.container !== undefined && (typeof options.container !== 'string' || options.container === ''))
    throw bad('`container` must be the name of a container in the task definition.')
  if (options.launchType !== undefined && !LAUNCH_TYPES.includes(options.launchType))
    throw bad(
      `\`launchType\` must be one of ${LAUNCH_TYPES.join(', ')} (it is ${String(options.launchType)}).`,
    )
  if (options.launchType !== undefined && options.capacityProviderStrategy !== undefined)
    throw bad('give `launchType` or `capacityProviderStrategy`, not both (ECS refuses both).')
  if (options.command !== undefined && typeof options.command !== 'function')
    throw bad('`command` must be a function `(runId, environment) => string[]`.')
  for (const [name, value] of [
    ['pollIntervalMs', options.pollIntervalMs],
    ['placementAttempts', options.placementAttempts],
  ] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 1))
      throw bad(`\`${name}\` must be a whole number of at least 1 (it is ${String(value)}).`)
  }
  const environment = options.environment ?? {}
  if (typeof environment !== 'object' || environment === null)
    throw bad('`environment` must map variable names to strings.')
  for (const [name, value] of Object.entries(environment)) {
    if (typeof value !== 'string') throw bad(`\`environment.${name}\` must be a string.`)
    if (name === 'REFRESH_STORE') {
      throw bad(
        '`environment` must not set REFRESH_STORE: RunTask overrides are visible to anyone who can describe the task, and the store location may hold a password. Give it to the task definition instead, as a secret: `secrets: [{ name: "REFRESH_STORE", valueFrom: "<Secrets Manager or SSM ARN>" }]` (see docs/aws.md).',
      )
    }
    if (/^[a-z][a-z0-9+.-]*:\/\/[^/\s@]*:[^/\s@]+@/i.test(value)) {
      throw bad(
        `\`environment.${name}\` holds a URL with a password; overrides are visible to anyone who can describe the task: put it in the task definition's \`secrets\` instead.`,
      )
    }
  }
}

class EcsRunLauncher implements RunLauncher {
  readonly kind = 'ecs'
  readonly remote = true
  readonly options: EcsRunLauncherOptions
  readonly container: string
  readonly api: EcsApi
  private pinned: Promise<PinnedTaskDefinition> | undefined
  /** Launched tasks not yet seen stopped, by ARN: what each poll describes. */
  private readonly watched = new Map<string, EcsLaunchedRun>()
  private polling = false
  private closed = false
  private readonly wake = new AbortController()

  constructor(options: EcsRunLauncherOptions) {
    this.options = options
    this.container = options.container ?? 'refresh'
    // checks that @aws-sdk/client-ecs is installed (a ConfigError naming the install otherwise)
    this.api = new EcsApi(options, WHERE)
  }

  launch(request: LaunchRequest): LaunchedRun {
    const launched = new EcsLaunchedRun(request, this)
    void launched.start()
    return launched
  }

  /** The task definition, resolved on the first launch and kept (again after a failure). */
  pin(): Promise<PinnedTaskDefinition> {
    if (!this.pinned) {
      const pinned = this.api.pinTaskDefinition(this.options.taskDefinition, this.container)
      pinned.catch(() => {
        if (this.pinned === pinned) this.pinned = undefined
      })
      this.pinned = pinned
    }
    return this.pinned
  }

  watch(launched: EcsLaunchedRun): void {
    this.watched.set(launched.task!, launched)
    if (this.polling || this.closed) return
    this.polling = true
    void this.pollLoop()
  }

  unwatch(arn: string): void {
    this.watched.delete(arn)
  }

  private async pollLoop(): Promise<void> {
    while (this.watched.size > 0 && !this.closed) {
      await sleep(this.options.pollIntervalMs ?? 5_000, this.wake.signal)
      if (this.closed) break
      await this.poll()
    }
    this.polling = false
  }

  /** Describes every launched task, 100 a call, the calls at once. */
  private async poll(): Promise<void> {
    const all = [...this.watched.values()]
    const batches: EcsLaunchedRun[][] = []
    for (let i = 0; i < all.length; i += DESCRIBE_BATCH) batches.push(all.slice(i, i + DESCRIBE_BATCH))
    await Promise.all(
      batches.map(async (batch) => {
        try {
          const out = await this.api.describeTasks(batch.map((l) => l.task!))
          for (const task of out.tasks ?? []) this.watched.get(task.taskArn ?? '')?.observe(task)
          for (const f of out.failures ?? []) {
            // ECS keeps a stopped task about an hour: one it does not know any more is long gone
            this.watched.get(f.arn ?? '')?.settle({
              code: null,
              signal: null,
              stderr: `ECS no longer knows task ${f.arn} (${f.reason ?? 'no reason'}${f.detail ? `: ${f.detail}` : ''})`,
            })
          }
        } catch (error) {
          // throttling was retried inside the call; the tasks are not taken for gone (they may be
          // running): the next poll tries again, and a dead run is still found by its heartbeat
          for (const l of batch) l.warn(`could not describe its ECS task ${l.task}: ${errorText(error)}`)
        }
      }),
    )
  }

  async recover(runIds: readonly string[]): Promise<string[]> {
    return this.api.stopTasksStartedBy(
      runIds,
      (runId) => `run ${runId} was interrupted; refresh stopped its task`,
    )
  }

  async close(): Promise<void> {
    this.closed = true
    this.wake.abort()
    this.api.destroy()
  }
}

/** One run launched as an ECS task. */
class EcsLaunchedRun implements LaunchedRun {
  readonly pid = undefined
  task: string | undefined
  readonly exited: Promise<LaunchExit>
  readonly started: Promise<string | undefined>
  private resolveExit!: (exit: LaunchExit) => void
  private resolveStarted!: (task: string | undefined) => void
  private readonly request: LaunchRequest
  private readonly launcher: EcsRunLauncher
  private settled = false
  /** A stop was asked for (before the task started, or StopTask is still owed). */
  private stopAsked: NodeJS.Signals | undefined
  private stopSent = false
  private readonly wake = new AbortController()
  private lastWarning = ''

  constructor(request: LaunchRequest, launcher: EcsRunLauncher) {
    this.request = request
    this.launcher = launcher
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve
    })
    this.started = new Promise((resolve) => {
      this.resolveStarted = resolve
    })
  }

  async start(): Promise<void> {
    const { options, container, api } = this.launcher
    const { run } = this.request
    try {
      const pinned = await this.launcher.pin()
      const command = (options.command ?? defaultCommand)(run.id, this.request.environment)
      const maxPlacements = options.placementAttempts ?? 6
      for (let placement = 1; ; placement++) {
        if (this.stopAsked !== undefined) {
          this.settle({ code: null, signal: null, stderr: 'stopped before its ECS task started' })
          return
        }
        const input: RunTaskCommandInput = {
          cluster: options.cluster,
          taskDefinition: pinned.arn,
          launchType: options.launchType,
          capacityProviderStrategy: options.capacityProviderStrategy,
          networkConfiguration: options.networkConfiguration,
          startedBy: run.id,
          // the same token for the same queued state of the run: the SDK's retry of a call that
          // timed out, or a daemon that restarts before the run started, get the task already
          // started; a run queued again after a pause is a new state, so a new task
          clientToken: launchToken(run, placement),
          tags: [
            { key: TAG.run, value: run.id },
            { key: TAG.origin, value: tagValue(run.origin) },
            { key: TAG.managedBy, value: 'refresh' },
          ],
          overrides: {
            containerOverrides: [
              {
                name: container,
                command,
                environment: Object.entries(options.environment ?? {}).map(([name, value]) => ({
                  name,
                  value,
                })),
              },
            ],
          },
        }
        refuseSecrets(input, this.request.storeLocation)
        const out = await api.runTask(input)
        const task = out.tasks?.[0]
        if (task?.taskArn) {
          this.task = task.taskArn
          this.launcher.watch(this)
          this.resolveStarted(task.taskArn)
          if (this.stopAsked !== undefined) await this.stopTask()
          return
        }
        const reasons = (out.failures ?? []).map(
          (f) => `${f.reason ?? 'unknown'}${f.detail ? ` (${f.detail})` : ''}`,
        )
        const text = reasons.join('; ') || 'no task and no failure in the answer'
        if (!(out.failures ?? []).every((f) => isPlacementRetriable(f.reason))) {
          throw new Error(
            `ECS could not place the task on cluster ${options.cluster}: ${text}; check the task definition's placement constraints and the cluster's capacity providers.`,
          )
        }
        if (placement >= maxPlacements)
          throw new Error(`ECS had no capacity after ${placement} placements: ${text}`)
        await sleep(backoff(options.backoffMs ?? 1000, placement), this.wake.signal)
      }
    } catch (error) {
      this.settle({ code: null, signal: null, stderr: `its ECS task did not start: ${errorText(error)}` })
    }
  }

  kill(signal: NodeJS.Signals): void {
    if (this.settled) return
    this.stopAsked ??= signal
    this.wake.abort()
    // not started yet: the launch sees the request (and stops what RunTask gave, if anything)
    if (this.task !== undefined) void this.stopTask()
  }

  /** StopTask (ECS sends SIGTERM, then SIGKILL after the task definition's `stopTimeout`); once it went through, again is of no use. */
  private async stopTask(): Promise<void> {
    if (this.stopSent || this.settled) return
    this.stopSent = true
    const { api, options } = this.launcher
    try {
      await api.stopTask(options.cluster, this.task!, `refresh stopped run ${this.request.run.id}`)
    } catch (error) {
      this.stopSent = false
      this.warn(
        `could not stop its ECS task ${this.task}: ${errorText(error)}; stop it with \`aws ecs stop-task --cluster ${options.cluster} --task ${this.task}\`.`,
      )
    }
  }

  /** DescribeTasks saw the task: settled once it has stopped. */
  observe(task: Task): void {
    if (task.lastStatus !== 'STOPPED') return
    const containers = task.containers ?? []
    const own = containers.find((c) => c.name === this.launcher.container)
    const exits = containers.map(
      (c) =>
        `container ${c.name} exited ${c.exitCode ?? 'without a code'}${c.reason ? ` (${c.reason})` : ''}`,
    )
    this.settle({
      code: own?.exitCode ?? null,
      signal: null,
      stderr: [
        `task ${shortArn(task.taskArn)} ${task.stopCode ?? 'stopped'}: ${task.stoppedReason ?? 'no reason given'}`,
        ...exits,
      ].join('; '),
    })
  }

  settle(exit: LaunchExit): void {
    if (this.settled) return
    this.settled = true
    if (this.task) this.launcher.unwatch(this.task)
    this.resolveStarted(this.task)
    this.resolveExit(exit)
  }

  /** Tells the daemon, once per distinct message. */
  warn(message: string): void {
    if (message === this.lastWarning) return
    this.lastWarning = message
    this.request.onError(`run ${this.request.run.id}: ${message}`)
  }
}

function defaultCommand(runId: string, environment: string | undefined): string[] {
  return environment === undefined ? ['launch', runId] : ['launch', runId, '--env', environment]
}

/**
 * 64 hex characters (ECS accepts up to 64): the same for the same run in the same queued state
 * (its start and last heartbeat, which a pause moves on) and placement.
 */
export function launchToken(
  run: Pick<RunRecord, 'id' | 'startedAt' | 'heartbeatAt'>,
  placement: number,
): string {
  return createHash('sha256')
    .update(`launch\n${run.id}\n${run.startedAt ?? ''}\n${run.heartbeatAt ?? ''}\n${placement}`)
    .digest('hex')
}

/** A tag value ECS accepts: letters, digits, spaces and `_ . : / = + - @`, at most 256. */
function tagValue(text: string): string {
  return text.replace(/[^\p{L}\p{N}\s_.:/=+\-@]/gu, '_').slice(0, 256) || 'none'
}

/**
 * Refuses to send a request that carries the store location or its password (a `command` of the
 * config's that adds `--store`, say): what is in RunTask is readable by anyone who can describe
 * the task.
 */
function refuseSecrets(input: RunTaskCommandInput, storeLocation: string): void {
  const text = JSON.stringify(input)
  const secrets = [storeLocation]
  // a file path holds no password (and the path itself is checked)
  const raw = URL.canParse(storeLocation) ? new URL(storeLocation).password : ''
  if (raw.length >= 4) secrets.push(raw, decoded(raw))
  if (secrets.some((s) => s !== '' && text.includes(s))) {
    throw new Error(
      `refusing to send the store location in RunTask (its overrides and tags are visible to anyone who can describe the task): take it out of \`command\` and \`environment\` in ${WHERE}; the task definition gives REFRESH_STORE from its \`secrets\`.`,
    )
  }
}

/** A URL component decoded, or as it is when it is not valid percent-encoding. */
function decoded(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch (error) {
    if (error instanceof URIError) return text
    throw error
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
