/**
 * EC2 user data as cloud-init `#cloud-config`: the commands an instance runs are argument arrays
 * (cloud-init runs a list-form `runcmd` entry without a shell), so nothing is ever quoted into a
 * shell string. The body is JSON, which is valid YAML, so cloud-init reads it as is and the test
 * harnesses read it back with JSON.parse.
 */

export interface CloudConfig {
  /** Devices to mount: `[device, mount point]` (cloud-init's `mounts`). */
  mounts?: Array<[string, string]>
  /** Commands run once, in order, each an argument array. */
  runcmd: string[][]
  /** What the instance does after `runcmd`: power off (with `InstanceInitiatedShutdownBehavior: terminate`, it is terminated). */
  power_state?: {
    mode: 'poweroff' | 'halt' | 'reboot'
    condition?: boolean
    delay?: string
    message?: string
  }
}

const HEADER = '#cloud-config\n'

/** The base64 user data of a cloud-config (what RunInstances takes). EC2 allows 16 KiB. */
export function cloudConfigUserData(config: CloudConfig): string {
  const text = HEADER + JSON.stringify(config)
  if (Buffer.byteLength(text) > 16 * 1024) {
    throw new Error(
      `the user data is ${Buffer.byteLength(text)} bytes; EC2 allows 16 KiB (a worker input this large belongs in S3)`,
    )
  }
  return Buffer.from(text).toString('base64')
}

/** Reads user data written by `cloudConfigUserData` back (test harnesses, `refresh gc`). */
export function parseCloudConfigUserData(base64: string): CloudConfig {
  const text = Buffer.from(base64, 'base64').toString('utf8')
  if (!text.startsWith(HEADER)) throw new Error('the user data is not a #cloud-config written by refresh')
  return JSON.parse(text.slice(HEADER.length)) as CloudConfig
}
