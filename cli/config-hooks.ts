/**
 * Module resolution hooks for a config file that Node loads itself (a `.js`/`.mjs` config, or
 * TypeScript where this Node strips types): `import ... from 'refresh'` resolves to this very copy
 * of refresh, as under jiti, whether or not the config's folder has refresh installed.
 */
let refresh: string | undefined

export async function initialize(data: { refresh: string }): Promise<void> {
  refresh = data.refresh
}

export async function resolve(
  specifier: string,
  context: unknown,
  next: (specifier: string, context: unknown) => Promise<unknown>,
): Promise<unknown> {
  if (specifier === 'refresh' && refresh !== undefined) return { url: refresh, shortCircuit: true }
  return next(specifier, context)
}
