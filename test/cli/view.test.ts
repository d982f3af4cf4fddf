import { render } from 'ink-testing-library'
import { createElement } from 'react'
import { describe, expect, it, vi } from 'vitest'
import { shortValue } from '../../cli/format.js'
import { liveRows, RunView } from '../../cli/view/run-view.js'
import { initialViewState, reduce, type ViewState } from '../../cli/view/state.js'
import { stateText, summaryLines } from '../../cli/view/text.js'
import type { RunEvent } from '../../core/events.js'

const runId = '01m83v10zz4pxmqvqy'
const T0 = 1_700_000_000_000

type Body = RunEvent extends infer E ? (E extends RunEvent ? Omit<E, 'runId' | 'ts'> : never) : never

/** Events as the executor emits them, `at` ms after the run started. */
function events(...list: Array<[number, Body]>): RunEvent[] {
  return list.map(([at, body]) => ({ ...body, runId, ts: T0 + at }) as RunEvent)
}

function stateOf(list: RunEvent[]): ViewState {
  return list.reduce(reduce, initialViewState)
}

const start = events([
  0,
  {
    type: 'run:start',
    selection: '*',
    steps: ['catalog', 'copy', 'clean', 'index'],
    reused: {},
    parentRunId: null,
    concurrency: 4,
  },
])

const running = [
  ...start,
  ...events(
    [1, { type: 'step:start', step: 'catalog', attempt: 1, maxAttempts: 1 }],
    [900, { type: 'step:success', step: 'catalog', attempt: 1, durationMs: 899, metadata: { rows: 2000 } }],
    [901, { type: 'step:start', step: 'copy', attempt: 1, maxAttempts: 3 }],
    [910, { type: 'log', step: 'copy', level: 'info', message: 'copying 2000 rows\nsecond line' }],
    [1901, { type: 'step:progress', step: 'copy', done: 500, total: 2000 }],
  ),
]

// colors on, as on a terminal (chalk reads this once, when ink loads): NO_COLOR must turn them off
vi.hoisted(() => {
  process.env.FORCE_COLOR = '1'
})

/** The frame as ink draws it, ANSI codes included. */
function rawFrame(
  state: ViewState,
  now: number,
  props: { maxRows?: number; columns?: number; color?: boolean } = {},
) {
  const view = render(createElement(RunView, { state, now, ...props }))
  const text = view.lastFrame() ?? ''
  view.unmount()
  return text
}

