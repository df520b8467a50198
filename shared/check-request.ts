import type { Static, TSchema } from '@sinclair/typebox';

/**
 * Checks a caller's payload with the schema's check generated ahead of time
 * (shared/generated/request-checks.ts): a payload it accepts costs one plain function call, and
 * neither TypeBox nor the schema is loaded. Only a refusal loads them (`loadSchema`, a dynamic
 * import, and validate.ts), to say which field is bad exactly as `validateRequest` does.
 */
export async function checkRequest<T extends TSchema>(
  payload: unknown,
  check: (value: unknown) => boolean,
  loadSchema: () => Promise<T>,
): Promise<Static<T>> {
  if (check(payload)) return payload as Static<T>;
  const [{ validateRequest }, schema] = await Promise.all([import('./validate.ts'), loadSchema()]);
  return validateRequest(schema, payload, check);
}
