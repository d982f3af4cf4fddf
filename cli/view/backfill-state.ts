import { cutEnd, formatDuration } from '../format.js'
import { formatRate } from './text.js'

/**
 * The terminal panel of a backfill (`refresh backfill show ID --follow` on a TTY), as pure
 * functions: `observe(state, snapshot)` folds one reading of the store into the state (keeping a
 * sliding window of samples for the rate), and `backfillLines(state, now)` is its text. Neither
 * reads the clock, the store or the terminal; the ink component only draws the lines.
 */

/** One reading of a backfill: its record's counts and what its runs are doing. */
export interface BackfillSnapshot {
  /** When it was read. */
  ts: number
  id: string
  status: string
  selection: string
  /** The partitions definition, described. */
  partitions: string
  total: number
  succeeded: number
  failed: number
  skipped: number
  /** Partitions whose run started. */
  running: number
  /** Partitions whose run is queued. */
  queued: number
  /** Partitions not launched yet (nor skipped). */
  notLaunched: number
  createdAt: number
  endedAt: number | null
  error?: string
  /** Its latest runs, newest first. */
  recent: ReadonlyArray<{ runId: string; partitionKey: string | null; status: string }>
}

export interface BackfillViewState {
  latest: BackfillSnapshot | null
  /** (time, partitions settled) within the window, oldest first. */
  samples: ReadonlyArray<{ ts: number; settled: number }>
}

export const initialBackfillViewState: BackfillViewState = { latest: null, samples: [] }

/** The rate is measured over the last 30 s of readings. */
export const RATE_WINDOW_MS = 30_000

const FINAL = new Set(['completed', 'failed', 'canceled'])

export function isFinalStatus(status: string): boolean {
  return FINAL.has(status)
}

/** Partitions that will not run again in this backfill: succeeded, failed or skipped. */
function settled(s: BackfillSnapshot): number {
  return s.succeeded + s.failed + s.skipped
}

/** The next state after one reading; samples older than the window (less one to span it) are dropped. */
export function observe(state: BackfillViewState, snapshot: BackfillSnapshot): BackfillViewState {
  const samples = [...state.samples, { ts: snapshot.ts, settled: settled(snapshot) }]
  // keep the newest sample at or before the window's start, so the window is spanned in full
  let from = 0
  while (from + 1 < samples.length && samples[from + 1]!.ts <= snapshot.ts - RATE_WINDOW_MS) from++
  return { latest: snapshot, samples: samples.slice(from) }
}

/**
 * Partitions settled per second over the sliding window; null until two readings a moment apart
 * (or when nothing settled in the window, where no honest rate can be told).
 */
export function windowRate(state: BackfillViewState): number | null {
  const first = state.samples[0]
  const last = state.samples.at(-1)
  if (!first || !last || last.ts - first.ts < 500) return null
  const done = last.settled - first.settled
  return done > 0 ? (done / (last.ts - first.ts)) * 1000 : null
}

/** Time left at the window's rate for what is neither settled: null when it cannot be told. */
export function etaMs(state: BackfillViewState): number | null {
  const s = state.latest
  const rate = windowRate(state)
  if (!s || rate === null || isFinalStatus(s.status)) return null
  const left = s.total - settled(s)
  return left > 0 ? (left / rate) * 1000 : null
}

/** `████▓▓░░··` over `cells`: done, failed (and skipped), in flight, not launched, in proportion. */
export function backfillBar(s: BackfillSnapshot, cells = 30): string {
  if (s.total <= 0) return '·'.repeat(cells)
  const parts = [s.succeeded, s.failed + s.skipped, s.running + s.queued]
  const glyphs = ['█', '▓', '▒']
  let out = ''
  let at = 0
  let sum = 0
  parts.forEach((n, i) => {
    sum += n
    // cumulative rounding: the cells add up to the width whatever the counts
    const end = Math.round((Math.min(sum, s.total) / s.total) * cells)
    out += glyphs[i]!.repeat(Math.max(0, end - at))
    at = Math.max(at, end)
  })
  return out + '·'.repeat(cells - at)
}

/** The panel's lines at `now`, each cut to `columns` when given. */
export function backfillLines(state: BackfillViewState, now: number, columns?: number): string[] {
  const s = state.latest
  if (!s) return ['reading the backfill...']
  const elapsed = (s.endedAt ?? now) - s.createdAt
  const rate = windowRate(state)
  const eta = etaMs(state)
  const percent = s.total > 0 ? Math.floor((settled(s) / s.total) * 100) : 0
  const lines = [
    `backfill ${s.id} · ${s.status} · ${s.selection} · ${s.total} partition${s.total === 1 ? '' : 's'} of ${s.partitions}`,
    `${backfillBar(s)} ${percent}% · ${settled(s)}/${s.total}`,
    `  ${s.succeeded} done · ${s.failed} failed · ${s.running} running · ${s.queued} queued · ${s.notLaunched} not launched${s.skipped ? ` · ${s.skipped} skipped` : ''}`,
    `  ${s.endedAt !== null ? `ended after ${formatDuration(elapsed)}` : `running for ${formatDuration(elapsed)}`} · rate ${rate === null ? '-' : `${formatRate(rate)} (last ${RATE_WINDOW_MS / 1000} s)`} · ETA ${eta === null ? '-' : formatDuration(eta)}`,
  ]
  if (s.error) lines.push(`  ${s.error}`)
  if (s.recent.length > 0) {
    lines.push('  latest runs:')
    for (const r of s.recent) lines.push(`    ${r.runId}  ${r.partitionKey ?? '-'}  ${r.status}`)
  }
  if (isFinalStatus(s.status)) lines.push(`${s.status} · backfill ${s.id}`)
  return columns === undefined ? lines : lines.map((l) => cutEnd(l, columns))
}
