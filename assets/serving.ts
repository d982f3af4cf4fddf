/**
 * What `refresh serve` answers from: one snapshot directory (its `manifest.json` and shard files),
 * searched across shards, and a deep health check of it. Read-only: nothing here writes.
 */
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { searchShard } from '../search/docs.js'
import type { HitFields, SearchHit } from '../search/hits.js'
import { readJson } from './layout.js'
import { toFtsQuery } from './search.js'
import type { Manifest } from './state.js'

export interface ServedSearch {
  hits: SearchHit[]
  /** The index's fields as the hits name them (searchable first). */
  fields: HitFields
  snapshot: string
  index: string
  documents: number
  query: string
}

export type ServedHealth =
  | { ok: true; snapshot: string; index: string; documents: number; shards: number; probe: string | null }
  | { ok: false; reason: string }

/** The manifest of a snapshot directory, or an error that says what is wrong with it. */
export function readServedManifest(dir: string): Manifest {
  const manifest = readJson<Manifest>(join(dir, 'manifest.json'))
  if (!manifest) throw new Error(`${dir} has no manifest.json; point --index at a snapshot directory.`)
  if (!Array.isArray(manifest.files) || typeof manifest.documents !== 'number') {
    throw new Error(`${join(dir, 'manifest.json')} is not a snapshot manifest (no files or documents).`)
  }
  return manifest
}

function open(dir: string, name: string): Database.Database {
  const path = join(dir, name)
  try {
    return new Database(path, { readonly: true, fileMustExist: true })
  } catch (cause) {
    throw new Error(`cannot open ${path}: ${(cause as Error).message}`, { cause })
  }
}

/** Best hits for free text across every shard of the snapshot in `dir`. */
export function searchSnapshotDir(dir: string, text: string, limit: number): ServedSearch {
  const manifest = readServedManifest(dir)
  const query = toFtsQuery(text)
  const hits: SearchHit[] = []
  let fields: HitFields = { searchable: [], stored: [] }
  if (query) {
    for (const file of manifest.files) {
      const db = open(dir, file.name)
      try {
        const found = searchShard(db, query, limit)
        hits.push(...found.hits)
        fields = found.fields
      } finally {
        db.close()
      }
    }
  }
  hits.sort((a, b) => a.score - b.score || a.id - b.id)
  return {
    hits: hits.slice(0, limit),
    fields,
    snapshot: manifest.id,
    index: manifest.index,
    documents: manifest.documents,
    query,
  }
}

/**
 * The deep check behind `/healthz`: the manifest reads, every shard opens, a real full-text
 * query runs (for the manifest's probe word, which must hit), and the documents counted in the
 * shards equal the manifest's count. A replica that passes can answer real queries.
 */
export function checkSnapshotDir(dir: string): ServedHealth {
  try {
    const manifest = readServedManifest(dir)
    let documents = 0
    let hits = 0
    for (const file of manifest.files) {
      const db = open(dir, file.name)
      try {
        documents += (db.prepare('SELECT count(*) AS n FROM docs').get() as { n: number }).n
        const probe = toFtsQuery(manifest.probe ?? '') || '"a"'
        hits += (
          db
            .prepare('SELECT count(*) AS n FROM (SELECT rowid FROM docs WHERE docs MATCH ? LIMIT 1)')
            .get(probe) as {
            n: number
          }
        ).n
      } finally {
        db.close()
      }
    }
    if (documents !== manifest.documents) {
      return {
        ok: false,
        reason: `the shards hold ${documents} documents but the manifest of ${manifest.id} says ${manifest.documents}`,
      }
    }
    if (manifest.probe && hits === 0) {
      return {
        ok: false,
        reason: `a query for "${manifest.probe}" (the manifest's probe word) found nothing`,
      }
    }
    return {
      ok: true,
      snapshot: manifest.id,
      index: manifest.index,
      documents,
      shards: manifest.files.length,
      probe: manifest.probe,
    }
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) }
  }
}
