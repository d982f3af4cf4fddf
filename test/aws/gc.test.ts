import {
  DeleteSnapshotCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  EC2Client,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2'
import { DescribeTasksCommand, ECSClient, ListTasksCommand, StopTaskCommand } from '@aws-sdk/client-ecs'
import { mockClient } from 'aws-sdk-client-mock'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { findLeftovers, type GcRun, removeLeftovers } from '../../aws/gc.js'
import { S3Store } from '../../aws/s3.js'
import { TAG } from '../../aws/service.js'
import { awsSettings } from '../../aws/settings.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'

let s3: LocalS3
beforeAll(async () => {
  s3 = await startLocalS3(['refresh-gc'])
})
afterAll(() => s3.close())

const settings = () =>
  awsSettings({
    REFRESH_S3_BUCKET: 'refresh-gc',
    REFRESH_ECS_CLUSTER: 'refresh',
    REFRESH_ECS_TASK_DEFINITION: 'refresh-worker',
    REFRESH_SUBNETS: 'subnet-1',
    REFRESH_EBS_VOLUME_ID: 'vol-1',
    REFRESH_REPLICA_LAUNCH_TEMPLATE: 'lt-1',
    AWS_REGION: 'us-east-1',
  })

const runs: Record<string, GcRun> = {
  failed: { status: 'failure', snapshots: ['snap-made'] },
  live: { status: 'started', snapshots: [] },
  good: { status: 'success', snapshots: ['snap-good'] },
}

describe('refresh gc on AWS', () => {
  it('lists what finished runs left, keeps results, live runs and unknown runs, and removes the rest', async () => {
    const store = new S3Store()
    for (const run of ['failed', 'good', 'live'])
      await store.putBytes('refresh-gc', `refresh/runs/${run}/reindex/shards/shard-000.db`, Buffer.from(run))
    await store.putBytes('refresh-gc', 'refresh/snapshots/keep.json', Buffer.from('{}'))

    const ecs = new ECSClient({ region: 'us-east-1' })
    const ecsMock = mockClient(ecs)
    ecsMock.on(ListTasksCommand).resolves({ taskArns: ['arn:task/1', 'arn:task/2'] })
    ecsMock.on(DescribeTasksCommand).resolves({
      tasks: [
        { taskArn: 'arn:task/1', tags: [{ key: TAG.run, value: 'failed' }] },
        { taskArn: 'arn:task/2', tags: [{ key: TAG.run, value: 'live' }] },
      ],
    })
    ecsMock.on(StopTaskCommand).resolves({})
    const ec2 = new EC2Client({ region: 'us-east-1' })
    const ec2Mock = mockClient(ec2)
    const tags = (run: string, extra: Record<string, string> = {}) =>
      Object.entries({ [TAG.run]: run, ...extra }).map(([Key, Value]) => ({ Key, Value }))
    ec2Mock.on(DescribeInstancesCommand).resolves({
      Reservations: [
        {
          Instances: [
            { InstanceId: 'i-worker', Tags: tags('failed', { [TAG.shard]: 'shard-1' }) },
            { InstanceId: 'i-serving', Tags: tags('good', { [TAG.fleet]: 'replicas' }) },
            { InstanceId: 'i-failed-rollout', Tags: tags('failed', { [TAG.fleet]: 'replicas' }) },
            { InstanceId: 'i-other-store', Tags: tags('someone-else') },
          ],
        },
      ],
    })
    ec2Mock.on(DescribeSnapshotsCommand).resolves({
      Snapshots: [
        { SnapshotId: 'snap-made', Tags: tags('failed') },
        { SnapshotId: 'snap-orphan', Tags: tags('failed') },
        { SnapshotId: 'snap-good', Tags: tags('good') },
      ],
    })
    ec2Mock.on(TerminateInstancesCommand).resolves({})
    ec2Mock.on(DeleteSnapshotCommand).resolves({})

    const leftovers = await findLeftovers(settings(), async (id) => runs[id], { ecs, ec2 })
    const byId = Object.fromEntries(leftovers.map((l) => [l.id, `${l.action}: ${l.reason}`]))
    expect(byId).toEqual({
      'arn:task/1': 'remove: run ended failure',
      'arn:task/2': 'keep: run is started',
      'i-worker': 'remove: run ended failure',
      'i-serving': 'keep: a result of the success run',
      'i-failed-rollout': 'remove: run ended failure',
      'i-other-store': 'keep: run unknown to this store',
      'snap-made': 'keep: a result of the failure run',
      'snap-orphan': 'remove: run ended failure',
      'snap-good': 'keep: a result of the success run',
      's3://refresh-gc/refresh/runs/failed/': 'remove: run ended failure',
      's3://refresh-gc/refresh/runs/good/': 'remove: run ended success',
      's3://refresh-gc/refresh/runs/live/': 'keep: run is started',
    })

    const { removed, failed } = await removeLeftovers(settings(), leftovers, { ecs, ec2 })
    expect(failed).toEqual([])
    expect(removed.map((l) => l.id).sort()).toEqual(
      [
        'arn:task/1',
        'i-failed-rollout',
        'i-worker',
        's3://refresh-gc/refresh/runs/failed/',
        's3://refresh-gc/refresh/runs/good/',
        'snap-orphan',
      ].sort(),
    )
    expect(ecsMock.commandCalls(StopTaskCommand).map((c) => c.args[0].input.task)).toEqual(['arn:task/1'])
    expect(ec2Mock.commandCalls(DeleteSnapshotCommand).map((c) => c.args[0].input.SnapshotId)).toEqual([
      'snap-orphan',
    ])
    const left = (await store.list('refresh-gc', 'refresh/')).map((o) => o.key)
    expect(left).toEqual(['refresh/runs/live/reindex/shards/shard-000.db', 'refresh/snapshots/keep.json'])
    await store.close()
  })
})
