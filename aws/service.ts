/**
 * What every AWS backend shares: how an AWS error is classified (denied, throttled, invalid,
 * transient), how a call is retried with backoff and explained when it fails for good, and the
 * options every client is built from. No AWS SDK package is imported here: each backend loads
 * its own client with `import()` on first use, so a command that never touches AWS never pays
 * for the SDK (0.4 to 0.6 s of start-up per client package). The client packages are optional
 * peer dependencies: a backend checks that its package is installed when it is made.
 */

import { sleep } from '../core/async.js'
import { RefreshError } from '../core/errors.js'
import { requirePeer } from '../core/peers.js'
import type { AwsSdkClient } from './types.js'

/** What went wrong with an AWS call, for retry decisions and messages. */
export type AwsErrorKind = 'denied' | 'throttled' | 'invalid' | 'transient' | 'config'

const DENIED = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'UnauthorizedOperation',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'ExpiredTokenException',
  'ExpiredToken',
  'NotAuthorized',
  'AuthFailure',
  'SignatureDoesNotMatch',
  'InvalidAccessKeyId',
])
const THROTTLED = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'SlowDown',
  'ServerException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalError',
  'InternalFailure',
  'InsufficientInstanceCapacity',
  'InsufficientCapacity',
  'Unavailable',
])

const NETWORK = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
])

/**
 * The SDK's own configuration is incomplete: the request was never sent (no `$metadata`), so no
 * retry can help; the fix is on this host.
 */
const SDK_CONFIG =
  /region is missing|invalid region|could not load credentials|unable to (load|find) (profile|credentials)/i

/**
 * Sorts an AWS error: `config` (the SDK cannot send it: no region or no credentials on this
 * host; not retried, the message says what to set), `denied` (not retried; the message names
 * the permission), `throttled` (AWS is busy, out of capacity or failed on its side: retried with
 * backoff), `invalid` (the request is wrong: not retried; the message names the config field)
 * and `transient` (no answer: a network error, retried).
 */
export function classifyAwsError(error: unknown): AwsErrorKind {
  const e = error as { name?: unknown; message?: unknown; $metadata?: unknown; $fault?: unknown }
  const name = typeof e?.name === 'string' ? e.name : ''
  const message = typeof e?.message === 'string' ? e.message : ''
  if (e?.$metadata === undefined && (name === 'CredentialsProviderError' || SDK_CONFIG.test(message)))
    return 'config'
  if (DENIED.has(name) || /not authorized to perform|access denied|could not load credentials/i.test(message))
    return 'denied'
  if (THROTTLED.has(name) || /rate exceeded|throttl|insufficient capacity/i.test(message)) return 'throttled'
  // no answer: the SDK puts $metadata on network errors too, so the code decides
  const code = (error as { code?: unknown })?.code
  if (typeof code === 'string' && NETWORK.has(code)) return 'transient'
  if (name === 'TimeoutError' || name === 'RequestTimeout') return 'transient'
  if (e?.$metadata === undefined) return 'transient'
  if (e.$fault === 'server') return 'throttled'
  return 'invalid'
}

/** An AWS call that failed for good, with a message that names the action and the fix. */
export class AwsCallError extends RefreshError {
  readonly action: string
  readonly kind: AwsErrorKind
  /** Code `aws-config` (bad input: no region or credentials, the CLI exits 2) or `aws` (the call failed). */
  constructor(action: string, kind: AwsErrorKind, message: string, options?: { cause?: unknown }) {
    super(kind === 'config' ? 'aws-config' : 'aws', message, options)
    this.name = 'AwsCallError'
    this.action = action
    this.kind = kind
  }
  get retriable(): boolean {
    return this.kind === 'throttled' || this.kind === 'transient'
  }
}

/** Options every AWS backend accepts for its calls. */
export interface AwsCallOptions {
  /** AWS region for the default client (default: the SDK's chain, e.g. `AWS_REGION`). */
  region?: string
  /** Calls tried when AWS throttles or fails on its side (default 5). */
  callAttempts?: number
  /** First backoff delay, doubled each time with jitter, capped at 30 s (default 1000 ms). */
  backoffMs?: number
}

