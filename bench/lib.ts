/** Helpers shared by the bench scripts (kept apart from run.ts, which is the entry point). */
import { cpus, release, totalmem } from 'node:os'

/** The machine a figure was measured on, for BENCHMARKS.md. */
export function machine(): string {
  const cpu = cpus()
  return `${cpu.length} x ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`
}

/** Median of a list of numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
