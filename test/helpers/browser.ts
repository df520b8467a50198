import { CookieJar } from 'tough-cookie';

export interface Hop {
  url: string;
  status: number;
  location?: string;
}

/**
 * A minimal browser for flow tests over real HTTP: a cookie jar (RFC 6265 rules: path, expiry,
 * HttpOnly do not matter to us but Path and Max-Age do) and redirects followed by hand, so a test
 * sees every hop and can stop at the one it wants.
 */
export class TestBrowser {
  readonly jar = new CookieJar();
  readonly hops: Hop[] = [];

  async request(
    url: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const cookie = await this.jar.getCookieString(url);
    const response = await fetch(url, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      redirect: 'manual',
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        ...init.headers,
      },
      ...(init.form ? { body: new URLSearchParams(init.form).toString() } : {}),
    });
    for (const header of response.headers.getSetCookie()) {
      await this.jar.setCookie(header, url, { ignoreError: true });
    }
    const location = response.headers.get('location') ?? undefined;
    this.hops.push({ url, status: response.status, ...(location ? { location } : {}) });
    return response;
  }

  /**
   * GET `url` and follow redirects until `stopWhen(url)` says stop (the URL is not fetched) or a
   * non-redirect answer arrives. Returns the last response and the URL it stopped at.
   */
  async follow(
    url: string,
    options: {
      stopWhen?: (url: URL) => boolean;
      maxHops?: number;
      form?: Record<string, string>;
    } = {},
  ): Promise<{ response?: Response; url: string }> {
    let current = url;
    let form = options.form;
    for (let hop = 0; hop < (options.maxHops ?? 10); hop += 1) {
      if (options.stopWhen?.(new URL(current))) return { url: current };
      const response = await this.request(current, form ? { form } : {});
      form = undefined;
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || !location) {
        return { response, url: current };
      }
      await response.arrayBuffer();
      current = new URL(location, current).toString();
    }
    throw new Error(`more than ${options.maxHops ?? 10} redirects from ${url}`);
  }

  /**
   * Submits a form of an HTML page as a browser would: its action and method, its hidden inputs,
   * plus `fields` (a clicked button's name/value, a typed OTP). `pick` chooses the form by a
   * substring of its markup (default: the first form).
   */
  async submitForm(
    html: string,
    pageUrl: string,
    fields: Record<string, string> = {},
    pick?: string,
  ): Promise<Response> {
    const forms = [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)];
    const form = pick ? forms.find((f) => f[0].includes(pick)) : forms[0];
    if (!form) throw new Error(`no form${pick ? ` containing ${pick}` : ''} on ${pageUrl}`);
    const attribute = (markup: string, name: string) =>
      new RegExp(`${name}="([^"]*)"`, 'i').exec(markup)?.[1]?.replaceAll('&amp;', '&');
    const action = new URL(attribute(form[1]!, 'action') ?? pageUrl, pageUrl).toString();
    const method = (attribute(form[1]!, 'method') ?? 'get').toUpperCase();
    const values: Record<string, string> = {};
    for (const input of form[2]!.matchAll(/<input\b[^>]*>/gi)) {
      const name = attribute(input[0], 'name');
      if (name && /type="hidden"/i.test(input[0]))
        values[name] = attribute(input[0], 'value') ?? '';
    }
    Object.assign(values, fields);
    if (method === 'GET') {
      const target = new URL(action);
      for (const [name, value] of Object.entries(values)) target.searchParams.set(name, value);
      return this.request(target.toString());
    }
    return this.request(action, { form: values });
  }
}
