/**
 * `refresh gc --env aws`: what runs left behind on AWS. Every resource refresh creates carries
 * the run's id (`refresh:run` tag, or the key prefix `runs/<runId>/`), so whatever belongs to a
 * run that is no longer in flight, and is not a result that run delivered, is a leftover:
 * - ECS tasks still running for a finished run (its orchestrator died before stopping them);
 * - EC2 instances of a finished run: workers, and replicas launched by a rollout that failed;
 * - EBS snapshots of a run that failed or was canceled, unless that run materialized them;
 * - the S3 scratch of a finished run (`runs/<runId>/`: the reindex input, shard files, statuses).
 * Resources of runs this store does not know (another store, another stage) are listed, never
 * removed. The SDK clients load here, on demand.
 */
import type { EC2Client } from '@aws-sdk/client-ec2'
import type { ECSClient } from '@aws-sdk/client-ecs'
import type { S3Client } from '@aws-sdk/client-s3'
import { Ec2Api, tagOf } from './ec2.js'
import { S3Store } from './s3.js'
import { AwsService, clientConfig, TAG } from './service.js'
import type { AwsSettings } from './settings.js'

export interface GcRun {
  status: 'queued' | 'started' | 'paused' | 'success' | 'failure' | 'canceled'
  /** The snapshot ids the run materialized (results, not leftovers). */
  snapshots: readonly string[]
}

export interface Leftover {
  kind: 'ecs-task' | 'ec2-instance' | 'ebs-snapshot' | 's3-prefix'
  id: string
  runId: string
  /** `remove`, or why it is kept. */
  action: 'remove' | 'keep'
  reason: string
  /** S3 prefixes: the keys under it. */
  keys?: string[]
}

export interface GcClients {
  s3?: S3Client
  ecs?: ECSClient
  ec2?: EC2Client
}

const IN_FLIGHT = new Set(['queued', 'started', 'paused'])

