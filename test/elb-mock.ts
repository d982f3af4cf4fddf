/**
 * A stateful stand-in for an ELBv2 target group, driven through aws-sdk-client-mock, for the EC2
 * replica fleet. A registered target is `initial` for a few DescribeTargetHealth calls, then
 * `healthy` (or `unhealthy`, with the reason a test chooses); a deregistered one is `draining` for
 * a few calls, then gone (`unused`, Target.NotRegistered). Targets change state only when they are
 * described, as a load balancer's health checks would between two looks. Given the EC2 mock, it
 * refuses to register an instance that is not running, as ELBv2 does. Everything is in memory.
 */
import {
  DeregisterTargetsCommand,
  type DeregisterTargetsCommandInput,
  DescribeTargetHealthCommand,
  type DescribeTargetHealthCommandInput,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand,
  type RegisterTargetsCommandInput,
  type TargetHealth,
  type TargetHealthDescription,
  type TargetHealthReasonEnum,
} from '@aws-sdk/client-elastic-load-balancing-v2'
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock'
import { clientConfig } from '../aws/service.js'
import type { Ec2Mock, JournalEntry } from './ec2-mock.js'

export const TARGET_GROUP =
  'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/refresh-search/0123456789abcdef'

export interface ElbMockOptions {
  /** The target groups' ARNs (default [TARGET_GROUP]). */
  targetGroups?: string[]
  /** The EC2 mock: RegisterTargets checks its instances exist and run. */
  ec2?: Ec2Mock
  /** DescribeTargetHealth calls a new target stays `initial` (default 2). */
  healthySteps?: number
  /** DescribeTargetHealth calls a deregistered target stays `draining` (default 2; Infinity: forever). */
  drainSteps?: number
  /** A target that turns `unhealthy` instead of `healthy`, with this reason (e.g. Target.Timeout). */
  unhealthy?: (id: string) => { reason: string; description: string } | undefined
  /** Actions answered with AccessDenied. */
  deny?: string[]
  /**
   * Where RegisterTargets, DeregisterTargets and the targets seen turning `healthy` (action
   * `healthy`) or done draining (`drained`) are recorded in order: share it with the EC2 mock.
   */
  journal?: JournalEntry[]
  /** Mock every ElasticLoadBalancingV2Client of this process (the class), not just `client`. */
  mockAll?: boolean
}

interface TargetRecord {
  id: string
  port: number | undefined
  state: 'initial' | 'healthy' | 'unhealthy' | 'draining'
  describes: number
  health?: { reason: string; description: string }
}

function awsError(name: string, message: string, status = 400): Error {
  return Object.assign(new Error(message), {
    name,
    $metadata: { httpStatusCode: status },
    $fault: status >= 500 ? 'server' : 'client',
  })
}

export class ElbMock {
  readonly client: ElasticLoadBalancingV2Client
  readonly mock: AwsClientStub<ElasticLoadBalancingV2Client>
  /** Target group ARN -> its targets by instance id. */
  readonly groups = new Map<string, Map<string, TargetRecord>>()
  readonly calls: Record<string, number> = {}
  readonly journal: JournalEntry[]
  readonly deny: Set<string>
  /** Settable between rollouts. */
  healthySteps: number
  drainSteps: number
  unhealthy: ElbMockOptions['unhealthy']
  private readonly ec2: Ec2Mock | undefined

