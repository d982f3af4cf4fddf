/**
 * The names an AWS deployment of refresh needs (bucket, cluster, task definition, subnets, volume,
 * launch templates...), read from environment variables so that one `refresh.config.ts` serves
 * every account and stage. The default config's `aws` environment is built from them, and
 * `refresh doctor` and `refresh gc` find them in the environment's `resources.aws`.
 */

export interface AwsSettings {
  region: string | undefined
  /** Where refresh keeps its objects: run scratch (`runs/<runId>/`), published snapshots, the alias. */
  bucket: string
  prefix: string
  /** The upstream export `copy` reads (NDJSON or NDJSON.gz objects). */
  exportUrl: string
  /** The orchestrator's data directory: the mount point of the EBS volume that holds the index. */
  dataDir: string
  /** Reindex shards (id ranges, one worker each). */
  shards: number
  /** Where the indexer workers run: ECS tasks or EC2 instances. */
  workers: 'ecs' | 'ec2'
  cluster: string | undefined
  taskDefinition: string | undefined
  launchType: 'FARGATE' | 'EC2' | undefined
  subnets: string[]
  securityGroups: string[]
  /** The launch template of EC2 workers (when `workers` is `ec2`). */
  workerLaunchTemplate: string | undefined
  /** The EBS volume mounted at `dataDir`, snapshotted by `snapshot`. */
  volumeId: string
  /** The launch template of read replicas, and how many. */
  replicaLaunchTemplate: string
  replicas: number
  /** The replica fleet's name (the value of its `refresh:fleet` tag). */
  fleet: string
  /** The port replicas serve on. */
  replicaPort: number
  /** An ELBv2 target group the replicas are registered in, if they serve behind a load balancer. */
  targetGroupArn: string | undefined
  /** How often tasks, instances and snapshots are polled (undefined: each backend's default). */
  pollMs: number | undefined
}

/** Each variable: what it is, and its default (none: required). */
export const AWS_VARIABLES = {
  REFRESH_S3_BUCKET: { about: 'the S3 bucket for run data, snapshots and the alias' },
  REFRESH_S3_PREFIX: { about: 'the key prefix in that bucket', default: 'refresh/' },
  REFRESH_EXPORT_URL: { about: 'the upstream export copy reads', default: 's3://<bucket>/<prefix>export/' },
  REFRESH_DATA_DIR: { about: 'where the index volume is mounted on this host', default: '/mnt/refresh' },
  REFRESH_SHARDS: { about: 'reindex shards', default: '32' },
  REFRESH_WORKERS: { about: 'where indexer workers run: ecs or ec2', default: 'ecs' },
  REFRESH_ECS_CLUSTER: { about: 'the ECS cluster of the workers, with REFRESH_WORKERS=ecs' },
  REFRESH_ECS_TASK_DEFINITION: { about: 'the worker task definition family, with REFRESH_WORKERS=ecs' },
  REFRESH_ECS_LAUNCH_TYPE: { about: 'FARGATE or EC2', default: 'FARGATE' },
  REFRESH_SUBNETS: { about: 'comma-separated subnet ids for workers and replicas' },
  REFRESH_SECURITY_GROUPS: { about: 'comma-separated security group ids for workers' },
  REFRESH_WORKER_LAUNCH_TEMPLATE: { about: 'the launch template of EC2 workers, with REFRESH_WORKERS=ec2' },
  REFRESH_EBS_VOLUME_ID: { about: 'the EBS volume mounted at REFRESH_DATA_DIR' },
  REFRESH_REPLICA_LAUNCH_TEMPLATE: { about: 'the launch template of read replicas' },
  REFRESH_REPLICAS: { about: 'how many read replicas', default: '2' },
  REFRESH_FLEET: { about: 'the replica fleet name (its refresh:fleet tag)', default: 'refresh-replicas' },
  REFRESH_REPLICA_PORT: { about: 'the port replicas serve on', default: '8080' },
  REFRESH_TARGET_GROUP_ARN: { about: 'the ELBv2 target group of the replicas, if any', default: 'none' },
  REFRESH_AWS_POLL_MS: {
    about: 'how often tasks, instances and snapshots are polled, in ms',
    default: '5000 for tasks and instances, 15000 for snapshots',
  },
} as const satisfies Record<string, { about: string; default?: string }>

type Env = Readonly<Record<string, string | undefined>>

/**
 * Reads the settings from environment variables. Every missing or malformed variable is named
 * in one error, with what it is for, so a deploy is fixed in one go.
 */
