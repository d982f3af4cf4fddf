/**
 * The backfill panel of `backfill show --follow` on a terminal, through its pure functions:
 * readings folded into a state (the rate over a sliding window, the ETA) and the text drawn.
 */
import { render } from 'ink-testing-library'
import { createElement } from 'react'
import { describe, expect, it } from 'vitest'
import {
  type BackfillSnapshot,
  backfillBar,
  backfillLines,
  etaMs,
  initialBackfillViewState,
  observe,
  RATE_WINDOW_MS,
  windowRate,
} from '../../cli/view/backfill-state.js'
import { BackfillView } from '../../cli/view/backfill-view.js'

const T0 = 1_700_000_000_000
const id = '01m8abf2b41ad23c4a'

/** A reading of a 365-day backfill `at` ms after it was requested. */
function reading(at: number, counts: Partial<BackfillSnapshot>): BackfillSnapshot {
  const base = { succeeded: 0, failed: 0, skipped: 0, running: 0, queued: 0, ...counts }
  return {
    ts: T0 + at,
    id,
    status: 'requested',
    selection: 'daily_events+',
    partitions: 'daily partitions from 2026-01-01',
    total: 365,
    notLaunched: 365 - base.succeeded - base.failed - base.skipped - base.running - base.queued,
    createdAt: T0,
    endedAt: null,
    recent: [],
    ...base,
  }
}

describe('the backfill panel', () => {
  it('measures the rate over the last 30 s only, and the ETA from it', () => {
    // 1 partition/s for the first 60 s, then 5/s
    let state = initialBackfillViewState
    for (let s = 0; s <= 60; s += 5) state = observe(state, reading(s * 1000, { succeeded: s, running: 4 }))
    expect(windowRate(state)).toBeCloseTo(1, 5)
    for (let s = 65; s <= 90; s += 5)
      state = observe(state, reading(s * 1000, { succeeded: 60 + 5 * (s - 60), running: 4, queued: 4 }))
    // the window spans 60 s .. 90 s: from 60 to 210 settled
    expect(state.samples[0]!.ts).toBe(T0 + 60_000)
    expect(state.samples.at(-1)!.ts - state.samples[0]!.ts).toBe(RATE_WINDOW_MS)
    expect(windowRate(state)).toBeCloseTo(5, 5)
    state = observe(state, reading(95_000, { succeeded: 230, failed: 3, skipped: 2, running: 4, queued: 4 }))
    expect(state.latest!.notLaunched).toBe(122)
    // window 65 s .. 95 s: from 85 to 235 settled, 5/s; 130 left: 26 s
    expect(windowRate(state)).toBeCloseTo(5, 5)
    expect(etaMs(state)).toBeCloseTo(26_000, 0)
  })

  it('has no rate before two readings, nor when nothing settled in the window', () => {
    let state = observe(initialBackfillViewState, reading(0, { queued: 8 }))
    expect(windowRate(state)).toBeNull()
    state = observe(state, reading(5000, { running: 8 }))
    expect(windowRate(state)).toBeNull()
    expect(etaMs(state)).toBeNull()
  })

  it('draws the counts with a bar, rate, ETA and the latest runs', () => {
    let state = observe(initialBackfillViewState, reading(0, { succeeded: 100, running: 8 }))
    const now = reading(20_000, {
      succeeded: 180,
      failed: 3,
      skipped: 2,
      running: 6,
      queued: 2,
      recent: [
        { runId: '01m8abf9aaaaaaaaaa', partitionKey: '2026-07-05', status: 'started' },
        { runId: '01m8abf8aaaaaaaaaa', partitionKey: '2026-07-04', status: 'queued' },
        { runId: '01m8abf7aaaaaaaaaa', partitionKey: '2026-07-03', status: 'success' },
      ],
    })
    state = observe(state, now)
    const lines = backfillLines(state, T0 + 20_000)
    expect(lines[0]).toBe(
      `backfill ${id} · requested · daily_events+ · 365 partitions of daily partitions from 2026-01-01`,
    )
    // 185 settled of 365: 50%
    expect(lines[1]).toBe(`${backfillBar(now)} 50% · 185/365`)
    expect(lines[2]).toBe('  180 done · 3 failed · 6 running · 2 queued · 172 not launched · 2 skipped')
    // (185 - 100) / 20 s = 4.25/s; 180 left: 42.4 s
    expect(lines[3]).toBe('  running for 20.0 s · rate 4.3/s (last 30 s) · ETA 42.4 s')
    expect(lines.slice(4)).toEqual([
      '  latest runs:',
      '    01m8abf9aaaaaaaaaa  2026-07-05  started',
      '    01m8abf8aaaaaaaaaa  2026-07-04  queued',
      '    01m8abf7aaaaaaaaaa  2026-07-03  success',
    ])
    expect(backfillLines(state, T0 + 20_000, 40).every((l) => l.length <= 40)).toBe(true)
  })

  it('fills the bar in proportion, whatever the counts', () => {
    const s = reading(0, { succeeded: 150, failed: 30, skipped: 0, running: 40, queued: 0 })
    const bar = backfillBar(s, 30)
    expect(bar).toHaveLength(30)
    expect(bar).toBe(`${'█'.repeat(12)}${'▓'.repeat(3)}${'▒'.repeat(3)}${'·'.repeat(12)}`)
    expect(backfillBar(reading(0, { succeeded: 365 }), 10)).toBe('█'.repeat(10))
    expect(backfillBar(reading(0, {}), 10)).toBe('·'.repeat(10))
  })

  it('says how it ended, and the ink component draws the same lines', () => {
    const state = observe(
      initialBackfillViewState,
      reading(0, { succeeded: 360, failed: 5, status: 'failed', endedAt: T0 + 73_000 }),
    )
    const lines = backfillLines(state, T0 + 80_000)
    expect(lines[3]).toBe('  ended after 1m13s · rate - · ETA -')
    expect(lines.at(-1)).toBe(`failed · backfill ${id}`)
    const { lastFrame, unmount } = render(
      createElement(BackfillView, { state, now: T0 + 80_000, color: false }),
    )
    expect(lastFrame()).toContain('360 done · 5 failed · 0 running · 0 queued · 0 not launched')
    expect(lastFrame()).toContain(`failed · backfill ${id}`)
    unmount()
  })
})
