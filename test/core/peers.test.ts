import { describe, expect, it } from 'vitest'
import { ConfigError, isRefreshError } from '../../core/errors.js'
import { importPeer, isPeerInstalled, requirePeer } from '../../core/peers.js'

// A package name that no registry serves: what a project without an optional peer looks like here.
const ABSENT = '@aws-sdk/client-not-installed-here'

describe('optional peer dependencies', () => {
  it('finds a package the project installed', async () => {
    expect(isPeerInstalled('zod')).toBe(true)
    expect(() => requirePeer('@aws-sdk/client-s3', 'the S3 backend')).not.toThrow()
    const sdk = await importPeer('@aws-sdk/client-s3', 'the S3 backend', () => import('@aws-sdk/client-s3'))
    expect(typeof sdk.S3Client).toBe('function')
  })

  it('refuses a missing one as bad input that names the package to install', async () => {
    expect(isPeerInstalled(ABSENT)).toBe(false)
    let error: unknown
    try {
      requirePeer(ABSENT, 'AWS ECS for ecsRunner({...})')
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    expect(isRefreshError(error)).toBe(true)
    expect((error as Error).message).toMatch(
      /^AWS ECS for ecsRunner\(\{\.\.\.\}\) needs the package `@aws-sdk\/client-not-installed-here`, which is not installed\. Install it in the project that runs refresh: `npm install @aws-sdk\/client-not-installed-here`/,
    )
    expect((error as Error).cause).toBeDefined()
    let loaded = false
    await expect(
      importPeer(ABSENT, 'the backend', async () => {
        loaded = true
        return {}
      }),
    ).rejects.toThrow(`npm install ${ABSENT}`)
    expect(loaded).toBe(false)
  })
})
