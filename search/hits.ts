/** What a search of an index returns per document: kept apart from the code that reads shards, so the public types name no driver. */
/**
 * One document found: its id in the source table (the shard's rowid), its bm25 score (lower is
 * better) and every field the index holds, under the field's name. A field named `id` or `score`
 * would clash with those two: it is returned as `field_id` / `field_score` (`field_` prefixed
 * again until the name is free), and named so in `HitFields`.
 *
 * The media index's fields (`MEDIA_FIELDS`) are typed: they are there for a media index, absent
 * for another.
 */
export interface SearchHit {
  id: number
  score: number
  title?: string | null
  creator?: string | null
  url?: string
  license?: string
  provider?: string
  [field: string]: unknown
}

/** The fields of an index as they appear in its hits, in the index's order: searchable first. */
export interface HitFields {
  searchable: string[]
  stored: string[]
}
