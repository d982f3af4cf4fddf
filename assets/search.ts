import { existsSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { RefreshError } from '../core/errors.js'
import { searchShard } from '../search/docs.js'
import type { HitFields, SearchHit } from '../search/hits.js'
import { layout } from './layout.js'
import { type Manifest, readAlias, readManifest, readReplica, replicaNames } from './state.js'

export type { HitFields, SearchHit } from '../search/hits.js'

export interface SearchResult {
  hits: SearchHit[]
  /** The index's fields as the hits name them (searchable first); the media index's, or any other's. */
  fields: HitFields
  index: string
  snapshot: string
  documents: number
  /** The replica that answered, or null when none serves the promoted snapshot (read from the snapshot). */
  replica: string | null
  /** The FTS5 query the text became. */
  query: string
}

/**
 * Turns free text into an FTS5 query: each word quoted (so `-`, `"`, `*` and `OR` typed by a user
 * are words, not syntax), all of them required.
 */
export function toFtsQuery(text: string): string {
  const words = text.match(/[\p{L}\p{N}_]+/gu) ?? []
  return words.map((w) => `"${w}"`).join(' ')
}

/** Searches the promoted index through a replica that serves it: best hits across all shards. */
export function searchPromoted(dataDir: string, text: string, limit = 10): SearchResult {
  const paths = layout(dataDir)
  const alias = readAlias(paths)
  if (!alias) {
    throw new RefreshError(
      'query',
      `nothing is promoted in ${dataDir} yet; run \`refresh run\` to build and promote an index.`,
    )
  }
  const query = toFtsQuery(text)
  if (!query)
    throw new RefreshError('query', `"${text}" has no words to search for; try \`refresh query fox\`.`)
  const { snapshot, index } = alias.current
  const replica = replicaNames(paths).find((name) => readReplica(paths, name)?.snapshot === snapshot) ?? null
  const dir = replica ? join(paths.replica(replica), snapshot) : paths.snapshot(snapshot)
  const manifest: Manifest | undefined = readManifest(paths, snapshot)
  if (!manifest || !existsSync(dir)) {
    throw new RefreshError(
      'query',
      `the promoted snapshot ${snapshot} is missing from ${dir}; run \`refresh run\`.`,
    )
  }
  const hits: SearchHit[] = []
  let fields: HitFields = { searchable: [], stored: [] }
  for (const file of manifest.files) {
    const db = new Database(join(dir, file.name), { readonly: true, fileMustExist: true })
    try {
      const found = searchShard(db, query, limit)
      hits.push(...found.hits)
      fields = found.fields
    } finally {
      db.close()
    }
  }
  hits.sort((a, b) => a.score - b.score || a.id - b.id)
  return {
    hits: hits.slice(0, limit),
    fields,
    index,
    snapshot,
    documents: manifest.documents,
    replica,
    query,
  }
}
