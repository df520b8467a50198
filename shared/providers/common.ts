/** Fields a provider entry may carry, as the core reads them. */
export interface CommonProviderConfig {
  kind: string;
  catalog?: string;
  displayName?: string;
  environments?: Record<string, string>;
  environmentOverrides?: Record<string, Record<string, unknown>>;
  defaultEnvironment?: string;
  environment?: string;
  baseUrl?: string;
  apiBaseUrl?: string;
  headers?: Record<string, string>;
  connectionParams?: Record<string, { description: string; pattern?: string }>;
  params?: Record<string, string>;
  docs?: Record<string, string>;
  refreshLeadSeconds?: number;
  reauthLeadSeconds?: number;
  timeoutMs?: number;
}

/**
 * Fills `{name}` placeholders from `values`. Values are inserted as given: callers encode what
 * must be encoded (a request token in a query) and validate what people supply (connection
 * params match their declared pattern). A placeholder without a value is a configuration error,
 * named by the placeholder, never by a value.
 */
export function fillTemplate(
  template: string,
  values: Record<string, string | undefined>,
  where: string,
): string {
  return template.replace(/\{([A-Za-z][A-Za-z0-9_.]*)\}/g, (_whole, name: string) => {
    const value = values[name];
    if (value === undefined) {
      throw new TemplateValueMissing(`${where}: no value for {${name}}`, name);
    }
    return value;
  });
}

export class TemplateValueMissing extends Error {
  constructor(
    message: string,
    readonly placeholder: string,
  ) {
    super(message);
    this.name = 'TemplateValueMissing';
  }
}

/** Reads a dotted path (`team.id`) from a JSON value; undefined when any step is missing. */
export function valueAtPath(value: unknown, path: string): unknown {
  let current: unknown = value;
  for (const step of path.split('.')) {
    if (typeof current !== 'object' || current === null || Array.isArray(current)) return undefined;
    if (!Object.hasOwn(current, step)) return undefined;
    current = (current as Record<string, unknown>)[step];
  }
  return current;
}
