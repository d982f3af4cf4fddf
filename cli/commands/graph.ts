import type { Command } from 'commander'
import { ConfigError } from '../../core/errors.js'
import type { AssetGraph } from '../../core/graph.js'
import { addConfigOptions, type ConfigOptions, loadResolved } from '../config-options.js'
import type { CliContext, Io } from '../io.js'

interface GraphOptions extends ConfigOptions {
  format: string
}

const FORMATS = ['text', 'mermaid', 'dot'] as const

export function registerGraph(program: Command, ctx: CliContext): void {
  addConfigOptions(
    program
      .command('graph')
      .summary('print the asset graph (text, mermaid, dot)')
      .description('print the asset graph'),
  )
    .option('--format <format>', `text, mermaid or dot`, 'text')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh graph\n  refresh graph --format mermaid\n  refresh graph --format dot | dot -Tsvg > graph.svg\n',
    )
    .action(async (options: GraphOptions) => {
      ctx.code = await graphCommand(options, ctx.io)
    })
}

async function graphCommand(options: GraphOptions, io: Io): Promise<number> {
  if (!(FORMATS as readonly string[]).includes(options.format)) {
    throw new ConfigError(`--format ${options.format}: expected one of ${FORMATS.join(', ')}.`)
  }
  const { resolved } = await loadResolved(options, io.cwd)
  const { buildGraph } = await import('../../core/materialize.js')
  const graph = buildGraph(resolved.assets)
  const lines =
    options.format === 'mermaid' ? mermaid(graph) : options.format === 'dot' ? dot(graph) : text(graph)
  for (const line of lines) io.out(line)
  return 0
}

/** Plan order, each asset with what it waits for and what waits for it. */
export function text(graph: AssetGraph): string[] {
  const width = Math.max(...graph.order.map((k) => k.length))
  return graph.order.map((key) => {
    const deps = graph.deps(key)
    const after = deps.length ? `← ${deps.join(', ')}` : '(root)'
    const group = graph.assets.get(key)!.group
    return `${key.padEnd(width)}  ${after}${group !== 'default' ? `  [${group}]` : ''}`
  })
}

export function mermaid(graph: AssetGraph): string[] {
  const id = new Map(graph.order.map((key, i) => [key, `n${i}`]))
  const lines = ['graph LR']
  for (const key of graph.order) lines.push(`  ${id.get(key)}["${key.replace(/"/g, '#quot;')}"]`)
  for (const key of graph.order)
    for (const dep of graph.deps(key)) lines.push(`  ${id.get(dep)} --> ${id.get(key)}`)
  return lines
}

export function dot(graph: AssetGraph): string[] {
  const q = (s: string) => JSON.stringify(s)
  const lines = ['digraph refresh {', '  rankdir=LR;', '  node [shape=box];']
  for (const key of graph.order) lines.push(`  ${q(key)};`)
  for (const key of graph.order) for (const dep of graph.deps(key)) lines.push(`  ${q(dep)} -> ${q(key)};`)
  lines.push('}')
  return lines
}
