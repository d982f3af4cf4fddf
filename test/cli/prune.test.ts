import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore } from '../../core/store/open.js'
import type { RunStore } from '../../core/store/run-store.js'
import { CLI, configProject, run } from '../helpers.js'

const DAY = 86_400_000

/** Two assets, and a `promote` block by its tags: its alias is `data/current.json`, written by hand here. */
const CONFIG = `
import { asset, defineConfig } from 'refresh'
export default defineConfig({
  assets: [
    asset({ key: 'copy', materialize: () => ({ rows: 1 }) }),
    asset({ key: 'promote', deps: ['copy'], tags: { block: 'promote', dataDir: 'data' }, materialize: () => ({}) }),
  ],
})
`

/** A run of `copy` that ended at `endedAt` on another host: one attempt, `events` log lines. */
async function endedRun(
  store: RunStore,
  id: string,
  status: 'success' | 'failure',
  endedAt: number,
  options: { events?: number; materializes?: boolean } = {},
): Promise<void> {
  await store.createRun({
    id,
    selection: '*',
    plan: ['copy', 'promote'],
    config: {},
    status: 'started',
    owner: { pid: 1, host: 'elsewhere' },
    now: endedAt - 1_000,
  })
  await store.write({
    events: Array.from({ length: options.events ?? 1 }, (_, i) => ({
      type: 'log' as const,
      runId: id,
      ts: endedAt - 500,
      step: null,
      level: 'info' as const,
      message: `line ${i}`,
    })),
    steps: [
      {
        runId: id,
        key: 'copy',
        status: 'succeeded',
        attempts: 1,
        startedAt: endedAt - 900,
        endedAt: endedAt - 100,
        error: null,
        reason: null,
      },
    ],
    attempts: [
      {
        runId: id,
        step: 'copy',
        attempt: 1,
        status: 'succeeded',
        startedAt: endedAt - 900,
        endedAt: endedAt - 100,
        error: null,
      },
    ],
    materializations: options.materializes
      ? [
          {
            asset: 'copy',
            runId: id,
            attempt: 1,
            ts: endedAt - 100,
            metadata: { rows: 1 },
            partitionKey: null,
          },
        ]
      : [],
  })
  await store.finishRun(id, status, endedAt)
}

