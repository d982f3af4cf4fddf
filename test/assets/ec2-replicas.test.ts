import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BackendContext, RolloutTarget } from '../../assets/backends.js'
import { partsOf } from '../../assets/backends.js'
import { ebsSnapshots } from '../../assets/ebs.js'
import { ec2Replicas } from '../../assets/ec2-replicas.js'
import { replicas } from '../../assets/replicas.js'
import { snapshot } from '../../assets/snapshot.js'
import { TAG } from '../../aws/service.js'
import { materialize } from '../../core/materialize.js'
import { parseCloudConfigUserData } from '../../runners/user-data.js'
import { Ec2Mock, type JournalEntry, LAUNCH_TEMPLATE } from '../ec2-mock.js'
import { ElbMock, TARGET_GROUP } from '../elb-mock.js'
import { chain, small } from './chain.js'

const VOLUME = 'vol-0index'

/** A real index on a directory standing for the EBS volume, built once for the file by the local chain. */
let root: string
let volume: string
let dataDir: string
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'refresh-ec2-'))
  volume = join(root, 'volume')
  dataDir = join(volume, 'data')
}, 60_000)
/** The mocks of the file (the rollouts below build on each other's fleets): restored at the end. */
const mocks: Ec2Mock[] = []
afterAll(() => {
  for (const m of mocks) m.restore()
  rmSync(root, { recursive: true, force: true })
})

function ec2(journal?: JournalEntry[]): Ec2Mock {
  const m = new Ec2Mock({
    stateDir: join(root, `ec2-${mocks.length}`),
    volumes: { [VOLUME]: volume },
    ...(journal ? { journal } : {}),
  })
  mocks.push(m)
  return m
}

/** A port free on loopback: the instances (127.0.0.N) listen on it. */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const address = server.address()
  await new Promise((r) => server.close(r))
  return typeof address === 'object' && address ? address.port : 0
}

function context(logs: string[] = []): BackendContext {
  return {
    runId: 'run-2',
    asset: 'replicas',
    signal: new AbortController().signal,
    log: (m) => logs.push(m),
    progress: () => {},
  }
}

/** The first deployment's snapshot and index (the volume's index), for the later describe blocks too. */
let first: { snapshot: string; index: string; documents: number; probe: string; path: string }

async function search(ip: string, port: number, q: string) {
  const res = await fetch(`http://${ip}:${port}/search?q=${encodeURIComponent(q)}&limit=3`)
  return { status: res.status, body: (await res.json()) as { hits: unknown[]; documents: number } }
}