export function awsSettings(env: Env = process.env): AwsSettings {
  const problems: string[] = []
  const get = (name: keyof typeof AWS_VARIABLES): string | undefined => {
    const value = env[name]?.trim()
    return value === '' ? undefined : value
  }
  const need = (name: keyof typeof AWS_VARIABLES): string => {
    const value = get(name)
    if (value === undefined) problems.push(`${name} (${AWS_VARIABLES[name].about})`)
    return value ?? ''
  }
  const count = (
    name: 'REFRESH_SHARDS' | 'REFRESH_REPLICAS' | 'REFRESH_REPLICA_PORT' | 'REFRESH_AWS_POLL_MS',
    fallback: number,
    max: number,
  ) => {
    const text = get(name)
    if (text === undefined) return fallback
    const n = Number(text)
    if (!Number.isInteger(n) || n < 1 || n > max) {
      problems.push(`${name}=${text} (expected a whole number from 1 to ${max})`)
      return fallback
    }
    return n
  }
  const list = (name: 'REFRESH_SUBNETS' | 'REFRESH_SECURITY_GROUPS') =>
    (get(name) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)

  const bucket = need('REFRESH_S3_BUCKET')
  const rawPrefix = get('REFRESH_S3_PREFIX') ?? 'refresh/'
  const prefix = rawPrefix.replace(/^\/+/, '').replace(/([^/])$/, '$1/')
  const workers = (get('REFRESH_WORKERS') ?? 'ecs') as AwsSettings['workers']
  if (workers !== 'ecs' && workers !== 'ec2')
    problems.push(`REFRESH_WORKERS=${String(workers)} (expected ecs or ec2)`)
  const launchType = (get('REFRESH_ECS_LAUNCH_TYPE') ?? 'FARGATE') as 'FARGATE' | 'EC2'
  if (launchType !== 'FARGATE' && launchType !== 'EC2')
    problems.push(`REFRESH_ECS_LAUNCH_TYPE=${String(launchType)} (expected FARGATE or EC2)`)
  const settings: AwsSettings = {
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION,
    bucket,
    prefix,
    exportUrl: get('REFRESH_EXPORT_URL') ?? `s3://${bucket}/${prefix}export/`,
    dataDir: get('REFRESH_DATA_DIR') ?? '/mnt/refresh',
    shards: count('REFRESH_SHARDS', 32, 256),
    workers,
    cluster: workers === 'ecs' ? need('REFRESH_ECS_CLUSTER') : get('REFRESH_ECS_CLUSTER'),
    taskDefinition:
      workers === 'ecs' ? need('REFRESH_ECS_TASK_DEFINITION') : get('REFRESH_ECS_TASK_DEFINITION'),
    launchType,
    subnets: list('REFRESH_SUBNETS'),
    securityGroups: list('REFRESH_SECURITY_GROUPS'),
    workerLaunchTemplate:
      workers === 'ec2' ? need('REFRESH_WORKER_LAUNCH_TEMPLATE') : get('REFRESH_WORKER_LAUNCH_TEMPLATE'),
    volumeId: need('REFRESH_EBS_VOLUME_ID'),
    replicaLaunchTemplate: need('REFRESH_REPLICA_LAUNCH_TEMPLATE'),
    replicas: count('REFRESH_REPLICAS', 2, 64),
    fleet: get('REFRESH_FLEET') ?? 'refresh-replicas',
    replicaPort: count('REFRESH_REPLICA_PORT', 8080, 65535),
    targetGroupArn: get('REFRESH_TARGET_GROUP_ARN'),
    pollMs:
      get('REFRESH_AWS_POLL_MS') === undefined ? undefined : count('REFRESH_AWS_POLL_MS', 5000, 600_000),
  }
  if (settings.targetGroupArn !== undefined && !settings.targetGroupArn.startsWith('arn:'))
    problems.push(
      `REFRESH_TARGET_GROUP_ARN=${settings.targetGroupArn} (expected a target group ARN, arn:aws:elasticloadbalancing:...)`,
    )
  if (workers === 'ecs' && launchType === 'FARGATE' && settings.subnets.length === 0)
    problems.push('REFRESH_SUBNETS (Fargate tasks need at least one subnet)')
  if (problems.length > 0) {
    throw new Error(
      `the aws environment needs these environment variables: ${problems.join('; ')}. See "AWS environment" in the README.`,
    )
  }
  return settings
}

/** The settings an environment carries in `resources.aws`, if it has them (for doctor and gc). */
export function settingsOf(resources: Record<string, unknown>): AwsSettings | undefined {
  const aws = resources.aws as Partial<AwsSettings> | undefined
  return aws && typeof aws === 'object' && typeof aws.bucket === 'string' ? (aws as AwsSettings) : undefined
}

/**
 * The region the SDK will use for these settings (AWS_REGION, or the profile's), checked before
 * anything is sent: without one every call fails the same way, so a command that talks to AWS
 * says so once, with the fix, instead of failing (or retrying) call after call. Loads the S3
 * client package: call it only for an environment with AWS settings.
 */
export async function requireRegion(settings: AwsSettings): Promise<string> {
  const [{ S3Client }, { clientConfig, sdkConfigFix }, { ConfigError }] = await Promise.all([
    import('@aws-sdk/client-s3'),
    import('./service.js'),
    import('../core/errors.js'),
  ])
  const client = new S3Client(clientConfig({ region: settings.region }))
  try {
    return await client.config.region()
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause)
    throw new ConfigError(
      `the AWS SDK has no region to send requests to (${message}). ${sdkConfigFix(message)}`,
      {
        cause,
      },
    )
  } finally {
    client.destroy()
  }
}
