import type { Command } from 'commander'
import type { SearchResult } from '../../assets/search.js'
import { ConfigError } from '../../core/errors.js'
import { type CliContext, EXIT } from '../io.js'

interface QueryOptions {
  config?: string
  env?: string
  limit: string
  json?: boolean
  replica?: string
}

export function registerQuery(program: Command, ctx: CliContext): void {
  program
    .command('query')
    .description('search the promoted index (through a replica) and print the hits')
    .argument('<text>', 'words to search for (all must match)')
    .option('-n, --limit <n>', 'hits to show', '10')
    .option(
      '-c, --config <file>',
      'config file (default: $REFRESH_CONFIG, else refresh.config.ts here or in a parent directory)',
    )
    .option('--env <name>', 'a named environment block of the config')
    .option('--json', 'the result as one JSON object')
    .option('--replica <url>', 'ask a running `refresh serve` replica over HTTP (an EC2 replica, say)')
    .addHelpText(
      'after',
      '\nExamples:\n  refresh query fox\n  refresh query "golden harbor" --limit 3\n  refresh query fox --replica http://10.0.1.17:8080',
    )
    .action(async (text: string, options: QueryOptions) => {
      const limit = Number(options.limit)
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        throw new ConfigError(
          `--limit ${options.limit}: expected a whole number from 1 to 1000 (for example --limit 5).`,
        )
      }
      const started = performance.now()
      let result: SearchResult
      if (options.replica) {
        result = await searchReplica(options.replica, text, limit)
      } else {
        // the assets (and the config loader) load here, not for every command
        const [{ findDataDir }, { searchPromoted }] = await Promise.all([
          import('../data-dir.js'),
          import('../../assets/search.js'),
        ])
        result = searchPromoted(await findDataDir(options, ctx.io.cwd), text, limit)
      }
      const ms = performance.now() - started
      const { io } = ctx
      if (options.json) {
        io.out(JSON.stringify(result))
      } else {
        const via = result.replica
          ? `replica ${result.replica}`
          : 'the snapshot directly (no replica serves it)'
        io.out(
          `index ${result.index} (snapshot ${result.snapshot}, ${result.documents} documents) via ${via}`,
        )
        result.hits.forEach((h, i) => {
          const title = h.title ?? '(untitled)'
          io.out(
            `${String(i + 1).padStart(3)}. ${title} - ${h.creator ?? 'unknown'} [${h.license}, ${h.provider}]`,
          )
          io.out(`     ${h.url}`)
        })
        io.out(
          `${result.hits.length} hit${result.hits.length === 1 ? '' : 's'} for ${result.query} in ${Math.round(ms)} ms`,
        )
      }
      ctx.code = result.hits.length > 0 ? EXIT.ok : EXIT.failed
    })
}

/** A search through a replica's HTTP API (`refresh serve`): its hits, or an error that names the replica. */
async function searchReplica(base: string, text: string, limit: number): Promise<SearchResult> {
  let url: URL
  try {
    url = new URL('/search', base)
  } catch {
    throw new ConfigError(
      `--replica ${base}: not a URL; expected http://HOST:PORT (what \`refresh serve\` prints).`,
    )
  }
  url.searchParams.set('q', text)
  url.searchParams.set('limit', String(limit))
  let response: Response
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  } catch (cause) {
    throw new Error(`replica ${base} did not answer: ${(cause as Error).message}`, { cause })
  }
  const body = (await response.json().catch(() => ({}))) as Partial<SearchResult> & { error?: string }
  if (!response.ok)
    throw new Error(`replica ${base} answered ${response.status}: ${body.error ?? 'no reason'}`)
  return {
    hits: body.hits ?? [],
    index: body.index ?? 'unknown',
    snapshot: body.snapshot ?? 'unknown',
    documents: body.documents ?? 0,
    replica: base,
    query: body.query ?? text,
  }
}
