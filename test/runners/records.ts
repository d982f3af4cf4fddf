import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * The AWS harnesses' records: one JSON file per task or instance, written by the orchestrator
 * (a child process) while the test reads them. A record is written under a temporary name and
 * renamed into place, so a reader sees the old record or the new one, never a file cut short
 * (a plain writeFileSync truncates first: a reader in between parsed an empty file).
 */
export function writeRecord(dir: string, name: string, value: unknown): void {
  const file = join(dir, `${name}.json`)
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, JSON.stringify(value))
  renameSync(tmp, file)
}

/** Every record of `dir` (only `*.json`: a record being written is not one yet). */
export function readRecords<T>(dir: string): T[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as T)
}
