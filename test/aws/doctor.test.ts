import {
  CreateSnapshotCommand,
  DescribeLaunchTemplatesCommand,
  DescribeVolumesCommand,
  EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2'
import { DescribeClustersCommand, DescribeTaskDefinitionCommand, ECSClient } from '@aws-sdk/client-ecs'
import { mockClient } from 'aws-sdk-client-mock'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { awsDoctor } from '../../aws/doctor.js'
import { awsSettings } from '../../aws/settings.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'

const fault = (name: string, message: string) =>
  Object.assign(new Error(message), { name, $metadata: { httpStatusCode: 400 }, $fault: 'client' })

const VARS = {
  REFRESH_S3_BUCKET: 'refresh-doctor',
  REFRESH_ECS_CLUSTER: 'refresh',
  REFRESH_ECS_TASK_DEFINITION: 'refresh-worker',
  REFRESH_SUBNETS: 'subnet-1,subnet-2',
  REFRESH_EBS_VOLUME_ID: 'vol-0123',
  REFRESH_REPLICA_LAUNCH_TEMPLATE: 'refresh-replica',
  AWS_REGION: 'us-east-1',
}

let s3: LocalS3
beforeAll(async () => {
  s3 = await startLocalS3(['refresh-doctor'])
})
afterAll(() => s3.close())

function clients(options: { denyRunInstances?: boolean } = {}) {
  const ecs = new ECSClient({ region: 'us-east-1' })
  const ecsMock = mockClient(ecs)
  ecsMock.on(DescribeClustersCommand).resolves({ clusters: [{ clusterName: 'refresh', status: 'ACTIVE' }] })
  ecsMock.on(DescribeTaskDefinitionCommand).resolves({
    taskDefinition: { taskDefinitionArn: 'arn:x:task-definition/refresh-worker:3', status: 'ACTIVE' },
  })
  const ec2 = new EC2Client({ region: 'us-east-1' })
  const ec2Mock = mockClient(ec2)
  ec2Mock
    .on(DescribeVolumesCommand)
    .resolves({ Volumes: [{ VolumeId: 'vol-0123', State: 'in-use', Encrypted: true }] })
  ec2Mock.on(DescribeLaunchTemplatesCommand).resolves({
    LaunchTemplates: [
      { LaunchTemplateName: 'refresh-replica', LaunchTemplateId: 'lt-1', LatestVersionNumber: 4 },
    ],
  })
  const wouldSucceed = fault('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.')
  ec2Mock.on(CreateSnapshotCommand).rejects(wouldSucceed)
  ec2Mock
    .on(RunInstancesCommand)
    .rejects(
      options.denyRunInstances
        ? fault('UnauthorizedOperation', 'You are not authorized to perform this operation.')
        : wouldSucceed,
    )
  ec2Mock.on(TerminateInstancesCommand).rejects(wouldSucceed)
  return { ecs, ec2 }
}

describe('refresh doctor on AWS', () => {
  it('names every missing variable at once', () => {
    expect(() => awsSettings({})).toThrow(
      /REFRESH_S3_BUCKET \(the S3 bucket.*REFRESH_ECS_CLUSTER.*REFRESH_EBS_VOLUME_ID.*REFRESH_REPLICA_LAUNCH_TEMPLATE.*REFRESH_SUBNETS/,
    )
    expect(() => awsSettings({ ...VARS, REFRESH_SHARDS: 'many' })).toThrow(
      /REFRESH_SHARDS=many \(expected a whole number/,
    )
    expect(awsSettings(VARS)).toMatchObject({
      bucket: 'refresh-doctor',
      prefix: 'refresh/',
      subnets: ['subnet-1', 'subnet-2'],
    })
  })

  it('passes every check when everything exists and is allowed', async () => {
    const checks = await awsDoctor(awsSettings(VARS), clients())
    expect(checks.filter((c) => c.status !== 'ok')).toEqual([])
    expect(checks.map((c) => c.name)).toEqual([
      'credentials',
      'region',
      's3 bucket',
      'ecs cluster',
      'ecs task definition',
      'ebs volume',
      'replica launch template',
      'permission ec2:CreateSnapshot',
      'permission ec2:RunInstances',
      'permission ec2:TerminateInstances',
    ])
  })

  it('checks the replicas target group when one is set: it exists and forwards to the replica port', async () => {
    const { ElasticLoadBalancingV2Client, DescribeTargetGroupsCommand } = await import(
      '@aws-sdk/client-elastic-load-balancing-v2'
    )
    const elb = new ElasticLoadBalancingV2Client({ region: 'us-east-1' })
    const arn = 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/replicas/abc'
    mockClient(elb)
      .on(DescribeTargetGroupsCommand)
      .resolves({ TargetGroups: [{ TargetGroupName: 'replicas', Port: 9000, Protocol: 'HTTP' }] })
    const checks = await awsDoctor(awsSettings({ ...VARS, REFRESH_TARGET_GROUP_ARN: arn }), {
      ...clients(),
      elb,
    })
    const group = checks.find((c) => c.name === 'target group')
    expect(group).toMatchObject({ status: 'fail' })
    expect(group!.detail).toMatch(/forwards to port 9000, the replicas serve on 8080/)
    expect(() => awsSettings({ ...VARS, REFRESH_TARGET_GROUP_ARN: 'replicas' })).toThrow(
      /REFRESH_TARGET_GROUP_ARN=replicas \(expected a target group ARN/,
    )
  })

  it('fails a denied DryRun and a missing bucket, each with its fix', async () => {
    const checks = await awsDoctor(
      awsSettings({ ...VARS, REFRESH_S3_BUCKET: 'no-such-bucket' }),
      clients({ denyRunInstances: true }),
    )
    const failed = checks.filter((c) => c.status === 'fail')
    expect(failed.map((c) => c.name)).toEqual(['s3 bucket', 'permission ec2:RunInstances'])
    expect(failed[0]!.detail).toMatch(/bucket no-such-bucket does not exist/)
    expect(failed[1]!.detail).toMatch(/UnauthorizedOperation/)
    expect(failed[1]!.fix).toMatch(/allow ec2:RunInstances/)
  })
})
