// Drives the web console in headless chromium, one step per run, as a user would: through the
// login form and the page's own buttons, links and file input. The Rust integration test runs
// one step at a time and changes the cluster in between (kill -9 a node, ...).
//
//   node console.mjs STEP [ARGS...]
//
// Steps: login | node-state N STATE | upload-download BUCKET | lifecycle BUCKET | users |
//        screenshots [BUCKET]
// Env: CONSOLE_URL (http://127.0.0.1:9001), ACCESS_KEY, SECRET_KEY, CHROMIUM (/usr/bin/chromium),
//      SCREENSHOT_DIR (full-page PNGs named after the step), EXPECT_NODES (node rows the cluster
//      page must show; otherwise at least one), WAIT_SECS (bound on waiting for node states, 60).
// Prints one line: "console STEP: ok (...)" and exits 0, or "console STEP: FAILED ..." and exits 1.

import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const URL_BASE = (process.env.CONSOLE_URL || 'http://127.0.0.1:9001').replace(/\/$/, '');
const ACCESS_KEY = process.env.ACCESS_KEY || 'dmpstore-dev';
const SECRET_KEY = process.env.SECRET_KEY || 'dmpstore-dev-secret';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
const EXPECT_NODES = process.env.EXPECT_NODES ? Number(process.env.EXPECT_NODES) : null;
const STATE_WAIT_MS = Number(process.env.WAIT_SECS || 60) * 1000;
/** Bound on waiting for the page to answer a click (an API round trip and a render). */
const UI_WAIT_MS = 15_000;
/** Bound on a new key being honoured by the console's gateway (README: every gateway within 5 s). */
const KEY_PROPAGATION_MS = 10_000;
const UPLOAD_BYTES = 300 * 1024;
const UPLOAD_KEY = 'console-upload.bin';

class StepError extends Error {}
const fail = (msg) => { throw new StepError(msg); };

// ---------- page helpers ----------

const sel = (testid) => `[data-testid="${testid.replace(/["\\]/g, '\\$&')}"]`;
const tid = (page, testid) => page.locator(sel(testid));

/** The error banner's text if it is showing, else null. */
async function bannerText(page) {
  const banner = tid(page, 'error-banner');
  if (!(await banner.isVisible())) return null;
  return `${await tid(page, 'error-code').innerText()}: ${await tid(page, 'error-message').innerText()}`;
}

/**
 * Waits until `testid` is visible; fails at once if the error banner shows first, and with
 * `what` and the time waited if neither happens in `timeout` ms.
 */
async function see(page, testid, what, timeout = UI_WAIT_MS) {
  try {
    await page.waitForFunction((s) => {
      const visible = (el) => el && el.getClientRects().length > 0;
      return visible(document.querySelector(s)) || visible(document.querySelector('[data-testid="error-banner"]'));
    }, sel(testid), { timeout, polling: 100 });
  } catch {
    fail(`${what}: ${testid} did not show within ${timeout / 1000} s`);
  }
  if (await tid(page, testid).isVisible()) return tid(page, testid);
  fail(`${what}: the page shows an error: ${await bannerText(page)}`);
}

/** Waits until the text of `testid` is exactly `want`; the failure names what it showed last. */
async function seeText(page, testid, want, what, timeout = UI_WAIT_MS) {
  try {
    await page.waitForFunction(([s, w]) => {
      const el = document.querySelector(s);
      return el && el.textContent.trim() === w;
    }, [sel(testid), want], { timeout, polling: 200 });
  } catch {
    const el = tid(page, testid);
    const last = (await el.count()) ? (await el.first().textContent()).trim() : '(not on the page)';
    fail(`${what}: ${testid} shows "${last}", not "${want}", after ${timeout / 1000} s`);
  }
}

async function seeGone(page, testid, what, timeout = UI_WAIT_MS) {
  try {
    await tid(page, testid).waitFor({ state: 'detached', timeout });
  } catch {
    fail(`${what}: ${testid} is still on the page after ${timeout / 1000} s`);
  }
}

async function noBanner(page, what) {
  const b = await bannerText(page);
  if (b) fail(`${what}: the page shows an error: ${b}`);
}

async function login(page, accessKey = ACCESS_KEY, secretKey = SECRET_KEY) {
  await page.goto(`${URL_BASE}/`);
  await see(page, 'login-access-key', 'opening the console');
  await tid(page, 'login-access-key').fill(accessKey);
  await tid(page, 'login-secret-key').fill(secretKey);
  await tid(page, 'login-submit').click();
  await see(page, 'cluster-page', `signing in as ${accessKey}`);
}

async function openBuckets(page) {
  await tid(page, 'nav-buckets').click();
  return see(page, 'buckets-table', 'opening the buckets page');
}

