/**
 * The ECS calls every ECS backend makes (the reindex runner's worker tasks, the daemon's run
 * launcher, `refresh gc`): the SDK loaded with `import()` on the first call (a local run never
 * loads it), every call made through `callAws` (retried while ECS throttles, explained when denied
 * or invalid), RunTask calls bounded in flight, listings read page by page.
 */
import type { ContainerDefinition, ECSClient, RunTaskCommandInput } from '@aws-sdk/client-ecs'
import { limiter } from '../core/async.js'
import { AwsCallError, type AwsCallOptions, AwsService, clientConfig } from './service.js'
import type { AwsSdkClient } from './types.js'

export type EcsSdk = typeof import('@aws-sdk/client-ecs')

export interface EcsApiOptions extends AwsCallOptions {
  cluster: string
  /** RunTask calls in flight at once, so that 1,000 ranges do not start with 1,000 throttled calls (default 10). */
  launchConcurrency?: number
  /** An ECS client (tests pass a mocked one); default a new client with the standard credential chain. */
  client?: AwsSdkClient
}

/** A task definition resolved to one revision. */
export interface PinnedTaskDefinition {
  /** The task definition ARN with its revision. */
  arn: string
  /** The containers whose exit decides the task: all essential ones. */
  essential: string[]
  /** The container the backend overrides. */
  container: ContainerDefinition
}

/** The ECS calls of one backend, each counted, retried when AWS throttles, and explained when denied. */
export class EcsApi {
  private readonly options: EcsApiOptions
  private readonly where: string
  private readonly aws: AwsService<EcsSdk, ECSClient>
  private readonly launchSlot: <T>(fn: () => Promise<T>) => Promise<T>

  constructor(
    options: EcsApiOptions,
    /** Where the options are set, for messages (`ecsRunner({...})`). */
    where: string,
    /** Counts each try of an action (stats, benchmarks). */
    count?: (action: string) => void,
  ) {
    this.options = options
    this.where = where
    this.launchSlot = limiter(options.launchConcurrency ?? 10)
    this.aws = new AwsService({
      service: 'ecs',
      where,
      package: '@aws-sdk/client-ecs',
      load: () => import('@aws-sdk/client-ecs'),
      make: (sdk) => new sdk.ECSClient(clientConfig(options)),
      client: options.client,
      field: (action, name, message) => fieldOf(action, name, message, where),
      ...(count ? { count } : {}),
      options,
    })
  }

  /** Closes the default client (never one that was passed in). */
  destroy(): void {
    this.aws.destroy()
  }

  private call<T>(
    action: string,
    resource: string,
    send: (sdk: EcsSdk, client: ECSClient) => Promise<T>,
  ): Promise<T> {
    return this.aws.call(action, resource, send)
  }

  /** Resolves a family, `family:revision` or ARN to one revision, checking it has `container`. */
  async pinTaskDefinition(taskDefinition: string, container: string): Promise<PinnedTaskDefinition> {
    const out = await this.call('DescribeTaskDefinition', `task definition ${taskDefinition}`, (sdk, c) =>
      c.send(new sdk.DescribeTaskDefinitionCommand({ taskDefinition })),
    )
    const def = out.taskDefinition
    if (!def?.taskDefinitionArn) {
      throw new AwsCallError(
        'DescribeTaskDefinition',
        'invalid',
        `task definition ${taskDefinition} was not found; check \`taskDefinition\` in ${this.where}.`,
      )
    }
    const containers = def.containerDefinitions ?? []
    const named = containers.find((c) => c.name === container)
    if (!named) {
      throw new AwsCallError(
        'DescribeTaskDefinition',
        'invalid',
        `task definition ${def.taskDefinitionArn} has no container named \`${container}\` (it has ${containers.map((c) => c.name).join(', ') || 'none'}); set \`container\` in ${this.where}.`,
      )
    }
    return {
      arn: def.taskDefinitionArn,
      essential: containers.filter((c) => c.essential !== false).map((c) => c.name ?? ''),
      container: named,
    }
  }

  runTask(input: RunTaskCommandInput) {
    return this.launchSlot(() =>
      this.call(
        'RunTask',
        `cluster ${input.cluster} with task definition ${input.taskDefinition}`,
        (sdk, c) => c.send(new sdk.RunTaskCommand(input)),
      ),
    )
  }

  /** Describes up to 100 tasks of the cluster in one call. */
  describeTasks(tasks: string[]) {
    return this.call('DescribeTasks', `the tasks of cluster ${this.options.cluster}`, (sdk, c) =>
      c.send(new sdk.DescribeTasksCommand({ cluster: this.options.cluster, tasks })),
    )
  }

  stopTask(cluster: string, task: string, reason: string) {
    return this.call('StopTask', `the tasks of cluster ${cluster}`, (sdk, c) =>
      c.send(new sdk.StopTaskCommand({ cluster, task, reason: reason.slice(0, 255) })),
    )
  }

  /** The ARNs of the cluster's running tasks with this `startedBy`, all pages. */
  async listTasks(cluster: string, startedBy: string): Promise<string[]> {
    const arns: string[] = []
    let nextToken: string | undefined
    do {
      const out = await this.call('ListTasks', `cluster ${cluster}`, (sdk, c) =>
        c.send(new sdk.ListTasksCommand({ cluster, startedBy, desiredStatus: 'RUNNING', nextToken })),
      )
      arns.push(...(out.taskArns ?? []))
      nextToken = out.nextToken
    } while (nextToken)
    return arns
  }

  /**
   * Stops every task still running that a run in `runIds` started (ListTasks by `startedBy`, then
   * StopTask); returns the ARNs it stopped.
   */
  async stopTasksStartedBy(runIds: readonly string[], reason: (runId: string) => string): Promise<string[]> {
    const { cluster } = this.options
    const stopped: string[] = []
    for (const runId of runIds) {
      for (const arn of await this.listTasks(cluster, runId)) {
        await this.stopTask(cluster, arn, reason(runId))
        stopped.push(arn)
      }
    }
    return stopped
  }
}

/** RunTask `failures` worth another placement: no capacity (`RESOURCE:*`, Fargate capacity) or an agent. */
export function isPlacementRetriable(reason: string | undefined): boolean {
  return reason !== undefined && /^RESOURCE:|^AGENT|capacity/i.test(reason)
}

/** The last part of a task ARN (its id), for messages. */
export function shortArn(arn: string | undefined): string {
  return arn?.split('/').at(-1) ?? 'not started'
}

/** The config field an ECS validation error is most likely about. */
function fieldOf(action: string, name: string, message: string, where: string): string {
  if (name === 'ClusterNotFoundException' || /cluster/i.test(message)) return 'cluster'
  if (/subnet|security ?group|network|awsvpc|assignPublicIp/i.test(message)) return 'networkConfiguration'
  if (/capacity ?provider/i.test(message)) return 'capacityProviderStrategy'
  if (/launch ?type/i.test(message)) return 'launchType'
  if (/container/i.test(message)) return 'container'
  if (/task ?definition/i.test(message) || action === 'DescribeTaskDefinition') return 'taskDefinition'
  return `${where.replace(/\(\{\.\.\.\}\)$/, '')} options`
}
