/**
 * The `RunStore` contract, written once against the interface and run unchanged against every
 * implementation (see sqlite.test.ts; the Postgres store adds one call). Each guarantee the engine,
 * the daemon and the CLI rely on is asserted here through the store's own methods only, with
 * several real processes where the guarantee is about several processes.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { errorCode } from '../../core/errors.js'
import type { RunEvent } from '../../core/events.js'
import { type RunStore, readOnlyView } from '../../core/store/run-store.js'
import type {
  AutomationCursor,
  AutomationTick,
  CheckResultRecord,
  NewRun,
  NewTick,
  PrunePolicy,
  RequestOutcome,
  RunRequest,
  RunStatus,
} from '../../core/store/types.js'
import { ROOT, run, tempDir } from '../helpers.js'

export interface ContractTarget {
  /** Other processes can open the store from its location (a file, a server); not `:memory:`. */
  shareable: boolean
  /** A fresh, empty store, and a location other processes can open it from (if it can be shared). */
  fresh(): Promise<{ store: RunStore; location: string | null }>
  /**
   * Holds the store's write lock from another connection until `release` is called, for the
   * busy-store case (its wait must be shorter than the test's).
   */
  holdWriteLock?(location: string): Promise<{ release(): Promise<void> }>
  /** Opens the store at `location` again (another connection), for the cases about several processes. */
  openAgain?(location: string): Promise<RunStore>
  /** Opens a store at `location` with a short busy wait, for the busy-store case. */
  openImpatient?(location: string): Promise<RunStore>
  /** Every older schema version, and a store location created at that version with one run `r1` in it. */
  olderSchemas?: {
    versions: readonly number[]
    create(version: number): Promise<string>
    open(location: string): Promise<RunStore>
  }
}

const dead = { pid: 2 ** 22 + 12_345, host: 'this-host' }

function newRun(id: string, extra: Partial<NewRun> = {}): NewRun {
  return { id, selection: '*', plan: ['a', 'b'], config: {}, status: 'queued', now: 1_000, ...extra }
}

function request(id: string, extra: Partial<RunRequest> = {}): RunRequest {
  return {
    id,
    selection: 'snapshot+',
    plan: ['snapshot'],
    config: {},
    origin: 'sensor:snap',
    now: 1_000,
    ...extra,
  }
}

function tick(instigator: string, extra: Partial<NewTick> = {}): NewTick {
  return { instigator, kind: 'sensor', tickTime: 10, startedAt: 10, endedAt: 11, status: 'success', ...extra }
}

const DAY = 86_400_000
const NOW = 100 * DAY
/** Older than 30 days; failed runs older than 90 days. */
const POLICY: PrunePolicy = { endedBefore: NOW - 30 * DAY, failedEndedBefore: NOW - 90 * DAY, keepRunIds: [] }
const NOTHING = { runs: 0, steps: 0, attempts: 0, events: 0, materializations: 0, ticks: 0 }

/**
 * A run that ended at `endedAt`: its step `a` ran once (started 5 ms before the end), `events`
 * log lines 1 ms before the end, and one materialization per asset in `materialize`, 2 ms before.
 */
async function endedRun(
  store: RunStore,
  id: string,
  status: Exclude<RunStatus, 'queued' | 'started' | 'paused'>,
  endedAt: number,
  options: { events?: number; materialize?: Array<[string, string | null]>; run?: Partial<NewRun> } = {},
): Promise<void> {
  const created = await store.createRun(
    newRun(id, { status: 'started', owner: { pid: 1, host: 'h' }, now: endedAt - 10, ...options.run }),
  )
  if (!created.created) throw new Error(`run ${id} was not created: ${JSON.stringify(created)}`)
  await store.write({
    events: Array.from({ length: options.events ?? 1 }, (_, i) => ({
      type: 'log' as const,
      runId: id,
      ts: endedAt - 1,
      step: null,
      level: 'info' as const,
      message: `line ${i}`,
    })),
    steps: [
      {
        runId: id,
        key: 'a',
        status: 'succeeded',
        attempts: 1,
        startedAt: endedAt - 5,
        endedAt: endedAt - 2,
        error: null,
        reason: null,
      },
    ],
    attempts: [
      {
        runId: id,
        step: 'a',
        attempt: 1,
        status: 'succeeded',
        startedAt: endedAt - 5,
        endedAt: endedAt - 2,
        error: null,
      },
    ],
    materializations: (options.materialize ?? []).map(([asset, partitionKey]) => ({
      asset,
      runId: id,
      attempt: 1,
      ts: endedAt - 2,
      metadata: { by: id },
      partitionKey,
    })),
  })
  expect(await store.finishRun(id, status, endedAt)).toBe(true)
}

/** A check result of run `runId` as the executor writes it. */
function checkResult(
  runId: string,
  asset: string,
  check: string,
  extra: Partial<Omit<CheckResultRecord, 'id' | 'runId' | 'asset' | 'check'>> = {},
): Omit<CheckResultRecord, 'id'> {
  return {
    runId,
    asset,
    check,
    partitionKey: null,
    passed: true,
    severity: 'error',
    blocking: true,
    ts: 5,
    metadata: {},
    error: null,
    ...extra,
  }
}

/** A started run with only check results written (and the event that announces each). */
async function runWithChecks(
  store: RunStore,
  id: string,
  checks: Array<Omit<CheckResultRecord, 'id'>>,
  endedAt?: number,
): Promise<void> {
  await store.createRun(
    newRun(id, { status: 'started', owner: { pid: 1, host: 'h' }, now: (endedAt ?? 20) - 10 }),
  )
  await store.write({
    events: checks.map((c) => ({
      type: 'check:evaluated' as const,
      runId: id,
      ts: c.ts,
      step: c.asset,
      asset: c.asset,
      check: c.check,
      partition: c.partitionKey,
      passed: c.passed,
      severity: c.severity,
      blocking: c.blocking,
      stops: !c.passed && c.blocking && c.severity === 'error',
      durationMs: 0,
      metadata: c.metadata,
      error: c.error,
    })),
    steps: [],
    attempts: [],
    materializations: [],
    checks,
  })
  if (endedAt !== undefined) await store.finishRun(id, 'success', endedAt)
}

/** Runs `pruneBatch` until it deletes nothing; what each batch deleted. */
async function pruneAll(store: RunStore, policy: PrunePolicy, limit: number) {
  const batches: Array<Awaited<ReturnType<RunStore['pruneBatch']>>> = []
  for (;;) {
    const deleted = await store.pruneBatch(policy, limit)
    if (Object.values(deleted).every((n) => n === 0)) return batches
    batches.push(deleted)
    if (batches.length > 100) throw new Error('pruneBatch never ran out of work')
  }
}

function child(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run([join(ROOT, 'test/fixtures', args[0]!), ...args.slice(1)])
}

