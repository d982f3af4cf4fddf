/**
 * The EC2 calls every EC2 backend makes (the EC2 runner, the EBS snapshot backend, the replica
 * fleet, `refresh gc`): the SDK loaded with `import()` on the first call (a local run never
 * loads it), every call made through `callAws` (retried while EC2 throttles, explained when
 * denied or invalid), listings read page by page.
 */
import type { EC2Client, Filter, Instance, Snapshot } from '@aws-sdk/client-ec2'
import { AwsCallError, type AwsCallOptions, AwsService, clientConfig } from './service.js'
import type { AwsSdkClient, LaunchTemplateRef } from './types.js'

export type Ec2Sdk = typeof import('@aws-sdk/client-ec2')

export interface Ec2ApiOptions extends AwsCallOptions {
  /** An EC2 client (tests pass a mocked one); default a new client with the standard credential chain. */
  client?: AwsSdkClient
}

export class Ec2Api {
  private readonly aws: AwsService<Ec2Sdk, EC2Client>
  private readonly where: string

  constructor(
    options: Ec2ApiOptions,
    /** Where the options are set, for the invalid-request message (`ebsSnapshots({...})`). */
    where: string,
    /** The config field to check when EC2 rejects a request of the given action. */
    fieldOf: (action: string, name: string, message: string) => string,
    /** Counts each try of an action (stats, benchmarks). */
    count?: (action: string) => void,
  ) {
    this.where = where
    this.aws = new AwsService({
      service: 'ec2',
      where,
      package: '@aws-sdk/client-ec2',
      load: () => import('@aws-sdk/client-ec2'),
      make: (sdk) => new sdk.EC2Client(clientConfig(options)),
      client: options.client,
      field: fieldOf,
      ...(count ? { count } : {}),
      options,
    })
  }

  /** Closes the default client (never one that was passed in). */
  destroy(): void {
    this.aws.destroy()
  }

  call<T>(
    action: string,
    resource: string,
    send: (sdk: Ec2Sdk, client: EC2Client) => Promise<T>,
  ): Promise<T> {
    return this.aws.call(action, resource, send)
  }

  /** Every snapshot matching the filters (owned by this account), all pages. */
  async describeSnapshots(filters: Filter[], resource: string): Promise<Snapshot[]> {
    const found: Snapshot[] = []
    let NextToken: string | undefined
    do {
      const out = await this.call('DescribeSnapshots', resource, (sdk, c) =>
        c.send(new sdk.DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: filters, NextToken })),
      )
      found.push(...(out.Snapshots ?? []))
      NextToken = out.NextToken
    } while (NextToken)
    return found
  }

  /** Every instance matching the filters or ids, all pages and reservations. */
  async describeInstances(
    query: { filters?: Filter[]; ids?: string[] },
    resource: string,
  ): Promise<Instance[]> {
    const found: Instance[] = []
    let NextToken: string | undefined
    do {
      const out = await this.call('DescribeInstances', resource, (sdk, c) =>
        c.send(
          new sdk.DescribeInstancesCommand({
            ...(query.filters ? { Filters: query.filters } : {}),
            ...(query.ids ? { InstanceIds: query.ids } : {}),
            NextToken,
          }),
        ),
      )
      for (const r of out.Reservations ?? []) found.push(...(r.Instances ?? []))
      NextToken = out.NextToken
    } while (NextToken)
    return found
  }

  /**
   * The version number a launch template reference stands for now (`$Default`, `$Latest` or a
   * number): resolved once and pinned, so a version published mid-step never mixes two images.
   */
  async pinLaunchTemplate(lt: LaunchTemplateRef): Promise<number> {
    const version = String(lt.version ?? '$Default')
    const which = 'id' in lt ? { LaunchTemplateId: lt.id } : { LaunchTemplateName: lt.name }
    const label = `launch template ${'id' in lt ? lt.id : lt.name}`
    const out = await this.call('DescribeLaunchTemplateVersions', label, (sdk, c) =>
      c.send(new sdk.DescribeLaunchTemplateVersionsCommand({ ...which, Versions: [version] })),
    )
    const n = out.LaunchTemplateVersions?.[0]?.VersionNumber
    if (n === undefined) {
      throw new AwsCallError(
        'DescribeLaunchTemplateVersions',
        'invalid',
        `${label} has no version ${version}; check \`launchTemplate\` in ${this.where}.`,
      )
    }
    return n
  }

  /** Terminates instances, 1,000 a call. */
  async terminateInstances(ids: readonly string[], resource: string): Promise<void> {
    for (let i = 0; i < ids.length; i += 1000) {
      const batch = ids.slice(i, i + 1000)
      await this.call('TerminateInstances', resource, (sdk, c) =>
        c.send(new sdk.TerminateInstancesCommand({ InstanceIds: batch })),
      )
    }
  }
}

/** The value of a tag, if the resource has it. */
export function tagOf(tags: ReadonlyArray<{ Key?: string; Value?: string }> | undefined, key: string) {
  return tags?.find((t) => t.Key === key)?.Value
}