async function openBucket(page, bucket) {
  await openBuckets(page);
  await see(page, `bucket-open-${bucket}`, `finding bucket ${bucket}`);
  await tid(page, `bucket-open-${bucket}`).click();
  await see(page, 'objects-table', `browsing bucket ${bucket}`);
}

async function createBucket(page, bucket) {
  await openBuckets(page);
  await tid(page, 'bucket-name-input').fill(bucket);
  await tid(page, 'bucket-create').click();
  await see(page, `bucket-row-${bucket}`, `creating bucket ${bucket}`);
}

async function nodeStates(page) {
  return page.$$eval('[data-testid^="node-state-n"]', (els) =>
    els.map((e) => [e.dataset.testid.slice('node-state-'.length), e.textContent.trim()]));
}

/** The cluster page shows every node (EXPECT_NODES of them, if set), each in `state`. */
async function seeAllNodes(page, state, timeout) {
  await see(page, 'nodes-table', 'loading the cluster page');
  try {
    await page.waitForFunction(([want, n]) => {
      const els = [...document.querySelectorAll('[data-testid^="node-state-n"]')];
      return els.length > 0 && (n === null || els.length === n) && els.every((e) => e.textContent.trim() === want);
    }, [state, EXPECT_NODES], { timeout, polling: 200 });
  } catch {
    const seen = (await nodeStates(page)).map(([n, s]) => `${n} ${s}`).join(', ') || 'no node rows';
    fail(`waiting ${timeout / 1000} s for ${EXPECT_NODES ?? 'all'} nodes ${state}: the page shows ${seen}`);
  }
  return (await nodeStates(page)).length;
}

// ---------- steps ----------

