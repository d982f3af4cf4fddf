/** The packages a trace shows loaded, by name (`ink`, `react`, `@aws-sdk/client-ecs`...). */
export function packagesIn(trace: string): Set<string> {
  const out = new Set<string>()
  for (const url of trace.split('\n')) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
    if (match) out.add(match[1]!)
  }
  return out
}
