/**
 * The EC2 replica fleet of `replicas`: a rollout launches replacement instances from a launch
 * template, each with a volume made from the new EBS snapshot, running `refresh serve` over the
 * index on it. Batch by batch, every new instance must reach `running`, answer the deep
 * `/healthz` with the snapshot's document count and find a hit for a real query, before the next
 * batch starts; only then are the old instances terminated. On any failure or timeout every
 * instance of the rollout is terminated and the old fleet, untouched, keeps serving.
 * With a load balancer target group (ELBv2), each checked batch is registered and must report
 * healthy there before the next starts; the old instances are deregistered (drained) only once the
 * whole new fleet is in, then terminated. Without one, replicas are reached by private IP and the
 * ELBv2 SDK is never loaded.
 */

import { createHash, randomUUID } from 'node:crypto'
import type { Instance, TagSpecification } from '@aws-sdk/client-ec2'
import type { ElasticLoadBalancingV2Client, TargetHealth } from '@aws-sdk/client-elastic-load-balancing-v2'
import { Ec2Api, tagOf } from '../aws/ec2.js'
import { type AwsCallOptions, AwsService, clientConfig, TAG } from '../aws/service.js'
import type { AwsSdkClient, LaunchTemplateRef } from '../aws/types.js'
import { sleep } from '../core/async.js'
import { ConfigError } from '../core/errors.js'
import { cloudConfigUserData } from '../runners/user-data.js'
import type { FleetRollout, ReplicaFleet, RolloutTarget } from './backends.js'

export interface Ec2ReplicasOptions extends AwsCallOptions {
  /** The fleet's name: the value of its instances' `refresh:fleet` tag. */
  fleet: string
  /**
   * The replicas' launch template: an id (`lt-…`) or a name, as a string or `{ id }` / `{ name }`;
   * its version (default `$Default`) is resolved to a number once per rollout, so one rollout never
   * mixes two versions.
   */
  launchTemplate: string | (({ id: string } | { name: string }) & { version?: string })
  /** Replicas in the fleet. */
  count: number
  /** Replicas launched and checked together (default 1). */
  batchSize?: number
  /** The port `refresh serve` listens on (default 8080). */
  port?: number
  /** The device the snapshot's volume is attached as (default `/dev/sdf`). */
  deviceName?: string
  /** Where a replica mounts that volume (default `/mnt/refresh`). */
  mountPath?: string
  /** How long a batch has to reach `running` and pass its checks (default 10 min). */
  healthTimeoutMs?: number
  /** How often instances are described and checked (default 5000 ms). */
  pollIntervalMs?: number
  subnetId?: string
  client?: AwsSdkClient
  /**
   * The ARN of an ELBv2 target group the replicas serve behind: new instances are registered (on
   * `port`) and must turn healthy there before the next batch; the old ones are deregistered with
   * draining once the new fleet is in. Default none: replicas are reached by private IP.
   */
  targetGroupArn?: string
  /** How long a registered batch has to report healthy in the target group (default 5 min). */
  targetHealthTimeoutMs?: number
  /** How long the old instances may drain before they are terminated anyway (default 5 min). */
  drainTimeoutMs?: number
  /** An ELBv2 client (tests pass a mocked one); default a new client with the standard credential chain. */
  elbClient?: AwsSdkClient
}

type ElbSdk = typeof import('@aws-sdk/client-elastic-load-balancing-v2')

const WHERE = 'ec2Replicas({...})'

type RolloutContext = Parameters<ReplicaFleet['rollout']>[1]

function fieldOf(action: string, name: string, message: string): string {
  const text = `${name} ${message}`
  if (/launch ?template/i.test(text)) return 'launchTemplate'
  if (/subnet/i.test(text)) return 'subnetId'
  if (/snapshot/i.test(text)) return 'the snapshot (the upstream snapshot step)'
  if (/device|blockdevice/i.test(text)) return 'deviceName'
  if (action === 'RunInstances') return 'launchTemplate'
  return 'fleet'
}

