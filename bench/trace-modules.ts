/**
 * Records every module a process loads through `import`, one URL a line, in the file named by
 * REFRESH_TRACE_MODULES: `node --import <this file> ...`. The bench and the start-up tests use it
 * to show which heavy modules a command does not load (ink, react, zod, jiti...); `packagesIn`
 * (in loaded-packages.ts) reads the trace.
 */
import { appendFileSync } from 'node:fs'
import { register } from 'node:module'
import { isMainThread } from 'node:worker_threads'

interface ResolveResult {
  url: string
}
type NextResolve = (specifier: string, context: unknown) => Promise<ResolveResult>

// loaded by --import on the main thread: install this same file as the loader hooks
if (isMainThread) register(import.meta.url)

export async function resolve(
  specifier: string,
  context: unknown,
  next: NextResolve,
): Promise<ResolveResult> {
  const result = await next(specifier, context)
  const file = process.env.REFRESH_TRACE_MODULES
  if (file) appendFileSync(file, `${result.url}\n`)
  return result
}
