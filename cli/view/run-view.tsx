import { Box, Static, Text } from 'ink'
import { cutEnd } from '../format.js'
import type { StepView, ViewState } from './state.js'
import { isFinished } from './state.js'
import { headerText, rowParts, summaryLines } from './text.js'

const COLORS: Record<StepView['phase']['status'], string> = {
  pending: 'gray',
  waiting: 'gray',
  running: 'cyan',
  retrying: 'yellow',
  succeeded: 'green',
  failed: 'red',
  skipped: 'gray',
  canceled: 'yellow',
}

type StaticItem = { id: string; kind: 'header'; text: string } | { id: string; kind: 'step'; step: StepView }

/**
 * The terminal view of a run: finished rows are written once above (ink's `<Static>`), the
 * steps still to finish are redrawn below in plan order, then the summary. It draws a state at a
 * given `now`; the reducer in `state.ts` holds the logic.
 */
export function RunView({
  state,
  now,
  columns,
  maxRows,
  color = true,
}: {
  state: ViewState
  now: number
  /** The terminal's width: every row is laid out to fit it, so none wraps. */
  columns?: number
  /** Most rows the live region may take (a region taller than the terminal cannot be redrawn). */
  maxRows?: number
  /** False when `NO_COLOR` is set: the same text, no colors. */
  color?: boolean
}) {
  const paint = (name: string | undefined) => (color ? name : undefined)
  const width = Math.max(8, ...state.steps.map((s) => s.key.length))
  const items: StaticItem[] = []
  if (state.runId !== null) items.push({ id: 'header', kind: 'header', text: headerText(state) })
  for (const key of state.finished) {
    const step = state.steps.find((s) => s.key === key)
    if (step) items.push({ id: key, kind: 'step', step })
  }
  const { shown: live, hidden } = liveRows(state, maxRows)
  const summary = summaryLines(state)
  return (
    <>
      <Static items={items}>
        {(item) =>
          item.kind === 'header' ? (
            <Text key={item.id} bold>
              {columns === undefined ? item.text : cutEnd(item.text, columns)}
            </Text>
          ) : (
            <StepRow key={item.id} step={item.step} now={now} width={width} columns={columns} color={color} />
          )
        }
      </Static>
      {live.length > 0 && state.end === null && (
        <Box flexDirection="column">
          {live.map((step) => (
            <StepRow key={step.key} step={step} now={now} width={width} columns={columns} color={color} />
          ))}
          {hidden > 0 && <Text color={paint('gray')}>· {hidden} more waiting</Text>}
        </Box>
      )}
      {state.canceling !== null && state.end === null && (
        <Text color={paint('yellow')}>
          canceling... ({state.canceling}; press Ctrl-C again to stop at once)
        </Text>
      )}
      {summary.length > 0 && (
        <Box flexDirection="column" marginTop={1}>
          {summary.map((line, i) => (
            <Text key={line} bold={i === 0} color={i === 0 ? paint(summaryColor(state)) : undefined}>
              {line}
            </Text>
          ))}
        </Box>
      )}
    </>
  )
}

/**
 * The unfinished steps to draw, in plan order. When they do not fit, steps that are doing
 * something (running, retrying, waiting for a pool) come first and the pending rest is counted.
 */
export function liveRows(state: ViewState, maxRows = Number.POSITIVE_INFINITY) {
  const live = state.steps.filter((s) => !isFinished(s))
  if (live.length <= maxRows) return { shown: live, hidden: 0 }
  const budget = Math.max(1, maxRows - 1)
  const active = new Set(live.filter((s) => s.phase.status !== 'pending').slice(0, budget))
  for (const s of live) if (active.size < budget) active.add(s)
  const shown = live.filter((s) => active.has(s))
  return { shown, hidden: live.length - shown.length }
}

function summaryColor(state: ViewState): string {
  return state.end?.status === 'success' ? 'green' : state.end?.status === 'failure' ? 'red' : 'yellow'
}

function StepRow({
  step,
  now,
  width,
  columns,
  color,
}: {
  step: StepView
  now: number
  width: number
  /** The terminal's width: `<Static>` rows are laid out outside the live box and need it set. */
  columns?: number
  color: boolean
}) {
  const status = step.phase.status
  const tint = color ? COLORS[status] : undefined
  const row = rowParts(step, now, width, columns)
  const detailColor = status === 'failed' || status === 'retrying' ? 'red' : 'gray'
  // laid out to fit the width (rowParts); the cut at the edge only guards a terminal narrower
  // than the fixed columns themselves, so a row never wraps
  return (
    <Box width={columns}>
      <Text wrap="truncate-end">
        <Text color={tint}>{row.symbol} </Text>
        <Text bold={status === 'running' || status === 'retrying'}>{row.key} </Text>
        <Text color={color ? 'gray' : undefined}>{row.elapsed} </Text>
        <Text color={tint}>{row.state}</Text>
        {row.progress !== '' && <Text> {row.progress}</Text>}
        {row.detail !== '' && <Text color={color ? detailColor : undefined}>{`  ${row.detail}`}</Text>}
      </Text>
    </Box>
  )
}
