import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { cleanConfig, cleanTable } from '../../assets/clean.js'
import { tempDir } from '../helpers.js'

const tags = (...t: Array<[string, number]>) =>
  JSON.stringify(t.map(([name, accuracy]) => ({ name, accuracy })))

/** A working database with hand-made rows, one per rule. */
function workDb(): string {
  const file = join(tempDir(), 'work.db')
  const db = new Database(file)
  db.exec(`CREATE TABLE media (id INTEGER PRIMARY KEY, identifier TEXT NOT NULL, title TEXT, creator TEXT, url TEXT,
    license TEXT, provider TEXT NOT NULL, tags TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`)
  const insert = db.prepare('INSERT INTO media VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0)')
  insert.run(1, 'a', 'Red fox', 'Ada', 'https://x.example/1.jpg', 'by', 'p', tags(['fox', 0.95]))
  insert.run(2, 'b', '  Blue   river ', 'Ada', 'x.example/2.jpg', 'cc0', 'p', '[]')
  insert.run(3, 'c', 'No url', 'Ada', null, 'by', 'p', '[]')
  insert.run(4, 'd', 'Blank url', 'Ada', '  ', 'by', 'p', '[]')
  insert.run(5, 'e', 'Bad license', 'Ada', 'https://x.example/5.jpg', 'all-rights-reserved', 'p', '[]')
  insert.run(6, 'f', '   ', 'Ada', 'https://x.example/6.jpg', 'by', 'p', '[]')
  insert.run(
    7,
    'g',
    'Tags',
    'Ada',
    'https://x.example/7.jpg',
    'by',
    'p',
    tags(['Sky', 0.91], ['sky', 0.97], ['cat', 0.4], ['Watermark', 0.99], ['tree', 0.92]),
  )
  db.close()
  return file
}

describe('clean', () => {
  it('applies every rule with its defaults and counts what each did', async () => {
    const file = workDb()
    const result = await cleanTable(file, cleanConfig.parse({}))
    expect(result).toMatchObject({ rows: 4, minId: 1, maxId: 7 })
    expect(result.counts).toEqual({
      input: 7,
      droppedNoUrl: 2,
      droppedLicense: 1,
      droppedBlankTitle: 0,
      urlsFixed: 1,
      blankTitles: 1,
      titlesNormalized: 1,
      tagsLowAccuracy: 1,
      tagsDenied: 1,
      tagsDuplicate: 1,
    })
    const db = new Database(file, { readonly: true })
    const rows = db.prepare('SELECT id, title, url, tags FROM media_clean ORDER BY id').all()
    db.close()
    expect(rows).toEqual([
      { id: 1, title: 'Red fox', url: 'https://x.example/1.jpg', tags: tags(['fox', 0.95]) },
      { id: 2, title: 'Blue river', url: 'https://x.example/2.jpg', tags: '[]' },
      { id: 6, title: null, url: 'https://x.example/6.jpg', tags: '[]' },
      // one tag per name (the most accurate), low-accuracy and denied ones gone, sorted by name
      { id: 7, title: 'Tags', url: 'https://x.example/7.jpg', tags: tags(['sky', 0.97], ['tree', 0.92]) },
    ])
  })

  it('takes its rules from config, lists also as `a,b` strings (as `--set` gives them)', async () => {
    const file = workDb()
    const rules = cleanConfig.parse({
      licenses: 'by,all-rights-reserved',
      deniedTags: 'tree',
      minTagAccuracy: 0.3,
      dropBlankTitles: true,
      urlScheme: 'http',
    })
    const result = await cleanTable(file, rules)
    expect(result.counts).toMatchObject({
      droppedLicense: 1, // cc0 (row 2) is no longer allowed; all-rights-reserved now is
      droppedBlankTitle: 1,
      tagsLowAccuracy: 0,
      tagsDenied: 1,
      tagsDuplicate: 1,
    })
    const db = new Database(file, { readonly: true })
    const ids = db.prepare('SELECT id FROM media_clean ORDER BY id').pluck().all()
    const seven = db.prepare('SELECT tags FROM media_clean WHERE id = 7').pluck().get()
    db.close()
    expect(ids).toEqual([1, 5, 7])
    expect(seven).toBe(tags(['cat', 0.4], ['sky', 0.97], ['watermark', 0.99]))
  })

  it('rejects a bad rule with the field named', () => {
    const parsed = cleanConfig.safeParse({ minTagAccuracy: 2 })
    expect(parsed.success).toBe(false)
    expect(parsed.error?.issues[0]?.path).toEqual(['minTagAccuracy'])
  })
})
