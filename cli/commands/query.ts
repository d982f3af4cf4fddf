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
        for (const line of hitLines(result)) io.out(line)
        io.out(
          `${result.hits.length} hit${result.hits.length === 1 ? '' : 's'} for ${result.query} in ${Math.round(ms)} ms`,
        )
      }
      ctx.code = result.hits.length > 0 ? EXIT.ok : EXIT.failed
    })
}

/** The media index's fields: an index that has them all is shown as the media refresh always was. */
const MEDIA_SHOWN = ['title', 'creator', 'url', 'license', 'provider']
/** The longest a hit's first field, and each other field, is shown (longer ones end in `…`). */
const FIRST_FIELD_CHARS = 80
const OTHER_FIELD_CHARS = 40

/**
 * The hits as lines. The media index: `N. title - creator [license, provider]` and the URL under
 * it. Any other index: `N. <first searchable field> [<field>: <value>, ...]` with the other fields
 * that have a value, each on one line and cut to a sensible length (`--json` has them whole).
 */
export function hitLines(result: Pick<SearchResult, 'hits' | 'fields'>): string[] {
  const n = (i: number) => `${String(i + 1).padStart(3)}. `
  const fields = [...result.fields.searchable, ...result.fields.stored]
  if (MEDIA_SHOWN.every((f) => fields.includes(f))) {
    return result.hits.flatMap((h, i) => [
      `${n(i)}${h.title ?? '(untitled)'} - ${h.creator ?? 'unknown'} [${h.license}, ${h.provider}]`,
      `     ${h.url}`,
    ])
  }
  const [first, ...others] = fields
  return result.hits.map((h, i) => {
    const head = first === undefined ? '' : shown(h[first], FIRST_FIELD_CHARS)
    const rest = others
      .map((f) => [f, shown(h[f], OTHER_FIELD_CHARS)] as const)
      .filter(([, v]) => v !== '')
      .map(([f, v]) => `${f}: ${v}`)
    return `${n(i)}${head || '(empty)'}${rest.length ? ` [${rest.join(', ')}]` : ''}`
  })
}

/** A field's value on one line, at most `max` characters; '' for none. */
function shown(value: unknown, max: number): string {
  if (value === null || value === undefined) return ''
  const text = (typeof value === 'string' ? value : JSON.stringify(value)).replace(/\s+/g, ' ').trim()
  return text.length > max ? `${text.slice(0, max - 1).trimEnd()}…` : text
}

/**
 * The fields of an answer from a replica older than the `fields` of its answer: the first hit's
 * keys (the first of them taken as the searchable one).
 */
function fieldsOf(hits: SearchResult['hits']): SearchResult['fields'] {
  const keys = Object.keys(hits[0] ?? {}).filter((k) => k !== 'id' && k !== 'score')
  return { searchable: keys.slice(0, 1), stored: keys.slice(1) }
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
    fields: body.fields ?? fieldsOf(body.hits ?? []),
    index: body.index ?? 'unknown',
    snapshot: body.snapshot ?? 'unknown',
    documents: body.documents ?? 0,
    replica: base,
    query: body.query ?? text,
  }
}
