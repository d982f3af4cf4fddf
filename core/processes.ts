/**
 * Whether a process of this host still exists. `EPERM` means it does (it belongs to another
 * user); only `ESRCH` means it is gone.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