  constructor(options: ElbMockOptions = {}) {
    for (const arn of options.targetGroups ?? [TARGET_GROUP]) this.groups.set(arn, new Map())
    this.ec2 = options.ec2
    this.healthySteps = options.healthySteps ?? 2
    this.drainSteps = options.drainSteps ?? 2
    this.unhealthy = options.unhealthy
    this.deny = new Set(options.deny ?? [])
    this.journal = options.journal ?? []
    clientConfig({})
    this.client = new ElasticLoadBalancingV2Client({
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
    })
    this.mock = options.mockAll ? mockClient(ElasticLoadBalancingV2Client) : mockClient(this.client)
    this.mock.on(RegisterTargetsCommand).callsFake((input: RegisterTargetsCommandInput) => {
      const group = this.enter('RegisterTargets', input.TargetGroupArn)
      const ids = (input.Targets ?? []).map((t) => t.Id ?? '')
      for (const id of ids) this.checkInstance(id, true)
      for (const t of input.Targets ?? []) {
        const known = group.get(t.Id!)
        // registering a registered target is a no-op; a draining one is registered anew
        if (known && known.state !== 'draining') continue
        group.set(t.Id!, { id: t.Id!, port: t.Port, state: 'initial', describes: 0 })
      }
      this.journal.push({ action: 'RegisterTargets', ids })
      return {}
    })
    this.mock.on(DeregisterTargetsCommand).callsFake((input: DeregisterTargetsCommandInput) => {
      const group = this.enter('DeregisterTargets', input.TargetGroupArn)
      const ids = (input.Targets ?? []).map((t) => t.Id ?? '')
      for (const id of ids) this.checkInstance(id, false)
      for (const id of ids) {
        const t = group.get(id)
        if (t && t.state !== 'draining') Object.assign(t, { state: 'draining', describes: 0 })
      }
      this.journal.push({ action: 'DeregisterTargets', ids })
      return {}
    })
    this.mock.on(DescribeTargetHealthCommand).callsFake((input: DescribeTargetHealthCommandInput) => {
      const group = this.enter('DescribeTargetHealth', input.TargetGroupArn)
      const wanted = input.Targets ? input.Targets.map((t) => t.Id ?? '') : [...group.keys()]
      for (const id of wanted) this.checkInstance(id, false)
      const healthy: string[] = []
      const drained: string[] = []
      const out: TargetHealthDescription[] = []
      for (const id of wanted) {
        const t = group.get(id)
        if (t) this.step(t, group, healthy, drained)
        const now = group.get(id)
        out.push({
          Target: { Id: id, Port: now?.port ?? input.Targets?.find((x) => x.Id === id)?.Port },
          TargetHealth: this.healthOf(now),
        })
      }
      if (healthy.length) this.journal.push({ action: 'healthy', ids: healthy })
      if (drained.length) this.journal.push({ action: 'drained', ids: drained })
      return { TargetHealthDescriptions: out }
    })
  }

  /** Counts the call, answers a denied action, finds the group. */
  private enter(action: string, arn: string | undefined): Map<string, TargetRecord> {
    this.calls[action] = (this.calls[action] ?? 0) + 1
    if (this.deny.has(action))
      throw awsError(
        'AccessDenied',
        `User is not authorized to perform: elasticloadbalancing:${action} on resource: ${arn}`,
        403,
      )
    const group = this.groups.get(arn ?? '')
    if (!group) throw awsError('TargetGroupNotFoundException', `Target groups '${arn}' not found`)
    return group
  }

  /** ELBv2 refuses unknown instances, and registering one that does not run. */
  private checkInstance(id: string, mustRun: boolean): void {
    if (!this.ec2) return
    const i = this.ec2.instances.get(id)
    if (!i) throw awsError('InvalidTargetException', `The following targets are not valid instances: '${id}'`)
    if (mustRun && i.state !== 'running')
      throw awsError('InvalidTargetException', `The following targets are not in a running state: '${id}'`)
  }

  /** One health check's worth of change: initial -> healthy/unhealthy, draining -> gone. */
  private step(
    t: TargetRecord,
    group: Map<string, TargetRecord>,
    healthy: string[],
    drained: string[],
  ): void {
    t.describes++
    if (t.state === 'initial' && t.describes > this.healthySteps) {
      const bad = this.unhealthy?.(t.id)
      if (bad) Object.assign(t, { state: 'unhealthy', health: bad })
      else {
        t.state = 'healthy'
        healthy.push(t.id)
      }
    } else if (t.state === 'draining' && t.describes > this.drainSteps) {
      group.delete(t.id)
      drained.push(t.id)
    }
  }

  private healthOf(t: TargetRecord | undefined): TargetHealth {
    const stopped = t && this.ec2 && this.ec2.instances.get(t.id)?.state !== 'running'
    if (!t) {
      return {
        State: 'unused',
        Reason: 'Target.NotRegistered',
        Description: 'Target is not registered to the target group',
      }
    }
    if (stopped && t.state !== 'draining')
      return {
        State: 'unused',
        Reason: 'Target.InvalidState',
        Description: 'Target is in the stopped or terminated state',
      }
    switch (t.state) {
      case 'initial':
        return {
          State: 'initial',
          Reason: 'Elb.RegistrationInProgress',
          Description: 'Target registration is in progress',
        }
      case 'healthy':
        return { State: 'healthy' }
      case 'unhealthy':
        return {
          State: 'unhealthy',
          Reason: t.health!.reason as TargetHealthReasonEnum,
          Description: t.health!.description,
        }
      case 'draining':
        return {
          State: 'draining',
          Reason: 'Target.DeregistrationInProgress',
          Description: 'Target deregistration is in progress',
        }
    }
  }

  /** The instance ids registered in the group (draining ones excluded). */
  registered(arn = TARGET_GROUP): string[] {
    return [...(this.groups.get(arn)?.values() ?? [])].filter((t) => t.state !== 'draining').map((t) => t.id)
  }

  /** A target's state, or undefined when it is not in the group. */
  stateOf(id: string, arn = TARGET_GROUP): TargetRecord['state'] | undefined {
    return this.groups.get(arn)?.get(id)?.state
  }

  restore(): void {
    this.mock.restore()
  }
}