export interface AwsCall<T> {
  /** The service's short name for messages and IAM actions: `ecs`, `s3`, `ec2`. */
  service: string
  /** The API action (`RunTask`), as IAM names it after the service prefix. */
  action: string
  /** What the call is about, for the denied message (`cluster refresh`). */
  resource: string
  /** The config field to check when AWS says the request is invalid. */
  field?: (name: string, message: string) => string
  /** Where the field is set, for the invalid message (`ecsRunner({...})`). */
  where: string
  send(): Promise<T>
  /** Counts the call (each try), for stats and benchmarks. */
  count?(action: string): void
  /** Errors that are answers rather than failures (a missing key): returned as is, not retried. */
  passThrough?(error: unknown): boolean
}

/**
 * Makes one AWS call: retried with backoff while AWS throttles or the network fails, then
 * thrown as an AwsCallError whose message names the action and the fix: the IAM permission
 * when denied, the config field when invalid.
 */
export async function callAws<T>(call: AwsCall<T>, options: AwsCallOptions = {}): Promise<T> {
  const attempts = options.callAttempts ?? 5
  for (let n = 1; ; n++) {
    call.count?.(call.action)
    try {
      return await call.send()
    } catch (error) {
      if (call.passThrough?.(error)) throw error
      const kind = classifyAwsError(error)
      const name = (error as { name?: string }).name ?? 'Error'
      const text = redact(error instanceof Error ? error.message : String(error))
      if ((kind === 'throttled' || kind === 'transient') && n < attempts) {
        await sleep(backoff(options.backoffMs ?? 1000, n))
        continue
      }
      const service = call.service.toUpperCase()
      const message =
        kind === 'config'
          ? `${service} ${call.action} was not sent: the AWS SDK on this host is not configured (${name}: ${text}). ${sdkConfigFix(text)}`
          : kind === 'denied'
            ? `${service} ${call.action} was denied (${name}: ${text}). The IAM policy of these credentials needs \`${call.service}:${call.action}\` on ${call.resource}; see docs/aws.md.`
            : kind === 'invalid'
              ? `${service} ${call.action} rejected the request (${name}: ${text}); check \`${call.field?.(name, text) ?? 'its options'}\` in ${call.where} in refresh.config.ts.`
              : `${service} ${call.action} failed after ${n} tries (${name}: ${text}); AWS is throttling, out of capacity or unreachable.`
      throw new AwsCallError(call.action, kind, message, { cause: error })
    }
  }
}

/** What to set when the SDK cannot send a request: the region, or credentials. */
export function sdkConfigFix(message: string): string {
  if (/region/i.test(message)) {
    return 'Set AWS_REGION (for example AWS_REGION=us-east-1), or a `region` in the profile AWS_PROFILE names (~/.aws/config), then run again.'
  }
  return 'Give this host credentials: an instance or task role, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; then run again.'
}

/** Removes what looks like a secret (an access key id, a signature, a session token) from a message. */
export function redact(text: string): string {
  return text
    .replace(/\b(AKIA|ASIA)[A-Z0-9]{12,}\b/g, '$1****')
    .replace(/(Signature|X-Amz-Signature|X-Amz-Security-Token|x-amz-security-token)=[^&\s]+/gi, '$1=****')
}

/** Exponential backoff with jitter (between half and all of the step), capped at 30 s. */
export function backoff(base: number, n: number): number {
  const ms = Math.min(30_000, base * 2 ** (n - 1))
  return ms / 2 + Math.random() * (ms / 2)
}

/**
 * The config of a default AWS client: the region when given, and the standard credential chain
 * and `AWS_ENDPOINT_URL_<SERVICE>` variables left to the SDK. Call it right before creating the
 * client. On Node 20 the SDK warns on every process that its next versions need Node 22; that
 * notice says nothing about this run, so it is turned off unless the environment sets it.
 */
export function clientConfig(options: Pick<AwsCallOptions, 'region'>): { region?: string } {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  return options.region === undefined ? {} : { region: options.region }
}

