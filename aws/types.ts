import type { AwsCallOptions } from './service.js'

/**
 * The AWS shapes of refresh's public options, declared here rather than imported from the AWS SDK:
 * the SDK clients are optional peer dependencies, and refresh's types must compile in a project
 * that did not install them. Each matches the SDK's own type, so an SDK client or value passes as
 * it is; the backends hand them to the SDK unchanged, and the compiler checks that they still fit.
 */

/**
 * An AWS SDK v3 client of the service its option names (`new ECSClient({...})` for `ecsRunner`,
 * an `S3Client` for S3...), or one mocked with aws-sdk-client-mock.
 */
export interface AwsSdkClient {
  // biome-ignore lint/suspicious/noExplicitAny: a command of the client's own service, which the SDK types per client
  send(command: any, options?: any): Promise<unknown>
  destroy(): void
}

/** A launch template by id (`lt-...`) or name, and a version: `$Latest`, `$Default` (the default) or a number. */
export type LaunchTemplateRef =
  | { id: string; version?: string | number }
  | { name: string; version?: string | number }

/** ECS `launchType` (the SDK's `LaunchType`). */
export type EcsLaunchType = 'EC2' | 'EXTERNAL' | 'FARGATE' | 'MANAGED_INSTANCES'

/** One item of ECS `capacityProviderStrategy` (the SDK's `CapacityProviderStrategyItem`). */
export interface EcsCapacityProviderStrategyItem {
  capacityProvider: string | undefined
  weight?: number | undefined
  base?: number | undefined
}

/** ECS `networkConfiguration` (the SDK's `NetworkConfiguration`): subnets, security groups, public IP. */
export interface EcsNetworkConfiguration {
  awsvpcConfiguration?:
    | {
        subnets: string[] | undefined
        securityGroups?: string[] | undefined
        assignPublicIp?: 'ENABLED' | 'DISABLED' | undefined
      }
    | undefined
}

/** Where and how refresh's ECS tasks are placed: what the reindex runner and the run launcher share. */
export interface EcsPlacementOptions extends AwsCallOptions {
  /** The cluster the tasks start on (a name or ARN). */
  cluster: string
  /** `FARGATE`, `EC2` or `EXTERNAL`; leave out to use `capacityProviderStrategy` or the cluster default. */
  launchType?: EcsLaunchType
  capacityProviderStrategy?: EcsCapacityProviderStrategyItem[]
  /** Subnets, security groups, public IP (required by `awsvpc` task definitions, so by Fargate). */
  networkConfiguration?: EcsNetworkConfiguration
  /** RunTask placements tried when ECS answers with capacity or agent failures (default 6). */
  placementAttempts?: number
  /** An ECS client (tests pass a mocked one); default a new client with the standard credential chain. */
  client?: AwsSdkClient
}
