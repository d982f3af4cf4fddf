/**
 * Stand-ins for ECS and EC2 inside a refresh CLI process under test: `node --import
 * test/fixtures/aws-preload.mjs dist/cli/main.js run --env aws` runs the default config's `aws`
 * environment unchanged, its clients answered by the ECS harness (tasks are real worker processes)
 * and the EC2 mock (snapshots are copies of the volume directory, replicas are real `refresh
 * serve` processes on 127.0.0.N). S3 is the real local server the test started. The ECS
 * harness keeps its tasks in files, so later processes see them; the EC2 mock's instances are
 * written to `ec2-instances.<pid>.json` when the process exits, for the test to query and clean up.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DescribeClustersCommand } from '@aws-sdk/client-ecs'
import { Ec2Mock } from './ec2-mock.js'
import { EcsHarness } from './runners/ecs-harness.js'

export interface StandInOptions {
  stateDir: string
  /** EBS volume id -> the local directory standing for it. */
  volumes: Record<string, string>
  /** Launch templates the EC2 mock knows. */
  launchTemplates?: Array<{ id: string; name: string; version: number }>
  /** EC2 actions answered with UnauthorizedOperation. */
  deny?: string[]
  /** The first replica's last IP octet. */
  firstIp?: number
}

export interface InstanceSummary {
  id: string
  ip: string
  state: string
  pid: number | null
  tags: Array<{ Key?: string; Value?: string }>
}

export function installAwsStandIns(options: StandInOptions): { ecs: EcsHarness; ec2: Ec2Mock } {
  const ecs = new EcsHarness({ stateDir: join(options.stateDir, 'ecs'), mode: 'process', mockAll: true })
  ecs.mock.on(DescribeClustersCommand).resolves({
    clusters: [{ clusterName: 'refresh', status: 'ACTIVE', runningTasksCount: ecs.running().length }],
  })
  const ec2 = new Ec2Mock({
    stateDir: join(options.stateDir, 'ec2'),
    volumes: options.volumes,
    mockAll: true,
    persist: true,
    ...(options.launchTemplates ? { launchTemplates: options.launchTemplates } : {}),
    ...(options.deny ? { deny: options.deny } : {}),
    ...(options.firstIp ? { firstIp: options.firstIp } : {}),
  })
  // the workers and replicas this process starts must not load the stand-ins again
  delete process.env.NODE_OPTIONS
  process.on('exit', () => {
    ec2.save()
    if (ec2.instances.size === 0) return
    const instances: InstanceSummary[] = [...ec2.instances.values()].map((i) => ({
      id: i.id,
      ip: i.ip,
      state: i.state,
      pid: i.child?.pid ?? null,
      tags: i.tags,
    }))
    writeFileSync(
      join(options.stateDir, `ec2-instances.${process.pid}.json`),
      JSON.stringify(instances, null, 2),
    )
  })
  return { ecs, ec2 }
}
