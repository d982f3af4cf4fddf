import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3IntegrityError, S3NotFoundError, S3Store, s3Location } from '../../aws/s3.js'
import { type LocalS3, startLocalS3 } from '../s3-server.js'

let s3: LocalS3
let dir: string
const store = new S3Store({ where: 'the test' })

beforeAll(async () => {
  s3 = await startLocalS3(['refresh-test'])
  dir = mkdtempSync(join(tmpdir(), 'refresh-s3-store-'))
})
afterAll(async () => {
  await store.close()
  await s3.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('S3Store against a local S3 server', () => {
  it('parses locations and refuses what is not one', () => {
    expect(s3Location('s3://b/a/b')).toEqual({ bucket: 'b', prefix: 'a/b/' })
    expect(s3Location('s3://b')).toEqual({ bucket: 'b', prefix: '' })
    expect(s3Location({ bucket: 'b', prefix: '/x' })).toEqual({ bucket: 'b', prefix: 'x/' })
    expect(() => s3Location('/tmp/x', 'copy({ source })')).toThrow(
      /copy\(\{ source \}\).*s3:\/\/bucket\/prefix/,
    )
  })

  it('uploads in one call and in parts, and downloads the same bytes, checked', async () => {
    const small = join(dir, 'small.bin')
    writeFileSync(small, Buffer.from('a small file\n'))
    const up = await store.upload(small, 'refresh-test', 'x/small.bin')
    expect(up.bytes).toBe(13)
    const big = join(dir, 'big.bin')
    const bytes = Buffer.alloc(11 * 1024 * 1024 + 17)
    for (let i = 0; i < bytes.length; i += 4096) bytes[i] = i % 251
    writeFileSync(big, bytes)
    let moved = 0
    const multi = await store.upload(big, 'refresh-test', 'x/big.bin', {
      multipartThresholdBytes: 6 * 1024 * 1024,
      partSizeBytes: 5 * 1024 * 1024,
      onBytes: (n) => {
        moved += n
      },
    })
    expect(moved).toBe(bytes.length)
    const back = join(dir, 'big.back')
    const down = await store.download('refresh-test', 'x/big.bin', back, { expect: { size: bytes.length } })
    expect(down.sha256).toBe(multi.sha256)
    expect(readFileSync(back).equals(bytes)).toBe(true)
    const listed = await store.list('refresh-test', 'x/')
    expect(listed.map((o) => o.key)).toEqual(['x/big.bin', 'x/small.bin'])
  })

  it('refuses a download whose bytes do not match, and leaves no file', async () => {
    await store.putBytes('refresh-test', 'y/a.txt', Buffer.from('hello'))
    const file = join(dir, 'a.txt')
    await expect(
      store.download('refresh-test', 'y/a.txt', file, { expect: { sha256: '0'.repeat(64) } }),
    ).rejects.toBeInstanceOf(S3IntegrityError)
    await expect(
      store.download('refresh-test', 'y/a.txt', file, { expect: { etag: 'not-the-etag' } }),
    ).rejects.toThrow(/changed while it was read/)
    expect(() => readFileSync(file)).toThrow()
  })

  it('names a missing bucket and a missing key', async () => {
    await expect(store.headBucket('no-such-bucket')).rejects.toThrow(/bucket no-such-bucket does not exist/)
    await expect(store.list('no-such-bucket', '')).rejects.toBeInstanceOf(S3NotFoundError)
    await expect(store.getJson('refresh-test', 'nothing/here.json')).resolves.toBeUndefined()
    await expect(store.download('refresh-test', 'nothing/here', join(dir, 'n'))).rejects.toThrow(
      /s3:\/\/refresh-test\/nothing\/here does not exist/,
    )
    await store.headBucket('refresh-test')
  })
})
