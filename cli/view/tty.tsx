import type { RunEvent } from '../../core/events.js'
import { mountFrames } from './live.js'
import { RunView } from './run-view.js'
import { initialViewState, reduce, type ViewState } from './state.js'

export interface TtyView {
  onEvent(event: RunEvent): void
  /** Draws the final frame (the summary) and releases the terminal. */
  close(): Promise<void>
}

/** Redraws at most ten times a second; events in between only update the state. */
const FRAME_MS = 100

/**
 * Mounts the ink view of a run on a terminal. Loaded with a dynamic `import()` only when stdout
 * is a TTY, so that plain, JSON and every other command never pay for ink and React.
 */
export function mountTtyView(
  stdout: NodeJS.WriteStream = process.stdout,
  options: { color?: boolean } = {},
): TtyView {
  let state: ViewState = initialViewState
  let dirty = true
  const color = options.color ?? true
  const frame = () => (
    <RunView
      state={state}
      now={Date.now()}
      columns={stdout.columns}
      maxRows={liveRowBudget(stdout)}
      color={color}
    />
  )
  // elapsed times and retry countdowns move without events, so a running view redraws each frame
  const live = mountFrames(stdout, frame, {
    intervalMs: FRAME_MS,
    due: () => {
      const due =
        dirty || state.steps.some((s) => s.phase.status === 'running' || s.phase.status === 'retrying')
      dirty = false
      return due
    },
  })
  return {
    onEvent(event) {
      state = reduce(state, event)
      dirty = true
    },
    close: live.close,
  }
}

/** Rows left for unfinished steps: the terminal's height less the header, a canceling line and a margin. */
function liveRowBudget(stdout: NodeJS.WriteStream): number | undefined {
  return stdout.rows ? Math.max(3, stdout.rows - 4) : undefined
}
