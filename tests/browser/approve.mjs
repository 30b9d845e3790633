// Opens a signed approval link in Debian's Chromium (headless), follows the sign-in through the
// identity platform and back, reads the request, types a comment, clicks Approve and reads the
// confirmation. Prints one JSON line with what it saw; exits non-zero on any failure.
//
// Environment (set by ingest/tests/web.rs):
//   GRANTLINE_LINK            the approval link
//   GRANTLINE_COMMENT         the comment to type
//   GRANTLINE_SCREENSHOT      where to write a PNG of the confirmation (the filled-in form goes
//                             beside it, as NAME-form.png)
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

const link = need('GRANTLINE_LINK');
const comment = need('GRANTLINE_COMMENT');
const screenshot = need('GRANTLINE_SCREENSHOT');
const profile = need('GRANTLINE_USER_DATA_DIR');
const executablePath = process.env.GRANTLINE_CHROMIUM || '/usr/bin/chromium';

const args = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const seen = { console: [] };
const where = (u) => {
  const url = new URL(u);
  return url.origin + url.pathname;
};
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args,
    viewport: { width: 1000, height: 900 },
    timeout: 60_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));

  const first = await page.goto(link, { waitUntil: 'load' });
  seen.first_status = first ? first.status() : null;
  // the redirects the browser followed: link, identity platform, callback, link
  seen.chain = [];
  for (let r = first ? first.request() : null; r; r = r.redirectedFrom()) seen.chain.unshift(where(r.url()));
  await page.waitForSelector('#decide');
  seen.title = (await page.textContent('#title'))?.trim();
  seen.who = (await page.textContent('#who'))?.trim();
  seen.facts = await page.$$eval('#facts dd', (dds) =>
    Object.fromEntries(dds.map((d) => [d.dataset.fact, d.textContent.trim()])),
  );
  seen.status_before = (await page.textContent('#status'))?.trim();

  await page.fill('#comment', comment);
  await page.screenshot({ path: screenshot.replace(/\.png$/, '') + '-form.png', fullPage: true });
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.click('#approve'),
  ]);
  seen.answer_status = answer.status();
  await page.waitForSelector('#result');
  seen.result = (await page.textContent('#result'))?.trim();
  seen.status_after = (await page.textContent('#status'))?.trim();
  seen.form_after = (await page.$('#decide')) !== null;
  await page.screenshot({ path: screenshot, fullPage: true });
  seen.ok = true;
} catch (e) {
  seen.ok = false;
  seen.error = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
}
process.stdout.write(JSON.stringify(seen) + '\n');
process.exit(seen.ok ? 0 : 1);
