import type { FreshnessState } from '../core/freshness.js'
/** Small text helpers shared by the CLI's reporters and commands. */

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`
  const minutes = Math.floor(ms / 60_000)
  const seconds = Math.round((ms % 60_000) / 1000)
  if (minutes < 60) return `${minutes}m${String(seconds).padStart(2, '0')}s`
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`
}

export function formatTime(ts: number): string {
  const d = new Date(ts)
  const pad = (n: number, w = 2) => String(n).padStart(w, '0')
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
}

/** Longest a metadata value is shown before it is shortened. */
const VALUE_MAX = 40

/**
 * `key=value` pairs of metadata on one line, at most `max` of them, long values shortened (see
 * `shortValue`); with `width`, only the pairs that fit whole (see `fitPairs`).
 */
export function formatMetadata(metadata: Record<string, unknown>, max = 6, width?: number): string {
  const pairs = Object.entries(metadata).map(([k, v]) => `${k}=${shortValue(v)}`)
  if (width !== undefined) return fitPairs(pairs.slice(0, max), width, pairs.length)
  const shown = pairs.slice(0, max)
  if (pairs.length > max) shown.push(`(+${pairs.length - max} more)`)
  return shown.join(' ')
}

/**
 * A value as shown in a line. Numbers and booleans are never cut (`rows=100000…` would read as
 * a smaller number); a path keeps its end, where the file name is (`…/work/01m83wd.db`); other
 * long text keeps its start.
 */
export function shortValue(value: unknown, max = VALUE_MAX): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value)
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value))
  if (text.length <= max) return text
  if (typeof value === 'string' && /^(\/|\.{0,2}\/|[a-z][a-z0-9+.-]*:\/\/)\S+$/i.test(text))
    return shortPath(text, max)
  return `${text.slice(0, max - 1).trimEnd()}…`
}

/**
 * A path cut at the front so that what identifies it stays: as many trailing segments as fit
 * after `…/`, and always the last one whole, even when that alone is longer than `max`.
 */
export function shortPath(path: string, max: number): string {
  if (path.length <= max) return path
  const segments = path.split('/')
  let tail = segments.pop() ?? ''
  while (segments.length > 0) {
    const next = `${segments.at(-1)}/${tail}`
    if (next.length + 2 > max) break
    tail = next
    segments.pop()
  }
  return `…/${tail}`
}

/**
 * Whole `key=value` pairs that fit in `width`, then `+N` for those left out (when it fits): a
 * pair is dropped rather than cut, so no value is ever shown partly.
 */
export function fitPairs(pairs: readonly string[], width: number, total = pairs.length): string {
  let out = ''
  let shown = 0
  for (const pair of pairs) {
    const next = out ? `${out} ${pair}` : pair
    const rest = total - shown - 1
    // room for the count of what would still be left out
    const reserve = rest > 0 ? ` +${rest}`.length : 0
    if (next.length + reserve > width) break
    out = next
    shown++
  }
  const left = total - shown
  if (left > 0) {
    const options = shown === 0 ? [`(${left} values)`, `+${left}`] : [`(+${left} more)`, `+${left}`]
    const more = options.find((m) => out.length + 1 + m.length <= width)
    if (more) out = out ? `${out} ${more}` : more
  }
  return out
}

/** Text cut at `max` characters with `…` (for messages, where the start says the most). */
export function cutEnd(text: string, max: number): string {
  if (max <= 0) return ''
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}

export function firstLine(text: string): string {
  const i = text.indexOf('\n')
  return i === -1 ? text : text.slice(0, i)
}

/** `5 runs, 10 steps, 1 materialization`: each kind whose count is above 0, or `nothing`. */
export function formatCounts(counts: Readonly<Record<string, number>>): string {
  const parts = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${n.toLocaleString('en-US')} ${n === 1 ? kind.replace(/s$/, '') : kind}`)
  return parts.length > 0 ? parts.join(', ') : 'nothing'
}

/** `older than 30d (failed runs: 90d)`: what a prune deletes. */
export function pruneScope(retention: { olderThan: string; keepFailed: string }): string {
  const failed = retention.keepFailed === retention.olderThan ? '' : ` (failed runs: ${retention.keepFailed})`
  return `older than ${retention.olderThan}${failed}`
}

/**
 * An asset's freshness in a few words: `fresh (max lag 26h)`, `STALE for 3h00m (max lag 26h)`,
 * `STALE for 3h00m: partition 2026-11-24 not materialized (max lag 2h)`.
 */
export function formatFreshness(state: FreshnessState, now: number): string {
  switch (state.status) {
    case 'fresh':
      return `fresh (max lag ${state.maxLag})`
    case 'stale':
      return `STALE for ${formatDuration(now - state.staleSince)} (max lag ${state.maxLag})`
    case 'missing':
      return `STALE: never materialized (max lag ${state.maxLag})`
    case 'partition_missing':
      return `STALE for ${formatDuration(now - state.staleSince)}: partition ${state.partitionKey} not materialized (max lag ${state.maxLag})`
  }
}

/** An asset's freshness for `--json`: the state, with its partition as `partition`. */
export function freshnessJson(state: FreshnessState): Record<string, unknown> {
  if (state.status === 'missing')
    return { status: 'stale', reason: 'missing', maxLag: state.maxLag, maxLagMs: state.maxLagMs }
  if (state.status === 'partition_missing') {
    const { partitionKey, ...rest } = state
    return { ...rest, status: 'stale', reason: 'partition_missing', partition: partitionKey }
  }
  const { partitionKey, ...rest } = state
  return state.status === 'stale'
    ? { ...rest, reason: 'too_old', partition: partitionKey }
    : { ...rest, partition: partitionKey }
}
