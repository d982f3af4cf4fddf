import { copyFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { AwsCallError, callAws, classifyAwsError, redact } from '../../aws/service.js'
import { asset } from '../../core/definitions.js'
import { materialize } from '../../core/materialize.js'
import { CLI, ROOT, run, tempDir } from '../helpers.js'

describe('AWS calls', () => {
  it('treats a network failure as transient even when the SDK attached metadata', () => {
    const dns = Object.assign(new Error('getaddrinfo ENOTFOUND ec2.nowhere.example'), {
      code: 'ENOTFOUND',
      $metadata: { attempts: 3 },
    })
    expect(classifyAwsError(dns)).toBe('transient')
    expect(classifyAwsError(Object.assign(new Error('x'), { name: 'TimeoutError', $metadata: {} }))).toBe(
      'transient',
    )
  })

  it('retries throttling, then names the action; never retries a denied call', async () => {
    let calls = 0
    const throttled = callAws(
      {
        service: 'ec2',
        action: 'DescribeInstances',
        resource: '*',
        where: 'ec2Replicas({...})',
        send: async () => {
          calls++
          throw Object.assign(new Error('Rate exceeded'), { name: 'RequestLimitExceeded', $metadata: {} })
        },
      },
      { callAttempts: 3, backoffMs: 1 },
    )
    await expect(throttled).rejects.toThrow(
      /EC2 DescribeInstances failed after 3 tries \(RequestLimitExceeded/,
    )
    expect(calls).toBe(3)
    calls = 0
    const denied = callAws(
      {
        service: 'ec2',
        action: 'RunInstances',
        resource: 'launch template lt-1',
        where: 'ec2Replicas({...})',
        send: async () => {
          calls++
          throw Object.assign(new Error('You are not authorized to perform this operation.'), {
            name: 'UnauthorizedOperation',
            $metadata: { httpStatusCode: 403 },
          })
        },
      },
      { callAttempts: 3, backoffMs: 1 },
    )
    await expect(denied).rejects.toBeInstanceOf(AwsCallError)
    await expect(denied).rejects.toThrow(/needs `ec2:RunInstances` on launch template lt-1/)
    expect(calls).toBe(1)
  })

  it('removes access keys and signatures from messages', () => {
    expect(redact('key AKIAIOSFODNN7EXAMPLE sig X-Amz-Signature=abcdef123&x=1')).toBe(
      'key AKIA**** sig X-Amz-Signature=****&x=1',
    )
  })

  it('a configuration error of the SDK (no region, no credentials) is sent once, not retried, and names what to set', async () => {
    // what the SDK throws before sending anything: no $metadata
    const region = Object.assign(new Error('Region is missing'), { name: 'Error' })
    const credentials = Object.assign(new Error('Could not load credentials from any providers'), {
      name: 'CredentialsProviderError',
    })
    expect(classifyAwsError(region)).toBe('config')
    expect(classifyAwsError(credentials)).toBe('config')
    for (const [error, fix] of [
      [region, /Set AWS_REGION/],
      [credentials, /Give this host credentials/],
    ] as const) {
      let calls = 0
      const call = callAws(
        {
          service: 's3',
          action: 'ListObjectsV2',
          resource: 'bucket acme',
          where: 'copy({...})',
          send: async () => {
            calls++
            throw error
          },
        },
        { callAttempts: 5, backoffMs: 1 },
      )
      await expect(call).rejects.toMatchObject({ kind: 'config', code: 'aws-config', retriable: false })
      await expect(call).rejects.toThrow(fix)
      expect(calls).toBe(1)
    }
    // and the step that met it is not attempted again, whatever its retry policy
    let attempts = 0
    const copy = asset({
      key: 'copy',
      retry: { maxAttempts: 3, delayMs: 1 },
      materialize: () => {
        attempts++
        throw new AwsCallError('ListObjectsV2', 'config', 'S3 ListObjectsV2 was not sent: ...')
      },
    })
    const result = await materialize([copy])
    expect(result.status).toBe('failure')
    expect(attempts).toBe(1)
  })

  it('without a region, every command that talks to AWS exits 2 with one paragraph, before any call', async () => {
    const dir = tempDir()
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    copyFileSync(join(ROOT, 'refresh.config.ts'), join(dir, 'refresh.config.ts'))
    // this process's environment without any AWS region or profile, and a home without ~/.aws
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!/^AWS_/.test(k)) env[k] = v
    Object.assign(env, {
      HOME: dir,
      NO_COLOR: '1',
      REFRESH_CONFIG: '',
      REFRESH_S3_BUCKET: 'acme-refresh',
      REFRESH_ECS_CLUSTER: 'refresh',
      REFRESH_ECS_TASK_DEFINITION: 'refresh-worker',
      REFRESH_SUBNETS: 'subnet-aaa',
      REFRESH_EBS_VOLUME_ID: 'vol-0abc',
      REFRESH_REPLICA_LAUNCH_TEMPLATE: 'refresh-replica',
    })
    const cli = (...args: string[]) => run([CLI, ...args], { cwd: dir, env, inheritEnv: false })
    for (const args of [
      ['run', '--env', 'aws', '--plain'],
      ['doctor', '--env', 'aws'],
      ['gc', '--env', 'aws'],
      ['promote', '--env', 'aws'],
    ]) {
      const r = await cli(...args)
      expect(r.code, `${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(
        /^refresh: the AWS SDK has no region to send requests to \(Region is missing\)\. Set AWS_REGION/,
      )
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stdout).not.toContain('FAIL')
      expect(r.stderr).not.toContain('internal error')
    }
  })

  it('a run whose step met a configuration error of the SDK (no credentials) exits 2, saying so once', async () => {
    const dir = tempDir()
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    writeFileSync(
      join(dir, 'refresh.config.ts'),
      `import { asset, AwsCallError, defineConfig } from 'refresh'
const copy = asset({ key: 'copy', retry: { maxAttempts: 3, delayMs: 1 }, materialize: () => {
  throw new AwsCallError('ListObjectsV2', 'config', 'S3 ListObjectsV2 was not sent: Could not load credentials. Give this host credentials.')
} })
export default defineConfig({ assets: [copy] })
`,
    )
    const r = await run([CLI, 'run', '--plain'], { cwd: dir, env: { NO_COLOR: '1' } })
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toBe(
      'refresh: copy: S3 ListObjectsV2 was not sent: Could not load credentials. Give this host credentials.\n',
    )
    expect(r.stdout.match(/copy\s+started/g)).toHaveLength(1)
  })
})