/** The tags every resource refresh creates carries: the run (for gc and crash recovery) and the asset. */
export const TAG = {
  run: 'refresh:run',
  asset: 'refresh:asset',
  shard: 'refresh:shard',
  fleet: 'refresh:fleet',
  snapshot: 'refresh:snapshot',
  index: 'refresh:index',
  sourceSnapshot: 'refresh:source-snapshot',
  /** What requested a run (`sensor:NAME`, `schedule:NAME`), on the ECS task a daemon launched it as. */
  origin: 'refresh:origin',
  /** `refresh`: made by refresh, so refresh may delete it (IAM policies scope deletes by it). */
  managedBy: 'refresh:managed-by',
} as const

/** The AWS SDK client packages refresh uses: optional peer dependencies of refresh. */
export type AwsSdkPackage =
  | '@aws-sdk/client-s3'
  | '@aws-sdk/client-ecs'
  | '@aws-sdk/client-ec2'
  | '@aws-sdk/client-elastic-load-balancing-v2'

/**
 * Throws a `ConfigError` that names `npm install <package>` unless the SDK package is installed;
 * `where` names what needs it (`ecsRunner({...})`).
 */
export function requireAwsSdk(pkg: AwsSdkPackage, service: string, where: string): void {
  requirePeer(pkg, `AWS ${service.toUpperCase()} for ${where}`)
}

/** How an AWS service's client is made and its calls are explained. */
export interface AwsServiceSpec<M, C> {
  /** The service's short name for messages and IAM actions: `ecs`, `s3`, `ec2`. */
  service: string
  /** Where its options are set, for the invalid-request message (`ecsRunner({...})`). */
  where: string
  /** The SDK package `load` imports: checked to be installed when the service is made. */
  package: AwsSdkPackage
  /** Loads the SDK package (`() => import('@aws-sdk/client-ecs')`): on the first call only. */
  load(): Promise<M>
  /** Makes the default client (call `clientConfig` in it). */
  make(sdk: M): C
  /** A client to use instead (tests pass a mocked one), as the public options type it; never destroyed here. */
  client?: AwsSdkClient | undefined
  /** The config field to check when the service says a request of this action is invalid. */
  field?(action: string, name: string, message: string): string
  /** Counts each try of an action (stats, benchmarks). */
  count?(action: string): void
  options: AwsCallOptions
}

/**
 * One AWS service as the backends use it: the SDK package and the client made on the first call,
 * every call made through `callAws` (retried, classified, explained), the default client closed
 * by `destroy`.
 */
export class AwsService<M, C extends { destroy(): void }> {
  private loaded: Promise<{ sdk: M; client: C }> | undefined
  private readonly spec: AwsServiceSpec<M, C>

  constructor(spec: AwsServiceSpec<M, C>) {
    requireAwsSdk(spec.package, spec.service, spec.where)
    this.spec = spec
  }

  private get(): Promise<{ sdk: M; client: C }> {
    // a client passed in is this service's SDK client: the public options only type it loosely (types.ts)
    this.loaded ??= this.spec
      .load()
      .then((sdk) => ({ sdk, client: (this.spec.client as C | undefined) ?? this.spec.make(sdk) }))
    return this.loaded
  }

  /** Makes one call of `action` about `resource`; `passThrough` errors (a missing key) are thrown as they are. */
  async call<T>(
    action: string,
    resource: string,
    send: (sdk: M, client: C) => Promise<T>,
    passThrough?: (error: unknown) => boolean,
  ): Promise<T> {
    const { sdk, client } = await this.get()
    const { field } = this.spec
    return callAws(
      {
        service: this.spec.service,
        action,
        resource,
        where: this.spec.where,
        ...(field ? { field: (name: string, message: string) => field(action, name, message) } : {}),
        send: () => send(sdk, client),
        ...(this.spec.count ? { count: this.spec.count } : {}),
        ...(passThrough ? { passThrough } : {}),
      },
      this.spec.options,
    )
  }

  /** Closes the default client (never one that was passed in). */
  destroy(): void {
    if (!this.spec.client) void this.loaded?.then(({ client }) => client.destroy())
    this.loaded = undefined
  }
}
