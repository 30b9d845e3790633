// Signs in to the status page in Debian's Chromium (headless) with an operator token, reads the
// queues, the dead letters and the requests, opens one request and reads its timeline, then
// signs out. Prints one JSON line with what it saw; exits non-zero on any failure.
//
// Environment (set by tests/status.rs):
//   GRANTLINE_STATUS_URL      the page (`http://127.0.0.1:PORT/status`)
//   GRANTLINE_TOKEN           the operator token to type
//   GRANTLINE_TICKET          the ticket whose request to open
//   GRANTLINE_SCREENSHOT      where to write a PNG of the overview (the request page goes
//                             beside it, as NAME-request.png)
//   GRANTLINE_USER_DATA_DIR   a fresh, empty profile directory
//   GRANTLINE_CHROMIUM        the browser (default /usr/bin/chromium)
import { chromium } from 'playwright-core';

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set`);
  }
  return v;
}

const statusUrl = need('GRANTLINE_STATUS_URL');
const token = need('GRANTLINE_TOKEN');
const ticket = need('GRANTLINE_TICKET');
const screenshot = need('GRANTLINE_SCREENSHOT');
const profile = need('GRANTLINE_USER_DATA_DIR');
const executablePath = process.env.GRANTLINE_CHROMIUM || '/usr/bin/chromium';

const seen = { console: [] };
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    timeout: 60_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));

  const first = await page.goto(statusUrl, { waitUntil: 'load' });
  seen.first_status = first ? first.status() : null;
  seen.sign_in_form = (await page.$('#sign-in')) !== null;
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForNavigation(), page.click('#sign-in button[type=submit]')]);
  await page.waitForSelector('#queues');
  seen.operator = (await page.textContent('#operator'))?.trim();
  seen.queues = await page.$$eval('#queues tbody tr', (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.queue, Array.from(r.cells).map((c) => c.textContent.trim())])),
  );
  seen.dead_letters = await page.$$eval('#dead-letters tr.dead-letter', (rows) => rows.map((r) => r.textContent));
  seen.requests = await page.$$eval('#requests tr.request', (rows) =>
    rows.map((r) => ({ ticket: r.dataset.ticket, state: r.dataset.state })),
  );
  await page.screenshot({ path: screenshot, fullPage: true });

  // filter by state through the form
  await page.selectOption('select[name=state]', 'active');
  await Promise.all([page.waitForNavigation(), page.click('#requests form button[type=submit]')]);
  seen.filtered = await page.$$eval('#requests tr.request', (rows) => rows.map((r) => r.dataset.state));
  await page.goto(statusUrl, { waitUntil: 'load' });

  // open one request
  await Promise.all([page.waitForNavigation(), page.click(`#requests tr[data-ticket="${ticket}"] a`)]);
  await page.waitForSelector('#timeline');
  seen.ticket = (await page.textContent('#ticket'))?.trim();
  seen.state = (await page.textContent('#state'))?.trim();
  seen.chain = (await page.textContent('#chain'))?.trim();
  seen.events = await page.$$eval('#timeline tr.event', (rows) => rows.map((r) => r.dataset.event));
  await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-request.png', fullPage: true });

  // sign out: the next visit asks for the token again
  await Promise.all([page.waitForNavigation(), page.click('#sign-out')]);
  seen.signed_out = (await page.$('#sign-in')) !== null;
  seen.ok = true;
} catch (e) {
  seen.ok = false;
  seen.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
}
process.stdout.write(JSON.stringify(seen) + '\n');
process.exit(seen.ok ? 0 : 1);