const steps = {
  /** Signs in through the form and sees the cluster page with every node Up. */
  async login(page) {
    await login(page);
    const n = await seeAllNodes(page, 'Up', STATE_WAIT_MS);
    for (const id of ['tile-degraded', 'tile-redundant', 'tile-pha', 'tile-pft', 'chart-requests', 'failures-table']) {
      await see(page, id, 'reading the cluster summary');
    }
    await seeText(page, 'current-user-admin', 'admin', 'the header marks an administrator');
    return `${n} nodes Up`;
  },

  /** Signs in and waits until node N shows STATE (the test kills or restarts it meanwhile). */
  async 'node-state'(page, [n, state]) {
    if (!/^\d+$/.test(n || '') || !['Up', 'Suspect', 'Down'].includes(state)) {
      fail('usage: node-state N Up|Suspect|Down');
    }
    await login(page);
    await see(page, `node-row-n${n}`, `finding node n${n}`);
    await seeText(page, `node-state-n${n}`, state, `waiting for node n${n}`, STATE_WAIT_MS);
    return `n${n} ${state}`;
  },

  /** Creates BUCKET, uploads 300 KiB of random bytes, sees the size, downloads them back. */
  async 'upload-download'(page, [bucket]) {
    if (!bucket) fail('usage: upload-download BUCKET');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dmpstore-console-'));
    try {
      const file = path.join(dir, UPLOAD_KEY);
      const bytes = crypto.randomBytes(UPLOAD_BYTES);
      fs.writeFileSync(file, bytes);
      const sha = crypto.createHash('sha256').update(bytes).digest('hex');

      await login(page);
      await createBucket(page, bucket);
      await tid(page, `bucket-open-${bucket}`).click();
      await see(page, 'objects-table', `browsing bucket ${bucket}`);
      await tid(page, 'upload-input').setInputFiles(file);
      await see(page, `object-row-${UPLOAD_KEY}`, `uploading ${UPLOAD_KEY}`);
      const size = await tid(page, `object-size-${UPLOAD_KEY}`).getAttribute('data-bytes');
      if (Number(size) !== UPLOAD_BYTES) fail(`the listing shows ${size} bytes for ${UPLOAD_KEY}, not ${UPLOAD_BYTES}`);
      await seeText(page, `object-size-${UPLOAD_KEY}`, '300 KiB', 'the listed size');

      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: UI_WAIT_MS }),
        tid(page, `object-download-${UPLOAD_KEY}`).click(),
      ]);
      const failure = await download.failure();
      if (failure) fail(`downloading ${UPLOAD_KEY}: ${failure}`);
      const got = fs.readFileSync(await download.path());
      const gotSha = crypto.createHash('sha256').update(got).digest('hex');
      if (gotSha !== sha) fail(`downloaded ${got.length} bytes with sha256 ${gotSha}, uploaded ${bytes.length} with ${sha}`);
      if (download.suggestedFilename() !== UPLOAD_KEY) fail(`the download is named ${download.suggestedFilename()}, not ${UPLOAD_KEY}`);
      await noBanner(page, 'after the download');
      return `${bucket}/${UPLOAD_KEY} ${bytes.length} bytes, sha256 ${sha} both ways`;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },

  /**
   * Adds rule expire-logs (prefix logs/, expire after 1 day, abort uploads after 1 day) to
   * BUCKET's lifecycle, sees it after a reload, then sees an invalid rule (0 days) refused.
   */
  async lifecycle(page, [bucket]) {
    if (!bucket) fail('usage: lifecycle BUCKET');
    await login(page);
    await openBuckets(page);
    if (!(await tid(page, `bucket-row-${bucket}`).count())) await createBucket(page, bucket);
    await openBucket(page, bucket);
    await tid(page, 'tab-lifecycle').click();
    await see(page, 'lifecycle-rules-table', `opening ${bucket}'s lifecycle`);
    if (await tid(page, 'lifecycle-rule-expire-logs').count()) {
      // Left by an earlier run: delete it through the page first (the confirm is accepted).
      await tid(page, 'lifecycle-delete-expire-logs').click();
      await seeGone(page, 'lifecycle-rule-expire-logs', 'deleting an earlier expire-logs');
    }

    await tid(page, 'lifecycle-add-id').fill('expire-logs');
    await tid(page, 'lifecycle-add-prefix').fill('logs/');
    await tid(page, 'lifecycle-add-expiration').fill('1');
    await tid(page, 'lifecycle-add-abort').fill('1');
    await tid(page, 'lifecycle-add-status').selectOption('Enabled');
    await tid(page, 'lifecycle-add-submit').click();
    await see(page, 'lifecycle-rule-expire-logs', 'adding rule expire-logs');

    await page.reload();
    await see(page, 'lifecycle-rule-expire-logs', 'seeing rule expire-logs after a reload');
    await seeText(page, 'lifecycle-rule-expire-logs-filter', 'prefix logs/', 'the rule\'s filter');
    await seeText(page, 'lifecycle-rule-expire-logs-expiration', 'after 1 day', 'the rule\'s expiration');
    await seeText(page, 'lifecycle-rule-expire-logs-abort', 'after 1 day', 'the rule\'s multipart abort');

    await tid(page, 'lifecycle-add-id').fill('expire-now');
    await tid(page, 'lifecycle-add-prefix').fill('tmp/');
    await tid(page, 'lifecycle-add-expiration').fill('0');
    await tid(page, 'lifecycle-add-submit').click();
    try {
      await tid(page, 'error-banner').waitFor({ state: 'visible', timeout: UI_WAIT_MS });
    } catch {
      fail('a rule expiring after 0 days showed no error banner');
    }
    const refused = await bannerText(page);
    await page.reload();
    await see(page, 'lifecycle-rule-expire-logs', 'reloading after the refused rule');
    if (await tid(page, 'lifecycle-rule-expire-now').count()) fail('the refused rule expire-now is listed after a reload');
    return `rule expire-logs stored; 0 days refused with "${refused}"`;
  },

  /**
   * Creates a user (its secret shown once), signs in as it (no Users page), gives it a second,
   * read-only key and disables that key.
   */
  async users(page, _args, context) {
    await login(page);
    await tid(page, 'nav-users').click();
    await see(page, 'users-table', 'opening the users page');
    const user = `console-${crypto.randomBytes(3).toString('hex')}`;
    await tid(page, 'user-name-input').fill(user);
    await tid(page, 'user-create').click();
    await see(page, 'secret-box', `creating user ${user}`);
    const ak1 = (await tid(page, 'secret-access-key').innerText()).trim();
    const sk1 = (await tid(page, 'secret-secret-key').innerText()).trim();
    if (!ak1 || sk1.length < 16) fail(`the new user's key is shown as "${ak1}" / "${sk1}"`);
    await seeText(page, `user-keycount-${user}`, '1', `user ${user}'s key count`);
    await tid(page, 'secret-dismiss').click();
    await seeGone(page, 'secret-box', 'dismissing the secret');
    if ((await page.content()).includes(sk1)) fail('the secret is still in the page after it was dismissed');

    await signInAs(context, user, ak1, sk1);

    await tid(page, `user-keys-${user}`).click();
    await see(page, `key-row-${ak1}`, `listing ${user}'s keys`);
    await tid(page, 'key-read-only').check();
    await tid(page, 'key-prefixes').fill('reports/2026, audience');
    await tid(page, 'key-create').click();
    await see(page, 'secret-box', `creating a second key for ${user}`);
    const ak2 = (await tid(page, 'secret-access-key').innerText()).trim();
    if (!ak2 || ak2 === ak1) fail(`the second key is shown as "${ak2}"`);
    await see(page, `key-row-${ak2}`, 'listing the second key');
    await seeText(page, `key-access-${ak2}`, 'read-only', 'the second key\'s access');
    await seeText(page, `user-keycount-${user}`, '2', `user ${user}'s key count`);

    await tid(page, `key-disable-${ak2}`).click();
    await seeText(page, `key-state-${ak2}`, 'Disabled', 'disabling the second key');
    await page.reload();
    await seeText(page, `key-state-${ak2}`, 'Disabled', 'the disabled key after a reload');
    await seeText(page, `key-state-${ak1}`, 'Active', 'the first key after a reload');
    if (await tid(page, 'secret-box').count()) fail('a secret is shown again after a reload');
    return `user ${user}: keys ${ak1} (active), ${ak2} (read-only, disabled)`;
  },

  /** PNGs of the login form, cluster page, buckets, a bucket's browse view and lifecycle, users. */
  async screenshots(page, [bucket]) {
    if (!SCREENSHOT_DIR) fail('screenshots needs SCREENSHOT_DIR');
    const shots = [];
    const shot = async (name) => {
      await page.evaluate(() => { document.getElementById('notice-banner').hidden = true; });
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
      shots.push(`${name}.png`);
    };
    await page.goto(`${URL_BASE}/`);
    await see(page, 'login-form', 'opening the console');
    await shot('console-login');
    await login(page);
    await seeAllNodes(page, 'Up', STATE_WAIT_MS);
    await see(page, 'chart-requests', 'drawing the rate charts');
    await shot('console-cluster');

    await openBuckets(page);
    await shot('console-buckets');
    const name = bucket || (await page.$eval('[data-testid^="bucket-open-"]', (a) => a.textContent).catch(() => null));
    if (name) {
      await openBucket(page, name);
      await shot('console-bucket');
      await tid(page, 'tab-lifecycle').click();
      await see(page, 'lifecycle-rules-table', `opening ${name}'s lifecycle`);
      await shot('console-lifecycle');
    }
    if (await tid(page, 'nav-users').isVisible()) {
      await tid(page, 'nav-users').click();
      await see(page, 'users-table', 'opening the users page');
      const first = await page.$('[data-testid^="user-keys-"]');
      if (first) {
        await first.click();
        await see(page, 'keys-table', 'listing a user\'s keys');
      }
      await shot('console-users');
    }
    return `wrote ${shots.join(', ')} to ${SCREENSHOT_DIR}`;
  },
};

