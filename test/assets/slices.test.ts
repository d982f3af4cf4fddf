/**
 * catalog, copy and clean do their SQLite work in slices with a turn of the event loop between
 * them: the result must not depend on where the slices fall (sparse, negative and huge ids), the
 * progress must reach every row, and an abort must leave nothing half-written in place.
 */
import { createHash } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { generateCatalog } from '../../assets/catalog.js'
import { cleanConfig, cleanTable } from '../../assets/clean.js'
import { copyTable, MEDIA_COLUMNS } from '../../assets/copy.js'
import { tempDir } from '../helpers.js'

const HUGE = 2n ** 60n + 7n

/** A `media` table with gaps in its ids, a negative id and one past 2^53, some rows dirty. */
function sparseMedia(file: string): number {
  const db = new Database(file)
  db.exec(`CREATE TABLE media (${MEDIA_COLUMNS})`)
  const insert = db.prepare('INSERT INTO media VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0)')
  const ids: Array<number | bigint> = [-5, ...Array.from({ length: 40 }, (_, i) => 3 * i + 1), HUGE]
  for (const [i, id] of ids.entries()) {
    const url = i % 7 === 0 ? null : i % 5 === 0 ? `x.example/${i}.jpg` : `https://x.example/${i}.jpg`
    const license = i % 11 === 0 ? 'all-rights-reserved' : 'by'
    const tags = JSON.stringify([
      { name: 'Sky', accuracy: 0.95 },
      { name: 'sky', accuracy: 0.97 },
      { name: i % 2 ? 'cat' : 'watermark', accuracy: i % 3 ? 0.99 : 0.4 },
    ])
    insert.run(id, `id${i}`, i % 4 ? `  Title  ${i} ` : '  ', 'Ada', url, license, 'p', tags)
  }
  db.close()
  return ids.length
}

function rowsOf(file: string, table: string): unknown[] {
  const db = new Database(file, { readonly: true })
  try {
    return db.prepare(`SELECT * FROM ${table} ORDER BY id`).safeIntegers().all()
  } finally {
    db.close()
  }
}

function tables(file: string): string[] {
  const db = new Database(file)
  try {
    return db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .pluck()
      .all() as string[]
  } finally {
    db.close()
  }
}

describe('copy in slices', () => {
  it('copies every row exactly whatever the slice size, with progress up to the last row', async () => {
    const dir = tempDir()
    const source = join(dir, 'catalog.db')
    const total = sparseMedia(source)
    const progress: Array<[number, number]> = []
    const copied = await copyTable(source, join(dir, 'small.db'), {
      sliceRows: 3,
      progress: (done, of) => progress.push([done, of]),
    })
    expect(copied).toBe(total)
    expect(await copyTable(source, join(dir, 'whole.db'))).toBe(total)
    expect(rowsOf(join(dir, 'small.db'), 'media')).toEqual(rowsOf(source, 'media'))
    expect(rowsOf(join(dir, 'whole.db'), 'media')).toEqual(rowsOf(source, 'media'))
    expect(progress).toHaveLength(Math.ceil(total / 3))
    expect(progress.at(-1)).toEqual([total, total])
    expect(readdirSync(dir).sort()).toEqual(['catalog.db', 'small.db', 'whole.db'])
  })

  it('an abort removes the partial copy at once and leaves nothing at the target', async () => {
    const dir = tempDir()
    const source = join(dir, 'catalog.db')
    sparseMedia(source)
    const target = join(dir, 'work.db')
    const controller = new AbortController()
    let seenAfterAbort = true
    const copying = copyTable(source, target, {
      sliceRows: 5,
      signal: controller.signal,
      progress: (done) => {
        if (done === 10) {
          // the abort is dispatched between two slices, as a signal or a timer would be
          setImmediate(() => {
            controller.abort(new Error('stop'))
            seenAfterAbort = existsSync(`${target}.tmp`)
          })
        }
      },
    })
    await expect(copying).rejects.toThrow('stop')
    expect(seenAfterAbort).toBe(false)
    expect(readdirSync(dir)).toEqual(['catalog.db'])
  })
})

describe('clean in slices', () => {
  it('gives the same table and counts whatever the slice size, with progress up to the last row', async () => {
    const dir = tempDir()
    const small = join(dir, 'small.db')
    const whole = join(dir, 'whole.db')
    const total = sparseMedia(small)
    sparseMedia(whole)
    const rules = cleanConfig.parse({ dropBlankTitles: false })
    const progress: number[] = []
    const a = await cleanTable(small, rules, { sliceRows: 4, progress: (done) => progress.push(done) })
    const b = await cleanTable(whole, rules)
    expect(a).toEqual(b)
    expect(a.counts.input).toBe(total)
    expect(a.rows).toBeGreaterThan(0)
    expect(a.rows).toBeLessThan(total)
    expect(rowsOf(small, 'media_clean')).toEqual(rowsOf(whole, 'media_clean'))
    expect((rowsOf(small, 'media_clean').at(-1) as { id: bigint }).id).toBe(HUGE)
    expect(progress).toHaveLength(Math.ceil(total / 4))
    expect(progress.at(-1)).toBe(total)
  })

  it('an abort rolls the table back at once: no half-filled media_clean, the file usable', async () => {
    const dir = tempDir()
    const file = join(dir, 'work.db')
    sparseMedia(file)
    const controller = new AbortController()
    let tablesAfterAbort: string[] = []
    const cleaning = cleanTable(file, cleanConfig.parse({}), {
      sliceRows: 4,
      signal: controller.signal,
      progress: (done) => {
        if (done === 8) {
          setImmediate(() => {
            controller.abort(new Error('stop'))
            tablesAfterAbort = tables(file)
          })
        }
      },
    })
    await expect(cleaning).rejects.toThrow('stop')
    expect(tablesAfterAbort).toEqual(['media'])
    expect(tables(file)).toEqual(['media'])
    // nothing holds the file: the next attempt cleans it
    expect((await cleanTable(file, cleanConfig.parse({}))).counts.input).toBe(42)
  })
})

describe('catalog in slices', () => {
  it('an abort closes and removes the file at once', async () => {
    const file = join(tempDir(), 'catalog.tmp')
    const controller = new AbortController()
    let seenAfterAbort = true
    const generating = generateCatalog(
      file,
      1_000_000,
      1,
      (done) => {
        if (done === 10_000) {
          setImmediate(() => {
            controller.abort(new Error('stop'))
            seenAfterAbort = existsSync(file)
          })
        }
      },
      controller.signal,
    )
    await expect(generating).rejects.toThrow('stop')
    expect(seenAfterAbort).toBe(false)
    expect(existsSync(file)).toBe(false)
  })

  it('gives the same rows as the generator did before it was sliced', async () => {
    const file = join(tempDir(), 'catalog.db')
    await generateCatalog(file, 12_345, 3, () => undefined)
    const db = new Database(file, { readonly: true })
    const hash = createHash('sha256')
    try {
      for (const row of db.prepare('SELECT * FROM media ORDER BY id').iterate())
        hash.update(JSON.stringify(row))
    } finally {
      db.close()
    }
    // taken from the generator of 0a2c474 (one transaction per 50,000 rows, no slices)
    expect(hash.digest('hex')).toBe('f87e07ca581d3e453b0b529f34a8ee78c4493b65b5689e4a8e50102310b00719')
  })
})
