import { oauth2 } from './oauth2.ts';
import { quicko } from './quicko.ts';
import { quidkey } from './quidkey.ts';
import { quiqup } from './quiqup.ts';
import { quipt } from './quipt.ts';
import type { ProviderKind } from './types.ts';

// Each kind is typed by its own config; the registry only hands a kind the entry validated
// against that kind's schema, so erasing the parameter here is safe.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyProviderKind = ProviderKind<any>;

/** Every provider kind the broker knows. A new kind is one module added here. */
export const providerKinds: Record<string, AnyProviderKind> = {
  quiqup,
  quidkey,
  quicko,
  oauth2,
  quipt,
};
