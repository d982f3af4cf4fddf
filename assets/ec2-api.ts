/**
 * The EC2 calls of the EBS snapshot backend and the EC2 replica fleet: the SDK loaded with
 * `import()` on the first call (a local run never loads it), every call made through `callAws`
 * (retried while EC2 throttles, explained when denied or invalid).
 */
import type { EC2Client, Filter, Instance, Snapshot } from '@aws-sdk/client-ec2'
import { type AwsCallOptions, callAws, clientConfig } from '../runners/aws.js'

export type Ec2Sdk = typeof import('@aws-sdk/client-ec2')

export interface Ec2ApiOptions extends AwsCallOptions {
  /** An EC2 client (tests pass a mocked one); default a new client with the standard credential chain. */
  client?: EC2Client
}

export class Ec2Api {
  private sdk: Promise<{ sdk: Ec2Sdk; client: EC2Client }> | undefined
  private readonly options: Ec2ApiOptions
  /** Where the options are set, for the invalid-request message (`ebsSnapshots({...})`). */
  private readonly where: string
  /** The config field to check when EC2 rejects a request of the given action. */
  private readonly fieldOf: (action: string, name: string, message: string) => string

  constructor(
    options: Ec2ApiOptions,
    where: string,
    fieldOf: (action: string, name: string, message: string) => string,
  ) {
    this.options = options
    this.where = where
    this.fieldOf = fieldOf
  }

  private load(): Promise<{ sdk: Ec2Sdk; client: EC2Client }> {
    this.sdk ??= import('@aws-sdk/client-ec2').then((sdk) => ({
      sdk,
      client: this.options.client ?? new sdk.EC2Client(clientConfig(this.options)),
    }))
    return this.sdk
  }

  /** Closes the default client (never one that was passed in). */
  destroy(): void {
    if (!this.options.client) void this.sdk?.then(({ client }) => client.destroy())
    this.sdk = undefined
  }

  async call<T>(action: string, resource: string, send: (sdk: Ec2Sdk, client: EC2Client) => Promise<T>) {
    const { sdk, client } = await this.load()
    return callAws<T>(
      {
        service: 'ec2',
        action,
        resource,
        where: this.where,
        field: (name, message) => this.fieldOf(action, name, message),
        send: () => send(sdk, client),
      },
      this.options,
    )
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
}

/** The value of a tag, if the resource has it. */
export function tagOf(tags: ReadonlyArray<{ Key?: string; Value?: string }> | undefined, key: string) {
  return tags?.find((t) => t.Key === key)?.Value
}
