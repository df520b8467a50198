import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../shared/config.ts';
import { startTestBroker, type TestBroker } from './helpers/local.ts';

// A real browser (Debian's Chromium, driven by playwright-core) on the offline runtime's landing
// page: what a person does on `npm start` — click Connect, consent on the sandbox provider's
// pages, land back connected — and then a service fetches that connection's token.

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(chromiumPath);
if (!haveChromium) {
  console.warn(
    `Chromium not found at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH): the landing-page browser tests are skipped.`,
  );
}

/** Collects the page's Content-Security-Policy violations (the console reports each). */
function watchCsp(page: Page): string[] {
  const violations: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });
  return violations;
}

let local: TestBroker;
let browser: Browser;

beforeAll(async () => {
  if (!haveChromium) return;
  local = await startTestBroker({
    config: parseConfig({
      providers: {
        quiqup: { catalog: 'quiqup', environment: 'sandbox' },
        quicko: { catalog: 'quicko', environment: 'sandbox' },
        quipt: { catalog: 'quipt', environment: 'sandbox' },
      },
    }),
  });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    // As root in a sandbox with no network: no Chrome sandbox, nothing that phones home.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  await local?.close();
});

describe.skipIf(!haveChromium)('landing page in a real browser', () => {
  it('lists the providers; Connect for quicko goes through OTP and consent and comes back connected', async () => {
    const page = await browser.newPage();
    const cspViolations = watchCsp(page);
    await page.goto(`${local.url}/`);
    await expect(page.locator('h1').textContent()).resolves.toMatch(/oauth-token-broker/);
    // Client-credentials providers have no Connect button; consent providers do.
    expect(await page.locator('#connect-quiqup').count()).toBe(0);

    await page.locator('form:has(#connect-quicko) input[name=connectionId]').fill('browser-user');
    await page.click('#connect-quicko');
    const otp = await page.locator('#otp').textContent();
    await page.fill('input[name=otp]', otp!.trim());
    await page.click('button[type=submit]');
    await page.click('button[value=allow]');

    await page.waitForURL(/status=connected/);
    expect(new URL(page.url()).searchParams.get('provider')).toBe('quicko');
    await expect(page.locator('.banner').textContent()).resolves.toMatch(
      /Connected quicko \/ browser-user/,
    );
    const row = page.locator('#connections tr', { hasText: 'browser-user' });
    await expect(row.textContent()).resolves.toMatch(/active/);

    const token = await local.invoke({ provider: 'quicko', connectionId: 'browser-user' });
    expect(token).toMatchObject({ ok: true, provider: 'quicko' });
    const api = await fetch(`${local.url}/sandbox/quicko/me`, {
      headers: token.headers as Record<string, string>,
    });
    expect(api.status).toBe(200);
    // Neither the landing page nor the sandbox's styled pages broke their own policy.
    expect(cspViolations).toEqual([]);
    await page.close();
  });

  it('Connect for quipt (OAuth 1.0a) comes back connected; the signed header works on its API', async () => {
    const page = await browser.newPage();
    await page.goto(`${local.url}/`);
    await page.locator('form:has(#connect-quipt) input[name=connectionId]').fill('quipt-user');
    await page.click('#connect-quipt');
    await page.click('button[value=allow]');
    await page.waitForURL(/status=connected/);
    await expect(
      page.locator('#connections tr', { hasText: 'quipt-user' }).textContent(),
    ).resolves.toMatch(/active/);

    const url = `${local.url}/sandbox/quipt/v2/me`;
    const signed = await local.invoke({
      provider: 'quipt',
      connectionId: 'quipt-user',
      sign: { method: 'GET', url },
    });
    expect(signed).toMatchObject({ ok: true, tokenType: 'OAuth' });
    expect(signed.authorization).toMatch(/^OAuth /);
    expect(
      (await fetch(url, { headers: { authorization: signed.authorization as string } })).status,
    ).toBe(200);
    await page.close();
  });

  it('Cancel at the provider comes back with access_denied and no connection', async () => {
    const page = await browser.newPage();
    await page.goto(`${local.url}/`);
    await page.locator('form:has(#connect-quicko) input[name=connectionId]').fill('cancel-user');
    await page.click('#connect-quicko');
    const otp = await page.locator('#otp').textContent();
    await page.fill('input[name=otp]', otp!.trim());
    await page.click('button[type=submit]');
    await page.click('button[value=cancel]');
    await page.waitForURL(/status=error/);
    expect(new URL(page.url()).searchParams.get('error')).toBe('access_denied');
    // The banner says which provider and connection it was about, in words.
    await expect(page.locator('.banner.bad').textContent()).resolves.toMatch(
      /Could not connect quicko \/ cancel-user: consent was cancelled at the provider/,
    );
    expect(await page.locator('#connections tr', { hasText: 'cancel-user' }).count()).toBe(0);
    await page.close();
  });

  it('lists a connection made elsewhere without a reload (the live section polls)', async () => {
    const page = await browser.newPage();
    const cspViolations = watchCsp(page);
    await page.goto(`${local.url}/`);
    expect(await page.locator('tr[data-connection="quiqup/default"]').count()).toBe(0);
    // Marks this document: a reload would lose it.
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 1));

    await local.invoke({ provider: 'quiqup' }); // a service's first fetch creates the connection
    const row = page.locator('tr[data-connection="quiqup/default"]');
    await row.waitFor({ timeout: 15_000 });
    await expect(row.textContent()).resolves.toMatch(/active.*in 1 h/s);
    await expect(
      page.locator('#events li', { hasText: 'Connection Created' }).first().textContent(),
    ).resolves.toMatch(/quiqup \/ default/);
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(
      1,
    );
    expect(cspViolations).toEqual([]);
    await page.close();
  });

  it('Disconnect asks for confirmation: Cancel keeps the connection, confirming deletes it', async () => {
    await local.invoke({ provider: 'quiqup' });
    const page = await browser.newPage();
    const cspViolations = watchCsp(page);
    await page.goto(`${local.url}/`);
    const row = page.locator('tr[data-connection="quiqup/default"]');

    await row.locator('text=Disconnect').click();
    await expect(page.locator('h1').textContent()).resolves.toBe('Disconnect quiqup / default?');
    await page.click('#cancel-disconnect');
    await page.waitForURL(`${local.url}/`);
    expect(await row.count()).toBe(1);
    expect(await local.invoke({ provider: 'quiqup' })).toMatchObject({ ok: true });

    await row.locator('text=Disconnect').click();
    await page.click('#confirm-disconnect');
    await page.waitForURL(/status=disconnected/);
    await expect(page.locator('.banner.ok').textContent()).resolves.toMatch(
      /Disconnected quiqup \/ default/,
    );
    expect(await row.count()).toBe(0);
    expect(cspViolations).toEqual([]);
    await page.close();
  });
});
