// herald's dashboard end to end in headless Chromium (Debian's, through playwright-core).
// Run by crates/herald-cli/tests/it/ui.rs, which starts `herald serve` with tokens and
// simulator destinations (alpha healthy, beta 503 twice, gamma 400, slow answers after
// 5 s, paced 429 for its first 12 s, fragile hangs once without dedupe so it is held,
// delta healthy) and passes HERALD_URL, HERALD_TOKEN (admin), HERALD_READ_TOKEN (read),
// HERALD_SCREENSHOTS and CHROMIUM.

import { test as nodeTest, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run this through cargo test -p herald-cli --test it ui`);
  return value;
};
const BASE = need('HERALD_URL');
const TOKEN = need('HERALD_TOKEN');
const READ_TOKEN = need('HERALD_READ_TOKEN');
const SHOTS = need('HERALD_SCREENSHOTS');
const CHROMIUM = need('CHROMIUM');
const WAIT = 30_000;

let profile;
let context;
let page;
const problems = [];

/** A request to the API from the test itself (what a client would send). */
async function api(path, body) {
  const res = await fetch(`${BASE}${path}`, {
    method: body ? 'POST' : 'GET',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  assert.ok(res.ok, `${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const submit = (title, destinations) => api('/v1/broadcasts', { destinations, message: { title, body: `${title}: written by the dashboard test.` } });
const row = (destination) => page.locator(`#deliveries tr[data-destination="${destination}"][data-seq="0"]`);
const card = (name) => page.locator(`section.card[data-destination="${name}"]`);

async function confirmDialog(expect) {
  const dialog = page.locator('#confirm-dialog');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await dialog.locator('#confirm-text').innerText(), expect);
  await page.locator('#confirm-yes').click();
  await dialog.waitFor({ state: 'hidden' });
}

/** Waits (bounded) for `check` to hold; page.waitForFunction would need 'unsafe-eval', which the CSP refuses. */
async function eventually(check, what) {
  const end = Date.now() + WAIT;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function shot(name) {
  // The last action's message would cover the page.
  await page.evaluate(() => { document.getElementById('toast').hidden = true; });
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
  await page.evaluate(() => { document.getElementById('toast').hidden = false; });
}

/** A scenario; on failure the page is saved as failed-N.png and its text printed. */
let scenarios = 0;
function test(name, body) {
  const n = (scenarios += 1);
  nodeTest(name, async () => {
    try {
      await body();
    } catch (error) {
      await page.screenshot({ path: join(SHOTS, `failed-${n}.png`), fullPage: true }).catch(() => {});
      const text = await page.locator('body').innerText().catch(() => '(no page)');
      console.log(`scenario ${n} failed at ${page.url()}; the page said:\n${text}`);
      throw error;
    }
  });
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  profile = await mkdtemp(join(tmpdir(), 'herald-ui-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] || (await context.newPage());
  // Script errors and CSP violations land here; the last test asserts there were none.
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/status of 40[13]/.test(message.text())) problems.push(`console: ${message.text()}`);
  });
});

after(async () => {
  if (context) await context.close();
  if (profile) await rm(profile, { recursive: true, force: true });
  console.log(`screenshots in ${SHOTS}`);
});

