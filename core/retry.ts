import type { RetryPolicy } from './definitions.js'

/**
 * The delay before the attempt after `failedAttempt` (1-based). Backoff first, then jitter, then
 * the cap: constant = delay, linear = delay * n, exponential = delay * 2^(n-1); full jitter draws
 * uniformly from [0, d]; plus-minus adds a uniform draw from [-delay, +delay] (never below 0).
 */
export function retryDelay(
  policy: Readonly<RetryPolicy>,
  failedAttempt: number,
  random: () => number,
): number {
  const n = Math.max(1, failedAttempt)
  let delay: number
  switch (policy.backoff) {
    case 'constant':
      delay = policy.delayMs
      break
    case 'linear':
      delay = policy.delayMs * n
      break
    case 'exponential':
      delay = policy.delayMs * 2 ** (n - 1)
      break
  }
  switch (policy.jitter) {
    case 'none':
      break
    case 'full':
      delay = random() * delay
      break
    case 'plus-minus':
      delay = delay + (2 * random() - 1) * policy.delayMs
      break
  }
  return Math.round(Math.min(Math.max(0, delay), policy.maxDelayMs))
}
