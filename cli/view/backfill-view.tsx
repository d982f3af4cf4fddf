import { Box, Text } from 'ink'
import {
  type BackfillSnapshot,
  type BackfillViewState,
  backfillLines,
  initialBackfillViewState,
  isFinalStatus,
  observe,
} from './backfill-state.js'
import { mountFrames } from './live.js'

const STATUS_COLORS: Record<string, string> = {
  requested: 'cyan',
  canceling: 'yellow',
  completed: 'green',
  failed: 'red',
  canceled: 'yellow',
}

/**
 * The live panel of a backfill: its header, bar, counts, rate and ETA, and its latest runs. It
 * draws the lines of `backfillLines` (where the logic is), coloring the first and the last.
 */
export function BackfillView({
  state,
  now,
  columns,
  color = true,
}: {
  state: BackfillViewState
  now: number
  columns?: number
  color?: boolean
}) {
  const lines = backfillLines(state, now, columns)
  const status = state.latest?.status ?? ''
  const tint = color ? STATUS_COLORS[status] : undefined
  const final = isFinalStatus(status)
  return (
    <Box flexDirection="column">
      {lines.map((line, i) => (
        <Text
          // biome-ignore lint/suspicious/noArrayIndexKey: the lines are positional, redrawn whole
          key={i}
          bold={i === 0 || (final && i === lines.length - 1)}
          color={i === 0 || (final && i === lines.length - 1) ? tint : undefined}
          wrap="truncate-end"
        >
          {line}
        </Text>
      ))}
    </Box>
  )
}

export interface BackfillTtyView {
  update(snapshot: BackfillSnapshot): void
  /** Draws the last frame and releases the terminal. */
  close(): Promise<void>
}

/** Redraws once a second at least (the elapsed time moves), and at once on a new reading. */
const FRAME_MS = 1000

/**
 * Mounts the backfill panel on a terminal. Loaded with a dynamic `import()` only when stdout is a
 * TTY, so the plain and JSON outputs never pay for ink and React.
 */
export function mountBackfillView(
  stdout: NodeJS.WriteStream = process.stdout,
  options: { color?: boolean } = {},
): BackfillTtyView {
  let state: BackfillViewState = initialBackfillViewState
  const color = options.color ?? true
  // a terminal that reports no width (0) is drawn unbounded rather than cut to nothing
  const frame = () => (
    <BackfillView state={state} now={Date.now()} columns={stdout.columns || undefined} color={color} />
  )
  const live = mountFrames(stdout, frame, { intervalMs: FRAME_MS })
  return {
    update(snapshot) {
      state = observe(state, snapshot)
      live.draw()
    },
    close: live.close,
  }
}
