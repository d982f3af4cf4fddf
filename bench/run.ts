/**
 * `npm run bench`: runs every `bench/*.bench.ts` (compiled to dist/bench) in name order, prints
 * each section as it completes and writes them all, with the machine and the date, to
 * BENCHMARKS.md. Pass names to run only some (`npm run bench -- core`); sections not run keep
 * their previous text in BENCHMARKS.md.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { machine } from './lib.js'

export interface BenchSection {
  /** Stable id: the file name without `.bench.js`. */
  id: string
  title: string
  /** Markdown body: tables and notes. */
  body: string
}

export type Bench = () => Promise<Omit<BenchSection, 'id'>>

const here = import.meta.dirname
const root = join(here, '..', '..')
const output = join(root, 'BENCHMARKS.md')

async function main(): Promise<void> {
  const only = process.argv.slice(2)
  const files = readdirSync(here)
    .filter((f) => f.endsWith('.bench.js'))
    .sort()
    .filter((f) => only.length === 0 || only.includes(f.replace(/\.bench\.js$/, '')))
  const previous = existsSync(output)
    ? parseSections(readFileSync(output, 'utf8'))
    : new Map<string, string>()
  const sections = new Map(previous)
  for (const file of files) {
    const id = file.replace(/\.bench\.js$/, '')
    process.stdout.write(`\n== ${id} ==\n`)
    const mod = (await import(pathToFileURL(join(here, file)).href)) as { default: Bench }
    const section = await mod.default()
    const text = `## ${section.title}\n<!-- bench:${id} -->\n\n_Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}._\n\n${section.body.trim()}\n`
    process.stdout.write(`${text}\n`)
    sections.set(id, text)
  }
  const header = `# Benchmarks\n\nWritten by \`npm run bench\` (scripts in \`bench/\`). Each section names the machine and the date it was\nmeasured on. Timings are wall-clock medians unless a table says otherwise. Tests assert only generous time bounds\nand one tight one: a cancel ends the run within 1 s, as the README promises (test/assets/cancel.test.ts).\n\n`
  writeFileSync(
    output,
    header +
      [...sections.keys()]
        .sort()
        .map((id) => sections.get(id))
        .join('\n'),
  )
  process.stdout.write(`\nwrote ${output}\n`)
}

function parseSections(text: string): Map<string, string> {
  const out = new Map<string, string>()
  const parts = text.split(/^(?=## )/m)
  for (const part of parts) {
    const id = /<!-- bench:([\w-]+) -->/.exec(part)?.[1]
    if (id) out.set(id, `${part.trimEnd()}\n`)
  }
  return out
}

await main()
