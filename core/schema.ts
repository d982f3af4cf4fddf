/**
 * A user's config schema, made with zod 3 or zod 4 (classic or mini): whichever the project
 * installed. zod is a peer dependency, so a config's `z.object(...)` and refresh's own schemas come
 * from the same package. refresh's own schemas import `zod/v4` (in zod 3.25+ and zod 4 alike); a
 * user's schema is told apart at run time by `_zod` (zod 4 only) and parsed through `zod/v4/core`
 * (zod 4) or its own `safeParse` (zod 3), as zod's guide for library authors describes.
 */

import type * as z3 from 'zod/v3'
import * as z4 from 'zod/v4/core'

/** A zod schema for an asset's run config: zod 3 (`zod` 3.25+, `zod/v3`) or zod 4 (`zod`, `zod/mini`). */
export type ConfigSchema = z3.ZodTypeAny | z4.$ZodType

/** The value a config schema gives (defaults applied). */
export type ConfigOutput<S> = S extends z4.$ZodType
  ? z4.output<S>
  : S extends z3.ZodTypeAny
    ? z3.output<S>
    : never

/** One problem a schema found: where (`path`) and what. */
export interface SchemaIssue {
  readonly path: readonly PropertyKey[]
  readonly message: string
}

export type SchemaResult =
  | { success: true; data: unknown }
  | { success: false; issues: readonly SchemaIssue[] }

/** True for a zod 4 schema (classic or mini): only zod 4 has `_zod`. */
export function isZod4Schema(value: unknown): value is z4.$ZodType {
  return typeof value === 'object' && value !== null && '_zod' in value
}

/** True for a zod 3 or zod 4 schema. */
export function isConfigSchema(value: unknown): value is ConfigSchema {
  if (isZod4Schema(value)) return true
  const v = value as { _def?: unknown; safeParse?: unknown } | null
  return (
    typeof v === 'object' && v !== null && typeof v._def === 'object' && typeof v.safeParse === 'function'
  )
}

/** Validates `value` with a zod 3 or zod 4 schema, without throwing. */
export function parseWithSchema(schema: ConfigSchema, value: unknown): SchemaResult {
  const parsed = isZod4Schema(schema) ? z4.safeParse(schema, value) : schema.safeParse(value)
  return parsed.success
    ? { success: true, data: parsed.data }
    : { success: false, issues: parsed.error.issues as readonly SchemaIssue[] }
}
