import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relativeTime } from '../infra/local/landing-page.ts';
import { parseConfig } from '../shared/config.ts';
import { captureOutput, startTestBroker, type TestBroker } from './helpers/local.ts';

// The landing page and its POST routes over real HTTP against the offline runtime: the headers
// the connect pages have, the Host check (DNS rebinding), absolute-form targets, Origin checks.

const config = () =>
  parseConfig({
    providers: {
      quiqup: { catalog: 'quiqup', environment: 'sandbox' },
      quicko: { catalog: 'quicko', environment: 'sandbox' },
    },
  });

let local: TestBroker;
beforeAll(async () => {
  local = await startTestBroker({ config: config() });
});
afterAll(async () => {
  await local?.close();
});

/** One raw HTTP/1.1 request on its own socket: status line and the whole answer. */
async function rawRequest(
  port: number,
  request: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('utf8')));
    socket.on('end', () => resolve({ status: Number(text.split(' ')[1]), text }));
    socket.on('error', reject);
    socket.write(request);
  });
}

const port = () => Number(new URL(local.url).port);
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const formHeaders = (origin?: string) => ({
  'content-type': 'application/x-www-form-urlencoded',
  ...(origin ? { origin } : {}),
});

describe('landing page: headers', () => {
  it('GET / is never framed, cached or sniffed, and allows only its own nonce-d script', async () => {
    const res = await fetch(`${local.url}/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeTruthy();
    const html = await res.text();
    // Every script and style on the page carries this response's nonce.
    expect(html.match(/<script\b[^>]*>/g)).toEqual([`<script nonce="${nonce}">`]);
    expect(html.match(/<style\b[^>]*>/g)).toEqual([`<style nonce="${nonce}">`]);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('referrer-policy')).toBe('same-origin');
    // A fresh nonce per answer.
    const again = await fetch(`${local.url}/`);
    expect(again.headers.get('content-security-policy')).not.toBe(csp);
  });

  it('the Connect redirect that carries the session is no-store and not framable', async () => {
    const res = await fetch(`${local.url}/local/connect`, {
      method: 'POST',
      redirect: 'manual',
      headers: formHeaders(local.url),
      body: form({ provider: 'quicko', connectionId: 'headers-user' }),
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toMatch(/\/connect\/quicko\?session=/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('referrer-policy')).toBe('same-origin');
  });
});

describe('landing page: requests from elsewhere', () => {
  it('refuses a Host that is not this broker (DNS rebinding) with a 421 page linking back', async () => {
    const answer = await rawRequest(
      port(),
      `GET / HTTP/1.1\r\nHost: rebind.evil.example:${port()}\r\nConnection: close\r\n\r\n`,
    );
    expect(answer.status).toBe(421);
    expect(answer.text).toContain('DNS rebinding');
    expect(answer.text).toContain(`href="${local.url}/"`);
    expect(answer.text).not.toContain('<table');
    // Its own names pass.
    for (const host of [`localhost:${port()}`, `127.0.0.1:${port()}`]) {
      const ok = await rawRequest(
        port(),
        `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      expect(ok.status).toBe(200);
    }
  });

  it('a rebound page cannot disconnect: a POST with a foreign Host changes nothing', async () => {
    await local.invoke({ provider: 'quiqup' });
    const before = await local.itemCount();
    const body = form({ provider: 'quiqup', connectionId: 'default' });
    const answer = await rawRequest(
      port(),
      `POST /local/disconnect HTTP/1.1\r\nHost: rebind.evil.example:${port()}\r\nOrigin: http://rebind.evil.example:${port()}\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(answer.status).toBe(421);
    expect(await local.itemCount()).toBe(before);
  });

  it('refuses absolute-form request targets, which would make its links point elsewhere', async () => {
    const get = await rawRequest(
      port(),
      `GET http://evil.example/ HTTP/1.1\r\nHost: localhost:${port()}\r\nConnection: close\r\n\r\n`,
    );
    expect(get.status).toBe(400);
    expect(get.text).not.toContain('evil.example');
    // With an absolute-form target naming evil.example, Origin: http://evil.example looked like
    // this page's own origin.
    const body = form({ provider: 'quicko', connectionId: 'absolute-user' });
    const post = await rawRequest(
      port(),
      `POST http://evil.example/local/connect HTTP/1.1\r\nHost: localhost:${port()}\r\nOrigin: http://evil.example\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(post.status).toBe(400);
    expect(post.text).not.toMatch(/location:/i);
  });

  it('refuses form POSTs without an Origin or from another origin; nothing is deleted', async () => {
    await local.invoke({ provider: 'quiqup' });
    const before = await local.itemCount();
    for (const origin of [undefined, 'http://evil.example', 'null', `http://127.0.0.1:${port()}`]) {
      for (const path of ['/local/disconnect', '/local/connect']) {
        const res = await fetch(`${local.url}${path}`, {
          method: 'POST',
          redirect: 'manual',
          headers: formHeaders(origin),
          body: form({
            provider: path.endsWith('connect') ? 'quicko' : 'quiqup',
            connectionId: 'default',
          }),
        });
        expect(res.status, `${path} with Origin ${origin}`).toBe(403);
        expect(res.headers.get('location')).toBeNull();
        const page = await res.text();
        expect(page).toContain('href="/"');
      }
    }
    expect(await local.itemCount()).toBe(before);
    expect(await local.invoke({ provider: 'quiqup' })).toMatchObject({ ok: true });
  });

  it('takes a form POST from the page under any of its own names (127.0.0.1 as localhost)', async () => {
    const body = form({ provider: 'quicko', connectionId: 'loopback-user' });
    const answer = await rawRequest(
      port(),
      `POST /local/connect HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nOrigin: http://127.0.0.1:${port()}\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(answer.status).toBe(303);
    expect(answer.text).toMatch(/location: http:\/\/localhost:\d+\/connect\/quicko\?session=/i);
  });
});

describe('landing page: disconnect, banners, times', () => {
  it('Disconnect asks first (a GET that changes nothing), then the confirmed POST deletes', async () => {
    await local.invoke({ provider: 'quiqup' });
    const ask = await fetch(`${local.url}/local/disconnect?provider=quiqup&connectionId=default`);
    expect(ask.status).toBe(200);
    const page = await ask.text();
    expect(page).toMatch(/Disconnect quiqup \/ default\?/);
    expect(page).toContain('action="/local/disconnect"');
    expect(page).toContain('href="/"');
    expect(await fetch(`${local.url}/local/live`).then((r) => r.text())).toContain(
      'data-connection="quiqup/default"',
    );

    const done = await fetch(`${local.url}/local/disconnect`, {
      method: 'POST',
      redirect: 'manual',
      headers: formHeaders(local.url),
      body: form({ provider: 'quiqup', connectionId: 'default' }),
    });
    expect(done.status).toBe(303);
    const back = new URL(done.headers.get('location')!);
    expect(back.searchParams.get('status')).toBe('disconnected');
    expect(await fetch(back).then((r) => r.text())).toContain('Disconnected quiqup / default');
    expect(await fetch(`${local.url}/local/live`).then((r) => r.text())).not.toContain(
      'data-connection="quiqup/default"',
    );
  });

  it('names the provider in an error banner, from a failed Connect as from a flow', async () => {
    const res = await fetch(`${local.url}/local/connect`, {
      method: 'POST',
      redirect: 'manual',
      headers: formHeaders(local.url),
      // A client-credentials provider has no connect flow.
      body: form({ provider: 'quiqup', connectionId: 'u0' }),
    });
    expect(res.status).toBe(303);
    const banner = await fetch(res.headers.get('location')!).then((r) => r.text());
    expect(banner).toMatch(
      /class="banner bad"[^>]*>Could not connect quiqup \/ u0: .*<code>invalid_request<\/code>/,
    );

    const denied = await fetch(
      `${local.url}/?status=error&error=access_denied&provider=quicko&connection_id=u1`,
    ).then((r) => r.text());
    expect(denied).toContain(
      'Could not connect quicko / u1: consent was cancelled at the provider',
    );
  });

  it('shows times relative to now; a next refresh already due says "due now", never a past time', async () => {
    await local.invoke({ provider: 'quiqup' }); // a 1 h token, renewed 5 min before expiry
    const row = async () => {
      const html = await fetch(`${local.url}/local/live`).then((r) => r.text());
      return /<tr data-connection="quiqup\/default">[\s\S]*?<\/tr>/.exec(html)![0];
    };
    expect(await row()).toMatch(/>in 1 h<\/time>/);
    expect(await row()).toMatch(/class="next-refresh"><time[^>]*>in 55 min<\/time>/);
    local.clock.advance(57 * 60);
    const due = await row();
    expect(due).toMatch(/class="next-refresh"><time[^>]*>due now<\/time>/);
    expect(due).not.toMatch(/class="next-refresh">[^\n]*ago/);
    local.clock.advance(10 * 60);
    expect(await row()).toMatch(/>expired 7 min ago<\/time>/);
  });

  it('relativeTime says how far off a time is, as a person would', () => {
    const now = Date.UTC(2026, 0, 1);
    expect(relativeTime(now + 2_000, now)).toBe('now');
    expect(relativeTime(now + 40_000, now)).toBe('in 40 s');
    expect(relativeTime(now + 4 * 60_000, now)).toBe('in 4 min');
    expect(relativeTime(now - 2 * 3_600_000, now)).toBe('2 h ago');
    expect(relativeTime(now - 3 * 86_400_000, now)).toBe('3 d ago');
  });
});

describe('error pages link back to the landing page', () => {
  it('the connect routes, the sandbox consent pages and unknown paths', async () => {
    const connect = await fetch(`${local.url}/connect/quicko?session=not-a-session`);
    expect(connect.status).toBe(400);
    expect(await connect.text()).toContain(`href="${local.url}/"`);

    const sandbox = await fetch(`${local.url}/sandbox/quicko/login?api_key=nobody`);
    expect(sandbox.status).toBe(400);
    const sandboxPage = await sandbox.text();
    expect(sandboxPage).toContain('href="/"');
    expect(sandbox.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");

    const missing = await fetch(`${local.url}/no/such/page`, { headers: { accept: 'text/html' } });
    expect(missing.status).toBe(404);
    expect(await missing.text()).toContain('href="/"');
  });
});

describe('lifecycle events', () => {
  it('are kept across a restart of the runtime (in .broker/events.json)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'broker-events-'));
    try {
      const first = await startTestBroker({ dataDir, persist: true, config: config() });
      await captureOutput(() => first.invoke({ provider: 'quiqup' }));
      await first.close();

      const second = await startTestBroker({ dataDir, persist: true, config: config() });
      try {
        const events = (await fetch(`${second.url}/local/events`).then((r) => r.json())) as {
          type: string;
          provider: string;
        }[];
        expect(events).toEqual([
          expect.objectContaining({ type: 'Connection Created', provider: 'quiqup' }),
        ]);
        expect(await fetch(`${second.url}/local/live`).then((r) => r.text())).toContain(
          'Connection Created',
        );
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
