// The gateway's operator dashboard in headless Chromium, as an operator uses it: signed out it
// is a sign-in form and its API answers 401; signed in through the form (an HttpOnly cookie),
// it shows the overview, the payments (search, details), takes a new payment live without a
// reload, claims with confirmation on the settlement page, lists jobs, and fits a 390 px wide
// screen. Driven by a Rust test over stdin/stdout: when it needs a new paid call it prints
// `{"waiting": "payment"}` and reads one JSON line back (`{"tx": "0x…"}`); its last line is
// what it saw.
//
// Env: DASHBOARD_URL (…/dashboard), TOKEN (the operator token), SCREENSHOTS (a directory).
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { report, screenshot, withPage } from "./browser.mjs";

const url = process.env.DASHBOARD_URL;
const token = process.env.TOKEN;
const shots = process.env.SCREENSHOTS;
if (!url || !token || !shots) {
  process.stderr.write("set DASHBOARD_URL, TOKEN and SCREENSHOTS\n");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const base = new URL(url).origin;

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Asks the Rust test for `what` and waits for its answer. */
async function ask(what) {
  process.stdout.write(`${JSON.stringify({ waiting: what })}\n`);
  const { value, done } = await lines.next();
  if (done) throw new Error(`no answer to ${what}`);
  return JSON.parse(value);
}

const findings = { screenshots: [] };

await withPage(async (page, context) => {
  const text = async (id) => (await page.locator(`[data-testid="${id}"]`).first().innerText()).trim();
  /** The value of a tile (its `dd`), without its label. */
  const tile = async (id) => (await page.locator(`[data-testid="${id}"] dd`).first().innerText()).trim();
  const shoot = async (name) => {
    const path = `${shots}/gateway-${name}.png`;
    await screenshot(page, path);
    findings.screenshots.push(path);
  };
  const show = async (section) => {
    await page.click(`nav a[data-section="${section}"]`);
    await page.waitForSelector(`#app[data-loaded="${section}"]`);
  };
  const rows = () => page.$$eval("#app tbody tr[data-id]", (trs) => trs.map((tr) => ({
    id: tr.dataset.id,
    tx: tr.dataset.tx,
    state: tr.dataset.state,
    amount: tr.dataset.amount,
    cells: [...tr.cells].map((td) => td.innerText.trim()),
  })));
  // Counts full page loads: a live update must not be one.
  let loads = 0;
  page.on("load", () => { loads += 1; });

  // Signed out: the sign-in form, no data, and the API refuses.
  const first = await page.goto(url);
  findings.signedOut = {
    status: first.status(),
    form: await page.locator('input[name="token"]').count(),
    app: await page.locator("#app").count(),
  };
  findings.signedOutApi = await page.evaluate(async () => {
    const response = await fetch("/dashboard/api/overview");
    return { status: response.status, body: await response.text() };
  });
  await page.fill("#token", "not-the-token");
  await page.click('button[type="submit"]');
  findings.wrongToken = {
    form: await page.locator('input[name="token"]').count(),
    alert: (await page.locator('[role="alert"]').innerText()).trim(),
    cookies: (await context.cookies()).length,
  };

  // Signed in through the form.
  await page.fill("#token", token);
  await page.click('button[type="submit"]');
  await page.waitForSelector('#app[data-loaded="overview"]');
  await page.waitForFunction(() => document.getElementById("live").textContent.startsWith("live"));
  findings.cookies = (await context.cookies()).map((c) => ({
    name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path,
    holdsToken: c.value.includes(token),
  }));
  findings.scriptCookies = await page.evaluate(() => document.cookie);

  // Overview.
  findings.overview = {
    allTotal: await text("revenue-all-total"),
    allSettled: await text("revenue-all-settled"),
    allCharged: await text("revenue-all-charged"),
    todaySettled: await text("revenue-today-settled"),
    callsLastHour: await text("calls-last-hour"),
    charts: await page.locator("#app svg.chart").count(),
    services: await page.$$eval("#app ol.bars li", (items) => items.map((li) => li.innerText.replace(/\s+/g, " ").trim())),
  };
  await shoot("overview");

  // Payments.
  await show("payments");
  await page.waitForSelector("#app tbody tr[data-id]");
  findings.payments = await rows();
  findings.paymentsSummary = await text("payments-summary");
  await shoot("payments");

  // A new paid call appears without a reload.
  const loadsBefore = loads;
  const live = await ask("payment");
  await page.waitForSelector(`#app tbody tr[data-tx="${live.tx}"]`, { timeout: 30_000 });
  findings.live = {
    tx: live.tx,
    appeared: true,
    reloads: loads - loadsBefore,
    rows: (await rows()).length,
    summary: await text("payments-summary"),
  };

  // Search by a transaction; the search box keeps its text and focus through a live update.
  await page.fill("#payment-search", live.tx);
  await page.waitForFunction(() => document.querySelectorAll("#app tbody tr[data-id]").length === 1);
  findings.search = { rows: await rows(), summary: await text("payments-summary") };
  const badgeBefore = await page.locator("#live").innerText();
  const another = await ask("payment");
  await page.waitForFunction((before) => document.getElementById("live").textContent !== before, badgeBefore);
  await page.waitForTimeout(500);
  findings.searchAfterLive = {
    value: await page.inputValue("#payment-search"),
    focused: await page.evaluate(() => document.activeElement && document.activeElement.id),
    rows: (await rows()).length,
    another: another.tx,
  };
  await page.fill("#payment-search", "");
  await page.waitForSelector(`#app tbody tr[data-tx="${another.tx}"]`);

  // One payment's details.
  await page.click(`#app tbody tr[data-tx="${live.tx}"] a`);
  await page.waitForSelector('[data-testid="payment-details"]');
  findings.details = {
    fingerprint: await text("fingerprint"),
    receipt: await page.locator("pre").first().innerText(),
    text: await page.locator("#app").innerText(),
  };

  // A payment that started a job, with its job.
  if (process.env.JOB_PAYMENT) {
    await page.goto(`${url}#payments/${process.env.JOB_PAYMENT}`);
    await page.waitForSelector('[data-testid="payment-details"]');
    findings.jobDetails = await page.locator("#app").innerText();
  }

  // Settlement: what the channels hold, then claim it with confirmation.
  await show("settlement");
  findings.settlementBefore = {
    unclaimed: await tile("unclaimed-total"),
    payers: await page.$$eval("#app tbody tr[data-payer]", (trs) => trs.map((tr) => ({ payer: tr.dataset.payer, unclaimed: tr.dataset.unclaimed }))),
    lastClaim: await tile("last-claim"),
    pending: await text("pending-total"),
    signer: await page.locator("#app").innerText(),
  };
  await shoot("settlement");
  await page.click('button:has-text("Claim and settle now")');
  findings.asked = (await page.locator(".confirm").innerText()).trim();
  await page.click('.confirm button:has-text("Confirm")');
  await page.waitForSelector('[data-testid="claim-result"]', { timeout: 60_000 });
  await page.waitForFunction(() => {
    const tile = document.querySelector('[data-testid="unclaimed-total"] dd');
    return tile && /^0(\.0+)?\b/.test(tile.textContent.trim());
  }, null, { timeout: 30_000 });
  findings.claim = {
    result: await text("claim-result"),
    unclaimedAfter: await tile("unclaimed-total"),
    lastClaim: await tile("last-claim"),
  };

  // Jobs.
  await show("jobs");
  findings.jobs = await page.locator("#app").innerText();

  // A phone's width: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  findings.narrow = {};
  for (const section of ["overview", "payments", "settlement", "jobs"]) {
    await show(section);
    if (section === "payments") await page.waitForSelector("#app tbody tr[data-id]");
    findings.narrow[section] = await page.evaluate(() => document.documentElement.scrollWidth);
    if (section !== "jobs") await shoot(`${section}-390`);
  }

  // Signing out forgets the cookie.
  await page.click('form[action="/dashboard/logout"] button');
  await page.waitForSelector('input[name="token"]');
  findings.signedOutAgain = {
    form: await page.locator('input[name="token"]').count(),
    cookies: (await context.cookies()).filter((c) => c.value !== "").length,
  };
  findings.origin = base;
});

report(findings);
process.exit(0);