describe('EC2 replicas from an EBS snapshot', () => {
  let mock: Ec2Mock
  let port: number
  let firstFleet: string[]

  it('first deployment: the chain snapshots the volume and launches 2 replicas that serve real queries', async () => {
    mock = ec2()
    port = await freePort()
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      pollIntervalMs: 1,
      client: mock.client,
    })
    const fleet = ec2Replicas({
      fleet: 'search',
      launchTemplate: LAUNCH_TEMPLATE.name,
      count: 2,
      port,
      healthTimeoutMs: 30_000,
      pollIntervalMs: 50,
      client: mock.client,
    })
    const block = replicas({ dataDir, fleet })
    expect(partsOf(block).fleet).toBe(fleet)
    const result = await materialize([...chain(dataDir).slice(0, 4), snapshot({ dataDir, backend }), block], {
      store: join(root, 'refresh.db'),
      config: small({ catalog: { rows: 600 } }),
    })
    expect(result.status, JSON.stringify(result)).toBe('success')
    first = result.materializations.snapshot!.metadata as typeof first
    const meta = result.materializations.replicas!.metadata as Record<string, unknown>
    expect(meta).toMatchObject({
      snapshot: first.snapshot,
      fleet: 'ec2:search',
      replicas: 2,
      previousSnapshot: null,
      retired: [],
    })
    firstFleet = meta.updated as string[]
    expect(firstFleet).toHaveLength(2)

    // one batch at a time, from the pinned launch template version, the snapshot mapped at /dev/sdf
    expect(mock.runInstancesInputs).toHaveLength(2)
    const run = mock.runInstancesInputs[0]!
    expect(run).toMatchObject({
      MinCount: 1,
      MaxCount: 1,
      LaunchTemplate: { LaunchTemplateName: LAUNCH_TEMPLATE.name, Version: String(LAUNCH_TEMPLATE.version) },
      BlockDeviceMappings: [{ DeviceName: '/dev/sdf', Ebs: { SnapshotId: first.snapshot } }],
      ClientToken: expect.any(String),
    })
    expect(mock.runInstancesInputs[1]!.ClientToken).not.toBe(run.ClientToken)
    expect(run.TagSpecifications![0]!.Tags).toEqual(
      expect.arrayContaining([
        { Key: TAG.fleet, Value: 'search' },
        { Key: TAG.snapshot, Value: first.snapshot },
        { Key: TAG.run, Value: result.runId },
        { Key: TAG.asset, Value: 'replicas' },
        { Key: TAG.managedBy, Value: 'refresh' },
      ]),
    )
    expect(parseCloudConfigUserData(run.UserData!)).toEqual({
      mounts: [['/dev/sdf', '/mnt/refresh']],
      runcmd: [
        [
          'refresh',
          'serve',
          '--index',
          `/mnt/refresh/${first.path}`,
          '--host',
          '0.0.0.0',
          '--port',
          String(port),
        ],
      ],
    })

    for (const id of firstFleet) {
      const instance = mock.instances.get(id)!
      expect(instance.state).toBe('running')
      const found = await search(instance.ip, port, 'fox')
      expect(found.status).toBe(200)
      expect(found.body.documents).toBe(first.documents)
      expect(found.body.hits.length).toBeGreaterThan(0)
    }
  }, 90_000)

  it('a rollout whose second replica fails health terminates the new ones and leaves the old fleet serving', async () => {
    expect(firstFleet).toHaveLength(2)
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      pollIntervalMs: 1,
      client: mock.client,
    })
    const again = await backend.create(
      { index: first.index, indexDir: join(volume, first.path), documents: first.documents },
      context(),
    )
    // instances 1 and 2 are the old fleet; 3 is this rollout's first, 4 its second
    mock.unhealthy = (n) => (n === 4 ? 'damaged' : undefined)
    const fleet = ec2Replicas({
      fleet: 'search',
      launchTemplate: { id: LAUNCH_TEMPLATE.id },
      count: 2,
      port,
      healthTimeoutMs: 8000,
      pollIntervalMs: 50,
      client: mock.client,
    })
    const target: RolloutTarget = {
      snapshot: again.snapshot,
      index: first.index,
      documents: first.documents,
      probe: first.probe,
      path: first.path,
    }
    const error = (await fleet.rollout(target, context()).catch((e: Error) => e)) as Error
    expect(error).toBeInstanceOf(Error)
    const launched = [...mock.instances.values()].filter((i) => !firstFleet.includes(i.id))
    expect(launched).toHaveLength(2)
    const bad = launched.find((i) => i.n === 4)!
    expect(error.message).toContain(
      `replica ${bad.id} did not pass /healthz within 8000 ms: 503 the shards hold ${first.documents} documents but the manifest of ${first.index} says ${first.documents + 2}`,
    )
    expect(error.message).toMatch(/the old fleet \(.*\) keeps serving/)
    for (const i of launched) expect(i.state).toBe('terminated')
    for (const id of firstFleet) {
      const old = mock.instances.get(id)!
      expect(old.state).toBe('running')
      expect((await search(old.ip, port, 'fox')).body.hits.length).toBeGreaterThan(0)
    }
  }, 60_000)

  it('a successful rollout terminates the old fleet', async () => {
    expect(firstFleet).toHaveLength(2)
    mock.unhealthy = undefined
    const fleet = ec2Replicas({
      fleet: 'search',
      launchTemplate: LAUNCH_TEMPLATE.id,
      count: 2,
      batchSize: 2,
      port,
      healthTimeoutMs: 30_000,
      pollIntervalMs: 50,
      client: mock.client,
    })
    const latest = [...mock.snapshots.values()].at(-1)!
    const progress: Array<[number, number | null]> = []
    const out = await fleet.rollout(
      {
        snapshot: latest.id,
        index: first.index,
        documents: first.documents,
        probe: first.probe,
        path: first.path,
      },
      { ...context(), progress: (d, t) => progress.push([d, t]) },
    )
    expect(out.previousSnapshot).toBe(first.snapshot)
    expect(new Set(out.retired)).toEqual(new Set(firstFleet))
    expect(out.updated).toHaveLength(2)
    expect(mock.runInstancesInputs.at(-1)).toMatchObject({ MinCount: 2, MaxCount: 2 })
    expect(progress).toEqual([[2, 2]])
    for (const id of firstFleet) expect(mock.instances.get(id)!.state).toBe('terminated')
    for (const id of out.updated) {
      const i = mock.instances.get(id)!
      expect(i.tags).toContainEqual({ Key: TAG.snapshot, Value: latest.id })
      expect((await search(i.ip, port, first.probe)).body.hits.length).toBeGreaterThan(0)
    }
    expect(
      mock
        .live()
        .map((i) => i.id)
        .sort(),
    ).toEqual([...out.updated].sort())
  }, 60_000)

  it('a target without a snapshot gets a clear message and launches nothing', async () => {
    const m = ec2()
    const fleet = ec2Replicas({
      fleet: 'search',
      launchTemplate: LAUNCH_TEMPLATE.name,
      count: 1,
      client: m.client,
    })
    await expect(
      fleet.rollout({ snapshot: '', index: 'idx', documents: 1, probe: null }, context()),
    ).rejects.toThrow(/fleet search has no snapshot to launch replicas from yet.*`refresh run snapshot\+`/)
    await expect(
      fleet.rollout({ snapshot: 'snap-run-1', index: 'idx', documents: 1, probe: null }, context()),
    ).rejects.toThrow(/not an EBS snapshot id/)
    expect(m.calls.RunInstances).toBeUndefined()
  })
})