test('the dashboard asks for a token once per session and keeps it out of the URL', async () => {
  await page.goto(`${BASE}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/', 'the root redirects to /ui/');
  const dialog = page.locator('#token-dialog');
  await dialog.waitFor({ state: 'visible' });
  await page.locator('#token-input').fill('hrld_not-a-token');
  await page.keyboard.press('Enter');
  // A refused token asks again, saying so.
  await page.locator('#token-why', { hasText: 'refused' }).waitFor();
  await page.locator('#token-input').fill(TOKEN);
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  await page.locator('h1', { hasText: 'Broadcasts' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('herald.token')), TOKEN);
  assert.ok(!page.url().includes(TOKEN));
  await page.reload();
  await page.locator('h1', { hasText: 'Broadcasts' }).waitFor();
  assert.equal(await dialog.isVisible(), false, 'the token is asked once per session');
});

let incident;

test('a broadcast converges live on its page without a reload', async () => {
  incident = await submit('Disk full on db-1', ['alpha', 'beta', 'gamma', 'slow', 'paced']);
  await page.goto(`${BASE}/ui/#/`);
  const link = page.locator('#broadcasts a', { hasText: 'Disk full on db-1' });
  await link.click();
  await page.locator('#deliveries').waitFor();
  await page.evaluate(() => { window.stillTheSamePage = true; });
  // slow answers after 5 s: open, not yet delivered, when the page first shows it.
  assert.notEqual(await row('slow').getAttribute('data-state'), 'delivered');
  await page.locator('#live[data-status="live"]').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#live').innerText(), 'Live');
  // Each row reaches its end through the stream.
  await page.locator('#deliveries tr[data-destination="slow"][data-state="delivered"]').waitFor({ timeout: WAIT });
  await page.locator('#deliveries tr[data-destination="beta"][data-state="delivered"]').waitFor({ timeout: WAIT });
  await page.locator('#deliveries tr[data-destination="gamma"][data-state="failed"]').waitFor({ timeout: WAIT });
  await page.locator('#deliveries tr[data-destination="paced"][data-state="delivered"]').waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => window.stillTheSamePage), true, 'the page was reloaded');
  await page.locator('#live[data-status="ended"]').waitFor({ timeout: WAIT });
  assert.match(await page.locator('#summary').innerText(), /^4 of 5 delivered, 1 failed$/);
  assert.match(await row('beta').locator('td').nth(1).innerText(), /^3 of \d+$/);
  // The failure in plain words, linked to its runbook section.
  const why = row('gamma').locator('td.why');
  assert.match(await why.innerText(), /refused the message for good/);
  assert.equal(await why.locator('a').getAttribute('href'), 'runbook#permanent');
  // The link opens the runbook served by this herald, at the section that explains it.
  const runbook = await page.context().newPage();
  await runbook.goto(new URL('runbook#permanent', `${BASE}/ui/`).href);
  assert.match(await runbook.locator('h3#permanent').innerText(), /^Permanent$/);
  assert.equal(await runbook.evaluate(() => location.hash), '#permanent');
  await runbook.screenshot({ path: join(SHOTS, 'runbook.png') });
  await runbook.close();
  // The timeline: a lane per destination, a mark per attempt coloured by outcome.
  const attempts = (await api(`/v1/broadcasts/${incident.id}/attempts`)).attempts;
  await eventually(async () => (await page.locator('#timeline circle.mark').count()) === attempts.length, `${attempts.length} marks`);
  assert.equal(await page.locator('#timeline .lane').count(), 5);
  assert.equal(await page.locator('#timeline circle.outcome-retry').count(), 2, 'beta: two 503s');
  assert.equal(await page.locator('#timeline circle.outcome-permanent').count(), 1, 'gamma: one 400');
  assert.equal(await page.locator('#timeline circle.outcome-delivered').count(), 4);
  const throttled = attempts.filter((a) => a.outcome === 'throttled').length;
  assert.equal(await page.locator('#timeline circle.outcome-throttled').count(), throttled);
  assert.equal(await page.locator('#timeline rect.shade-throttle').count(), throttled);
  await shot('broadcast.png');
});

test('retry on a held delivery releases it from its page and it delivers', async () => {
  const held = await submit('Primary database failover', ['fragile']);
  await page.goto(`${BASE}/ui/#/broadcasts/${held.id}`);
  await page.locator('#deliveries tr[data-destination="fragile"][data-state="held"]').waitFor({ timeout: WAIT });
  assert.match(await row('fragile').locator('td.why').innerText(), /cannot tell whether the last attempt arrived/);
  const release = row('fragile').locator('button[data-action="release"]');
  assert.equal(await release.innerText(), 'Retry');
  await release.focus();
  await page.keyboard.press('Enter');
  await confirmDialog(/may show twice/);
  await page.locator('#deliveries tr[data-destination="fragile"][data-state="delivered"]').waitFor({ timeout: WAIT });
});