/** The frame as plain text (no colors). */
function frame(state: ViewState, now: number, maxRows?: number, columns?: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colors
  return rawFrame(state, now, { maxRows, columns }).replace(/\u001b\[[0-9;]*m/g, '')
}

describe('view state (reducer)', () => {
  it('keeps every step in plan order, finished ones in finish order', () => {
    const state = stateOf(running)
    expect(state.steps.map((s) => s.key)).toEqual(['catalog', 'copy', 'clean', 'index'])
    expect(state.finished).toEqual(['catalog'])
    expect(state.steps[1]!.phase).toEqual({
      status: 'running',
      attempt: 1,
      maxAttempts: 3,
      attemptStartedAt: T0 + 901,
    })
    expect(state.steps[1]!.lastLog).toBe('copying 2000 rows')
    expect(state.steps[1]!.progress).toEqual({ done: 500, total: 2000, rate: 500 })
  })

  it('is pure: the same events give equal states, and the input state is not changed', () => {
    const a = stateOf(running)
    const snapshot = structuredClone(a)
    const b = reduce(a, events([2000, { type: 'step:progress', step: 'copy', done: 600, total: 2000 }])[0]!)
    expect(a).toEqual(snapshot)
    expect(b).not.toBe(a)
    expect(stateOf(running)).toEqual(a)
  })

  it('counts a retry down from the event time, not from when it is drawn', () => {
    const state = stateOf([
      ...running,
      ...events([
        2000,
        {
          type: 'step:retry',
          step: 'copy',
          attempt: 1,
          nextAttempt: 2,
          maxAttempts: 3,
          delayMs: 3000,
          error: { name: 'Error', message: 'connection reset\nat socket' },
        },
      ]),
    ])
    const copy = state.steps[1]!
    expect(stateText(copy, T0 + 2000)).toBe('retrying in 3 s (attempt 2/3)')
    expect(stateText(copy, T0 + 3500)).toBe('retrying in 2 s (attempt 2/3)')
    expect(stateText(copy, T0 + 9000)).toBe('retrying in 0 s (attempt 2/3)')
  })
})

describe('run view (ink)', () => {
  it('running: a row per step with state, progress bar, rate, elapsed and the latest log line', () => {
    const text = frame(stateOf(running), T0 + 1901)
    expect(text).toContain(`run ${runId} · 4 steps (*)`)
    expect(text).toMatch(/✓ catalog\s+899 ms succeeded\s+rows=2000/)
    expect(text).toMatch(
      /● copy\s+1\.00 s running \(attempt 1\/3\) █{4}░{12} 500\/2000 500\/s\s+copying 2000 rows/,
    )
    expect(text).toMatch(/· clean\s+waiting/)
    expect(text).toMatch(/· index\s+waiting/)
    // finished rows above the live ones
    expect(text.indexOf('catalog')).toBeLessThan(text.indexOf('copy'))
    expect(text).not.toContain('second line')
  })

  it('retrying: the failed attempt error and the countdown to the next', () => {
    const state = stateOf([
      ...running,
      ...events([
        2000,
        {
          type: 'step:retry',
          step: 'copy',
          attempt: 1,
          nextAttempt: 2,
          maxAttempts: 3,
          delayMs: 3000,
          error: { name: 'Error', message: 'connection reset by peer\nat socket' },
        },
      ]),
    ])
    const text = frame(state, T0 + 3100)
    expect(text).toMatch(
      /↻ copy\s+2\.20 s retrying in 2 s \(attempt 2\/3\)\s+attempt 1 failed: connection reset by peer/,
    )
    expect(text).not.toContain('at socket')
  })

  it('failed: the error first line, downstream skipped, and the summary with the retry command', () => {
    const state = stateOf([
      ...running,
      ...events(
        [
          2500,
          {
            type: 'step:failure',
            step: 'copy',
            attempt: 3,
            durationMs: 1599,
            error: { name: 'NonRetriableError', message: 'table media is locked\ndetails' },
            retriable: false,
          },
        ],
        [2501, { type: 'step:skipped', step: 'clean', upstream: 'copy' }],
        [2502, { type: 'step:skipped', step: 'index', upstream: 'clean' }],
        [
          2503,
          {
            type: 'run:end',
            status: 'failure',
            durationMs: 2503,
            succeeded: 1,
            failed: 1,
            skipped: 2,
            canceled: 0,
          },
        ],
      ),
    ])
    const text = frame(state, T0 + 2600)
    expect(text).toMatch(
      /✗ copy\s+1\.60 s failed after 3 attempts\s+NonRetriableError: table media is locked/,
    )
    expect(text).toMatch(/⊘ clean\s+skipped \(copy failed\)/)
    expect(text).toContain(`failure · 1 succeeded, 1 failed, 2 skipped · 2.50 s · run ${runId}`)
    expect(text).toContain(`re-execute from failure: refresh retry ${runId}`)
  })

  it('checks: a step shows its checks, a failed blocking one names what it skipped', () => {
    const check = (at: number, name: string, passed: boolean, stops: boolean): [number, Body] => [
      at,
      {
        type: 'check:evaluated',
        step: 'copy',
        asset: 'copy',
        check: name,
        partition: null,
        passed,
        severity: 'error',
        blocking: stops,
        stops,
        durationMs: 1,
        metadata: {},
        error: null,
      },
    ]
    const state = stateOf([
      ...running,
      ...events(
        [
          2400,
          { type: 'asset:materialized', step: 'copy', asset: 'copy', attempt: 1, metadata: { rows: 0 } },
        ],
        check(2401, 'not_empty', false, true),
        check(2402, 'fresh', true, false),
        [2403, { type: 'step:success', step: 'copy', attempt: 1, durationMs: 1502, metadata: { rows: 0 } }],
        [2404, { type: 'step:skipped', step: 'clean', upstream: 'copy', check: 'not_empty' }],
        [2405, { type: 'step:skipped', step: 'index', upstream: 'clean' }],
      ),
    ])
    expect(state.steps[1]!.checks).toEqual([
      { name: 'not_empty', passed: false, severity: 'error', stops: true, error: null },
      { name: 'fresh', passed: true, severity: 'error', stops: false, error: null },
    ])
    const text = frame(state, T0 + 2600)
    expect(text).toMatch(/✓ copy\s+1\.50 s succeeded, checks 1\/2 passed, failed: not_empty \(blocking\)/)
    expect(text).toMatch(/⊘ clean\s+skipped \(check copy:not_empty failed\)/)
    expect(text).toMatch(/⊘ index\s+skipped \(clean failed\)/)
  })

  it('summary of a successful run: counts, duration and run id, no retry command', () => {
    const done = events(
      [1000, { type: 'step:success', step: 'copy', attempt: 2, durationMs: 99, metadata: {} }],
      [1100, { type: 'step:start', step: 'clean', attempt: 1, maxAttempts: 1 }],
      [1200, { type: 'step:success', step: 'clean', attempt: 1, durationMs: 100, metadata: { kept: 9 } }],
      [1300, { type: 'step:start', step: 'index', attempt: 1, maxAttempts: 1 }],
      [1400, { type: 'step:success', step: 'index', attempt: 1, durationMs: 100, metadata: {} }],
      [
        1401,
        {
          type: 'run:end',
          status: 'success',
          durationMs: 1401,
          succeeded: 4,
          failed: 0,
          skipped: 0,
          canceled: 0,
        },
      ],
    )
    const state = stateOf([...running, ...done])
    expect(summaryLines(state)).toEqual([`success · 4 succeeded · 1.40 s · run ${runId}`])
    const text = frame(state, T0 + 1500)
    expect(text).toMatch(/✓ copy\s+99 ms succeeded \(attempt 2\)/)
    expect(text).toContain(`success · 4 succeeded · 1.40 s · run ${runId}`)
    expect(text).not.toContain('refresh retry')
  })

  it('canceling: says so until the run ends, then names the reason in the summary', () => {
    const canceling = [
      ...running,
      ...events([2000, { type: 'run:canceling', reason: 'interrupted (Ctrl-C)' }]),
    ]
    expect(frame(stateOf(canceling), T0 + 2000)).toContain(
      'canceling... (interrupted (Ctrl-C); press Ctrl-C again to stop at once)',
    )
    const ended = stateOf([
      ...canceling,
      ...events(
        [2100, { type: 'step:canceled', step: 'copy', attempt: 1 }],
        [2101, { type: 'step:canceled', step: 'clean', attempt: 0 }],
        [2102, { type: 'step:canceled', step: 'index', attempt: 0 }],
        [
          2103,
          {
            type: 'run:end',
            status: 'canceled',
            durationMs: 2103,
            succeeded: 1,
            failed: 0,
            skipped: 0,
            canceled: 3,
          },
        ],
      ),
    ])
    const text = frame(ended, T0 + 2200)
    expect(text).not.toContain('canceling...')
    expect(text).toContain('canceled (interrupted (Ctrl-C)) · 1 succeeded, 3 canceled')
    expect(text).toContain(`refresh retry ${runId}`)
  })

  it('a plan taller than the terminal keeps the active steps and counts the pending rest', () => {
    const many = events(
      [
        0,
        {
          type: 'run:start',
          selection: '*',
          steps: Array.from({ length: 40 }, (_, i) => `s${i}`),
          reused: {},
          parentRunId: null,
          concurrency: 4,
        },
      ],
      [1, { type: 'step:start', step: 's30', attempt: 1, maxAttempts: 1 }],
      [1, { type: 'step:waiting', step: 's31', pool: 'db', limit: 1 }],
    )
    const state = stateOf(many)
    const { shown, hidden } = liveRows(state, 6)
    expect(shown.map((s) => s.key)).toEqual(['s0', 's1', 's2', 's30', 's31'])
    expect(hidden).toBe(35)
    const text = frame(state, T0 + 10)
    expect(text.split('\n').filter((l) => l.startsWith('·')).length).toBe(38)
    const short = frame(state, T0 + 10, 6)
    expect(short).toContain('● s30')
    expect(short).toContain('… s31')
    expect(short).toContain('· 35 more waiting')
    expect(short.split('\n').length).toBeLessThanOrEqual(7)
  })
})

describe('run view on narrow terminals and without colors', () => {
  /** The README's run: catalog done with a million rows, reindex running with shard detail. */
  const readme = stateOf([
    ...events(
      [
        0,
        {
          type: 'run:start',
          selection: '*',
          steps: ['catalog', 'copy', 'reindex', 'snapshot'],
          reused: {},
          parentRunId: null,
          concurrency: 4,
        },
      ],
      [1, { type: 'step:start', step: 'catalog', attempt: 1, maxAttempts: 1 }],
      [
        3,
        {
          type: 'step:success',
          step: 'catalog',
          attempt: 1,
          durationMs: 2,
          metadata: { file: '/tmp/fresh/.refresh/data/catalog.db', table: 'media', rows: 1_000_000, seed: 1 },
        },
      ],
      [4, { type: 'step:start', step: 'copy', attempt: 1, maxAttempts: 3 }],
      [
        150,
        {
          type: 'step:success',
          step: 'copy',
          attempt: 1,
          durationMs: 146,
          metadata: {
            file: '/tmp/fresh/.refresh/data/work/01m83wdkeqb229ea0a.db',
            table: 'media',
            rows: 1_000_000,
          },
        },
      ],
      [151, { type: 'step:start', step: 'reindex', attempt: 1, maxAttempts: 1 }],
      [700, { type: 'log', step: 'reindex', level: 'debug', message: 'shard-0: 12977/23555 (50%)' }],
      [757, { type: 'step:progress', step: 'reindex', done: 25924, total: 94133 }],
    ),
  ])

  for (const columns of [40, 60, 80, 100, 160]) {
    it(`at ${columns} columns no row wraps and no value is cut in the middle`, () => {
      const lines = frame(readme, T0 + 757, undefined, columns).split('\n')
      for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(columns)
      // one line per step, each starting with its symbol
      expect(lines.filter((l) => /^[✓●·] /.test(l)).length).toBe(4)
      const running = lines.find((l) => l.startsWith('● reindex'))!
      expect(running).toMatch(/running/)
      if (columns >= 60) expect(running).toContain('25924/94133')
      const text = lines.join('\n')
      // a million rows is shown whole or not at all; a path keeps its file name
      for (const m of text.matchAll(/rows=(\S*)/g)) expect(m[1]).toBe('1000000')
      for (const m of text.matchAll(/file=(\S*)/g)) expect(m[1]).toMatch(/(catalog|01m83wdkeqb229ea0a)\.db$/)
    })
  }

  it('the widest terminal shows every part: bar, counts, rate and the detail', () => {
    const text = frame(readme, T0 + 757, undefined, 160)
    expect(text).toMatch(
      /● reindex\s+606 ms running █+░+ 25924\/94133 \d+k\/s {2}shard-0: 12977\/23555 \(50%\)/,
    )
    expect(text).toContain('rows=1000000')
  })

  it('a long path keeps its end, where the file name is; numbers are never cut', () => {
    expect(shortValue('/tmp/fresh/.refresh/data/work/01m83wdkeqb229ea0a.db')).toBe(
      '…/data/work/01m83wdkeqb229ea0a.db',
    )
    expect(shortValue('s3://bucket/a/very/long/prefix/that/goes/on/runs/01m83wd/input.db', 30)).toBe(
      '…/on/runs/01m83wd/input.db',
    )
    expect(shortValue(12_345_678_901_234, 5)).toBe('12345678901234')
    expect(shortValue('x'.repeat(50), 10)).toBe(`${'x'.repeat(9)}…`)
  })

  it('draws no colors when told so (NO_COLOR), and colors otherwise', () => {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: a foreground color code
    const colorCode = /\u001b\[(3[0-9]|9[0-7])m/
    expect(rawFrame(readme, T0 + 757, { columns: 100 })).toMatch(colorCode)
    const plain = rawFrame(readme, T0 + 757, { columns: 100, color: false })
    expect(plain).not.toMatch(colorCode)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips bold
    expect(plain.replace(/\u001b\[[0-9;]*m/g, '')).toContain('● reindex')
  })
})
