// The operator's 3 a.m., in a real browser (Debian's Chromium, driven by playwright-core):
// a payout that needs attention → the overview shows it → open it → read why and the evidence
// → resolve it with a reason → the audit trail shows who and why → reconcile is clean. Also:
// a read operator cannot act, a POST without the CSRF token is refused, and a payee named
// `<script>alert(1)</script>` is shown as text. Run by `cli/tests/console.rs`, which starts
// `protopay serve` and the simulator and makes the stuck payout; this script only browses.
//
// Environment: CONSOLE_URL, SIM_URL, OPERATE_TOKEN (li.lei), READ_TOKEN (wang.fang),
// STUCK (the payout's outReqNo), SCREENSHOTS (a directory), CHROMIUM (the browser).

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const base = env('CONSOLE_URL');
const sim = env('SIM_URL');
const stuck = env('STUCK');
const shots = env('SCREENSHOTS');
const script = '<script>alert(1)</script>';

// As the machine's probe runs it: no sandbox (root), and nothing that reaches the network.
const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

/** A signed-in person's browser: their own context (cookies), a page, and every dialog or
 * script error the pages raised. */
async function signIn(token) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  const page = await context.newPage();
  const trouble = [];
  page.on('dialog', (d) => { trouble.push(`dialog: ${d.message()}`); d.dismiss(); });
  page.on('pageerror', (e) => trouble.push(`script error: ${e}`));
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/sign-in$/, 'signed out, the console asks who you are');
  await page.fill('input[name=token]', token);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/console`);
  return { context, page, trouble };
}

const text = async (page) => (await page.locator('main').textContent()) ?? '';

try {
  const li = await signIn(env('OPERATE_TOKEN'));
  const page = li.page;

  // The overview shows the payout that needs a person.
  const tile = page.locator('a.tile', { hasText: 'need attention' });
  assert.equal((await tile.locator('.n').textContent()).trim(), '1');
  await page.screenshot({ path: `${shots}/console-overview.png`, fullPage: true });

  // Open it from the list of orders that need attention.
  await tile.click();
  await page.waitForURL(/listing=NEEDS_ATTENTION/);
  await page.click(`a:text-is("${stuck}")`);
  await page.waitForURL(new RegExp(`/console/orders/${stuck}$`));

  // Why, and what went over the wire.
  const why = await page.locator('.why').textContent();
  assert.match(why, /will not send it again on its own/);
  const evidence = await page.locator('.exchange').allTextContents();
  assert.ok(evidence.some((e) => e.includes('sent outpay, signed')), evidence.join('\n'));
  assert.ok(evidence.some((e) => e.includes('reply to outquery, signature verified')), evidence.join('\n'));
  assert.ok(!evidence.join('').includes('6222020200112233445'), 'the evidence on the page is masked');
  // The payee's name is text, never markup: no script ran (no dialog, checked at the end).
  assert.ok((await text(page)).includes(script), 'the payee name is shown as written');
  assert.equal(await page.locator('main script').count(), 0);
  await page.screenshot({ path: `${shots}/console-order.png` });

  // The evidence bundle, exactly as on the wire for an operator (its signatures checkable).
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('text=Download the evidence bundle'),
  ]);
  const bundle = JSON.parse(await readFile(await download.path(), 'utf8'));
  assert.equal(bundle.outReqNo, stuck);
  assert.equal(bundle.generatedBy, 'li.lei');
  const sent = bundle.exchanges.filter((x) => x.message.Request?.endpoint === 'outpay');
  assert.equal(sent.length, 1, 'sent exactly once');
  assert.ok(sent[0].body.includes('6222020200112233445'), 'the request as it went');

  // A POST without the session's CSRF token is refused, whoever's cookie it carries.
  const forged = await li.context.request.post(`${base}/console/orders/${stuck}/resolve`, {
    form: { status: 'FAILURE', note: 'forged', confirm: stuck, version: '1' }, maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);

  // Decide, with a reason, on the order as shown.
  await page.selectOption('select[name=status]', 'FAILURE');
  await page.fill('textarea[name=note]', 'Bank confirmed the payout was returned (ticket 4471)');
  await page.fill('input[name=confirm]', stuck);
  await page.click('button:text("Record the decision")');
  await page.waitForURL(new RegExp(`/console/orders/${stuck}$`));
  assert.match(await text(page), /resolved by li\.lei as FAILURE/);
  assert.equal(await page.locator('.why').count(), 0, 'it no longer needs attention');

  // The audit trail: who and why.
  await page.click('nav >> text=Audit');
  const row = page.locator('tr', { hasText: stuck });
  assert.match(await row.textContent(), /li\.lei[\s\S]*resolved by li\.lei as FAILURE[\s\S]*ticket 4471/);

  // The bank's side settles the same way; reconciliation is clean.
  const settled = await fetch(`${sim}/sim/outbound/${stuck}/settle`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 'FAILURE' }),
  });
  assert.ok(settled.ok, `the simulator settled: ${settled.status}`);
  await page.goto(`${base}/console/orders/${stuck}`);
  await page.click('main p a[href^="/console/protocols/"]');
  await page.fill('input[name=note]', 'After the returned payout');
  await page.click('button:text("Reconcile now")');
  assert.match(await text(page), /the books agree/);
  await page.click('nav >> text=Audit');
  assert.match(await page.locator('tbody tr').first().textContent(), /reconciled by li\.lei: the books agree[\s\S]*After the returned payout/);

  // A read operator: masked data, no action, and the server refuses their POST anyway.
  const wang = await signIn(env('READ_TOKEN'));
  await wang.page.goto(`${base}/console/orders/${stuck}`);
  const seen = await text(wang.page);
  assert.ok(!seen.includes(script) && !seen.includes('6222020200112233445'), 'masked for a reader');
  assert.equal(await wang.page.locator('form.act').count(), 0, 'no action for a reader');
  const csrf = await wang.page.locator('input[name=csrf]').first().getAttribute('value');
  const theirs = await wang.context.request.post(`${base}/console/protocols/${bundle.transNo}/reconcile`, {
    form: { note: 'a reader tries', csrf }, maxRedirects: 0,
  });
  assert.equal(theirs.status(), 403);

  for (const who of [li, wang]) assert.deepEqual(who.trouble, [], 'no dialog, no script error');
  console.log('console story passed');
} finally {
  await browser.close();
}