export function storeContract(name: string, target: ContractTarget): void {
  const open = async () => (await target.fresh()).store
  /** A case about several processes (or connections) sharing one store: only for a store that can be shared. */
  const itShared = (title: string, fn: (location: string) => Promise<void>) => {
    if (!target.shareable) return
    it(title, async () => {
      const { store, location } = await target.fresh()
      await store.close()
      await fn(location!)
    })
  }

  describe(`RunStore contract: ${name}`, () => {
    describe('runs', () => {
      it('creates a run with its pending steps, finds it by id and by unique prefix', async () => {
        await using store = await open()
        const created = await store.createRun(
          newRun('01abc-one', { status: 'started', owner: { pid: 1, host: 'h' } }),
        )
        expect(created).toMatchObject({
          created: true,
          run: { id: '01abc-one', status: 'started', plan: ['a', 'b'] },
        })
        expect((await store.getSteps('01abc-one')).map((s) => [s.key, s.status])).toEqual([
          ['a', 'pending'],
          ['b', 'pending'],
        ])
        expect((await store.findRun('01abc-o'))?.id).toBe('01abc-one')
        await store.createRun(newRun('01abc-two'))
        await expect(store.findRun('01abc')).rejects.toThrow(
          /is ambiguous: it matches 2 runs; type more of the id.\n {2}01abc-two {2}queued +\*\n {2}01abc-one/,
        )
        expect(await store.findRun('zzz')).toBeUndefined()
      })

      it('pages runs newest first, by status, before a given run', async () => {
        await using store = await open()
        for (let i = 0; i < 7; i++) await store.createRun(newRun(`run-${i}`))
        await store.finishRun('run-2', 'success', 2_000)
        const first = await store.listRuns({ limit: 3 })
        expect(first.map((r) => r.id)).toEqual(['run-6', 'run-5', 'run-4'])
        const next = await store.listRuns({ limit: 3, before: first.at(-1)!.id })
        expect(next.map((r) => r.id)).toEqual(['run-3', 'run-2', 'run-1'])
        expect((await store.listRuns({ status: 'success' })).map((r) => r.id)).toEqual(['run-2'])
        expect(await store.countRuns()).toMatchObject({ queued: 6, success: 1 })
      })

      it('run keys are unique per origin: one run per (origin, key), checked and claimed with the run', async () => {
        await using store = await open()
        const base = { origin: 'sensor:s', runKey: 'k' }
        expect((await store.createRun(newRun('r1', base))).created).toBe(true)
        expect(await store.createRun(newRun('r2', base))).toEqual({ created: false, existingRunId: 'r1' })
        expect((await store.createRun(newRun('r3', { ...base, origin: 'sensor:other' }))).created).toBe(true)
        expect(await store.requestRun(request('r4', { origin: 'sensor:s', runKey: 'k' }))).toEqual({
          outcome: 'duplicate',
          runId: 'r1',
        })
        expect(await store.getRun('r2')).toBeUndefined()
      })

      itShared(
        'run keys are used exactly once under concurrent requests from several processes',
        async (location) => {
          const results = await Promise.all(
            Array.from({ length: 8 }, (_, i) => child(['request-child.mjs', location, 'key', String(i)])),
          )
          const outcomes = results.map((r) => JSON.parse(r.stdout) as { outcome: string; runId: string })
          expect(outcomes.filter((o) => o.outcome === 'created')).toHaveLength(1)
          expect(outcomes.filter((o) => o.outcome === 'duplicate')).toHaveLength(7)
          expect(new Set(outcomes.map((o) => o.runId)).size).toBe(1)
        },
      )

      it('keeps dynamic partitions in the order added, and counts removals', async () => {
        await using store = await open()
        expect(await store.dynamicPartitionKeys('providers')).toEqual([])
        expect(await store.addDynamicPartitions('providers', ['flickr', 'smk', 'flickr'], 1)).toEqual([
          'flickr',
          'smk',
        ])
        expect(await store.addDynamicPartitions('providers', ['smk', 'met'], 2)).toEqual(['met'])
        expect(await store.addDynamicPartitions('shards', ['s1'], 2)).toEqual(['s1'])
        expect(await store.dynamicPartitionKeys('providers')).toEqual(['flickr', 'smk', 'met'])
        expect(await store.dynamicPartitionsVersion('providers')).toBe(0)
        expect(await store.removeDynamicPartitions('providers', ['smk', 'nope'], 3)).toEqual(['smk'])
        expect(await store.dynamicPartitionKeys('providers')).toEqual(['flickr', 'met'])
        const version = await store.dynamicPartitionsVersion('providers')
        expect(version).toBeGreaterThan(0)
        // a key added again goes to the end
        expect(await store.addDynamicPartitions('providers', ['smk'], 4)).toEqual(['smk'])
        expect(await store.dynamicPartitionKeys('providers')).toEqual(['flickr', 'met', 'smk'])
        expect(await store.dynamicPartitionsVersion('providers')).toBe(version)
        expect(await store.dynamicPartitionKeys('shards')).toEqual(['s1'])
        expect(await readOnlyView(store).dynamicPartitionKeys('shards')).toEqual(['s1'])
      })

      it('reads partition events after a cursor, latest materializations per partition, in-flight partitions', async () => {
        await using store = await open()
        const step = (runId: string, key: string, status: 'succeeded' | 'failed' | 'running') => ({
          runId,
          key,
          status,
          attempts: 1,
          startedAt: 1,
          endedAt: status === 'running' ? null : 2,
          error: null,
          reason: null,
        })
        await store.createRun(
          newRun('p1', {
            plan: ['a'],
            partitionKey: '2026-01-01',
            status: 'started',
            owner: { pid: 1, host: 'h' },
          }),
        )
        await store.createRun(
          newRun('p2', {
            plan: ['a'],
            partitionKey: '2026-01-02',
            status: 'started',
            owner: { pid: 1, host: 'h' },
          }),
        )
        await store.createRun(
          newRun('p3', {
            plan: ['a'],
            partitionKey: '2026-01-03',
            status: 'started',
            owner: { pid: 1, host: 'h' },
          }),
        )
        const before = await store.maxEventId()
        await store.write({
          events: [
            {
              type: 'asset:materialized',
              runId: 'p1',
              ts: 2,
              step: 'a',
              asset: 'a',
              attempt: 1,
              metadata: { n: 1 },
            },
            { type: 'log', runId: 'p1', ts: 2, step: 'a', level: 'info', message: 'not a partition event' },
            {
              type: 'step:failure',
              runId: 'p2',
              ts: 3,
              step: 'a',
              attempt: 1,
              durationMs: 1,
              error: { name: 'Error', message: 'x' },
              retriable: false,
            },
            {
              type: 'asset:materialized',
              runId: 'p1',
              ts: 4,
              step: 'b',
              asset: 'b',
              attempt: 1,
              metadata: {},
            },
          ],
          steps: [step('p1', 'a', 'succeeded'), step('p2', 'a', 'failed'), step('p3', 'a', 'running')],
          attempts: [],
          materializations: [
            { asset: 'a', runId: 'p1', attempt: 1, ts: 2, metadata: { n: 1 }, partitionKey: '2026-01-01' },
          ],
        })
        const events = await store.partitionEvents(before, ['a'], 100)
        expect(events.map((e) => [e.asset, e.partitionKey, e.kind, e.runId])).toEqual([
          ['a', '2026-01-01', 'materialized', 'p1'],
          ['a', '2026-01-02', 'failed', 'p2'],
        ])
        expect(await store.partitionEvents(events[0]!.id, ['a'], 100)).toHaveLength(1)
        expect(await store.partitionEvents(before, ['a', 'b'], 1)).toHaveLength(1)
        expect(await store.partitionEvents(before, ['a', 'b'], 100)).toHaveLength(3)
        expect((await store.latestMaterialization('a', '2026-01-01'))?.metadata).toEqual({ n: 1 })
        expect(await store.latestMaterialization('a', '2026-01-02')).toBeUndefined()
        expect(await store.materializedPartitions('a')).toEqual(['2026-01-01'])
        expect(await store.partitionsInFlight('a')).toEqual(['2026-01-03'])
      })

      it('saves a folded partition status compare-and-set on its cursor', async () => {
        await using store = await open()
        const status = (cursor: number, materialized: number[]) => ({
          asset: 'a',
          cursor,
          version: 'daily:v1',
          status: { materialized, failed: [], stale: [] },
          updatedAt: cursor,
        })
        expect(await store.getPartitionStatus('a')).toBeUndefined()
        expect(await store.savePartitionStatus(status(5, [0, 3]), null)).toBe(true)
        // a second first save loses: the first one is there
        expect(await store.savePartitionStatus(status(6, [0, 9]), null)).toBe(false)
        expect(await store.savePartitionStatus(status(9, [0, 4]), 5)).toBe(true)
        // a reader that folded from the old cursor loses to the newer save
        expect(await store.savePartitionStatus(status(7, [0, 1]), 5)).toBe(false)
        expect(await store.getPartitionStatus('a')).toEqual(status(9, [0, 4]))
        expect((await readOnlyView(store).getPartitionStatus('a'))?.cursor).toBe(9)
      })

      it('records backfills, saves them compare-and-set, and creates their runs with their state in one transaction', async () => {
        await using store = await open()
        const spec = {
          selection: 'a',
          plan: ['a'],
          partitions: { signature: 'daily', description: 'daily partitions' },
          perRun: 1,
          maxRuns: 2,
          config: {},
          tags: {},
        }
        const state = { target: [0, 5], launched: [], succeeded: [], failed: [], skipped: [], cursor: 0 }
        const b = await store.createBackfill({
          id: 'bf01',
          status: 'requested',
          spec,
          state,
          version: 1,
          createdAt: 10,
          updatedAt: 10,
          endedAt: null,
        })
        expect(b).toMatchObject({ id: 'bf01', status: 'requested', version: 1, spec, state })
        await store.createBackfill({ ...b, id: 'bf02', createdAt: 11 })
        expect(await store.findBackfill('bf0')).toBeUndefined() // two match
        expect((await store.findBackfill('bf02'))?.id).toBe('bf02')
        expect((await store.listBackfills()).map((x) => x.id)).toEqual(['bf02', 'bf01'])
        const run = (id: string, key: string) => ({
          id,
          status: 'queued' as const,
          origin: 'backfill:bf01',
          runKey: key,
          selection: 'a',
          plan: ['a'],
          config: {},
          tags: { 'refresh/backfill': 'bf01' },
          partitionKey: key,
          now: 12,
        })
        const next = { ...b, state: { ...state, launched: [0, 1] } }
        expect(await store.submitBackfillRun(next, 1, run('r1', 'k0'), 12)).toEqual({
          outcome: 'created',
          runId: 'r1',
          version: 2,
        })
        // a driver that read version 1 loses, and creates nothing
        expect(await store.submitBackfillRun(next, 1, run('r2', 'k1'), 12)).toEqual({ outcome: 'stale' })
        expect(await store.getRun('r2')).toBeUndefined()
        expect(await store.getRun('r1')).toMatchObject({ status: 'queued', partitionKey: 'k0' })
        expect(await store.getBackfill('bf01')).toMatchObject({ version: 2, state: next.state })
        // maintenance mode holds new backfill runs back
        await store.setMaintenanceOn({ reason: 'deploy', by: 't', since: 13, drainTimeoutMs: 0 })
        expect(await store.submitBackfillRun(next, 2, run('r3', 'k1'), 13)).toMatchObject({
          outcome: 'blocked',
        })
        await store.setMaintenanceOff()
        expect(await store.getRun('r3')).toBeUndefined()
        expect(await store.saveBackfill({ ...next, status: 'canceling' }, 1, 15)).toBe(false)
        expect(await store.saveBackfill({ ...next, status: 'canceling' }, 2, 15)).toBe(true)
        expect((await store.listBackfills({ active: true })).map((x) => [x.id, x.status])).toEqual([
          ['bf01', 'canceling'],
          ['bf02', 'requested'],
        ])
        expect((await readOnlyView(store).getBackfill('bf01'))?.status).toBe('canceling')
      })

      it('writes a batch atomically and reads events back in order, filtered', async () => {
        await using store = await open()
        await store.createRun(newRun('r', { status: 'started', owner: { pid: 1, host: 'h' } }))
        await store.write({
          events: [
            { type: 'step:start', runId: 'r', ts: 1, step: 'a', attempt: 1, maxAttempts: 1 },
            { type: 'log', runId: 'r', ts: 2, step: 'a', level: 'info', message: 'hello' },
            { type: 'step:start', runId: 'r', ts: 3, step: 'b', attempt: 1, maxAttempts: 1 },
          ],
          steps: [
            {
              runId: 'r',
              key: 'a',
              status: 'succeeded',
              attempts: 1,
              startedAt: 1,
              endedAt: 2,
              error: null,
              reason: null,
            },
          ],
          attempts: [
            { runId: 'r', step: 'a', attempt: 1, status: 'succeeded', startedAt: 1, endedAt: 2, error: null },
          ],
          materializations: [
            { asset: 'a', runId: 'r', attempt: 1, ts: 2, metadata: { rows: 3 }, partitionKey: null },
          ],
        })
        const events = await store.getEvents('r')
        expect(events.map((e) => e.type)).toEqual(['step:start', 'log', 'step:start'])
        expect(events.map((e) => e.id)).toEqual([...events.map((e) => e.id)].sort((x, y) => x - y))
        expect((await store.getEvents('r', { step: 'b' })).map((e) => e.ts)).toEqual([3])
        expect((await store.getEvents('r', { types: ['log'] })).map((e) => e.ts)).toEqual([2])
        expect((await store.getEvents('r', { afterId: events[0]!.id })).length).toBe(2)
        expect(await store.countEvents('r')).toBe(3)
        expect((await store.latestMaterialization('a'))?.metadata).toEqual({ rows: 3 })
        expect((await store.runMaterialization('r', 'a'))?.attempt).toBe(1)
        expect((await store.getAttempts('r', 'a'))[0]?.status).toBe('succeeded')
        // a batch that cannot be written (an unknown run) leaves nothing of itself behind
        await expect(
          store.write({
            events: [{ type: 'log', runId: 'r', ts: 4, step: null, level: 'info', message: 'kept?' }],
            steps: [],
            attempts: [],
            materializations: [
              { asset: 'a', runId: 'r', attempt: 2, ts: 5, metadata: {}, partitionKey: null },
            ],
          }),
        ).resolves.toBeUndefined()
        await expect(
          store.write({
            events: [{ type: 'log', runId: 'r', ts: 6, step: null, level: 'info', message: 'not kept' }],
            steps: [],
            attempts: [
              {
                runId: 'no-such-run',
                step: 'a',
                attempt: 1,
                status: 'running',
                startedAt: 6,
                endedAt: null,
                error: null,
              },
            ],
            materializations: [],
          }),
        ).rejects.toThrow()
        expect((await store.getEvents('r')).map((e) => ('message' in e ? e.message : e.type))).not.toContain(
          'not kept',
        )
      })
      it('reads every event back exactly as written, with its id', async () => {
        await using store = await open()
        await store.createRun(newRun('r', { status: 'started', owner: { pid: 1, host: 'h' } }))
        const events: RunEvent[] = [
          {
            type: 'run:start',
            runId: 'r',
            ts: 1,
            selection: '*',
            steps: ['a'],
            reused: {},
            parentRunId: null,
            concurrency: 2,
          },
          { type: 'log', runId: 'r', ts: 2, step: null, level: 'info', message: 'of the run' },
          { type: 'log', runId: 'r', ts: 3, step: 'a', level: 'warn', message: 'of a step' },
          { type: 'step:progress', runId: 'r', ts: 4, step: 'a', done: 5, total: null },
          {
            type: 'asset:materialized',
            runId: 'r',
            ts: 5,
            step: 'a',
            asset: 'a',
            attempt: 1,
            metadata: { rows: 3, nested: { ok: true } },
          },
        ]
        await store.write({ events, steps: [], attempts: [], materializations: [] })
        const read = await store.getEvents('r')
        expect(read.map(({ id: _, ...e }) => e)).toEqual(events)
        expect(read[1]).toHaveProperty('step', null)
        expect(read[0]).not.toHaveProperty('step')
      })
    })

    describe('asset check results', () => {
      it('writes results with their events in one batch; reads a run’s in order and the latest per check', async () => {
        await using store = await open()
        const error = { name: 'Error', message: 'index gone' }
        await runWithChecks(store, 'r1', [
          checkResult('r1', 'reindex', 'not_empty', { passed: false, metadata: { documents: 0 }, ts: 5 }),
          checkResult('r1', 'reindex', 'count_within', { severity: 'warn', blocking: false, ts: 6 }),
          checkResult('r1', 'snapshot', 'verifies', { passed: false, error, ts: 7 }),
          checkResult('r1', 'daily', 'fresh', { partitionKey: '2026-01-01', ts: 8 }),
        ])
        await runWithChecks(store, 'r2', [
          checkResult('r2', 'reindex', 'not_empty', { metadata: { documents: 9 }, ts: 15 }),
          checkResult('r2', 'daily', 'fresh', { partitionKey: '2026-01-02', passed: false, ts: 16 }),
        ])
        const r1 = await store.checkResultsOfRun('r1')
        expect(r1.map((r) => [r.asset, r.check, r.passed])).toEqual([
          ['reindex', 'not_empty', false],
          ['reindex', 'count_within', true],
          ['snapshot', 'verifies', false],
          ['daily', 'fresh', true],
        ])
        expect(r1[0]).toEqual({
          id: r1[0]!.id,
          runId: 'r1',
          asset: 'reindex',
          check: 'not_empty',
          partitionKey: null,
          passed: false,
          severity: 'error',
          blocking: true,
          ts: 5,
          metadata: { documents: 0 },
          error: null,
        })
        expect(r1[1]).toMatchObject({ severity: 'warn', blocking: false })
        expect(r1[2]!.error).toEqual(error)
        expect(r1.map((r) => r.id)).toEqual([...r1.map((r) => r.id)].sort((a, b) => a - b))
        expect(await store.getEvents('r1', { types: ['check:evaluated'] })).toHaveLength(4)

        // the latest per (asset, check, partition): r2's not_empty replaced r1's; each day its own
        const latest = await store.latestCheckResults()
        expect(latest.map((r) => [r.asset, r.check, r.partitionKey, r.runId, r.passed])).toEqual([
          ['daily', 'fresh', '2026-01-01', 'r1', true],
          ['daily', 'fresh', '2026-01-02', 'r2', false],
          ['reindex', 'count_within', null, 'r1', true],
          ['reindex', 'not_empty', null, 'r2', true],
          ['snapshot', 'verifies', null, 'r1', false],
        ])
        expect((await store.latestCheckResults('reindex')).map((r) => [r.check, r.runId])).toEqual([
          ['count_within', 'r1'],
          ['not_empty', 'r2'],
        ])
        expect(await store.latestCheckResults('nothing')).toEqual([])
        expect(await store.checkResultsOfRun('unknown')).toEqual([])
      })

      it('a batch with a bad row writes none of its check results', async () => {
        await using store = await open()
        await store.createRun(newRun('r1', { status: 'started', owner: { pid: 1, host: 'h' } }))
        const bad = { ...checkResult('r1', 'a', 'c'), severity: 'fatal' as 'error' }
        await expect(
          store.write({
            events: [{ type: 'log', runId: 'r1', ts: 1, step: null, level: 'info', message: 'x' }],
            steps: [],
            attempts: [],
            materializations: [],
            checks: [checkResult('r1', 'a', 'ok'), bad],
          }),
        ).rejects.toThrow()
        expect(await store.checkResultsOfRun('r1')).toEqual([])
        expect(await store.countEvents('r1')).toBe(0)
      })
    })

    describe('guards and holds', () => {
      it('coalesce: requests while a run is queued become that one follow-up (their keys point to it)', async () => {
        await using store = await open()
        const guard = { key: 'snap', concurrency: 1, onConflict: 'coalesce' as const }
        expect(await store.requestRun(request('r1', { guard }))).toEqual({ outcome: 'created', runId: 'r1' })
        expect(await store.claimQueuedRun('r1', { pid: 1, host: 'h' }, 2_000)).toBe(true)
        expect(await store.requestRun(request('r2', { guard }))).toEqual({ outcome: 'created', runId: 'r2' })
        expect(await store.requestRun(request('r3', { guard, runKey: 'k3' }))).toEqual({
          outcome: 'coalesced',
          runId: 'r2',
        })
        expect(await store.requestRun(request('r4', { guard, runKey: 'k3' }))).toEqual({
          outcome: 'duplicate',
          runId: 'r2',
        })
        // the follow-up waits for the run in flight, then goes
        expect(await store.claimQueuedRun('r2', { pid: 1, host: 'h' }, 3_000)).toBe(false)
        expect((await store.queuedRuns()).map((r) => [r.id, r.launchable])).toEqual([['r2', false]])
        await store.finishRun('r1', 'success', 4_000)
        expect((await store.queuedRuns()).map((r) => [r.id, r.launchable])).toEqual([['r2', true]])
        expect(await store.claimQueuedRun('r2', { pid: 1, host: 'h' }, 5_000)).toBe(true)
      })

      itShared('coalesce from several processes at once: exactly one follow-up', async (location) => {
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) => child(['request-child.mjs', location, 'guard', String(i)])),
        )
        const outcomes = results.map((r) => JSON.parse(r.stdout) as { outcome: string })
        expect(outcomes.filter((o) => o.outcome === 'created')).toHaveLength(1)
        expect(outcomes.filter((o) => o.outcome === 'coalesced')).toHaveLength(7)
      })

      it('skip: a request while the guard is full is dropped with its reason', async () => {
        await using store = await open()
        const guard = { key: 'g', concurrency: 1, onConflict: 'skip' as const }
        await store.requestRun(request('r1', { guard }))
        expect(await store.requestRun(request('r2', { guard }))).toEqual({
          outcome: 'skipped',
          reason: 'guard `g` is full (1 at a time; run r1 is in flight)',
          blockingRunId: 'r1',
        })
        expect(await store.getRun('r2')).toBeUndefined()
      })

      it('queue: every request is kept and launched in request order as slots free', async () => {
        await using store = await open()
        const guard = { key: 'q', concurrency: 1, onConflict: 'queue' as const }
        for (const id of ['r1', 'r2', 'r3']) await store.requestRun(request(id, { guard }))
        const owner = { pid: 1, host: 'h' }
        expect(await store.claimQueuedRun('r2', owner, 2)).toBe(false) // r1 first
        expect(await store.claimQueuedRun('r1', owner, 2)).toBe(true)
        expect(await store.claimQueuedRun('r2', owner, 3)).toBe(false) // full
        await store.finishRun('r1', 'failure', 4)
        expect(await store.claimQueuedRun('r2', owner, 5)).toBe(true)
        expect((await store.queuedRuns()).map((r) => r.id)).toEqual(['r3'])
      })

      it('holds: a run is created, or claimed, only while each hold it falls under has room', async () => {
        await using store = await open()
        const holds = [{ key: 'index_writers', limit: 1 }]
        const owner = { pid: 1, host: 'h' }
        expect((await store.createRun(newRun('a', { status: 'started', owner, holds }))).created).toBe(true)
        expect(await store.createRun(newRun('b', { status: 'started', owner, holds }))).toEqual({
          created: false,
          blockedBy: { runId: 'a', hold: 'index_writers' },
        })
        await store.requestRun(request('c', { holds }))
        expect(await store.runHolds('c')).toEqual(holds)
        expect((await store.queuedRuns()).map((r) => [r.id, r.launchable])).toEqual([['c', false]])
        expect(await store.claimQueuedRun('c', owner, 2)).toBe(false)
        await store.finishRun('a', 'success', 3)
        expect(await store.claimQueuedRun('c', owner, 4)).toBe(true)
      })
    })

    describe('pool slots', () => {
      it('never grants more slots than the limit; slots of ended runs are freed', async () => {
        await using store = await open()
        const owner = { pid: 1, host: 'h' }
        await store.createRun(newRun('r1', { status: 'started', owner }))
        await store.createRun(newRun('r2', { status: 'started', owner }))
        expect(await store.tryAcquirePoolSlot('db', 2, 'r1', 'a', 1)).toBe(true)
        expect(await store.tryAcquirePoolSlot('db', 2, 'r2', 'a', 2)).toBe(true)
        expect(await store.tryAcquirePoolSlot('db', 2, 'r2', 'b', 3)).toBe(false)
        expect((await store.poolUsage()).map((s) => s.runId)).toEqual(['r1', 'r2'])
        await store.releasePoolSlot('db', 'r1', 'a')
        expect(await store.tryAcquirePoolSlot('db', 2, 'r2', 'b', 4)).toBe(true)
        await store.finishRun('r2', 'success', 5)
        expect(await store.poolUsage()).toEqual([])
      })

      itShared('holds a pool limit across processes running at once', async (location) => {
        const counter = join(tempDir(), 'pool-counter.db')
        const { default: Database } = await import('better-sqlite3')
        const db = new Database(counter)
        db.exec('CREATE TABLE c (cur INTEGER, peak INTEGER); INSERT INTO c VALUES (0, 0)')
        db.close()
        const runs = await Promise.all(
          ['x', 'y', 'z'].map((label) => child(['pool-child.mjs', location, counter, label, '4', '40', '2'])),
        )
        for (const r of runs) expect(r.stdout.trim(), r.stderr).toBe('success')
        const check = new Database(counter, { readonly: true })
        const { cur, peak } = check.prepare('SELECT cur, peak FROM c').get() as { cur: number; peak: number }
        check.close()
        expect(cur).toBe(0)
        expect(peak).toBe(2)
      })
    })

    describe('leases', () => {
      it('one holder at a time; renewed by its holder; taken over once expired; released', async () => {
        await using store = await open()
        expect((await store.acquireLease('daemon', 'one', 5_000, 0)).acquired).toBe(true)
        const refused = await store.acquireLease('daemon', 'two', 5_000, 1_000)
        expect(refused).toMatchObject({ acquired: false, lease: { holder: 'one', expiresAt: 5_000 } })
        expect(await store.acquireLease('daemon', 'one', 5_000, 2_000)).toMatchObject({
          acquired: true,
          lease: { holder: 'one', acquiredAt: 0, expiresAt: 7_000 },
        })
        // the holder stopped renewing: the next one takes over once it expired, not before
        expect((await store.acquireLease('daemon', 'two', 5_000, 6_999)).acquired).toBe(false)
        expect(await store.acquireLease('daemon', 'two', 5_000, 7_001)).toMatchObject({
          acquired: true,
          lease: { holder: 'two', acquiredAt: 7_001 },
        })
        await store.releaseLease('daemon', 'one') // not its lease any more: nothing happens
        expect((await store.getLease('daemon'))?.holder).toBe('two')
        await store.releaseLease('daemon', 'two')
        expect(await store.getLease('daemon')).toBeUndefined()
      })
    })

    describe('several daemons', () => {
      it('lists leases by prefix: the live daemons are their presence leases', async () => {
        await using store = await open()
        await store.acquireLease('daemon/a:1', 'a:1', 5_000, 0)
        await store.acquireLease('daemon/b:2', 'b:2', 5_000, 0)
        await store.acquireLease('daemon', 'a:1', 5_000, 0)
        await store.acquireLease('daemons-other', 'x', 5_000, 0)
        expect((await store.listLeases('daemon/')).map((l) => [l.name, l.holder])).toEqual([
          ['daemon/a:1', 'a:1'],
          ['daemon/b:2', 'b:2'],
        ])
        expect(await store.listLeases('nothing/')).toEqual([])
      })

      it('each tick of an instigator is claimed once: a slot is granted only above the last one claimed', async () => {
        await using store = await open()
        expect(
          await store.claimTicks(
            [
              { name: 's1', slot: 10 },
              { name: 's2', slot: 10 },
            ],
            'a',
            1,
          ),
        ).toEqual(['s1', 's2'])
        // the same slots again, by another daemon: refused; a later slot of one of them: granted
        expect(
          await store.claimTicks(
            [
              { name: 's1', slot: 10 },
              { name: 's2', slot: 11 },
            ],
            'b',
            2,
          ),
        ).toEqual(['s2'])
        expect(await store.claimTicks([{ name: 's1', slot: 9 }], 'b', 3)).toEqual([])
        expect(await store.claimTicks([], 'b', 3)).toEqual([])
        expect(await store.tickClaims()).toEqual([
          { name: 's1', slot: 10, holder: 'a', claimedAt: 1, doneAt: null },
          { name: 's2', slot: 11, holder: 'b', claimedAt: 2, doneAt: null },
        ])
      })

      it("a live daemon's tick is committed before another evaluates the next one (from the cursor it left)", async () => {
        await using store = await open()
        await store.acquireLease('daemon/a', 'a', 60_000, 0)
        await store.acquireLease('daemon/b', 'b', 60_000, 0)
        expect(await store.claimTicks([{ name: 's', slot: 1 }], 'a', 10)).toEqual(['s'])
        // a is alive and still evaluating slot 1: b waits, a may go on
        expect(await store.claimTicks([{ name: 's', slot: 2 }], 'b', 20)).toEqual([])
        await store.commitTicks([tick('s', { cursor: 'after-1', endedAt: 25 })])
        expect((await store.tickClaims())[0]).toMatchObject({ holder: 'a', doneAt: 25 })
        expect(await store.claimTicks([{ name: 's', slot: 2 }], 'b', 30)).toEqual(['s'])
        expect((await store.getInstigator('s'))?.cursor).toBe('after-1')
        // given back without a tick (nothing was due): free for the next slot
        await store.finishTickClaims(['s'], 'a', 35) // not a's claim: nothing changes
        expect(await store.claimTicks([{ name: 's', slot: 3 }], 'a', 40)).toEqual([])
        await store.finishTickClaims(['s'], 'b', 45)
        expect(await store.claimTicks([{ name: 's', slot: 3 }], 'a', 50)).toEqual(['s'])
        // a's presence ends: its unfinished claim no longer holds the sensor
        await store.releaseLease('daemon/a', 'a')
        expect(await store.claimTicks([{ name: 's', slot: 4 }], 'b', 60)).toEqual(['s'])
      })

      it('claims queued runs to launch: split between live daemons, taken over from a dead one', async () => {
        await using store = await open()
        for (let i = 0; i < 6; i++) await store.requestRun(request(`q${i}`, { now: 1_000 + i }))
        await store.acquireLease('daemon/a', 'a', 10_000, 0)
        await store.acquireLease('daemon/b', 'b', 1_000, 0)
        const a = await store.claimLaunches('a', 2, 100)
        expect(a.map((r) => [r.id, r.launchedBy])).toEqual([
          ['q0', 'a'],
          ['q1', 'a'],
        ])
        expect((await store.getRun('q0'))?.launchedBy).toBe('a')
        const b = await store.claimLaunches('b', 10, 200)
        expect(b.map((r) => r.id)).toEqual(['q2', 'q3', 'q4', 'q5'])
        // a's own claims come back to it unless it says it is launching them
        expect((await store.claimLaunches('a', 10, 300, ['q0'])).map((r) => r.id)).toEqual(['q1'])
        // b is gone (its presence lease expired at 1 000): its claims go to a live daemon
        expect((await store.claimLaunches('a', 10, 2_000, ['q0', 'q1'])).map((r) => r.id)).toEqual([
          'q2',
          'q3',
          'q4',
          'q5',
        ])
        // a started run is not queued any more: nobody claims it
        expect(await store.claimQueuedRun('q0', { pid: 1, host: 'h' }, 2_100)).toBe(true)
        expect((await store.claimLaunches('c', 10, 2_200)).map((r) => r.id)).toEqual([])
      })

      it('claims only what could start: the oldest queued run of a guard with room, none during maintenance', async () => {
        await using store = await open()
        const guard = { key: 'g', concurrency: 1, onConflict: 'queue' as const }
        await store.requestRun(request('g1', { guard }))
        await store.requestRun(request('g2', { guard }))
        await store.requestRun(request('free'))
        expect((await store.claimLaunches('a', 10, 1)).map((r) => r.id)).toEqual(['g1', 'free'])
        await store.setMaintenanceOn({ reason: 'deploy', by: 't', since: 2, drainTimeoutMs: 0 })
        await store.requestRun(request('later'))
        expect(await store.claimLaunches('a', 10, 3, ['g1', 'free'])).toEqual([])
      })

      itShared(
        'daemons claiming at once from several processes claim each queued run exactly once',
        async (location) => {
          {
            if (!target.openAgain) throw new Error('a shareable target says how to open it again (openAgain)')
            await using store = await target.openAgain(location)
            for (let i = 0; i < 120; i++)
              await store.requestRun(request(`run-${String(i).padStart(3, '0')}`, { now: i }))
          }
          const results = await Promise.all(
            Array.from({ length: 4 }, (_, i) => child(['claim-child.mjs', location, `daemon-${i}`])),
          )
          const claimed = results.flatMap((r) => {
            expect(r.code, r.stderr).toBe(0)
            return JSON.parse(r.stdout) as string[]
          })
          expect(claimed).toHaveLength(120)
          expect(new Set(claimed).size).toBe(120)
        },
      )
    })

    describe('ticks and cursors', () => {
      it('a tick commits with its requests and its cursor; identical skips fold into one row', async () => {
        await using store = await open()
        const [first] = await store.commitTicks([
          tick('s', { requests: [request('r1', { runKey: 'k1', origin: 'sensor:s' })], cursor: '1' }),
        ])
        expect(first).toMatchObject({ tick: { status: 'success', runIds: ['r1'], cursor: '1' } })
        expect((await store.getInstigator('s'))?.cursor).toBe('1')
        const skip = () =>
          tick('s', {
            status: 'skipped',
            skipReason: 'nothing new',
            tickTime: 20,
            startedAt: 20,
            endedAt: 21,
          })
        const [a] = await store.commitTicks([skip()])
        const [b] = await store.commitTicks([skip()])
        expect(b!.tick.id).toBe(a!.tick.id)
        expect(b!.tick.repeats).toBe(2)
        // a repeated key: the tick launched nothing and says why; a failed tick never moves the cursor
        const [again] = await store.commitTicks([
          tick('s', { requests: [request('r2', { runKey: 'k1', origin: 'sensor:s' })], cursor: '2' }),
        ])
        expect(again!.tick).toMatchObject({
          status: 'skipped',
          skipReason: 'run key k1 already used by run r1',
        })
        await store.commitTicks([tick('s', { status: 'failure', error: { name: 'Error', message: 'x' } })])
        expect((await store.getInstigator('s'))?.cursor).toBe('2')
        expect((await store.listTicks('s')).map((t) => t.status)).toEqual([
          'failure',
          'skipped',
          'skipped',
          'success',
        ])
        expect(await store.maxTickId()).toBeGreaterThan(0)
        expect((await store.ticksAfter(0)).length).toBe(4)
      })

      it('a batch of ticks of several sensors commits each as if alone, in the order given', async () => {
        await using store = await open()
        const skip = (name: string, reason: string, at: number) =>
          tick(name, { status: 'skipped', skipReason: reason, tickTime: at, startedAt: at, endedAt: at + 1 })
        await store.commitTicks([skip('b', 'nothing new', 10), skip('d', 'nothing new', 10)])
        await store.commitTicks([
          tick('a', { requests: [request('r1', { runKey: 'k1', origin: 'sensor:a' })], cursor: 'a1' }),
        ])
        // names out of order; one folds, one is a new skip, one a new run, one a repeated key
        const at20 = { tickTime: 20, startedAt: 20, endedAt: 21 }
        const committed = await store.commitTicks([
          skip('d', 'nothing new', 20),
          tick('c', {
            ...at20,
            requests: [request('r2', { runKey: 'k2', origin: 'sensor:c' })],
            cursor: 'c1',
          }),
          skip('b', 'something else', 20),
          tick('a', {
            ...at20,
            requests: [request('r3', { runKey: 'k1', origin: 'sensor:a' })],
            cursor: 'a2',
          }),
        ])
        expect(committed.map((c) => c.tick.instigator)).toEqual(['d', 'c', 'b', 'a'])
        expect(committed[0]!.tick).toMatchObject({ status: 'skipped', repeats: 2, endedAt: 21 })
        expect(committed[1]).toMatchObject({
          tick: { status: 'success', runIds: ['r2'], cursor: 'c1', repeats: 1 },
          outcomes: [{ outcome: 'created', runId: 'r2' }],
        })
        expect(committed[2]!.tick).toMatchObject({ status: 'skipped', skipReason: 'something else' })
        expect(committed[3]!.tick).toMatchObject({
          status: 'skipped',
          skipReason: 'run key k1 already used by run r1',
          cursor: 'a2',
        })
        expect(await store.getRun('r3')).toBeUndefined()
        expect((await store.getRun('r2'))?.status).toBe('queued')
        // new rows take ids in the order given, after every earlier tick; the folded one keeps its id
        const fresh = committed.slice(1).map((c) => c.tick.id)
        expect([...fresh].sort((x, y) => x - y)).toEqual(fresh)
        expect(fresh[0]).toBeGreaterThan(committed[0]!.tick.id)
        expect((await store.ticksAfter(committed[0]!.tick.id)).map((t) => t.instigator)).toEqual([
          'a',
          'c',
          'b',
          'a',
        ])
        for (const c of committed) {
          expect(await store.getInstigator(c.tick.instigator)).toMatchObject({
            cursor: c.tick.cursor,
            lastTickId: c.tick.id,
            lastTickAt: 20,
          })
        }
        // one sensor twice in a batch: the second sees the first, as two calls would
        const twice = await store.commitTicks([skip('e', 'idle', 30), skip('e', 'idle', 31)])
        expect(twice[1]!.tick).toMatchObject({ id: twice[0]!.tick.id, repeats: 2, endedAt: 32 })
      })

      it('ticks commit all together or not at all: a failing request leaves no run and no cursor moved', async () => {
        await using store = await open()
        await store.createRun(newRun('taken'))
        await expect(
          store.commitTicks([
            tick('a', { requests: [request('fresh', { origin: 'sensor:a' })], cursor: 'a1' }),
            tick('b', { requests: [request('taken', { origin: 'sensor:b' })], cursor: 'b1' }),
          ]),
        ).rejects.toThrow()
        expect(await store.getRun('fresh')).toBeUndefined()
        expect((await store.getInstigator('a'))?.cursor ?? null).toBeNull()
        expect(await store.listTicks('a')).toEqual([])
      })

      it('turning an instigator on records when; ensure never changes an existing row', async () => {
        await using store = await open()
        expect(await store.ensureInstigator('nightly', 'schedule', 100)).toMatchObject({
          status: 'default',
          enabledAt: 100,
        })
        expect(await store.setInstigatorStatus('nightly', 'schedule', 'off', 200)).toMatchObject({
          status: 'off',
        })
        expect(await store.setInstigatorStatus('nightly', 'schedule', 'on', 300)).toMatchObject({
          status: 'on',
          enabledAt: 300,
        })
        expect(await store.ensureInstigator('nightly', 'schedule', 400)).toMatchObject({
          status: 'on',
          enabledAt: 300,
        })
        expect((await store.listInstigators()).map((i) => i.name)).toEqual(['nightly'])
      })
    })

    describe('maintenance mode', () => {
      it('parks every new run while on (forced runs go, tagged); replays each parked request once', async () => {
        await using store = await open()
        const gate = { reason: 'deploy', by: 'ops@h', since: 1, drainTimeoutMs: 0 }
        expect(await store.setMaintenanceOn(gate)).toBe(true)
        expect(await store.setMaintenanceOn(gate)).toBe(false)
        const parkedRun = await store.createRun(newRun('m1'))
        expect(parkedRun).toMatchObject({ created: false, parkedRequestId: expect.any(Number) })
        const forced = await store.createRun(newRun('m2', { force: true }))
        expect(forced).toMatchObject({ created: true, run: { tags: { 'refresh/forced': 'maintenance' } } })
        expect(await store.requestRun(request('m3', { runKey: 'k' }))).toMatchObject({ outcome: 'parked' })
        // the same key parked twice is one request
        const again = await store.requestRun(request('m4', { runKey: 'k' }))
        expect(again).toMatchObject({ outcome: 'parked' })
        expect(await store.countParked()).toBe(2)
        // queued runs are held while the gate is on
        expect(await store.replayParked([], 2)).toEqual([])
        expect(await store.setMaintenanceOff()).toEqual(gate)
        expect(await store.setMaintenanceOff()).toBeNull()
        const pending = await store.listParked({ pending: true })
        expect(pending.map((p) => [p.origin, p.runKey])).toEqual([
          ['manual', null],
          ['sensor:snap', 'k'],
        ])
        const replays = pending.map((p, i) => ({
          parkedId: p.id,
          request: request(`replayed-${i}`, { origin: p.origin, ...(p.runKey ? { runKey: p.runKey } : {}) }),
        }))
        const replayed = await store.replayParked(replays, 10)
        expect(replayed.map((r) => r.outcome.outcome)).toEqual(['created', 'created'])
        // replaying the same requests again (a second replayer, a crash mid-replay): nothing twice
        expect(await store.replayParked(replays, 11)).toEqual([])
        expect(await store.countParked()).toBe(0)
        expect((await store.listParked()).every((p) => p.replayedAt === 10)).toBe(true)
        expect((await store.listRuns({ status: 'queued' })).map((r) => r.id).sort()).toEqual([
          'm2',
          'replayed-0',
          'replayed-1',
        ])
      })

      it('a request that cannot be built is marked failed, not retried forever', async () => {
        await using store = await open()
        await store.setMaintenanceOn({ reason: 'r', by: 'b', since: 1, drainTimeoutMs: 0 })
        await store.requestRun(request('x'))
        await store.setMaintenanceOff()
        const [parked] = await store.listParked({ pending: true })
        const [result] = await store.replayParked(
          [{ parkedId: parked!.id, failed: 'asset `gone` is no longer defined' }],
          5,
        )
        expect(result).toMatchObject({
          outcome: { outcome: 'failed' },
          parked: { replayOutcome: 'failed: asset `gone` is no longer defined' },
        })
        expect(await store.countParked()).toBe(0)
      })
    })

    describe('partitioned requests', () => {
      it('a requested run is queued with its partition; a re-execution keeps its parent partition', async () => {
        await using store = await open()
        expect(
          await store.requestRun(request('p1', { partitionKey: '2026-03-08', runKey: '2026-03-08' })),
        ).toEqual({ outcome: 'created', runId: 'p1' })
        expect(await store.getRun('p1')).toMatchObject({ status: 'queued', partitionKey: '2026-03-08' })
        // the same key again is the same run, whatever partition it names
        expect(
          await store.requestRun(request('p2', { partitionKey: '2026-03-09', runKey: '2026-03-08' })),
        ).toEqual({ outcome: 'duplicate', runId: 'p1' })
        await store.claimQueuedRun('p1', { pid: 1, host: 'h' }, 2_000)
        await store.finishRun('p1', 'failure', 3_000)
        expect(await store.requestRun(request('p3', { parentRunId: 'p1' }))).toEqual({
          outcome: 'created',
          runId: 'p3',
        })
        expect(await store.getRun('p3')).toMatchObject({ parentRunId: 'p1', partitionKey: '2026-03-08' })
        expect(await store.requestRun(request('u1'))).toMatchObject({ outcome: 'created' })
        expect((await store.getRun('u1'))?.partitionKey).toBeNull()
      })

      it('coalesce: a request folds only into the pending follow-up of its own partition', async () => {
        await using store = await open()
        const guard = { key: 'snap', concurrency: 1, onConflict: 'coalesce' as const }
        await store.requestRun(request('r1', { guard, partitionKey: 'a' }))
        expect(await store.claimQueuedRun('r1', { pid: 1, host: 'h' }, 2_000)).toBe(true)
        expect(await store.requestRun(request('r2', { guard, partitionKey: 'a' }))).toEqual({
          outcome: 'created',
          runId: 'r2',
        })
        expect(await store.requestRun(request('r3', { guard, partitionKey: 'b' }))).toEqual({
          outcome: 'created',
          runId: 'r3',
        })
        expect(await store.requestRun(request('r4', { guard, partitionKey: 'b', runKey: 'k4' }))).toEqual({
          outcome: 'coalesced',
          runId: 'r3',
        })
        expect(await store.requestRun(request('r5', { guard, partitionKey: 'a' }))).toEqual({
          outcome: 'coalesced',
          runId: 'r2',
        })
        // an unpartitioned request has its own follow-up too
        expect(await store.requestRun(request('r6', { guard }))).toEqual({ outcome: 'created', runId: 'r6' })
        expect(await store.requestRun(request('r7', { guard }))).toEqual({
          outcome: 'coalesced',
          runId: 'r6',
        })
        expect(
          (await store.listRuns({ status: 'queued' })).map((r) => [r.id, r.partitionKey]).sort(),
        ).toEqual([
          ['r2', 'a'],
          ['r3', 'b'],
          ['r6', null],
        ])
        // launched in request order, one at a time
        await store.finishRun('r1', 'success', 3_000)
        expect((await store.queuedRuns()).map((r) => [r.id, r.launchable])).toEqual([
          ['r2', true],
          ['r3', false],
          ['r6', false],
        ])
      })

      it('a parked request keeps its partition and is replayed with it', async () => {
        await using store = await open()
        await store.setMaintenanceOn({ reason: 'deploy', by: 'ops@h', since: 1, drainTimeoutMs: 0 })
        expect(
          await store.requestRun(
            request('m1', { origin: 'schedule:daily', runKey: '2026-03-08', partitionKey: '2026-03-08' }),
          ),
        ).toMatchObject({ outcome: 'parked' })
        expect(await store.createRun(newRun('m2', { partitionKey: 'p9' }))).toMatchObject({ created: false })
        await store.requestRun(request('m3'))
        await store.setMaintenanceOff()
        const pending = await store.listParked({ pending: true })
        expect(pending.map((p) => [p.origin, p.runKey, p.partitionKey])).toEqual([
          ['schedule:daily', '2026-03-08', '2026-03-08'],
          ['manual', null, 'p9'],
          ['sensor:snap', null, null],
        ])
        const replays = pending.map((p, i) => ({
          parkedId: p.id,
          request: request(`replayed-${i}`, {
            origin: p.origin,
            ...(p.runKey === null ? {} : { runKey: p.runKey }),
            ...(p.partitionKey === null ? {} : { partitionKey: p.partitionKey }),
          }),
        }))
        await store.replayParked(replays, 10)
        expect((await store.getRun('replayed-0'))?.partitionKey).toBe('2026-03-08')
        expect((await store.getRun('replayed-1'))?.partitionKey).toBe('p9')
        expect((await store.getRun('replayed-2'))?.partitionKey).toBeNull()
      })

      it('a tick adds dynamic partition keys with its requests, atomically', async () => {
        await using store = await open()
        const [committed] = await store.commitTicks([
          tick('providers', {
            addDynamicPartitions: { providers: ['flickr', 'met'] },
            requests: [request('d1', { origin: 'sensor:providers', runKey: 'met', partitionKey: 'met' })],
            cursor: 'c1',
          }),
        ])
        expect(committed!.outcomes).toEqual([{ outcome: 'created', runId: 'd1' }])
        expect(await store.dynamicPartitionKeys('providers')).toEqual(['flickr', 'met'])
        expect((await store.getRun('d1'))?.partitionKey).toBe('met')
        // a tick that fails adds no key
        await store.createRun(newRun('taken'))
        await expect(
          store.commitTicks([
            tick('providers', {
              addDynamicPartitions: { providers: ['smk'] },
              requests: [request('taken', { origin: 'sensor:providers', partitionKey: 'smk' })],
              cursor: 'c2',
            }),
          ]),
        ).rejects.toThrow()
        expect(await store.dynamicPartitionKeys('providers')).toEqual(['flickr', 'met'])
        expect((await store.getInstigator('providers'))?.cursor).toBe('c1')
      })
    })

    describe('cancel and pause requests', () => {
      it('a started run is asked to cancel through its heartbeat; a queued one is canceled at once', async () => {
        await using store = await open()
        const owner = { pid: 1, host: 'h' }
        await store.createRun(newRun('s', { status: 'started', owner }))
        await store.createRun(newRun('q'))
        expect(await store.heartbeat('s', owner, 2)).toBe('ok')
        expect(await store.requestCancel('s', 3)).toBe('started')
        expect(await store.pendingRequests('s')).toEqual({ cancel: true, pause: false })
        expect(await store.heartbeat('s', owner, 4)).toBe('cancel')
        expect(await store.heartbeat('s', { pid: 2, host: 'h' }, 4)).toBe('lost')
        expect(await store.requestCancel('q', 5)).toBe('canceled')
        expect((await store.getSteps('q')).map((s) => s.status)).toEqual(['canceled', 'canceled'])
        await expect(store.requestCancel('nope', 6)).rejects.toThrow(/no run `nope`/)
      })

      it('pause: requested, marked paused, requeued for a daemon or claimed back', async () => {
        await using store = await open()
        const owner = { pid: 1, host: 'h' }
        await store.createRun(newRun('p', { status: 'started', owner }))
        expect(await store.requestPause('p', 2)).toBe('started')
        expect(await store.heartbeat('p', owner, 3)).toBe('pause')
        expect(await store.markPaused('p', 4)).toBe(true)
        await expect(store.requestPause('p', 5)).rejects.toThrow(
          /is paused; only a started run can be paused/,
        )
        expect(await store.claimPausedRun('p', { pid: 9, host: 'h' }, 6)).toBe(true)
        expect(await store.getRun('p')).toMatchObject({ status: 'started', ownerPid: 9 })
        expect(await store.pendingRequests('p')).toEqual({ cancel: false, pause: false })
        await store.markPaused('p', 7)
        expect(await store.requeuePausedRun('p')).toBe(true)
        expect((await store.getRun('p'))?.status).toBe('queued')
      })
    })

    describe('recovery', () => {
      it('marks a started run whose owner is gone as interrupted, closing its steps; its owner then finds it lost', async () => {
        await using store = await open()
        const { hostname } = await import('node:os')
        const gone = { pid: dead.pid, host: hostname() }
        await store.createRun(newRun('gone', { status: 'started', owner: gone }))
        await store.createRun(
          newRun('remote', { status: 'started', owner: { pid: 1, host: 'elsewhere' }, now: 1_000 }),
        )
        await store.createRun(
          newRun('alive', { status: 'started', owner: { pid: process.pid, host: hostname() }, now: 1_000 }),
        )
        await store.tryAcquirePoolSlot('db', 1, 'gone', 'a', 1_000)
        // read first: who is gone, and when it was last seen (its latest event), changing nothing
        await store.write({
          events: [
            { type: 'log', runId: 'gone', ts: 1_500, step: null, level: 'info', message: 'still here' },
          ],
          steps: [],
          attempts: [],
          materializations: [],
        })
        expect(await store.interruptedRuns({ now: 2_000, staleAfterMs: 60_000 })).toEqual([
          {
            runId: 'gone',
            reason: expect.stringMatching(/its process \(pid \d+\) is gone/),
            lastSeenAt: 1_500,
          },
        ])
        expect((await store.getRun('gone'))?.status).toBe('started')
        const recovered = await store.recoverInterruptedRuns({ now: 2_000, staleAfterMs: 60_000 })
        expect(recovered.map((r) => r.runId)).toEqual(['gone'])
        expect(await store.getRun('gone')).toMatchObject({
          status: 'failure',
          error: { name: 'InterruptedError' },
        })
        expect((await store.getSteps('gone')).map((s) => s.status)).toEqual(['canceled', 'canceled'])
        expect(await store.poolUsage()).toEqual([])
        expect((await store.getEvents('gone', { types: ['run:end'] })).length).toBe(1)
        expect(await store.heartbeat('gone', gone, 3_000)).toBe('lost')
        // another host's run: only once its heartbeat is stale
        expect((await store.recoverInterruptedRuns({ now: 1_000 + 61_000 })).map((r) => r.runId)).toEqual([
          'remote',
        ])
        expect((await store.getRun('alive'))?.status).toBe('started')
      })

      it('abandons a queued or started run with closing events; a finished run is left alone', async () => {
        await using store = await open()
        await store.createRun(newRun('q'))
        expect(await store.abandonRun('q', 'failure', 'its process died before starting it', 5)).toBe(true)
        expect(await store.getRun('q')).toMatchObject({
          status: 'failure',
          error: { message: 'its process died before starting it' },
        })
        expect(await store.abandonRun('q', 'canceled', 'again', 6)).toBe(false)
        expect((await store.runEndsAfter(0)).map((e) => e.runId)).toEqual(['q'])
      })

      it('abandons many runs in one call, each with its closing events, leaving ended ones alone', async () => {
        await using store = await open()
        for (const id of ['a', 'b', 'c', 'd']) await store.createRun(newRun(id))
        await store.finishRun('c', 'success', 3)
        const closed = await store.abandonRuns(
          ['a', 'b', 'c', 'missing', 'd'],
          'canceled',
          'backfill x was canceled',
          5,
        )
        expect(closed).toEqual(['a', 'b', 'd'])
        for (const id of closed) {
          expect(await store.getRun(id)).toMatchObject({
            status: 'canceled',
            error: { message: 'backfill x was canceled' },
          })
          expect((await store.getEvents(id, { types: ['run:end'] })).length).toBe(1)
        }
        expect((await store.getRun('c'))?.status).toBe('success')
        expect(await store.abandonRuns([], 'canceled', 'nothing', 6)).toEqual([])
      })
    })

    describe('retention', () => {
      it('prunes old finished runs with their rows, and ticks, in batches; keeps every run still needed', async () => {
        await using store = await open()
        const owner = { pid: 1, host: 'h' }
        // prunable: ended long enough ago and needed by nothing
        await endedRun(store, 'gone-parent', 'canceled', 3 * DAY)
        await endedRun(store, 'gone-child', 'success', 4 * DAY, { run: { parentRunId: 'gone-parent' } })
        await endedRun(store, 'old-a', 'success', 5 * DAY, {
          events: 3,
          materialize: [['a', null]],
          run: { holds: [{ key: 'index_writers', limit: 1 }] },
        })
        await endedRun(store, 'old-b', 'canceled', 6 * DAY, {
          events: 2,
          run: { origin: 'sensor:files', runKey: 'file-1' },
        })
        await endedRun(store, 'failed-old', 'failure', 8 * DAY, { events: 0 })
        // kept: each for one reason
        await endedRun(store, 'latest-a', 'success', 7 * DAY, { materialize: [['a', null]] }) // latest of `a`
        await endedRun(store, 'named', 'success', 9 * DAY) // in keepRunIds (the promoted alias)
        await endedRun(store, 'failed-recent', 'failure', 20 * DAY) // a failure younger than 90 days
        await endedRun(store, 'kept-parent', 'failure', 2 * DAY) // re-executed by a recent run
        await endedRun(store, 'parked-from', 'failure', 1 * DAY) // a pending parked request replays from it
        await store.createRun(newRun('queued-old', { now: 1 * DAY }))
        await store.createRun(newRun('started-old', { status: 'started', owner, now: 1 * DAY }))
        await store.createRun(newRun('paused-old', { status: 'started', owner, now: 1 * DAY }))
        expect(await store.markPaused('paused-old', 2 * DAY)).toBe(true)
        await store.setMaintenanceOn({ reason: 'deploy', by: 'ops@h', since: 50 * DAY, drainTimeoutMs: 0 })
        expect(await store.createRun(newRun('retry-parked', { parentRunId: 'parked-from' }))).toMatchObject({
          parkedRequestId: expect.any(Number),
        })
        await store.setMaintenanceOff()
        await endedRun(store, 'kept-child', 'success', 85 * DAY, { run: { parentRunId: 'kept-parent' } })
        await endedRun(store, 'recent', 'success', 80 * DAY) // holds the newest event too
        // ticks: old ones go, an instigator's latest tick stays however old
        await store.commitTicks([tick('s', { tickTime: 1 * DAY, startedAt: 1 * DAY, endedAt: 1 * DAY })])
        await store.commitTicks([
          tick('s', { status: 'failure', error: { name: 'Error', message: 'x' }, endedAt: 2 * DAY }),
        ])
        await store.commitTicks([tick('quiet', { endedAt: 3 * DAY })])
        await store.commitTicks([tick('s', { endedAt: 80 * DAY })])

        const policy = { ...POLICY, keepRunIds: ['named'] }
        expect(await store.pruneCandidates(policy)).toEqual({
          runs: { count: 5, oldest: 3 * DAY, newest: 8 * DAY },
          steps: { count: 10, oldest: 3 * DAY - 5, newest: 8 * DAY - 5 },
          attempts: { count: 5, oldest: 3 * DAY - 5, newest: 8 * DAY - 5 },
          events: { count: 7, oldest: 3 * DAY - 1, newest: 6 * DAY - 1 },
          materializations: { count: 1, oldest: 5 * DAY - 2, newest: 5 * DAY - 2 },
          ticks: { count: 2, oldest: 1 * DAY, newest: 2 * DAY },
        })
        // the dry run changed nothing
        expect(await store.countEvents()).toBe(14)

        // oldest end first; a parent after the run re-executed from it; at most 2 events a batch;
        // a batch stops at a run with events left; ticks once no run is left
        const batch = (d: Partial<typeof NOTHING>) => ({ ...NOTHING, ...d })
        expect(await pruneAll(store, policy, 2)).toEqual([
          batch({ runs: 1, steps: 2, attempts: 1, events: 2 }), // gone-child; 1 event of old-a
          batch({ runs: 1, steps: 2, attempts: 1, events: 2 }), // gone-parent; 1 event of old-a
          // old-a; 1 event of old-b, which still has one, so failed-old (no events) waits
          batch({ runs: 1, steps: 2, attempts: 1, events: 2, materializations: 1 }),
          batch({ runs: 2, steps: 4, attempts: 2, events: 1 }), // old-b, failed-old
          batch({ ticks: 2 }),
        ])
        expect(await store.pruneCandidates(policy)).toEqual({
          runs: { count: 0, oldest: null, newest: null },
          steps: { count: 0, oldest: null, newest: null },
          attempts: { count: 0, oldest: null, newest: null },
          events: { count: 0, oldest: null, newest: null },
          materializations: { count: 0, oldest: null, newest: null },
          ticks: { count: 0, oldest: null, newest: null },
        })

        for (const id of ['gone-parent', 'gone-child', 'old-a', 'old-b', 'failed-old']) {
          expect(await store.getRun(id), id).toBeUndefined()
          expect(await store.getSteps(id), id).toEqual([])
          expect(await store.getAttempts(id), id).toEqual([])
          expect(await store.getEvents(id), id).toEqual([])
          expect(await store.materializationsForRun(id), id).toEqual([])
        }
        expect(await store.runHolds('old-a')).toEqual([])
        const kept = [
          'latest-a',
          'named',
          'failed-recent',
          'kept-parent',
          'parked-from',
          'queued-old',
          'started-old',
          'paused-old',
          'kept-child',
          'recent',
        ]
        expect((await store.listRuns()).map((r) => r.id).sort()).toEqual([...kept].sort())
        for (const id of kept) expect((await store.getSteps(id)).length, id).toBe(2)
        expect(await store.countEvents()).toBe(7)
        expect((await store.getEvents('kept-parent')).length).toBe(1)
        expect((await store.latestMaterialization('a'))?.runId).toBe('latest-a')
        expect((await store.listParked({ pending: true })).map((p) => p.parentRunId)).toEqual(['parked-from'])
        // a pruned run's key stays taken: the same request is still a duplicate
        expect(
          await store.requestRun(request('again', { origin: 'sensor:files', runKey: 'file-1' })),
        ).toEqual({
          outcome: 'duplicate',
          runId: 'old-b',
        })
        expect((await store.listTicks('s')).map((t) => t.endedAt)).toEqual([80 * DAY])
        expect((await store.listTicks('quiet')).map((t) => t.endedAt)).toEqual([3 * DAY])
        // with a failure cutoff as old as the others, the failed run goes too (kept-parent stays: its child)
        expect(
          (await store.pruneCandidates({ ...policy, failedEndedBefore: policy.endedBefore })).runs.count,
        ).toBe(1)
      })

      it('the latest materialization of each partition is kept, and the run that holds it', async () => {
        await using store = await open()
        await endedRun(store, 'p1', 'success', 1 * DAY, { materialize: [['a', '2026-01-01']] })
        await endedRun(store, 'p2', 'success', 2 * DAY, { materialize: [['a', '2026-01-02']] })
        await endedRun(store, 'newest', 'success', 90 * DAY)
        expect((await store.pruneCandidates(POLICY)).runs.count).toBe(0)
        await endedRun(store, 'p3', 'success', 3 * DAY, { materialize: [['a', '2026-01-01']] })
        await endedRun(store, 'newest-2', 'success', 91 * DAY)
        expect((await store.pruneCandidates(POLICY)).runs).toEqual({
          count: 1,
          oldest: 1 * DAY,
          newest: 1 * DAY,
        })
        expect(await pruneAll(store, POLICY, 100)).toEqual([
          { ...NOTHING, runs: 1, steps: 2, attempts: 1, events: 1, materializations: 1 },
        ])
        expect((await store.listRuns()).map((r) => r.id).sort()).toEqual(['newest', 'newest-2', 'p2', 'p3'])
      })

      it('the latest result of each check is kept, and the run that holds it; older results go with their run', async () => {
        await using store = await open()
        await runWithChecks(store, 'c1', [checkResult('c1', 'a', 'x'), checkResult('c1', 'a', 'y')], 1 * DAY)
        await runWithChecks(store, 'c2', [checkResult('c2', 'a', 'x')], 2 * DAY)
        await endedRun(store, 'newest', 'success', 90 * DAY)
        // c1 holds the latest `y`, c2 the latest `x`: both kept
        expect((await store.pruneCandidates(POLICY)).runs.count).toBe(0)
        await runWithChecks(store, 'c3', [checkResult('c3', 'a', 'y', { partitionKey: 'p' })], 3 * DAY)
        await runWithChecks(store, 'c4', [checkResult('c4', 'a', 'y')], 4 * DAY)
        await endedRun(store, 'newest-2', 'success', 91 * DAY)
        // c1 holds nothing latest now; c3 holds partition p's latest `y`
        expect((await store.pruneCandidates(POLICY)).runs).toEqual({
          count: 1,
          oldest: 1 * DAY,
          newest: 1 * DAY,
        })
        await pruneAll(store, POLICY, 100)
        expect((await store.listRuns()).map((r) => r.id).sort()).toEqual([
          'c2',
          'c3',
          'c4',
          'newest',
          'newest-2',
        ])
        expect(await store.checkResultsOfRun('c1')).toEqual([])
        expect((await store.latestCheckResults('a')).map((r) => [r.check, r.partitionKey, r.runId])).toEqual([
          ['x', null, 'c2'],
          ['y', null, 'c4'],
          ['y', 'p', 'c3'],
        ])
      })

      it('the run holding the newest event is kept, so event ids are never handed out twice', async () => {
        await using store = await open()
        await endedRun(store, 'only', 'success', 1 * DAY, { events: 3 })
        expect((await store.pruneCandidates(POLICY)).runs.count).toBe(0)
        expect(await pruneAll(store, POLICY, 10)).toEqual([])
        const before = await store.maxEventId()
        await store.createRun(newRun('next', { status: 'started', owner: { pid: 1, host: 'h' }, now: NOW }))
        await store.write({
          events: [{ type: 'log', runId: 'next', ts: NOW, step: null, level: 'info', message: 'new' }],
          steps: [],
          attempts: [],
          materializations: [],
        })
        expect(await pruneAll(store, POLICY, 10)).toEqual([
          { ...NOTHING, runs: 1, steps: 2, attempts: 1, events: 3 },
        ])
        await store.write({
          events: [{ type: 'log', runId: 'next', ts: NOW, step: null, level: 'info', message: 'newer' }],
          steps: [],
          attempts: [],
          materializations: [],
        })
        expect((await store.getEvents('next')).map((e) => e.id)).toEqual([before + 1, before + 2])
      })

      it('deletes in end order: a batch stops at the first run with events left', async () => {
        await using store = await open()
        await endedRun(store, 'first', 'success', 1 * DAY, { events: 3 })
        await endedRun(store, 'second', 'success', 2 * DAY, { events: 0 })
        await endedRun(store, 'newest', 'success', 90 * DAY)
        expect(await pruneAll(store, POLICY, 2)).toEqual([
          { ...NOTHING, events: 2 },
          { ...NOTHING, runs: 2, steps: 4, attempts: 2, events: 1 },
        ])
      })

      it('checks its rules again in every batch: a run retried between two batches stays, with what is left', async () => {
        await using store = await open()
        await endedRun(store, 'old', 'failure', 1 * DAY, { events: 4 })
        await endedRun(store, 'newest', 'success', 90 * DAY)
        const policy = { ...POLICY, failedEndedBefore: POLICY.endedBefore }
        expect(await store.pruneBatch(policy, 3)).toEqual({ ...NOTHING, events: 3 })
        expect((await store.requestRun(request('retry', { parentRunId: 'old' }))).outcome).toBe('created')
        expect(await store.pruneBatch(policy, 3)).toEqual(NOTHING)
        expect((await store.getRun('old'))?.status).toBe('failure')
        expect((await store.getEvents('old')).length).toBe(1)
        await expect(store.pruneBatch(policy, 0)).rejects.toThrow(/at least 1/)
      })
    })

    describe('views, settings, errors', () => {
      it("a sensor's read-only view has no writing method, not even through a cast", async () => {
        await using store = await open()
        const view = readOnlyView(store)
        expect(Object.keys(view).sort()).toEqual(
          [
            'countRuns',
            'dynamicPartitionKeys',
            'getBackfill',
            'listBackfills',
            'findRun',
            'getAttempts',
            'getPartitionStatus',
            'getEvents',
            'getInstigator',
            'getMaintenance',
            'getRun',
            'getSteps',
            'interruptedRuns',
            'latestMaterialization',
            'latestMaterializations',
            'latestCheckResults',
            'checkResultsOfRun',
            'automationEvaluations',
            'latestAutomationEvaluations',
            'listRuns',
            'listTicks',
            'materializationsForRun',
            'runMaterialization',
            'runsEndedAfter',
          ].sort(),
        )
        for (const write of [
          'createRun',
          'write',
          'abandonRun',
          'abandonRuns',
          'setMaintenanceOff',
          'requestRun',
          'commitAutomationTick',
          'setAutomationStatus',
          'close',
        ])
          expect((view as unknown as Record<string, unknown>)[write]).toBeUndefined()
        // @ts-expect-error: the type has no writing method either
        expect(() => view.abandonRun('x', 'failure', 'no', 1)).toThrow(TypeError)
        expect(Object.isFrozen(view)).toBe(true)
        await store.createRun(newRun('r'))
        expect((await view.getRun('r'))?.id).toBe('r')
      })

      it('keeps settings and the last backup', async () => {
        await using store = await open()
        expect(await store.getSetting('x')).toBeUndefined()
        await store.putSetting('x', '{"a":1}', 5)
        expect(await store.getSetting('x')).toEqual({ value: '{"a":1}', updatedAt: 5 })
        await store.recordBackup({ at: 7, ok: true, location: '/b', detail: 'ok' })
        expect(await store.lastBackup()).toEqual({ at: 7, ok: true, location: '/b', detail: 'ok' })
        await store.probeWrite(8)
      })

      it('a closed store says so; closing twice is fine', async () => {
        const store = await open()
        await store.close()
        await store.close()
        expect(store.isOpen).toBe(false)
        await expect(store.getRun('x')).rejects.toThrow(/is closed/)
      })

      itShared(
        'contention that outlasts the wait surfaces as a StoreBusyError, never as a driver code',
        async (location) => {
          if (!target.holdWriteLock || !target.openImpatient)
            throw new Error(
              'a shareable target says how to hold its write lock (holdWriteLock, openImpatient)',
            )
          const lock = await target.holdWriteLock(location)
          await using impatient = await target.openImpatient(location)
          try {
            const error = await impatient.probeWrite(1).then(
              () => undefined,
              (e: unknown) => e,
            )
            expect(errorCode(error)).toBe('store-busy')
            expect((error as Error).name).toBe('StoreBusyError')
            expect((error as Error).message).not.toMatch(/SQLITE_|ECONN/)
          } finally {
            await lock.release()
          }
          await impatient.probeWrite(2)
        },
      )
    })

    describe('automation', () => {
      const cursor = (tick: number, extra: Partial<AutomationCursor> = {}): AutomationCursor => ({
        tick,
        eventId: tick * 10,
        checkId: tick * 100,
        evaluatedAt: 1_000 + tick,
        ...extra,
      })
      const evaluation = (asset: string, tickNumber: number, requests: number[] = []) => ({
        tick: tickNumber,
        asset,
        evaluatedAt: 1_000 + tickNumber,
        trueCount: requests.length > 0 ? 1 : 0,
        total: 1,
        tree: JSON.stringify({ label: 'missing', value: requests.length > 0 }),
        requests,
      })
      /** A tick whose states() records each asset's outcomes (and how often it was called). */
      const automationTick = (
        expectedTick: number | null,
        next: AutomationCursor,
        extra: Partial<AutomationTick> = {},
      ): AutomationTick & { seen: RequestOutcome[][] } => {
        const seen: RequestOutcome[][] = []
        return {
          expectedTick,
          cursor: next,
          requests: [],
          evaluations: [],
          states(outcomes) {
            seen.push([...outcomes])
            return [
              {
                asset: 'a',
                state: JSON.stringify({ tick: next.tick, outcomes: outcomes.map((o) => o.outcome) }),
              },
            ]
          },
          now: 2_000 + next.tick,
          seen,
          ...extra,
        }
      }
      const auto = (id: string, extra: Partial<RunRequest> = {}) =>
        request(id, { origin: 'automation', plan: ['a'], selection: 'a', ...extra })

      it('commits a tick compare-and-set on its cursor: requests, evaluations, states, cursor', async () => {
        await using store = await open()
        expect(await store.automationState()).toEqual({ cursor: null, status: 'default', assets: [] })
        const first = automationTick(null, cursor(1), {
          requests: [auto('x1', { runKey: 'a:1' }), auto('x2')],
          evaluations: [evaluation('a', 1, [0]), evaluation('b', 1, [1]), evaluation('c', 1)],
        })
        const committed = await store.commitAutomationTick(first)
        expect(committed).toEqual({
          committed: true,
          outcomes: [
            { outcome: 'created', runId: 'x1' },
            { outcome: 'created', runId: 'x2' },
          ],
          evaluationIds: [expect.any(Number), expect.any(Number), expect.any(Number)],
        })
        if (!committed.committed) throw new Error('not committed')
        expect(first.seen).toEqual([committed.outcomes])
        expect((await store.getRun('x1'))?.status).toBe('queued')
        const state = await store.automationState()
        expect(state).toEqual({
          cursor: cursor(1),
          status: 'default',
          assets: [
            {
              asset: 'a',
              status: 'default',
              state: JSON.stringify({ tick: 1, outcomes: ['created', 'created'] }),
              tick: 1,
              updatedAt: 2_001,
            },
          ],
        })
        const [ea] = await store.automationEvaluations('a')
        expect(ea).toEqual({
          id: committed.evaluationIds[0],
          tick: 1,
          asset: 'a',
          evaluatedAt: 1_001,
          trueCount: 1,
          total: 1,
          tree: JSON.stringify({ label: 'missing', value: true }),
          runIds: ['x1'],
        })
        expect((await store.automationEvaluations('b'))[0]?.runIds).toEqual(['x2'])
        expect((await store.automationEvaluations('c'))[0]?.runIds).toEqual([])

        // a second evaluator still at no tick (or at an older one) commits nothing at all
        for (const expected of [null, 0, 2]) {
          const stale = automationTick(expected, cursor(2), {
            requests: [auto('y1')],
            evaluations: [evaluation('a', 2, [0])],
          })
          expect(await store.commitAutomationTick(stale)).toEqual({ committed: false, cursor: cursor(1) })
          expect(stale.seen).toEqual([])
        }
        expect(await store.getRun('y1')).toBeUndefined()
        expect(await store.automationEvaluations('a')).toHaveLength(1)
        expect(await store.automationState()).toEqual(state)

        // the next tick: the same run key is the first run (its id kept on the evaluation)
        const second = automationTick(1, cursor(2), {
          requests: [auto('x3', { runKey: 'a:1' })],
          evaluations: [evaluation('a', 2, [0])],
        })
        const again = await store.commitAutomationTick(second)
        expect(again).toMatchObject({ committed: true, outcomes: [{ outcome: 'duplicate', runId: 'x1' }] })
        expect(await store.getRun('x3')).toBeUndefined()
        expect((await store.automationEvaluations('a')).map((e) => [e.tick, e.runIds])).toEqual([
          [2, ['x1']],
          [1, ['x1']],
        ])
        expect((await store.automationState()).cursor).toEqual(cursor(2))
        expect((await store.automationState()).assets[0]).toMatchObject({ asset: 'a', tick: 2 })
      })

      it('a request in maintenance mode is parked, one a guard skips is skipped; states() sees both', async () => {
        await using store = await open()
        const guard = { key: 'auto:a', concurrency: 1, onConflict: 'skip' as const }
        expect(await store.requestRun(auto('busy', { guard }))).toEqual({ outcome: 'created', runId: 'busy' })
        expect(await store.claimQueuedRun('busy', { pid: 1, host: 'h' }, 1_500)).toBe(true)
        const skipping = automationTick(null, cursor(1), {
          requests: [auto('s1', { guard })],
          evaluations: [evaluation('a', 1, [0])],
        })
        const skipped = await store.commitAutomationTick(skipping)
        expect(skipped).toMatchObject({
          committed: true,
          outcomes: [{ outcome: 'skipped', blockingRunId: 'busy' }],
        })
        expect(skipping.seen).toEqual([[expect.objectContaining({ outcome: 'skipped' })]])
        expect(await store.getRun('s1')).toBeUndefined()
        expect((await store.automationEvaluations('a'))[0]?.runIds).toEqual([])
        expect((await store.automationState()).assets[0]?.state).toBe(
          JSON.stringify({ tick: 1, outcomes: ['skipped'] }),
        )

        await store.setMaintenanceOn({ reason: 'deploy', by: 'ops@h', since: 1, drainTimeoutMs: 0 })
        const parking = automationTick(1, cursor(2), {
          requests: [auto('m1', { runKey: 'a:2' })],
          evaluations: [evaluation('a', 2, [0])],
        })
        const parked = await store.commitAutomationTick(parking)
        expect(parked).toMatchObject({ committed: true, outcomes: [{ outcome: 'parked' }] })
        expect(await store.getRun('m1')).toBeUndefined()
        expect(await store.countParked()).toBe(1)
        expect((await store.automationEvaluations('a'))[0]?.runIds).toEqual([])
        expect((await store.automationState()).cursor?.tick).toBe(2)
      })

      itShared('of two evaluators committing the same tick at once, one commits', async (location) => {
        await using one = await target.openAgain!(location)
        await using two = await target.openAgain!(location)
        for (let t = 1; t <= 5; t++) {
          const expected = t === 1 ? null : t - 1
          const results = await Promise.all(
            [one, two].map((store, i) =>
              store.commitAutomationTick(
                automationTick(expected, cursor(t, { eventId: i }), {
                  requests: [auto(`t${t}-${i}`)],
                  evaluations: [evaluation('a', t, [0])],
                }),
              ),
            ),
          )
          expect(results.filter((r) => r.committed)).toHaveLength(1)
          const lost = results.find((r) => !r.committed)
          expect(lost).toEqual({ committed: false, cursor: (await one.automationState()).cursor })
          expect((await one.listRuns()).filter((r) => r.id.startsWith(`t${t}-`))).toHaveLength(1)
        }
        expect(await one.automationEvaluations('a')).toHaveLength(5)
        expect((await two.automationState()).cursor?.tick).toBe(5)
      })

      it('a tick whose states() throws writes nothing', async () => {
        await using store = await open()
        await store.commitAutomationTick(automationTick(null, cursor(1)))
        const before = await store.automationState()
        const failing = automationTick(1, cursor(2), {
          requests: [auto('f1', { runKey: 'k' })],
          evaluations: [evaluation('a', 2, [0])],
          states() {
            throw new Error('state does not fold')
          },
        })
        await expect(store.commitAutomationTick(failing)).rejects.toThrow('state does not fold')
        expect(await store.getRun('f1')).toBeUndefined()
        expect(await store.automationEvaluations('a')).toEqual([])
        expect(await store.automationState()).toEqual(before)
        // the run key is still free: the same tick again commits
        const retried = await store.commitAutomationTick(
          automationTick(1, cursor(2), { requests: [auto('f2', { runKey: 'k' })] }),
        )
        expect(retried).toMatchObject({ committed: true, outcomes: [{ outcome: 'created', runId: 'f2' }] })
      })

      it('keeps the latest 50 evaluations per asset; the newest of each asset in one read', async () => {
        await using store = await open()
        let expected: number | null = null
        for (let t = 1; t <= 53; t++) {
          const evaluations = [evaluation('a', t)]
          if (t % 10 === 0) evaluations.push(evaluation('b', t))
          await store.commitAutomationTick(automationTick(expected, cursor(t), { evaluations }))
          expected = t
        }
        const kept = await store.automationEvaluations('a', 100)
        expect(kept).toHaveLength(50)
        expect(kept[0]?.tick).toBe(53)
        expect(kept.at(-1)?.tick).toBe(4)
        expect((await store.automationEvaluations('a')).map((e) => e.tick)).toEqual(
          Array.from({ length: 20 }, (_, i) => 53 - i),
        )
        expect((await store.automationEvaluations('b', 3)).map((e) => e.tick)).toEqual([50, 40, 30])
        expect((await store.latestAutomationEvaluations()).map((e) => [e.asset, e.tick])).toEqual([
          ['a', 53],
          ['b', 50],
        ])
        expect(await readOnlyView(store).latestAutomationEvaluations()).toHaveLength(2)
        expect(await store.automationEvaluations('nothing')).toEqual([])
      })

      it('switches automation for one asset and for all, keeping the state', async () => {
        await using store = await open()
        await store.setAutomationStatus('b', 'off', 5)
        await store.setAutomationStatus(null, 'off', 6)
        expect(await store.automationSwitches()).toEqual({ status: 'off', assets: { b: 'off' } })
        expect(await store.automationState()).toEqual({
          cursor: null,
          status: 'off',
          assets: [{ asset: 'b', status: 'off', state: null, tick: 0, updatedAt: 5 }],
        })
        // a global row with no cursor yet: the first tick still expects none
        expect(await store.commitAutomationTick(automationTick(null, cursor(1)))).toMatchObject({
          committed: true,
        })
        await store.setAutomationStatus('a', 'on', 7)
        await store.setAutomationStatus(null, 'default', 8)
        await store.setAutomationStatus('b', 'default', 9)
        expect(await store.automationSwitches()).toEqual({ status: 'default', assets: { a: 'on' } })
        const state = await store.automationState()
        expect(state.cursor).toEqual(cursor(1))
        expect(state.status).toBe('default')
        expect(state.assets).toEqual([
          {
            asset: 'a',
            status: 'on',
            state: JSON.stringify({ tick: 1, outcomes: [] }),
            tick: 1,
            updatedAt: 7,
          },
          { asset: 'b', status: 'default', state: null, tick: 0, updatedAt: 9 },
        ])
      })

      it('reads check results after an id, in id order, at most a limit', async () => {
        await using store = await open()
        await runWithChecks(store, 'r1', [checkResult('r1', 'a', 'c1'), checkResult('r1', 'b', 'c2')])
        await runWithChecks(store, 'r2', [checkResult('r2', 'a', 'c1', { passed: false })])
        const all = await store.checkResultsAfter(0, 100)
        expect(all.map((c) => [c.runId, c.asset, c.check, c.passed])).toEqual([
          ['r1', 'a', 'c1', true],
          ['r1', 'b', 'c2', true],
          ['r2', 'a', 'c1', false],
        ])
        expect(all).toEqual([
          ...(await store.checkResultsOfRun('r1')),
          ...(await store.checkResultsOfRun('r2')),
        ])
        expect(await store.checkResultsAfter(all[0]!.id, 1)).toEqual([all[1]])
        expect(await store.checkResultsAfter(all[2]!.id, 10)).toEqual([])
      })

      it('lists the unfinished steps of queued and started runs; partition events of every asset', async () => {
        await using store = await open()
        const owner = { pid: 1, host: 'h' }
        const step = (runId: string, key: string, status: 'succeeded' | 'failed' | 'running') => ({
          runId,
          key,
          status,
          attempts: 1,
          startedAt: 1,
          endedAt: status === 'running' ? null : 2,
          error: null,
          reason: null,
        })
        await store.createRun(newRun('q1', { plan: ['a'], partitionKey: 'p1' }))
        await store.createRun(newRun('s1', { plan: ['a', 'b', 'c'], status: 'started', owner }))
        await store.createRun(newRun('done', { plan: ['a'], status: 'started', owner }))
        const before = await store.maxEventId()
        await store.write({
          events: [
            {
              type: 'asset:materialized',
              runId: 's1',
              ts: 2,
              step: 'a',
              asset: 'a',
              attempt: 1,
              metadata: {},
            },
            { type: 'log', runId: 's1', ts: 2, step: 'a', level: 'info', message: 'not a partition event' },
            {
              type: 'step:failure',
              runId: 'done',
              ts: 3,
              step: 'a',
              attempt: 1,
              durationMs: 1,
              error: { name: 'Error', message: 'x' },
              retriable: false,
            },
            {
              type: 'asset:materialized',
              runId: 's1',
              ts: 4,
              step: 'b',
              asset: 'b',
              attempt: 1,
              metadata: {},
            },
          ],
          steps: [step('s1', 'a', 'succeeded'), step('s1', 'b', 'running'), step('done', 'a', 'running')],
          attempts: [],
          materializations: [],
        })
        await store.finishRun('done', 'failure', 5)
        expect(
          (await store.inFlightSteps()).sort((x, y) =>
            `${x.runId}/${x.asset}`.localeCompare(`${y.runId}/${y.asset}`),
          ),
        ).toEqual([
          { runId: 'q1', asset: 'a', partitionKey: 'p1' },
          { runId: 's1', asset: 'b', partitionKey: null },
          { runId: 's1', asset: 'c', partitionKey: null },
        ])
        const events = await store.partitionEvents(before, null, 100)
        expect(events.map((e) => [e.asset, e.kind, e.runId])).toEqual([
          ['a', 'materialized', 's1'],
          ['a', 'failed', 'done'],
          ['b', 'materialized', 's1'],
        ])
        expect(await store.partitionEvents(before, null, 2)).toEqual(events.slice(0, 2))
        expect(await store.partitionEvents(events[1]!.id, null, 100)).toEqual(events.slice(2))
        expect(await store.partitionEvents(before, ['b'], 100)).toEqual(events.slice(2))
      })
    })

    describe('moving history', () => {
      it('exports every table and imports it into an empty store, ids, cursors, keys and the gate kept', async () => {
        await using source = await open()
        const owner = { pid: 1, host: 'h' }
        await source.createRun(newRun('r1', { status: 'started', owner, origin: 'sensor:s', runKey: 'k1' }))
        await source.write({
          events: [
            { type: 'step:start', runId: 'r1', ts: 2, step: 'a', attempt: 1, maxAttempts: 1 },
            { type: 'log', runId: 'r1', ts: 3, step: 'a', level: 'info', message: 'hello' },
          ],
          steps: [
            {
              runId: 'r1',
              key: 'a',
              status: 'succeeded',
              attempts: 1,
              startedAt: 2,
              endedAt: 3,
              error: null,
              reason: null,
            },
          ],
          attempts: [
            {
              runId: 'r1',
              step: 'a',
              attempt: 1,
              status: 'succeeded',
              startedAt: 2,
              endedAt: 3,
              error: null,
            },
          ],
          materializations: [
            { asset: 'a', runId: 'r1', attempt: 1, ts: 3, metadata: { rows: 7 }, partitionKey: null },
          ],
          checks: [
            checkResult('r1', 'a', 'not_empty', { passed: false, metadata: { rows: 7 } }),
            checkResult('r1', 'a', 'fresh', { severity: 'warn', blocking: false, partitionKey: 'p1' }),
          ],
        })
        await source.finishRun('r1', 'failure', 4)
        await source.createRun(newRun('r2', { parentRunId: 'r1', holds: [{ key: 'h', limit: 1 }] }))
        await source.setInstigatorStatus('s', 'sensor', 'on', 5)
        await source.commitTicks([tick('s', { cursor: 'c-9' })])
        await source.putSetting('x', '"y"', 6)
        await source.setMaintenanceOn({ reason: 'move', by: 't', since: 7, drainTimeoutMs: 0 })
        await source.requestRun(request('parked', { origin: 'sensor:p', runKey: 'pk', partitionKey: 'p1' }))
        await source.setAutomationStatus('b', 'off', 8)
        await source.commitAutomationTick({
          expectedTick: null,
          cursor: { tick: 3, eventId: 2, checkId: 1, evaluatedAt: 8 },
          requests: [],
          evaluations: [
            { tick: 3, asset: 'a', evaluatedAt: 8, trueCount: 0, total: 1, tree: '{}', requests: [] },
          ],
          states: () => [{ asset: 'a', state: '{"s":1}' }],
          now: 9,
        })

        await using target = await open()
        const counts = await target.importHistory(source.exportHistory(1))
        expect(counts).toMatchObject({
          runs: 2,
          steps: 4,
          attempts: 1,
          events: 2,
          materializations: 1,
          check_results: 2,
          ticks: 1,
          automation: 3,
          automation_evaluations: 1,
        })
        expect((await target.listRuns()).map((r) => [r.id, r.status, r.parentRunId])).toEqual([
          ['r2', 'queued', 'r1'],
          ['r1', 'failure', null],
        ])
        expect(await target.getEvents('r1')).toEqual(await source.getEvents('r1'))
        expect(await target.getSteps('r1')).toEqual(await source.getSteps('r1'))
        expect(await target.getAttempts('r1')).toEqual(await source.getAttempts('r1'))
        expect(await target.latestMaterializations()).toEqual(await source.latestMaterializations())
        expect(await target.checkResultsOfRun('r1')).toEqual(await source.checkResultsOfRun('r1'))
        expect(await target.latestCheckResults()).toEqual(await source.latestCheckResults())
        expect(await target.runHolds('r2')).toEqual([{ key: 'h', limit: 1 }])
        expect(await target.listInstigators()).toEqual(await source.listInstigators())
        expect(await target.listTicks('s')).toEqual(await source.listTicks('s'))
        expect(await target.getSetting('x')).toEqual({ value: '"y"', updatedAt: 6 })
        expect(await target.getMaintenance()).toEqual(await source.getMaintenance())
        expect(await target.listParked()).toEqual(await source.listParked())
        expect((await target.listParked()).map((p) => p.partitionKey)).toEqual(['p1'])
        expect(await target.automationState()).toEqual(await source.automationState())
        expect((await target.automationState()).cursor?.tick).toBe(3)
        expect(await target.latestAutomationEvaluations()).toEqual(await source.latestAutomationEvaluations())
        // the copy goes on where the source stopped: keys still used, new ids after the copied ones
        await target.setMaintenanceOff()
        expect(await target.createRun(newRun('again', { origin: 'sensor:s', runKey: 'k1' }))).toEqual({
          created: false,
          existingRunId: 'r1',
        })
        await target.createRun(newRun('r3', { status: 'started', owner }))
        await target.write({
          events: [{ type: 'log', runId: 'r3', ts: 9, step: null, level: 'info', message: 'new' }],
          steps: [],
          attempts: [],
          materializations: [],
        })
        const [fresh] = await target.getEvents('r3')
        expect(fresh!.id).toBeGreaterThan(Math.max(...(await source.getEvents('r1')).map((e) => e.id)))
        await target.write({
          events: [],
          steps: [],
          attempts: [],
          materializations: [],
          checks: [checkResult('r3', 'a', 'not_empty')],
        })
        const [freshCheck] = await target.checkResultsOfRun('r3')
        expect(freshCheck!.id).toBeGreaterThan(
          Math.max(...(await source.checkResultsOfRun('r1')).map((c) => c.id)),
        )
        expect((await target.queuedRuns()).map((r) => r.id)).toEqual(['r2'])
        const next = await target.commitAutomationTick({
          expectedTick: 3,
          cursor: { tick: 4, eventId: 3, checkId: 1, evaluatedAt: 10 },
          requests: [],
          evaluations: [
            { tick: 4, asset: 'a', evaluatedAt: 10, trueCount: 0, total: 1, tree: '{}', requests: [] },
          ],
          states: () => [],
          now: 10,
        })
        expect(next.committed && next.evaluationIds[0]).toBeGreaterThan(
          (await source.latestAutomationEvaluations())[0]!.id,
        )
        // into a store that has runs: refused, nothing written
        const again = await target.importHistory(source.exportHistory()).then(
          () => undefined,
          (e: unknown) => e as Error,
        )
        expect(errorCode(again)).toBe('store')
        expect(again?.message).toMatch(/already holds 3 run\(s\); copy history only into an empty store/)
        expect(await target.countEvents()).toBe(3)
      })
    })

    if (target.olderSchemas) {
      const older = target.olderSchemas
      describe('migrations', () => {
        for (const version of older.versions) {
          it(`migrates a store of schema ${version} forward, keeping its runs`, async () => {
            const location = await older.create(version)
            await using store = await older.open(location)
            expect(await store.getRun('r1')).toMatchObject({ id: 'r1', status: 'success', plan: ['a'] })
            expect(await store.runHolds('r1')).toEqual([])
            // and it works as a current store, check results included
            expect((await store.createRun(newRun('r2'))).created).toBe(true)
            const checks = [checkResult('r2', 'a', 'not_empty')]
            await store.write({ events: [], steps: [], attempts: [], materializations: [], checks })
            expect(await store.latestCheckResults('a')).toMatchObject(checks)
            // parked requests keep their partition (SQLite 9, Postgres 4)
            await store.setMaintenanceOn({ reason: 'm', by: 'b', since: 1, drainTimeoutMs: 0 })
            await store.requestRun(request('r3', { partitionKey: 'p1' }))
            expect((await store.listParked()).map((p) => p.partitionKey)).toEqual(['p1'])
          })
        }
      })
    }
  })
}
