import { render } from 'ink'
import type { ReactElement } from 'react'

/** A live view on a terminal: frames redrawn in place until it is closed. */
export interface LiveFrames {
  /** Redraws now (ink still draws at most ten frames a second). */
  draw(): void
  /** Draws the last frame and releases the terminal (once; later calls do nothing). */
  close(): Promise<void>
}

/**
 * Mounts `frame()` on a terminal with ink: redrawn every `intervalMs` when `due()` says so (by
 * default always: elapsed times move without news), at most ten frames a second, and once more
 * on close. Ctrl-C and the console stay the caller's. Shared by the run view and the backfill panel.
 */
export function mountFrames(
  stdout: NodeJS.WriteStream,
  frame: () => ReactElement,
  options: { intervalMs: number; due?: () => boolean },
): LiveFrames {
  const instance = render(frame(), { stdout, exitOnCtrlC: false, patchConsole: false, maxFps: 10 })
  const draw = () => instance.rerender(frame())
  const due = options.due ?? (() => true)
  const timer = setInterval(() => {
    if (due()) draw()
  }, options.intervalMs)
  let closed = false
  return {
    draw,
    async close() {
      if (closed) return
      closed = true
      clearInterval(timer)
      draw()
      instance.unmount()
      await instance.waitUntilExit()
    },
  }
}
