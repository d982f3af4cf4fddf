/**
 * `refresh doctor --env aws`: is this host ready to run the AWS refresh? Each check makes one
 * read-only call (or an EC2 `DryRun`, which checks the permission and creates nothing) and says
 * `ok`, or what failed and the fix. The SDK clients load here, on demand.
 */
import type { EC2Client } from '@aws-sdk/client-ec2'
import type { ECSClient } from '@aws-sdk/client-ecs'
import type { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2'
import type { S3Client } from '@aws-sdk/client-s3'
import { isPeerInstalled } from '../core/peers.js'
import { S3Store } from './s3.js'
import {
  AwsCallError,
  type AwsSdkPackage,
  callAws,
  classifyAwsError,
  clientConfig,
  redact,
} from './service.js'
import type { AwsSettings } from './settings.js'

export interface DoctorCheck {
  name: string
  status: 'ok' | 'fail' | 'skip'
  detail: string
  /** What to do about a failure. */
  fix?: string
}

export interface DoctorClients {
  s3?: S3Client
  ecs?: ECSClient
  ec2?: EC2Client
  elb?: ElasticLoadBalancingV2Client
}

/** Runs every check for these settings; never throws for a failed check. */
export async function awsDoctor(settings: AwsSettings, clients: DoctorClients = {}): Promise<DoctorCheck[]> {
  const needed: AwsSdkPackage[] = ['@aws-sdk/client-s3', '@aws-sdk/client-ecs', '@aws-sdk/client-ec2']
  if (settings.targetGroupArn) needed.push('@aws-sdk/client-elastic-load-balancing-v2')
  const missing = needed.filter((name) => !isPeerInstalled(name))
  if (missing.length > 0) {
    // every other check calls AWS through these packages
    return [
      {
        name: 'aws sdk',
        status: 'fail',
        detail: `not installed: ${missing.join(', ')} (optional peer dependencies of refresh)`,
        fix: `npm install ${missing.join(' ')}`,
      },
    ]
  }
  const [s3sdk, ecsSdk, ec2Sdk] = await Promise.all([
    import('@aws-sdk/client-s3'),
    import('@aws-sdk/client-ecs'),
    import('@aws-sdk/client-ec2'),
  ])
  const options = { region: settings.region, callAttempts: 2, backoffMs: 200 }
  const s3client = clients.s3 ?? new s3sdk.S3Client(clientConfig(options))
  const ecs = clients.ecs ?? new ecsSdk.ECSClient(clientConfig(options))
  const ec2 = clients.ec2 ?? new ec2Sdk.EC2Client(clientConfig(options))
  const checks: DoctorCheck[] = []
  const check = async (name: string, run: () => Promise<string>, fix: (error: unknown) => string) => {
    try {
      checks.push({ name, status: 'ok', detail: await run() })
    } catch (error) {
      if (error instanceof Skip) checks.push({ name, status: 'skip', detail: error.message })
      else checks.push({ name, status: 'fail', detail: describe(error), fix: fix(error) })
    }
  }

  try {
    await check(
      'credentials',
      async () => {
        const credentials = await s3client.config.credentials()
        const key = credentials.accessKeyId
        return `found (${key.slice(0, 4)}****${credentials.sessionToken ? ', temporary' : ''})`
      },
      () =>
        'give this host credentials through the standard chain: an instance or task role, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.',
    )
    await check(
      'region',
      async () => {
        const region = await s3client.config.region()
        if (!region) throw new Error('no region configured')
        return region
      },
      () => 'set AWS_REGION (or a region in the AWS profile).',
    )
    // without credentials or a region nothing can be sent: every check below would fail alike,
    // each with its own (wrong) fix
    if (checks.some((c) => c.status === 'fail')) {
      checks.push({
        name: 'aws resources',
        status: 'skip',
        detail: 'not checked: they need the credentials and the region above',
      })
      return checks
    }

    const store = new S3Store({ client: s3client, where: 'REFRESH_S3_BUCKET', ...options })
    await check(
      's3 bucket',
      async () => {
        await store.headBucket(settings.bucket)
        return `s3://${settings.bucket}/${settings.prefix} reachable`
      },
      (error) =>
        kindOf(error) === 'denied'
          ? `allow s3:ListBucket on arn:aws:s3:::${settings.bucket} for these credentials (docs/aws.md).`
          : `create the bucket or set REFRESH_S3_BUCKET to an existing one.`,
    )

    if (settings.workers === 'ecs') {
      await check(
        'ecs cluster',
        async () => {
          const out = await ecsCall('DescribeClusters', `cluster ${settings.cluster}`, () =>
            ecs.send(new ecsSdk.DescribeClustersCommand({ clusters: [settings.cluster!] })),
          )
          const cluster = out.clusters?.[0]
          if (!cluster) throw new Error(`cluster ${settings.cluster} does not exist`)
          if (cluster.status !== 'ACTIVE') throw new Error(`cluster ${settings.cluster} is ${cluster.status}`)
          return `${settings.cluster} is ACTIVE (${cluster.runningTasksCount ?? 0} tasks running)`
        },
        (error) =>
          kindOf(error) === 'denied'
            ? 'allow ecs:DescribeClusters for the orchestrator (docs/aws.md).'
            : 'create the cluster or set REFRESH_ECS_CLUSTER to an existing one.',
      )
      await check(
        'ecs task definition',
        async () => {
          const out = await ecsCall(
            'DescribeTaskDefinition',
            `task definition ${settings.taskDefinition}`,
            () =>
              ecs.send(
                new ecsSdk.DescribeTaskDefinitionCommand({ taskDefinition: settings.taskDefinition! }),
              ),
          )
          const arn = out.taskDefinition?.taskDefinitionArn ?? settings.taskDefinition
          return `${arn?.split('/').at(-1)} (${out.taskDefinition?.status ?? 'unknown status'})`
        },
        (error) =>
          kindOf(error) === 'denied'
            ? 'allow ecs:DescribeTaskDefinition for the orchestrator (docs/aws.md).'
            : 'register the worker task definition (docs/aws.md) or set REFRESH_ECS_TASK_DEFINITION.',
      )
    }

    const ec2Call = <T>(action: string, send: () => Promise<T>) =>
      callAws({ service: 'ec2', action, resource: '*', where: 'the aws environment', send }, options)
    await check(
      'ebs volume',
      async () => {
        const out = await ec2Call('DescribeVolumes', () =>
          ec2.send(new ec2Sdk.DescribeVolumesCommand({ VolumeIds: [settings.volumeId] })),
        )
        const volume = out.Volumes?.[0]
        if (!volume) throw new Error(`volume ${settings.volumeId} does not exist`)
        return `${settings.volumeId} ${volume.State ?? ''}${volume.Encrypted ? ', encrypted' : ', NOT encrypted: its snapshots will be refused'}`
      },
      (error) =>
        kindOf(error) === 'denied'
          ? 'allow ec2:DescribeVolumes for the orchestrator.'
          : 'set REFRESH_EBS_VOLUME_ID to the volume mounted at REFRESH_DATA_DIR.',
    )
    const templates = [
      ['replica launch template', settings.replicaLaunchTemplate, 'REFRESH_REPLICA_LAUNCH_TEMPLATE'],
      ...(settings.workers === 'ec2'
        ? [['worker launch template', settings.workerLaunchTemplate!, 'REFRESH_WORKER_LAUNCH_TEMPLATE']]
        : []),
    ] as const
    for (const [name, template, variable] of templates) {
      await check(
        name,
        async () => {
          const byId = /^lt-[0-9a-f]+$/.test(template)
          const out = await ec2Call('DescribeLaunchTemplates', () =>
            ec2.send(
              new ec2Sdk.DescribeLaunchTemplatesCommand(
                byId ? { LaunchTemplateIds: [template] } : { LaunchTemplateNames: [template] },
              ),
            ),
          )
          const found = out.LaunchTemplates?.[0]
          if (!found) throw new Error(`launch template ${template} does not exist`)
          return `${found.LaunchTemplateName} (${found.LaunchTemplateId}, latest version ${found.LatestVersionNumber})`
        },
        (error) =>
          kindOf(error) === 'denied'
            ? 'allow ec2:DescribeLaunchTemplates for the orchestrator.'
            : `create the launch template or set ${variable} to an existing one (a name or an lt- id).`,
      )
    }

    if (settings.targetGroupArn) {
      const arn = settings.targetGroupArn
      await check(
        'target group',
        async () => {
          const elbSdk = await import('@aws-sdk/client-elastic-load-balancing-v2')
          const elb = clients.elb ?? new elbSdk.ElasticLoadBalancingV2Client(clientConfig(options))
          try {
            const out = await callAws(
              {
                service: 'elasticloadbalancing',
                action: 'DescribeTargetGroups',
                resource: arn,
                where: 'the aws environment',
                send: () => elb.send(new elbSdk.DescribeTargetGroupsCommand({ TargetGroupArns: [arn] })),
              },
              options,
            )
            const group = out.TargetGroups?.[0]
            if (!group) throw new Error(`target group ${arn} does not exist`)
            if (group.Port !== undefined && group.Port !== settings.replicaPort)
              throw new Error(
                `target group ${group.TargetGroupName} forwards to port ${group.Port}, the replicas serve on ${settings.replicaPort}`,
              )
            return `${group.TargetGroupName} (${group.Protocol ?? '?'}:${group.Port ?? '?'}, health check ${group.HealthCheckPath ?? '/'})`
          } finally {
            if (!clients.elb) elb.destroy()
          }
        },
        (error) =>
          kindOf(error) === 'denied'
            ? 'allow elasticloadbalancing:DescribeTargetGroups, DescribeTargetHealth, RegisterTargets and DeregisterTargets for the orchestrator (docs/aws.md).'
            : 'set REFRESH_TARGET_GROUP_ARN to an existing target group whose port is REFRESH_REPLICA_PORT (health check path /healthz), or leave it unset.',
      )
    }

    // permissions, checked with DryRun: EC2 answers DryRunOperation when it would have done it
    const dryRun = async (action: string, send: () => Promise<unknown>) => {
      try {
        await send()
      } catch (error) {
        const name = (error as { name?: string }).name
        if (name === 'DryRunOperation') return 'allowed (DryRun)'
        if (name === 'InvalidInstanceID.NotFound' || name === 'InvalidSnapshot.NotFound')
          throw new Skip(
            `not checkable without an existing resource (${name}); the permission is checked at use`,
          )
        throw new AwsCallError(action, classifyAwsError(error), `${name}: ${describe(error)}`, {
          cause: error,
        })
      }
      throw new Error(`${action} with DryRun did not answer DryRunOperation`)
    }
    await check(
      'permission ec2:CreateSnapshot',
      () =>
        dryRun('CreateSnapshot', () =>
          ec2.send(new ec2Sdk.CreateSnapshotCommand({ VolumeId: settings.volumeId, DryRun: true })),
        ),
      () => 'allow ec2:CreateSnapshot and ec2:CreateTags (on create) for the orchestrator (docs/aws.md).',
    )
    await check(
      'permission ec2:RunInstances',
      () =>
        dryRun('RunInstances', () =>
          ec2.send(
            new ec2Sdk.RunInstancesCommand({
              MinCount: 1,
              MaxCount: 1,
              LaunchTemplate: /^lt-[0-9a-f]+$/.test(settings.replicaLaunchTemplate)
                ? { LaunchTemplateId: settings.replicaLaunchTemplate }
                : { LaunchTemplateName: settings.replicaLaunchTemplate },
              DryRun: true,
            }),
          ),
        ),
      () =>
        'allow ec2:RunInstances with the replica launch template, and iam:PassRole for its role (docs/aws.md).',
    )
    await check(
      'permission ec2:TerminateInstances',
      () =>
        dryRun('TerminateInstances', () =>
          ec2.send(
            new ec2Sdk.TerminateInstancesCommand({ InstanceIds: ['i-00000000000000000'], DryRun: true }),
          ),
        ),
      () => 'allow ec2:TerminateInstances on instances tagged refresh:managed-by=refresh (docs/aws.md).',
    )
  } finally {
    if (!clients.s3) s3client.destroy()
    if (!clients.ecs) ecs.destroy()
    if (!clients.ec2) ec2.destroy()
  }
  return checks

  function ecsCall<T>(action: string, resource: string, send: () => Promise<T>): Promise<T> {
    return callAws({ service: 'ecs', action, resource, where: 'the aws environment', send }, options)
  }
}

class Skip extends Error {}

function kindOf(error: unknown): string {
  return error instanceof AwsCallError ? error.kind : classifyAwsError(error)
}

function describe(error: unknown): string {
  return redact(error instanceof Error ? error.message : String(error))
}
