import { describe, expect, it } from 'vitest'
import { AwsCallError, callAws, classifyAwsError, redact } from '../../aws/service.js'

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
})
