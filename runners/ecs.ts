/**
 * The ECS runner: one ECS task per unit (per id range), the same contract as the local process
 * pool. The AWS SDK is imported here with `import()` on first use only, so a config that merely
 * declares this runner, and every run on the local runner, never pays for loading it.
 *
 * Progress and output: an ECS task has an exit code but no channel back, so the worker keeps a
 * small JSON status (`WorkerStatus`, see worker.ts) on a status channel (status.ts): an S3 object
 * under `statusUrl` (`<prefix>runs/<runId>/status/<unit>.attempt-<n>.json`), or a file under
 * `statusDir`, a directory the orchestrator and the tasks share (EFS, a bind mount). The runner
 * reads it on each DescribeTasks poll for progress, and once the task has stopped for the output.
 * The shard inputs and outputs go through S3 too when reindex is given `transfer`.
 */

import type { Task } from '@aws-sdk/client-ecs'
import { EcsApi, isPlacementRetriable, type PinnedTaskDefinition, shortArn } from '../aws/ecs.js'
import { AwsCallError, backoff, TAG } from '../aws/service.js'
import type { EcsPlacementOptions } from '../aws/types.js'
import { sleep } from '../core/async.js'
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
import type { WorkerStatus } from './worker.js'

export interface EcsRunnerOptions extends EcsPlacementOptions, StatusOptions, RemoteRunnerOptions {
  /**
   * A family (`refresh-worker`), `family:revision` or an ARN. Resolved once per step (run and
   * asset) to a pinned revision, used for every unit and retry of that step: a new revision
   * registered mid-run never mixes two worker versions in one index.
   */
  taskDefinition: string
  /** The worker container's name in the task definition (default `worker`). */
  container?: string
  /**
   * Plain (non-secret) environment for the worker container. Secrets belong in the task
   * definition's `secrets` (from Secrets Manager or SSM), never here: overrides are visible to
   * anyone who can describe the task.
   */
  environment?: Record<string, string>
  /** The container command for a unit (default `[task, input-json, --status-file, path]`, after the image's ENTRYPOINT `refresh worker`). */
  command?: (unit: WorkUnit, statusFile: string) => string[]
}

/** What the runner did, for benchmarks and `refresh show`. */
export interface EcsRunnerStats extends RemoteRunnerStats {
  tasksStarted: number
}

export interface EcsRunner extends Runner {
  stats(): EcsRunnerStats
}

/** An ECS runner: one task per unit, polled in batches of 100, stopped with StopTask. */
export function ecsRunner(options: EcsRunnerOptions): EcsRunner {
  if (!options.cluster) throw new ConfigError('ecsRunner: `cluster` is required (a cluster name or ARN)')
  if (!options.taskDefinition)
    throw new ConfigError('ecsRunner: `taskDefinition` is required (a family name)')
  const status = statusChannel(options, 'ecsRunner')
  const container = options.container ?? 'worker'
  const stats: EcsRunnerStats = {
    calls: {},
    tasksStarted: 0,
    polls: 0,
    maxCallsPerPoll: { calls: 0, running: 0 },
  }
  const api = new EcsApi(options, 'ecsRunner({...})', (a) => {
    stats.calls[a] = (stats.calls[a] ?? 0) + 1
  })
  const context: EcsContext = { api, options, container, status, stats }
  const runner = remoteRunner<Pinned, EcsHandle>({
    name: 'ecs',
    pollIntervalMs: options.pollIntervalMs ?? 5000,
    stats,
    pin: () => api.pinTaskDefinition(options.taskDefinition, container),
    handle: (unit, listener, shell) => new EcsHandle(unit, listener, shell, context),
    async describe(batch) {
      const out = await api.describeTasks(batch.map((h) => h.remoteId!))
      const byArn = new Map(batch.map((h) => [h.remoteId!, h]))
      await Promise.all((out.tasks ?? []).map((task) => byArn.get(task.taskArn ?? '')?.observe(task)))
      for (const f of out.failures ?? []) {
        byArn
          .get(f.arn ?? '')
          ?.fail(
            `ECS no longer knows task ${f.arn} (${f.reason ?? 'no reason'}${f.detail ? `: ${f.detail}` : ''})`,
            true,
          )
      }
      // the tasks still running: their workers' progress
      await Promise.all(batch.map((h) => h.readProgress()))
    },
    onPoll: options.onPoll,
    dispose() {
      api.destroy()
      status.close()
    },
    recover: (runIds) => stopOrphanTasks({ ...options, runIds }),
  })
  return { ...runner, stats: () => structuredClone(stats) }
}