describe('refresh prune', () => {
  it('prints what it would delete and deletes nothing; --yes deletes it; what is kept still reads', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir })
    const old = Date.now() - 40 * DAY
    const dbFile = join(dir, '.refresh/refresh.db')
    {
      await using store = await openStore(dbFile)
      // older than 30 days: one that goes; a failure (kept until 90 days); two the alias names
      await endedRun(store, 'old-success-run', 'success', old, { events: 3, materializes: true })
      await endedRun(store, 'old-failed-run', 'failure', old + 1)
      await endedRun(store, 'old-promoted-run', 'success', old + 2)
      await endedRun(store, 'old-indexing-run', 'success', old + 3)
    }
    // a run of today: the latest materializations are its own
    const first = await cli('run', '--plain')
    expect(first.code, first.stderr).toBe(0)
    const recent = /run (\S+) success/.exec(first.stdout)![1]!
    mkdirSync(join(dir, 'data'))
    const entry = { snapshot: 'snap-x', promotedAt: new Date(old).toISOString() }
    writeFileSync(
      join(dir, 'data/current.json'),
      JSON.stringify({
        version: 1,
        current: { ...entry, runId: recent, index: 'idx-old-indexing-run' },
        previous: [{ ...entry, runId: 'old-promoted-run', index: 'hand-made' }],
      }),
    )

    const dry = await cli('prune', '--older-than', '30d', '--keep-failed', '90d')
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).toContain(
      'would delete, older than 30d (failed runs: 90d) (keeping the 3 run(s) the promoted alias refers to):',
    )
    const day = new Date(old).toISOString().slice(0, 10)
    expect(dry.stdout).toMatch(new RegExp(`^ {2}runs +1 +${day} \\S+ +${day} \\S+$`, 'm'))
    expect(dry.stdout).toMatch(/^ {2}steps +2 /m)
    expect(dry.stdout).toMatch(/^ {2}attempts +1 /m)
    expect(dry.stdout).toMatch(/^ {2}events +3 /m)
    expect(dry.stdout).toMatch(/^ {2}materializations +1 /m)
    expect(dry.stdout).not.toMatch(/^ {2}ticks/m)
    expect(dry.stdout).toContain('nothing was deleted; add --yes to delete them')
    const json = JSON.parse((await cli('prune', '--older-than', '30d', '--json')).stdout)
    expect(json).toMatchObject({
      olderThan: '30d',
      keepFailed: '30d',
      dryRun: true,
      wouldDelete: { runs: { count: 2 }, events: { count: 4 }, ticks: { count: 0 } },
    })
    expect([...json.keptForAlias].sort()).toEqual([recent, 'old-indexing-run', 'old-promoted-run'].sort())
    {
      await using store = await openStore(dbFile)
      expect(await store.getRun('old-success-run')).toBeDefined()
      expect(await store.countEvents('old-success-run')).toBe(3)
    }

    const yes = await cli('prune', '--older-than', '30d', '--keep-failed', '90d', '--yes')
    expect(yes.code, yes.stderr).toBe(0)
    expect(yes.stdout).toMatch(
      /^deleted 1 run, 2 steps, 1 attempt, 3 events, 1 materialization older than 30d \(failed runs: 90d\) in \d+ ms \(1 batch; the longest took \d+ ms\)$/m,
    )
    {
      await using store = await openStore(dbFile, { readonly: true })
      expect(await store.getRun('old-success-run')).toBeUndefined()
      expect(await store.countEvents('old-success-run')).toBe(0)
      expect((await store.listRuns()).map((r) => r.id).sort()).toEqual(
        [recent, 'old-failed-run', 'old-indexing-run', 'old-promoted-run'].sort(),
      )
      expect((await store.latestMaterialization('copy'))?.runId).toBe(recent)
      expect(JSON.parse((await store.getSetting('last_prune'))!.value)).toMatchObject({
        olderThan: '30d',
        keepFailed: '90d',
        deleted: { runs: 1, events: 3 },
      })
    }

    // status says when the store was last pruned and what went
    const status = await cli('status')
    expect(status.stdout).toMatch(
      /^last prune: \S+ \S+ by refresh prune \(\S+\) \(older than 30d, failed 90d\): 1 run\(s\), 3 event\(s\), 0 tick\(s\) deleted in /m,
    )
    // the pruned store goes on working: listed, shown, run again
    const runs = await cli('runs')
    expect(runs.code, runs.stderr).toBe(0)
    expect(runs.stdout).toContain('old-promoted-run')
    expect(runs.stdout).not.toContain('old-success-run')
    const show = await cli('show', 'old-promoted-run')
    expect(show.code, show.stderr).toBe(0)
    expect(show.stdout).toMatch(/^run old-promoted-run · success · \*/m)
    expect(show.stdout).toMatch(/copy/)
    const gone = await cli('show', 'old-success-run')
    expect(gone.code).toBe(2)
    expect(gone.stderr).toContain('no run `old-success-run`')
    expect((await cli('run', '--plain')).code).toBe(0)
    const again = await cli('prune', '--older-than', '30d', '--keep-failed', '90d', '--yes')
    expect(again.stdout).toBe(
      'nothing to prune: no finished run or tick older than 30d (failed runs: 90d) that is not still needed\n',
    )
    // without --keep-failed the old failure goes too
    const failed = await cli('prune', '--older-than', '30d', '--yes')
    expect(failed.stdout).toMatch(/^deleted 1 run, 2 steps, 1 attempt, 1 event older than 30d in /m)
    expect(JSON.parse((await cli('prune', '--older-than', '30d', '--yes', '--json')).stdout)).toMatchObject({
      dryRun: false,
      deleted: { runs: 0, steps: 0, attempts: 0, events: 0, materializations: 0, ticks: 0 },
      batches: 0,
    })
  })

  it('refuses bad durations with exit 2, naming the fix, before touching any store', async () => {
    const dir = configProject(CONFIG)
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir })
    for (const [args, message] of [
      [['--older-than', '30'], '--older-than 30: expected a duration like 30d, 12h or 90m'],
      [['--older-than', '0d'], '--older-than 0d: expected a duration like 30d, 12h or 90m'],
      [['--older-than', '2w'], '--older-than 2w: expected a duration like 30d, 12h or 90m'],
      [['--older-than', '30d', '--keep-failed', '90 days'], '--keep-failed 90 days: expected a duration'],
      [
        ['--older-than', '30d', '--keep-failed', '7d'],
        '--keep-failed 7d is shorter than --older-than 30d: failed runs are kept at least as long as the others; give --keep-failed 30d or more, or leave it out.',
      ],
      [[], 'refresh prune needs an age: give --older-than (like --older-than 30d)'],
    ] as const) {
      const r = await cli('prune', ...args, '--yes')
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toContain(message)
      expect(r.stderr).not.toMatch(/\n\s+at /)
      expect(r.stdout).toBe('')
    }
    // no store was made for a refused prune, and a prune before any run has nothing to do
    const none = await cli('prune', '--older-than', '12h', '--yes')
    expect(none.code).toBe(0)
    expect(none.stdout).toMatch(/^nothing to prune: there is no store at .*refresh\.db yet$/m)
  })

  it("takes the config's retention when no --older-than is given; a bad one is refused when the config loads", async () => {
    const good = configProject(
      CONFIG.replace('assets: [', "retention: { olderThan: '30d', keepFailed: '90d' },\n  assets: ["),
    )
    expect((await run([CLI, 'run', '--plain'], { cwd: good })).code).toBe(0)
    const dry = await run([CLI, 'prune'], { cwd: good })
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).toBe(
      'nothing to prune: no finished run or tick older than 30d (failed runs: 90d) that is not still needed\n',
    )
    const shorter = await run([CLI, 'prune', '--keep-failed', '10d'], { cwd: good })
    expect(shorter.code).toBe(2)
    expect(shorter.stderr).toContain('--keep-failed 10d is shorter than retention.olderThan 30d')
    for (const [retention, message] of [
      ["{ olderThan: '30 days' }", 'retention.olderThan: expected a duration like 30d, 12h or 90m'],
      ["{ olderThan: '30d', keepFailed: '7d' }", 'retention.keepFailed: 7d is shorter than olderThan (30d)'],
      ["{ olderThan: '30d', keep: '90d' }", 'retention'],
    ]) {
      const bad = configProject(CONFIG.replace('assets: [', `retention: ${retention},\n  assets: [`))
      const r = await run([CLI, 'prune'], { cwd: bad })
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain('refresh.config.ts is invalid: ')
      expect(r.stderr).toContain(message)
    }
  })
})
