import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { stringifySetCookie } from 'cookie';
import type { BrokerErrorCode } from '../errors.ts';

/**
 * Headers of every page and redirect of the connect routes: never cached, never a Referer (the
 * callback URL carries a code or verifier), no scripts, no framing.
 */
const pageHeaders = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
};

/** HTTP status for a broker error code on the browser routes. */
export function statusForCode(code: BrokerErrorCode | string): number {
  switch (code) {
    case 'provider_unavailable':
      return 502;
    case 'provider_misconfigured':
      return 503; // the broker's set-up, not the link: another try after it is fixed works
    case 'internal_error':
      return 500;
    case 'access_denied':
      return 200; // the person chose to cancel: nothing went wrong
    default:
      return 400;
  }
}

export function redirect(
  location: string,
  cookies: string[] = [],
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode: 302,
    headers: { ...pageHeaders, location },
    ...(cookies.length > 0 ? { cookies } : {}),
    body: '',
  };
}

export function htmlPage(
  statusCode: number,
  title: string,
  message: string,
  cookies: string[] = [],
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode,
    headers: { ...pageHeaders, 'content-type': 'text/html; charset=utf-8' },
    ...(cookies.length > 0 ? { cookies } : {}),
    body: `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}</style>
</head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>
`,
  };
}

/**
 * Our own credentials form (api_key / basic connect): posts to the callback route of this flow,
 * with our state as a hidden field. Secret fields are password inputs that browsers neither
 * autofill nor remember; nothing the person types ever lands in a URL.
 */
export function credentialsFormPage(
  form: {
    displayName: string;
    action: string;
    state: string;
    fields: { name: string; label: string; secret: boolean }[];
  },
  cookies: string[] = [],
): APIGatewayProxyStructuredResultV2 {
  const inputs = form.fields
    .map(
      (field) =>
        `<p><label>${escapeHtml(field.label)}<br><input name="${escapeHtml(field.name)}" type="${
          field.secret ? 'password' : 'text'
        }" autocomplete="${field.secret ? 'new-password' : 'off'}" required></label></p>`,
    )
    .join('\n');
  return {
    statusCode: 200,
    headers: { ...pageHeaders, 'content-type': 'text/html; charset=utf-8' },
    ...(cookies.length > 0 ? { cookies } : {}),
    body: `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Connect ${escapeHtml(form.displayName)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}input{width:100%;padding:.4rem}</style>
</head><body><h1>Connect ${escapeHtml(form.displayName)}</h1>
<form method="post" action="${escapeHtml(form.action)}" id="credentials">
<input type="hidden" name="state" value="${escapeHtml(form.state)}">
${inputs}
<p><button type="submit">Connect</button></p>
</form></body></html>
`,
  };
}

export interface CookieSpec {
  name: string;
  value: string;
  path: string;
  maxAgeSeconds: number;
  secure: boolean;
}

/** HttpOnly, SameSite=Lax: sent on the provider's top-level redirect back, never to scripts. */
export function setCookie(cookie: CookieSpec): string {
  return stringifySetCookie({
    name: cookie.name,
    value: cookie.value,
    path: cookie.path,
    maxAge: cookie.maxAgeSeconds,
    httpOnly: true,
    sameSite: 'lax',
    secure: cookie.secure,
  });
}

export function clearCookie(name: string, path: string, secure: boolean): string {
  return setCookie({ name, value: '', path, maxAgeSeconds: 0, secure });
}

export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}