/** Finds what runs left behind. `runOf` answers from the store (undefined: a run it does not know). */
export async function findLeftovers(
  settings: AwsSettings,
  runOf: (runId: string) => Promise<GcRun | undefined>,
  clients: GcClients = {},
): Promise<Leftover[]> {
  const found: Leftover[] = []
  const judge = async (
    kind: Leftover['kind'],
    id: string,
    runId: string,
    isResult: (run: GcRun) => boolean,
  ): Promise<Leftover> => {
    const run = await runOf(runId)
    if (!run) return { kind, id, runId, action: 'keep', reason: 'run unknown to this store' }
    if (IN_FLIGHT.has(run.status)) return { kind, id, runId, action: 'keep', reason: `run is ${run.status}` }
    if (isResult(run)) return { kind, id, runId, action: 'keep', reason: `a result of the ${run.status} run` }
    return { kind, id, runId, action: 'remove', reason: `run ended ${run.status}` }
  }
  await withClients(settings, clients, async ({ ecs, ec2, s3 }) => {
    if (settings.cluster) {
      const cluster = `cluster ${settings.cluster}`
      const arns: string[] = []
      let nextToken: string | undefined
      do {
        const out = await ecs.call('ListTasks', cluster, (sdk, c) =>
          c.send(
            new sdk.ListTasksCommand({ cluster: settings.cluster, desiredStatus: 'RUNNING', nextToken }),
          ),
        )
        arns.push(...(out.taskArns ?? []))
        nextToken = out.nextToken
      } while (nextToken)
      for (let i = 0; i < arns.length; i += 100) {
        const out = await ecs.call('DescribeTasks', cluster, (sdk, c) =>
          c.send(
            new sdk.DescribeTasksCommand({
              cluster: settings.cluster,
              tasks: arns.slice(i, i + 100),
              include: ['TAGS'],
            }),
          ),
        )
        for (const task of out.tasks ?? []) {
          const runId = task.tags?.find((t) => t.key === TAG.run)?.value
          if (runId && task.taskArn) found.push(await judge('ecs-task', task.taskArn, runId, () => false))
        }
      }
    }

    const instances = await ec2.describeInstances(
      {
        filters: [
          { Name: 'tag-key', Values: [TAG.run] },
          { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
        ],
      },
      'instances tagged refresh:run',
    )
    for (const instance of instances) {
      const runId = tagOf(instance.Tags, TAG.run)
      if (!runId || !instance.InstanceId) continue
      // a replica a successful rollout launched is the serving fleet, not a leftover
      const replica = tagOf(instance.Tags, TAG.fleet) !== undefined
      found.push(
        await judge('ec2-instance', instance.InstanceId, runId, (run) => replica && run.status === 'success'),
      )
    }

    const snapshots = await ec2.describeSnapshots(
      [{ Name: `tag:${TAG.managedBy}`, Values: ['refresh'] }],
      'snapshots tagged refresh:managed-by',
    )
    for (const snapshot of snapshots) {
      const runId = tagOf(snapshot.Tags, TAG.run)
      if (!runId || !snapshot.SnapshotId) continue
      const id = snapshot.SnapshotId
      // a run's own snapshot stays whatever came after it (retention removes old ones)
      found.push(
        await judge(
          'ebs-snapshot',
          id,
          runId,
          (run) => run.status === 'success' || run.snapshots.includes(id),
        ),
      )
    }

    const runsPrefix = `${settings.prefix}runs/`
    const byRun = new Map<string, string[]>()
    for (const object of await s3.list(settings.bucket, runsPrefix)) {
      const runId = object.key.slice(runsPrefix.length).split('/')[0]
      if (!runId) continue
      byRun.set(runId, [...(byRun.get(runId) ?? []), object.key])
    }
    for (const [runId, keys] of byRun) {
      found.push({
        ...(await judge('s3-prefix', `s3://${settings.bucket}/${runsPrefix}${runId}/`, runId, () => false)),
        keys,
      })
    }
  })
  return found
}

/** Removes the leftovers marked `remove`; returns the ones removed and the ones that failed, with why. */
export async function removeLeftovers(
  settings: AwsSettings,
  leftovers: readonly Leftover[],
  clients: GcClients = {},
): Promise<{ removed: Leftover[]; failed: Array<{ leftover: Leftover; error: string }> }> {
  const removed: Leftover[] = []
  const failed: Array<{ leftover: Leftover; error: string }> = []
  await withClients(settings, clients, async ({ ecs, ec2, s3 }) => {
    for (const l of leftovers) {
      if (l.action !== 'remove') continue
      try {
        if (l.kind === 'ecs-task') {
          await ecs.call('StopTask', l.id, (sdk, c) =>
            c.send(
              new sdk.StopTaskCommand({
                cluster: settings.cluster,
                task: l.id,
                reason: `refresh gc: run ${l.runId} ended`,
              }),
            ),
          )
        } else if (l.kind === 'ec2-instance') {
          await ec2.terminateInstances([l.id], l.id)
        } else if (l.kind === 'ebs-snapshot') {
          await ec2.call('DeleteSnapshot', l.id, (sdk, c) =>
            c.send(new sdk.DeleteSnapshotCommand({ SnapshotId: l.id })),
          )
        } else {
          await s3.deleteKeys(settings.bucket, l.keys ?? [])
        }
        removed.push(l)
      } catch (error) {
        failed.push({ leftover: l, error: error instanceof Error ? error.message : String(error) })
      }
    }
  })
  return { removed, failed }
}

async function withClients<T>(
  settings: AwsSettings,
  clients: GcClients,
  use: (c: {
    ecs: AwsService<typeof import('@aws-sdk/client-ecs'), ECSClient>
    ec2: Ec2Api
    s3: S3Store
  }) => Promise<T>,
): Promise<T> {
  const options = { region: settings.region }
  const where = 'the aws environment'
  const ecs = new AwsService({
    service: 'ecs',
    where,
    package: '@aws-sdk/client-ecs',
    load: () => import('@aws-sdk/client-ecs'),
    make: (sdk) => new sdk.ECSClient(clientConfig(options)),
    client: clients.ecs,
    options,
  })
  const ec2 = new Ec2Api({ ...options, client: clients.ec2 }, where, () => 'REFRESH_* variables')
  const s3 = new S3Store({ client: clients.s3, region: settings.region, where: 'REFRESH_S3_BUCKET' })
  try {
    return await use({ ecs, ec2, s3 })
  } finally {
    ecs.destroy()
    ec2.destroy()
    s3.close()
  }
}
