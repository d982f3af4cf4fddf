/**
 * Durations as the config and the CLI write them: `30d`, `26h`, `90m` (retention, `refresh prune
 * --older-than`, an asset's `freshness.maxLag`).
 */

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const
const DURATION = /^(\d+)([mhd])$/

/** A duration written as `30d`, `12h` or `90m`, in ms; undefined when it is not one. */
export function durationMs(text: string): number | undefined {
  const match = DURATION.exec(text)
  if (!match) return undefined
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined
}

/** Why a duration is not one, to follow its name (`--older-than 30x: ...`). */
export const DURATION_HINT =
  'expected a duration like 30d, 12h or 90m (a whole number above 0, then d, h or m)'

const SHORT_UNITS = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
] as const

/**
 * A duration in ms written back in the largest unit that divides it (`93600000` → `26h`,
 * `90000` → `90s`, `1500` → `1500ms`): how a limit the config gave is quoted back.
 */
export function shortDuration(ms: number): string {
  for (const [unit, size] of SHORT_UNITS) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`
  return `${ms}ms`
}