/** The config field to check when ELBv2 rejects a request (a wrong ARN, a port the group refuses). */
function elbFieldOf(_action: string, name: string, message: string): string {
  const text = `${name} ${message}`
  if (/port/i.test(text) && !/target ?group/i.test(text)) return 'port'
  if (/target ?group/i.test(text)) return 'targetGroupArn'
  if (/target|instance/i.test(text)) return "launchTemplate (its VPC must be the target group's)"
  return 'targetGroupArn'
}

/** A target's health as a message tail: ` (Target.Timeout: Request timed out)`, or nothing. */
function healthWhy(h: TargetHealth | undefined): string {
  const parts = [h?.Reason, h?.Description].filter(Boolean)
  return parts.length ? ` (${parts.join(': ')})` : ''
}

/** Read replicas on EC2 instances launched from an EBS snapshot, rolled out all or nothing. */
export function ec2Replicas(options: Ec2ReplicasOptions): ReplicaFleet {
  if (!options.fleet)
    throw new ConfigError('ec2Replicas: `fleet` is required (the value of its refresh:fleet tag)')
  const lt: { id?: string; name?: string; version?: string } | undefined =
    typeof options.launchTemplate === 'string'
      ? options.launchTemplate.startsWith('lt-')
        ? { id: options.launchTemplate }
        : { name: options.launchTemplate }
      : options.launchTemplate
  if (!lt?.id && !lt?.name)
    throw new ConfigError('ec2Replicas: `launchTemplate` is required ({ id: "lt-…" } or { name: "…" })')
  if (!Number.isInteger(options.count) || options.count < 1)
    throw new ConfigError(`ec2Replicas: \`count\` must be 1 or more (got ${options.count})`)
  const batchSize = Math.max(1, options.batchSize ?? 1)
  const port = options.port ?? 8080
  const deviceName = options.deviceName ?? '/dev/sdf'
  const mountPath = (options.mountPath ?? '/mnt/refresh').replace(/\/+$/, '')
  const healthTimeoutMs = options.healthTimeoutMs ?? 10 * 60_000
  const pollMs = options.pollIntervalMs ?? 5000
  const fleet = options.fleet
  const api = new Ec2Api(options, WHERE, fieldOf)
  const template = lt.id ? `launch template ${lt.id}` : `launch template ${lt.name}`
  const fleetFilter = { Name: `tag:${TAG.fleet}`, Values: [fleet] }
  const live = { Name: 'instance-state-name', Values: ['pending', 'running'] }
  const targetGroupArn = options.targetGroupArn
  const targetHealthTimeoutMs = options.targetHealthTimeoutMs ?? 5 * 60_000
  const drainTimeoutMs = options.drainTimeoutMs ?? 5 * 60_000
  const group = `target group ${targetGroupArn?.match(/targetgroup\/([^/]+)/)?.[1] ?? targetGroupArn}`
  // made only with a target group; the SDK itself is loaded on its first call
  const elb = targetGroupArn
    ? new AwsService<ElbSdk, ElasticLoadBalancingV2Client>({
        service: 'elasticloadbalancing',
        where: WHERE,
        package: '@aws-sdk/client-elastic-load-balancing-v2',
        load: () => import('@aws-sdk/client-elastic-load-balancing-v2'),
        make: (sdk) => new sdk.ElasticLoadBalancingV2Client(clientConfig(options)),
        client: options.elbClient,
        field: elbFieldOf,
        options,
      })
    : undefined

  const ref: LaunchTemplateRef = lt.id
    ? { id: lt.id, ...(lt.version ? { version: lt.version } : {}) }
    : { name: lt.name!, ...(lt.version ? { version: lt.version } : {}) }
  const resolveVersion = () => api.pinLaunchTemplate(ref)
  const terminate = (ids: string[]) =>
    api.terminateInstances(ids, `instances ${ids.join(', ')} (tagged ${TAG.fleet}=${fleet})`)

  /** Registers (`DeregisterTargets` when `add` is false) the instances on the replica port. */
  async function setTargets(add: boolean, ids: string[]): Promise<void> {
    if (!elb || ids.length === 0) return
    const Targets = ids.map((Id) => ({ Id, Port: port }))
    const TargetGroupArn = targetGroupArn!
    const resource = `instances ${ids.join(', ')} in ${group} (${targetGroupArn})`
    if (add)
      await elb.call('RegisterTargets', resource, (sdk, c) =>
        c.send(new sdk.RegisterTargetsCommand({ TargetGroupArn, Targets })),
      )
    else
      await elb.call('DeregisterTargets', resource, (sdk, c) =>
        c.send(new sdk.DeregisterTargetsCommand({ TargetGroupArn, Targets })),
      )
  }

  /** The target group's health of these instances (absent: not registered). */
  async function targetHealth(ids: string[]): Promise<Map<string, TargetHealth>> {
    const out = await elb!.call(
      'DescribeTargetHealth',
      `instances ${ids.join(', ')} in ${group} (${targetGroupArn})`,
      (sdk, c) =>
        c.send(
          new sdk.DescribeTargetHealthCommand({
            TargetGroupArn: targetGroupArn!,
            Targets: ids.map((Id) => ({ Id, Port: port })),
          }),
        ),
    )
    const found = new Map<string, TargetHealth>()
    for (const d of out.TargetHealthDescriptions ?? [])
      if (d.Target?.Id && ids.includes(d.Target.Id)) found.set(d.Target.Id, d.TargetHealth ?? {})
    return found
  }

  /**
   * Waits until every registered instance reports `healthy` in the target group; throws naming the
   * instance and the reason when one turns `unhealthy`, cannot serve there, or the time runs out.
   */
  async function awaitHealthy(ids: string[], ctx: RolloutContext): Promise<void> {
    const deadline = Date.now() + targetHealthTimeoutMs
    const healthy = new Set<string>()
    const last = new Map<string, string>(ids.map((id) => [id, 'not reported yet']))
    for (;;) {
      if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error('canceled')
      const waiting = ids.filter((id) => !healthy.has(id))
      const health = await targetHealth(waiting)
      for (const id of waiting) {
        const h = health.get(id)
        const state = h?.State ?? 'unknown'
        if (state === 'healthy') {
          healthy.add(id)
          ctx.log(`replica ${id} is healthy in ${group}`)
          continue
        }
        // unhealthy after passing /healthz: the load balancer cannot reach it (security group,
        // health check path or port); NotInUse / InvalidState: it never will without a change
        if (
          state === 'unhealthy' ||
          (state === 'unused' && (h?.Reason === 'Target.NotInUse' || h?.Reason === 'Target.InvalidState'))
        ) {
          throw new Error(`replica ${id} is ${state} in ${group}${healthWhy(h)}`)
        }
        last.set(id, `state ${state}${healthWhy(h)}`)
      }
      if (healthy.size === ids.length) return
      const left = deadline - Date.now()
      if (left <= 0) {
        const id = ids.find((i) => !healthy.has(i))!
        throw new Error(
          `replica ${id} did not turn healthy in ${group} within ${targetHealthTimeoutMs} ms (${last.get(id)})`,
        )
      }
      await sleep(Math.min(pollMs, left), ctx.signal)
    }
  }

  /**
   * Waits until the deregistered instances have drained (gone from the group or `unused`); a
   * timeout or a failed look is only a warning: the new fleet already serves, they go anyway.
   */
  async function awaitDrained(ids: string[], ctx: RolloutContext): Promise<void> {
    const deadline = Date.now() + drainTimeoutMs
    let pending = ids
    try {
      for (;;) {
        if (ctx.signal.aborted) return
        const health = await targetHealth(pending)
        pending = pending.filter((id) => {
          const state = health.get(id)?.State
          return state !== undefined && state !== 'unused'
        })
        if (pending.length === 0) {
          ctx.log(`the old replica(s) ${ids.join(', ')} drained from ${group}`)
          return
        }
        const left = deadline - Date.now()
        if (left <= 0) {
          ctx.log(
            `warning: the old replica(s) ${pending.join(', ')} still draining from ${group} after ${drainTimeoutMs} ms; terminating them anyway (raise \`drainTimeoutMs\` or lower the group's deregistration delay)`,
          )
          return
        }
        await sleep(Math.min(pollMs, left), ctx.signal)
      }
    } catch (error) {
      ctx.log(
        `warning: could not watch ${pending.join(', ')} drain from ${group} (${(error as Error).message}); terminating them anyway`,
      )
    }
  }

  /** Launches one batch; returns the new instance ids. */
  async function launch(
    target: RolloutTarget,
    ctx: RolloutContext,
    version: number,
    nonce: string,
    batch: number,
    n: number,
  ) {
    const servePath = target.path ? `${mountPath}/${target.path.replace(/^\/+/, '')}` : mountPath
    const userData = cloudConfigUserData({
      mounts: [[deviceName, mountPath]],
      runcmd: [['refresh', 'serve', '--index', servePath, '--host', '0.0.0.0', '--port', String(port)]],
    })
    const tags = [
      { Key: 'Name', Value: `${fleet} ${target.snapshot}` },
      { Key: TAG.fleet, Value: fleet },
      { Key: TAG.snapshot, Value: target.snapshot },
      { Key: TAG.index, Value: target.index },
      { Key: TAG.run, Value: ctx.runId },
      { Key: TAG.asset, Value: ctx.asset },
      { Key: TAG.managedBy, Value: 'refresh' },
    ]
    const tagSpecs: TagSpecification[] = [
      { ResourceType: 'instance', Tags: tags },
      { ResourceType: 'volume', Tags: tags },
    ]
    // one token per rollout and batch: a retried call (callAws retries the same request) launches
    // no second batch, while a later rollout of the same run (a retry of the step) launches anew
    const token = createHash('sha256')
      .update(
        `${ctx.runId}\u0000${ctx.asset}\u0000${fleet}\u0000${target.snapshot}\u0000${nonce}\u0000${batch}`,
      )
      .digest('hex')
      .slice(0, 64)
    const out = await api.call('RunInstances', `${template} (fleet ${fleet})`, (sdk, c) =>
      c.send(
        new sdk.RunInstancesCommand({
          MinCount: n,
          MaxCount: n,
          LaunchTemplate: {
            ...(lt!.id ? { LaunchTemplateId: lt!.id } : { LaunchTemplateName: lt!.name }),
            Version: String(version),
          },
          BlockDeviceMappings: [
            { DeviceName: deviceName, Ebs: { SnapshotId: target.snapshot, DeleteOnTermination: true } },
          ],
          UserData: userData,
          TagSpecifications: tagSpecs,
          ClientToken: token,
          ...(options.subnetId ? { SubnetId: options.subnetId } : {}),
        }),
      ),
    )
    return (out.Instances ?? []).map((i) => i.InstanceId).filter((id): id is string => Boolean(id))
  }

  /** Waits until every instance runs and passes its checks; throws naming the instance and why not. */
  async function verify(ids: string[], target: RolloutTarget, ctx: RolloutContext): Promise<void> {
    const deadline = Date.now() + healthTimeoutMs
    const reasons = new Map<string, string>(ids.map((id) => [id, 'did not reach running']))
    const passed = new Set<string>()
    for (;;) {
      if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error('canceled')
      const waiting = ids.filter((id) => !passed.has(id))
      let described: Instance[] = []
      try {
        described = await api.describeInstances({ ids: waiting }, `instances of fleet ${fleet}`)
      } catch (error) {
        // EC2 is eventually consistent: an instance just launched may not be describable yet
        const name = ((error as Error).cause as { name?: string } | undefined)?.name
        if (name !== 'InvalidInstanceID.NotFound') throw error
      }
      const byId = new Map(described.map((i) => [i.InstanceId ?? '', i]))
      for (const id of waiting) {
        const instance = byId.get(id)
        const state = instance?.State?.Name
        if (!instance) {
          reasons.set(id, 'did not reach running (EC2 does not list it yet)')
          continue
        }
        if (state === 'terminated' || state === 'shutting-down' || state === 'stopped') {
          const why = instance?.StateReason?.Message ?? instance?.StateTransitionReason
          throw new Error(
            `replica ${id} stopped before serving (state ${state ?? 'unknown'}${why ? `: ${why}` : ''})`,
          )
        }
        if (state !== 'running' || !instance.PrivateIpAddress) {
          reasons.set(id, `did not reach running (state ${state ?? 'unknown'})`)
          continue
        }
        // a fixed request timeout (not what is left of the deadline): the last look gets a real answer
        const problem = await check(instance, target, Math.min(5000, healthTimeoutMs))
        if (problem) reasons.set(id, `did not pass /healthz: ${problem}`)
        else {
          passed.add(id)
          ctx.log(`replica ${id} (${instance.PrivateIpAddress}) serves ${target.snapshot}`)
        }
      }
      if (passed.size === ids.length) return
      const left = deadline - Date.now()
      if (left <= 0) {
        const id = ids.find((i) => !passed.has(i))!
        const reason = reasons.get(id)!
        const [what, detail] = reason.startsWith('did not pass /healthz: ')
          ? ['did not pass /healthz', reason.slice('did not pass /healthz: '.length)]
          : [reason, '']
        throw new Error(`replica ${id} ${what} within ${healthTimeoutMs} ms${detail ? `: ${detail}` : ''}`)
      }
      await sleep(Math.min(pollMs, left), ctx.signal)
    }
  }

  /** The deep check of one replica: `/healthz` with the target's count and index, then a real query. */
  async function check(instance: Instance, target: RolloutTarget, timeoutMs: number): Promise<string | null> {
    const base = `http://${instance.PrivateIpAddress}:${port}`
    try {
      const health = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(timeoutMs) })
      const body = (await health.json().catch(() => ({}))) as {
        reason?: string
        documents?: number
        index?: string
      }
      if (health.status !== 200) return `${health.status} ${body.reason ?? health.statusText}`
      if (body.documents !== target.documents)
        return `200 but it serves ${body.documents} documents, the snapshot has ${target.documents}`
      if (body.index !== target.index) return `200 but it serves index ${body.index}, not ${target.index}`
      if (!target.probe) return null
      const url = `${base}/search?q=${encodeURIComponent(target.probe)}&limit=1`
      const search = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
      const found = (await search.json().catch(() => ({}))) as { hits?: unknown[]; error?: string }
      if (search.status !== 200)
        return `a query for "${target.probe}" answered ${search.status} ${found.error ?? ''}`.trim()
      if (!found.hits?.length) return `a query for "${target.probe}" (the probe word) found nothing`
      return null
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code
      return `no answer from ${base} (${cause ?? (error as Error).message})`
    }
  }

  return {
    name: `ec2:${fleet}`,
    async rollout(target: RolloutTarget, ctx: RolloutContext): Promise<FleetRollout> {
      if (!target.snapshot) {
        throw new Error(
          `fleet ${fleet} has no snapshot to launch replicas from yet (the upstream snapshot step gave none); run \`refresh run snapshot+\` first.`,
        )
      }
      if (!/^snap-[0-9a-f]{8}(?:[0-9a-f]{9})?$/.test(target.snapshot)) {
        throw new Error(
          `fleet ${fleet}: ${target.snapshot} is not an EBS snapshot id (snap-…); EC2 replicas need \`snapshot({ backend: ebsSnapshots({...}) })\` upstream.`,
        )
      }
      const old = (
        await api.describeInstances({ filters: [fleetFilter, live] }, `instances of fleet ${fleet}`)
      )
        .filter((i) => i.InstanceId)
        .sort((a, b) => (a.LaunchTime?.getTime() ?? 0) - (b.LaunchTime?.getTime() ?? 0))
      const previousSnapshot = old.length ? (tagOf(old[0]!.Tags, TAG.snapshot) ?? null) : null
      const version = await resolveVersion()
      ctx.log(
        `rolling ${options.count} replica(s) of ${fleet} onto ${target.snapshot} (${template} version ${version}, batches of ${batchSize})`,
      )
      const launched: string[] = []
      /** New instances put in the target group (taken out again if the rollout fails). */
      const registered: string[] = []
      const retired = old.map((i) => i.InstanceId!)
      const nonce = randomUUID()
      try {
        for (let batch = 0, done = 0; done < options.count; batch++) {
          const n = Math.min(batchSize, options.count - done)
          const ids = await launch(target, ctx, version, nonce, batch, n)
          launched.push(...ids)
          if (ids.length !== n) throw new Error(`RunInstances started ${ids.length} of ${n} instances`)
          await verify(ids, target, ctx)
          if (elb) {
            await setTargets(true, ids)
            registered.push(...ids)
            await awaitHealthy(ids, ctx)
          }
          done += n
          ctx.progress?.(done, options.count)
        }
        // the whole new fleet is in the group and healthy: only now do the old ones stop taking traffic
        if (elb) await setTargets(false, retired)
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error)
        const cleanup: string[] = []
        if (registered.length) {
          try {
            await setTargets(false, registered)
            cleanup.push(`deregistered ${registered.join(', ')} from ${group}`)
          } catch (failed) {
            cleanup.push(
              `could not deregister ${registered.join(', ')} from ${group} (${(failed as Error).message})`,
            )
          }
        }
        try {
          await terminate(launched)
          cleanup.push(`terminated the new instance(s) ${launched.join(', ') || '(none)'}`)
        } catch (failed) {
          cleanup.push(
            `could not terminate ${launched.join(', ')} (${(failed as Error).message}); terminate them by hand (tag ${TAG.run}=${ctx.runId})`,
          )
        }
        const kept = old.length
          ? `the old fleet (${old.map((i) => i.InstanceId).join(', ')}) keeps serving`
          : 'there was no old fleet'
        throw new Error(
          `rollout of fleet ${fleet} onto ${target.snapshot} failed: ${reason}; ${cleanup.join('; ')}; ${kept}`,
          {
            cause: error,
          },
        )
      }
      if (elb && retired.length) await awaitDrained(retired, ctx)
      await terminate(retired)
      if (retired.length) ctx.log(`terminated the old replica(s) ${retired.join(', ')}`)
      return { updated: launched, previousSnapshot, retired }
    },
    /**
     * Instances an interrupted run launched: terminated while an older fleet still serves (the
     * rollout never finished); kept when they are all the fleet has (it finished, only the step's
     * record is missing). With a target group they are deregistered first (best effort: EC2
     * takes a terminated instance out of the group by itself anyway).
     */
    async recover(runIds: readonly string[]): Promise<string[]> {
      if (runIds.length === 0) return []
      const all = await api.describeInstances({ filters: [fleetFilter, live] }, `instances of fleet ${fleet}`)
      const orphans = all.filter((i) => runIds.includes(tagOf(i.Tags, TAG.run) ?? ''))
      const others = all.filter((i) => !orphans.includes(i))
      if (orphans.length === 0 || others.length === 0) return []
      const ids = orphans.map((i) => i.InstanceId!).filter(Boolean)
      await setTargets(false, ids).catch(() => {})
      await terminate(ids)
      return ids
    },
  }
}