describe('EC2 replicas behind a load balancer target group', () => {
  const journal: JournalEntry[] = []
  let mock: Ec2Mock
  let elb: ElbMock
  let port: number
  let target: RolloutTarget
  let fleetIds: string[]

  beforeAll(async () => {
    expect(first, 'the first describe block builds the index').toBeDefined()
    mock = ec2(journal)
    elb = new ElbMock({ ec2: mock, journal })
    port = await freePort()
    const backend = ebsSnapshots({
      volumeId: VOLUME,
      mountPath: volume,
      pollIntervalMs: 1,
      client: mock.client,
    })
    const made = await backend.create(
      { index: first.index, indexDir: join(volume, first.path), documents: first.documents },
      context(),
    )
    target = { ...first, snapshot: made.snapshot }
  }, 60_000)
  afterAll(() => elb?.restore())

  function fleet(more: Partial<Parameters<typeof ec2Replicas>[0]> = {}) {
    return ec2Replicas({
      fleet: 'search-lb',
      launchTemplate: LAUNCH_TEMPLATE.name,
      count: 2,
      port,
      healthTimeoutMs: 30_000,
      pollIntervalMs: 20,
      client: mock.client,
      targetGroupArn: TARGET_GROUP,
      elbClient: elb.client,
      ...more,
    })
  }

  /** The journal since `from`, as `Action id,id` lines. */
  function since(from: number): string[] {
    return journal.slice(from).map((e) => `${e.action} ${e.ids.join(',')}`)
  }

  it('a first deployment registers its replicas and waits until they are healthy', async () => {
    const out = await fleet({ batchSize: 2 }).rollout(target, context())
    fleetIds = out.updated
    const [a, b] = fleetIds as [string, string]
    expect(since(0)).toEqual([`RunInstances ${a},${b}`, `RegisterTargets ${a},${b}`, `healthy ${a},${b}`])
    expect(elb.registered().sort()).toEqual([a, b].sort())
    const registered = elb.groups.get(TARGET_GROUP)!
    for (const id of fleetIds) expect(registered.get(id)).toMatchObject({ port, state: 'healthy' })
  }, 60_000)

  it('a rollout registers each batch, waits for healthy, then drains the old fleet before terminating it', async () => {
    const [a, b] = fleetIds as [string, string]
    const from = journal.length
    const logs: string[] = []
    const out = await fleet().rollout(target, context(logs))
    const [c, d] = out.updated as [string, string]
    expect(out.retired).toEqual([a, b])
    expect(since(from)).toEqual([
      `RunInstances ${c}`,
      `RegisterTargets ${c}`,
      `healthy ${c}`,
      `RunInstances ${d}`,
      `RegisterTargets ${d}`,
      `healthy ${d}`,
      `DeregisterTargets ${a},${b}`,
      `drained ${a},${b}`,
      `TerminateInstances ${a},${b}`,
    ])
    expect(logs).toContain(`the old replica(s) ${a}, ${b} drained from target group refresh-search`)
    expect(elb.registered().sort()).toEqual([c, d].sort())
    for (const id of [a, b]) expect(mock.instances.get(id)!.state).toBe('terminated')
    fleetIds = out.updated
  }, 60_000)

  it('a new target that turns unhealthy: the new ones are deregistered and terminated, the old fleet stays registered and running', async () => {
    const old = fleetIds
    const from = journal.length
    // instances 1-4 came before; 5 is this rollout's first, 6 its second
    elb.unhealthy = (id) =>
      mock.instances.get(id)?.n === 6
        ? { reason: 'Target.Timeout', description: 'Request timed out' }
        : undefined
    const error = (await fleet()
      .rollout(target, context())
      .catch((e: Error) => e)) as Error
    elb.unhealthy = undefined
    expect(error).toBeInstanceOf(Error)
    const launched = [...mock.instances.values()].filter((i) => i.n >= 5)
    expect(launched.map((i) => i.n)).toEqual([5, 6])
    const [e, f] = launched.map((i) => i.id) as [string, string]
    expect(error.message).toContain(
      `replica ${f} is unhealthy in target group refresh-search (Target.Timeout: Request timed out)`,
    )
    expect(error.message).toContain(`deregistered ${e}, ${f} from target group refresh-search`)
    expect(error.message).toContain(`the old fleet (${old.join(', ')}) keeps serving`)
    expect(since(from)).toEqual([
      `RunInstances ${e}`,
      `RegisterTargets ${e}`,
      `healthy ${e}`,
      `RunInstances ${f}`,
      `RegisterTargets ${f}`,
      `DeregisterTargets ${e},${f}`,
      `TerminateInstances ${e},${f}`,
    ])
    for (const i of launched) expect(i.state).toBe('terminated')
    expect(elb.registered().sort()).toEqual([...old].sort())
    for (const id of old) {
      expect(elb.stateOf(id)).toBe('healthy')
      const i = mock.instances.get(id)!
      expect(i.state).toBe('running')
      expect((await search(i.ip, port, first.probe)).body.hits.length).toBeGreaterThan(0)
    }
  }, 60_000)

  it('a new target that never turns healthy within targetHealthTimeoutMs fails the rollout naming it', async () => {
    const old = fleetIds
    const before = new Set(mock.instances.keys())
    elb.healthySteps = Number.POSITIVE_INFINITY
    const error = (await fleet({ targetHealthTimeoutMs: 100 })
      .rollout(target, context())
      .catch((e: Error) => e)) as Error
    elb.healthySteps = 2
    const launched = [...mock.instances.values()].filter((i) => !before.has(i.id))
    expect(launched).toHaveLength(1)
    expect(error.message).toContain(
      `replica ${launched[0]!.id} did not turn healthy in target group refresh-search within 100 ms (state initial (Elb.RegistrationInProgress: Target registration is in progress))`,
    )
    expect(launched[0]!.state).toBe('terminated')
    expect(elb.registered().sort()).toEqual([...old].sort())
  }, 60_000)

  it('old targets still draining at drainTimeoutMs are a warning, and are terminated anyway', async () => {
    const old = fleetIds
    elb.drainSteps = Number.POSITIVE_INFINITY
    const logs: string[] = []
    const out = await fleet({ batchSize: 2, drainTimeoutMs: 100 }).rollout(target, context(logs))
    elb.drainSteps = 2
    expect(
      logs.some((l) => l.startsWith(`warning: the old replica(s) ${old.join(', ')} still draining`)),
    ).toBe(true)
    for (const id of old) expect(mock.instances.get(id)!.state).toBe('terminated')
    expect(elb.registered().sort()).toEqual([...out.updated].sort())
    fleetIds = out.updated
  }, 60_000)

  it('recover deregisters the orphans it terminates', async () => {
    // a run that crashed after its rollout, next to an instance of an older fleet still serving
    const out = await fleet({ count: 1 }).rollout(target, { ...context(), runId: 'run-crashed' })
    const orphan = out.updated[0]!
    expect(elb.registered()).toContain(orphan)
    const keep = mock.addInstance({ [TAG.fleet]: 'search-lb', [TAG.run]: 'run-older' })
    const from = journal.length
    expect(await fleet().recover!(['run-crashed'])).toEqual([orphan])
    expect(since(from)).toEqual([`DeregisterTargets ${orphan}`, `TerminateInstances ${orphan}`])
    expect(mock.instances.get(keep)!.state).toBe('running')
  }, 60_000)

  it('without a target group no ELBv2 call is made', async () => {
    const all = new ElbMock({ mockAll: true })
    try {
      const m = ec2()
      const backend = ebsSnapshots({
        volumeId: VOLUME,
        mountPath: volume,
        pollIntervalMs: 1,
        client: m.client,
      })
      const made = await backend.create(
        { index: first.index, indexDir: join(volume, first.path), documents: first.documents },
        context(),
      )
      const out = await ec2Replicas({
        fleet: 'search-plain',
        launchTemplate: LAUNCH_TEMPLATE.name,
        count: 1,
        port: await freePort(),
        healthTimeoutMs: 30_000,
        pollIntervalMs: 20,
        client: m.client,
      }).rollout({ ...target, snapshot: made.snapshot }, context())
      expect(out.updated).toHaveLength(1)
      expect(all.calls).toEqual({})
    } finally {
      all.restore()
    }
  }, 60_000)
})