test('a paused destination keeps new deliveries waiting until it is resumed', async () => {
  await page.goto(`${BASE}/ui/#/destinations`);
  await card('delta').locator('button[data-action="pause"]').click();
  await confirmDialog(/New deliveries wait/);
  await card('delta').locator('button[data-action="resume"]').waitFor();
  await card('delta').locator('.badge', { hasText: 'paused' }).waitFor();
  const waiting = await submit('Certificate expires in 7 days', ['delta']);
  await page.goto(`${BASE}/ui/#/broadcasts/${waiting.id}`);
  await row('delta').waitFor();
  assert.equal(await row('delta').getAttribute('data-state'), 'pending');
  await page.locator('#live[data-status="live"]').waitFor({ timeout: WAIT });
  await page.goto(`${BASE}/ui/#/destinations`);
  await card('delta').locator('li[data-count="pending"] strong', { hasText: '1' }).waitFor();
  assert.equal(await (await api(`/v1/broadcasts/${waiting.id}`)).deliveries[0].state, 'pending', 'delivered while paused');
  await shot('destinations.png');
  await card('delta').locator('button[data-action="resume"]').click();
  await confirmDialog(/Waiting deliveries go out at once/);
  await card('delta').locator('button[data-action="pause"]').waitFor();
  await page.goto(`${BASE}/ui/#/broadcasts/${waiting.id}`);
  await page.locator('#deliveries tr[data-destination="delta"][data-state="delivered"]').waitFor({ timeout: WAIT });
});

test('a read-only token is told which scope an action needs', async () => {
  const held = await submit('Queue backlog growing', ['fragile']);
  await page.evaluate((token) => sessionStorage.setItem('herald.token', token), READ_TOKEN);
  await page.goto(`${BASE}/ui/#/broadcasts/${held.id}`);
  await page.locator('#deliveries tr[data-destination="fragile"][data-state="held"]').waitFor({ timeout: WAIT });
  await row('fragile').locator('button[data-action="cancel"]').click();
  await confirmDialog(/Stop delivering to fragile/);
  await page.locator('#toast', { hasText: 'needs a token with the `operate` scope' }).waitFor();
  assert.equal(await row('fragile').getAttribute('data-state'), 'held');
  await page.evaluate((token) => sessionStorage.setItem('herald.token', token), TOKEN);
  await api(`/v1/deliveries/${held.deliveries[0].id}/cancel`, {});
});

test('the list shows k-of-N status, filters by state and destination, and pages', async () => {
  await page.goto(`${BASE}/ui/#/`);
  await page.locator('#broadcasts').waitFor();
  await shot('list.png');
  for (let i = 1; i <= 26; i += 1) await submit(`Heartbeat ${i}`, ['alpha']);
  // The navigation link reloads the page it is on.
  await page.locator('nav a[data-page="list"]').click();
  await page.locator('#broadcasts a', { hasText: 'Heartbeat 26' }).waitFor();
  assert.equal(await page.locator('#broadcasts tbody tr').first().locator('a').innerText(), 'Heartbeat 26', 'newest first');
  assert.equal(await page.locator('#broadcasts tbody tr').count(), 25);
  await page.locator('a[rel="next"]').click();
  await page.locator('#broadcasts tbody tr a', { hasText: 'Disk full on db-1' }).waitFor();
  await page.goto(`${BASE}/ui/#/`);
  // The first page again (not the second one still on screen) before using its form.
  await page.locator('#broadcasts a', { hasText: 'Heartbeat 26' }).waitFor();
  await page.locator('#filter-destination').selectOption('gamma');
  await page.locator('.filters button').click();
  await page.waitForURL(/destination=gamma/);
  await eventually(async () => (await page.locator('#broadcasts tbody tr').count()) === 1, 'one broadcast to gamma');
  assert.equal(await page.locator('#broadcasts td.summary').innerText(), '4 of 5 delivered, 1 failed');
  await page.locator('#filter-state').selectOption('delivered');
  await page.locator('.filters button').click();
  await page.locator('p', { hasText: 'No broadcast matches.' }).waitFor();
  await page.goto(`${BASE}/ui/#/?state=partially_failed`);
  await page.locator('#broadcasts td.summary', { hasText: '4 of 5 delivered, 1 failed' }).waitFor();
});

test('the pages fit a phone and keep working from the keyboard', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${BASE}/ui/#/broadcasts/${incident.id}`);
  await page.locator('#timeline svg').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await shot('phone-broadcast.png');
  await page.goto(`${BASE}/ui/#/`);
  await page.locator('#broadcasts').waitFor();
  await shot('phone-list.png');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.reload();
  await page.locator('#broadcasts').waitFor();
  // Tab reaches the skip link, then the navigation, as real links.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
  assert.deepEqual(problems, [], 'script errors or CSP violations');
});