type Pinned = PinnedTaskDefinition

interface EcsContext {
  api: EcsApi
  options: EcsRunnerOptions
  container: string
  status: StatusChannel
  stats: EcsRunnerStats
}

class EcsHandle extends RemoteHandle<Pinned> {
  private readonly context: EcsContext
  private readonly wake = new AbortController()
  private statusFile = ''
  private essential: string[] = []

  constructor(unit: WorkUnit, listener: WorkListener, shell: RemoteShell<Pinned>, context: EcsContext) {
    super(unit, listener, shell)
    this.context = context
  }

  async launch(): Promise<void> {
    const { api, options, container } = this.context
    const { unit } = this
    try {
      const pinned = await this.shell.pin(unit)
      this.essential = pinned.essential
      this.statusFile = await this.context.status.prepare(unit)
      const command = (options.command ?? defaultCommand)(unit, this.statusFile)
      const maxPlacements = options.placementAttempts ?? 6
      for (let placement = 1; ; placement++) {
        if (this.stopReason !== undefined) {
          this.settle({ status: 'stopped', reason: this.stopReason, durationMs: this.ms })
          return
        }
        const out = await api.runTask({
          cluster: options.cluster,
          taskDefinition: pinned.arn,
          launchType: options.launchType,
          capacityProviderStrategy: options.capacityProviderStrategy,
          networkConfiguration: options.networkConfiguration,
          startedBy: unit.runId,
          // one token per (run, unit, attempt, placement): the SDK's own retry of a call that
          // timed out reuses it, so ECS starts at most one task for it; a placement that ECS
          // refused started nothing, so the next one needs a fresh token
          clientToken: clientToken(unit, placement),
          tags: [
            { key: TAG.run, value: unit.runId ?? 'none' },
            { key: TAG.asset, value: unit.asset ?? 'none' },
            { key: TAG.shard, value: unit.id },
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
        })
        const task = out.tasks?.[0]
        if (task?.taskArn) {
          this.remoteId = task.taskArn
          this.context.stats.tasksStarted++
          this.shell.onRunning(this)
          if (this.stopReason !== undefined) await this.stopRemote(this.stopReason)
          return
        }
        const reasons = (out.failures ?? []).map(
          (f) => `${f.reason ?? 'unknown'}${f.detail ? ` (${f.detail})` : ''}`,
        )
        const text = reasons.join('; ') || 'no task and no failure in the answer'
        const transient = (out.failures ?? []).every((f) => isPlacementRetriable(f.reason))
        if (!transient) {
          this.fail(
            `ECS could not place ${unit.id} on cluster ${options.cluster}: ${text}; check the task definition's placement constraints and the cluster's capacity providers.`,
            false,
          )
          return
        }
        if (placement >= maxPlacements) {
          this.fail(`ECS had no capacity for ${unit.id} after ${placement} placements: ${text}`, true)
          return
        }
        await sleep(backoff(options.backoffMs ?? 1000, placement), this.wake.signal)
      }
    } catch (error) {
      const retriable = !(error instanceof AwsCallError) || error.retriable
      this.fail(`${unit.id}: ${error instanceof Error ? error.message : String(error)}`, retriable)
    }
  }

  async abandon(message: string, retriable: boolean): Promise<void> {
    let detail = ''
    try {
      await this.context.api.stopTask(
        this.context.options.cluster,
        this.remoteId!,
        'refresh lost track of the task',
      )
    } catch (error) {
      detail = `; StopTask failed too (${error instanceof Error ? error.message : String(error)}), so task ${this.remoteId} may still run`
    }
    this.fail(`${this.unit.id} (task ${shortArn(this.remoteId)}): ${message}${detail}`, retriable)
  }

  /** DescribeTasks saw the task: settle it once it has stopped. */
  async observe(task: Task): Promise<void> {
    if (task.lastStatus !== 'STOPPED' || this.settled) return
    const status = await this.readStatus()
    if (status && !(status instanceof Error)) this.report(status.done, status.total)
    if (this.stopReason !== undefined) {
      this.settle({ status: 'stopped', reason: this.stopReason, durationMs: this.ms })
      return
    }
    const containers = (task.containers ?? []).filter(
      (c) => this.essential.length === 0 || this.essential.includes(c.name ?? ''),
    )
    const exits = containers.map(
      (c) =>
        `container ${c.name} exited ${c.exitCode ?? 'without a code'}${c.reason ? ` (${c.reason})` : ''}`,
    )
    const exitedZero = containers.length > 0 && containers.every((c) => c.exitCode === 0)
    if (exitedZero && status && !(status instanceof Error) && status.state === 'succeeded') {
      // kept when a task failed, for a look; a success has nothing more to tell
      await this.context.status.discard(this.statusFile)
      this.settle({ status: 'succeeded', output: status.output, durationMs: this.ms })
      return
    }
    const worker = containers.find((c) => c.name === this.context.container)
    const detail = [
      `${task.stopCode ?? 'stopped'}: ${task.stoppedReason ?? 'no reason given'}`,
      ...exits,
      status instanceof Error
        ? status.message
        : status?.state === 'failed'
          ? status.error
          : exitedZero
            ? `the worker exited 0 without reporting a result in ${this.statusFile}`
            : '',
    ].filter(Boolean)
    this.settle({
      status: 'failed',
      error: `${this.unit.id} (task ${shortArn(this.remoteId)}) ${detail.join('; ')}`,
      exitCode: worker?.exitCode ?? null,
      signal: null,
      durationMs: this.ms,
    })
  }

  async readProgress(): Promise<void> {
    if (this.settled) return
    const status = await this.readStatus()
    if (status && !(status instanceof Error)) this.report(status.done, status.total)
  }

  /** The worker's status: undefined before it first writes; an Error when it cannot be read. */
  private async readStatus(): Promise<WorkerStatus | undefined | Error> {
    if (!this.statusFile) return undefined
    return this.context.status.read(this.statusFile)
  }

  protected async stopRemote(reason: string): Promise<void> {
    const { api, options } = this.context
    try {
      await api.stopTask(options.cluster, this.remoteId!, reason)
    } catch (error) {
      // the task is still running: say so rather than report it stopped
      this.settle({
        status: 'failed',
        error: `could not stop task ${this.remoteId}: ${error instanceof Error ? error.message : String(error)}; stop it with \`aws ecs stop-task --cluster ${options.cluster} --task ${this.remoteId}\`.`,
        exitCode: null,
        signal: null,
        durationMs: this.ms,
        retriable: false,
      })
    }
  }

  protected override onStopRequested(): void {
    this.wake.abort()
  }
}

function defaultCommand(unit: WorkUnit, statusFile: string): string[] {
  return [unit.task, JSON.stringify(unit.input), '--status-file', statusFile]
}

export interface StopOrphanTasksOptions
  extends Pick<EcsRunnerOptions, 'cluster' | 'client' | 'region' | 'callAttempts' | 'backoffMs'> {
  /** The interrupted runs whose tasks to stop (their ids are the tasks' `startedBy`). */
  runIds: readonly string[]
}

/**
 * Crash recovery: stops every task still running that a run in `runIds` started (ListTasks by
 * `startedBy`, then StopTask). Returns the task ARNs it stopped. Call it for the runs that
 * recovery marked as interrupted, before re-executing them.
 */
export async function stopOrphanTasks(options: StopOrphanTasksOptions): Promise<string[]> {
  const api = new EcsApi(options, 'ecsRunner({...})')
  try {
    return await api.stopTasksStartedBy(
      options.runIds,
      (runId) => `run ${runId} was interrupted; refresh stopped its orphaned task`,
    )
  } finally {
    api.destroy()
  }
}