/**
 * Signs in as a new user in a fresh browser context and checks it is no administrator. A new key
 * may take a few seconds to reach every gateway, so a refused sign-in is retried for a while.
 */
async function signInAs(browserContext, user, accessKey, secretKey) {
  const other = await browserContext.browser().newContext();
  try {
    const page = await other.newPage();
    const deadline = Date.now() + KEY_PROPAGATION_MS;
    for (;;) {
      try {
        await login(page, accessKey, secretKey);
        break;
      } catch (e) {
        if (!(e instanceof StepError) || Date.now() > deadline) throw e;
        await page.waitForTimeout(250); // poll interval between sign-in attempts
      }
    }
    await seeText(page, 'current-user', user, `signing in as ${user}`);
    if (await tid(page, 'nav-users').isVisible()) fail(`user ${user} sees the Users page`);
    if (await tid(page, 'current-user-admin').isVisible()) fail(`user ${user} is marked admin`);
  } finally {
    await other.close();
  }
}

// ---------- main ----------

async function main() {
  const [step, ...args] = process.argv.slice(2);
  const run = steps[step];
  const label = [step, ...args].join(' ');
  if (!run) {
    console.error(`usage: node console.mjs ${Object.keys(steps).join('|')} [ARGS]`);
    process.exit(2);
  }
  const started = Date.now();
  const secs = () => ((Date.now() - started) / 1000).toFixed(1);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const pageErrors = [];
  let page;
  let code = 0;
  try {
    const context = await browser.newContext({ viewport: { width: 1360, height: 860 }, acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(UI_WAIT_MS);
    page.on('dialog', (d) => d.accept());
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const detail = await run(page, args, context);
    if (pageErrors.length) fail(`the page threw: ${pageErrors.join(' | ')}`);
    if (SCREENSHOT_DIR && step !== 'screenshots') {
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${[step, ...args].join('-')}.png`), fullPage: true });
    }
    console.log(`console ${label}: ok (${secs()} s): ${detail}`);
  } catch (e) {
    code = 1;
    const why = e instanceof StepError ? e.message : e.stack || String(e);
    console.log(`console ${label}: FAILED after ${secs()} s: ${why}`);
    if (pageErrors.length && !why.includes('the page threw')) console.log(`  the page threw: ${pageErrors.join(' | ')}`);
    if (SCREENSHOT_DIR && page) {
      await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${[step, ...args].join('-')}-failed.png`), fullPage: true })
        .catch(() => {});
    }
  } finally {
    await browser.close();
  }
  process.exit(code);
}

main();
