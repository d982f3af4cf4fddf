/**
 * The `current` alias as an S3 object (`<prefix>current.json`), for deployments where the
 * orchestrator and the readers share a bucket rather than a volume. It is written whole with one
 * PutObject, so a reader sees the old or the new value, never part of one.
 *
 * No compare-and-swap (If-Match) is used: promote and `refresh promote --rollback` are serialized
 * by the config's run guards, so two writers never race for the alias. (s3rver, the tests' S3
 * server, ignores If-Match anyway.)
 */
import { type S3Options, S3Store, s3Location, s3Url } from '../aws/s3.js'
import type { AliasStore } from './backends.js'
import type { Alias } from './state.js'

export interface S3AliasStore extends AliasStore {
  readonly bucket: string
  readonly key: string
  close(): void
}

/** The alias at `<prefix>current.json` of `s3://bucket/prefix/`. */
export function s3AliasStore(
  location: string | { bucket: string; prefix?: string },
  options: S3Options = {},
): S3AliasStore {
  const where = options.where ?? 'promote({ alias })'
  const loc = s3Location(location, where)
  const key = `${loc.prefix}current.json`
  const url = s3Url(loc.bucket, key)
  let store: S3Store | undefined
  const s3 = () => {
    store ??= new S3Store({ ...options, where })
    return store
  }
  return {
    where: url,
    bucket: loc.bucket,
    key,
    async read() {
      const alias = await s3().getJson<Alias>(loc.bucket, key)
      if (alias !== undefined && (alias?.version !== 1 || typeof alias.current?.snapshot !== 'string')) {
        throw new Error(
          `${url} is not a refresh alias (no version 1 \`current\` entry); restore or remove it.`,
        )
      }
      return alias
    },
    async write(alias) {
      await s3().putJson(loc.bucket, key, alias)
    },
    close() {
      store?.close()
      store = undefined
    },
  }
}
