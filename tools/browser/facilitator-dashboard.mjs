// The facilitator's dashboard in headless Chromium, for
// crates/facilitator/tests/the_facilitator_dashboard_shows_its_settlements.rs.
//
// Env: DASHBOARD (http://host:port/dashboard), TOKEN (the operator token), FACILITATOR (its
// base URL, for /settle), PAYMENTS (a JSON array of two signed settle requests, settled while
// the page is open), SCREENSHOTS (a folder). Prints one JSON line of what it saw: without the
// token (page, API, a wrong token in the form), the session cookie, the overview's totals, the
// table's rows, the live updates (without a reload), a settlement's details, a search, the
// health section, and the page at 390 px.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { withPage, report, screenshot } from "./browser.mjs";

const { DASHBOARD, TOKEN, FACILITATOR, PAYMENTS, SCREENSHOTS } = process.env;
const payments = JSON.parse(PAYMENTS);
mkdirSync(SCREENSHOTS, { recursive: true });
const shot = async (page, name) => {
  const path = join(SCREENSHOTS, `facilitator-${name}.png`);
  await screenshot(page, path);
  return path;
};

/** Waits until the shown section is `id` and rendered. */
const loaded = (page, id) => page.waitForSelector(`#app[data-loaded="${id}"]`);

/** The overview's tiles: {testid: {amount, count}}. */
const tiles = (page) => page.$$eval(".tile", (nodes) => Object.fromEntries(nodes.map((n) => [
  n.dataset.testid, { amount: n.dataset.amount ?? null, count: n.dataset.count ?? null, text: n.querySelector("dd").textContent },
])));

/** The table's rows as the page lists them. */
const rows = (page) => page.$$eval("#settlement-table tbody tr[data-key]", (nodes) =>
  nodes.map((n) => ({ key: n.dataset.key, tx: n.dataset.tx, state: n.dataset.state, amount: n.dataset.amount })));

async function settle(body) {
  const response = await fetch(`${FACILITATOR}/settle`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  return response.json();
}

/** Inputs, selects and charts a screen reader could not name. */
const unnamed = (page) => page.evaluate(() => {
  const named = (el) => el.getAttribute("aria-label") || el.labels?.length || el.getAttribute("aria-labelledby");
  return [...document.querySelectorAll("input, select, svg[role=img]")].filter((el) => !named(el)).length;
});

/** How far the page is wider than its window (0 when it fits). */
const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

const findings = await withPage(async (page, context) => {
  const seen = { screenshots: [] };

  // Without the token: the sign-in form, no data from the API, a wrong token refused.
  const first = await page.goto(DASHBOARD);
  seen.noToken = {
    pageStatus: first.status(),
    form: await page.locator("form[action='/dashboard/login'] input#token").count(),
    api: await page.evaluate(async () => {
      const response = await fetch("/dashboard/api/overview");
      return { status: response.status, body: await response.text() };
    }),
  };
  await page.fill("#token", "not-the-token");
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
  seen.noToken.wrongToken = await page.locator("[role=alert]").textContent();
  seen.noToken.appAfterWrongToken = await page.locator("#app").count();

  // Sign in through the form.
  await page.fill("#token", TOKEN);
  await Promise.all([page.waitForURL(DASHBOARD), page.click("button[type=submit]")]);
  await loaded(page, "overview");
  const cookies = await context.cookies(DASHBOARD);
  const session = cookies.find((c) => c.name === "x402_dashboard");
  seen.cookie = session
    ? { httpOnly: session.httpOnly, sameSite: session.sameSite, path: session.path,
      visibleToScripts: (await page.evaluate(() => document.cookie)).includes("x402_dashboard"),
      holdsToken: session.value.includes(TOKEN) }
    : null;
  await page.waitForFunction(() => document.getElementById("live")?.textContent === "live");
  seen.overview = await tiles(page);
  seen.unnamedOnOverview = await unnamed(page);
  seen.screenshots.push(await shot(page, "overview"));

  // Live: a settlement while the overview is open updates its totals, without a reload.
  await page.evaluate(() => { window.stillTheSamePage = true; });
  const onOverview = await settle(payments[0]);
  const allTile = Object.keys(seen.overview).find((id) => id.startsWith("all-") && seen.overview[id].count !== "0");
  await page.waitForFunction(([id, before]) => {
    const tile = document.querySelector(`.tile[data-testid="${id}"]`);
    return tile && tile.dataset.count !== before;
  }, [allTile, seen.overview[allTile].count], { timeout: 15_000 });
  seen.liveOverview = { settled: onOverview, tiles: await tiles(page) };

  // The table, then a settlement arriving while it is shown.
  await page.click("nav a[data-section=settlements]");
  await loaded(page, "settlements");
  await page.waitForSelector("#settlement-table tbody tr[data-key]");
  seen.rows = await rows(page);
  seen.caption = await page.locator("#settlement-table caption").textContent();
  seen.unnamedOnSettlements = await unnamed(page);
  seen.screenshots.push(await shot(page, "settlements"));
  const onTable = await settle(payments[1]);
  await page.waitForSelector(`#settlement-table tr[data-tx="${onTable.transaction}"]`, { timeout: 15_000 });
  seen.liveTable = { settled: onTable, rows: await rows(page) };
  seen.reloaded = !(await page.evaluate(() => window.stillTheSamePage === true));

  // A settlement's details: its transaction, signer and nonce.
  await page.click(`#settlement-table tr[data-tx="${onTable.transaction}"] button`);
  await page.waitForSelector("#settlement-details [data-key]");
  seen.details = await page.$$eval("#settlement-details table tbody tr", (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
  seen.screenshots.push(await shot(page, "settlement-details"));

  // A search by the oldest settlement's transaction.
  const oldest = seen.liveTable.rows[seen.liveTable.rows.length - 1];
  await page.fill("#settlement-search", oldest.tx);
  await page.click("form[role=search] button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#settlement-table tbody tr[data-key]").length === 1);
  seen.search = { q: oldest.tx, rows: await rows(page) };

  // Health: pending, failures by reason, signers' gas.
  await page.click("nav a[data-section=health]");
  await loaded(page, "health");
  seen.health = {
    tiles: await tiles(page),
    signers: await page.$$eval("tr[data-address]", (trs) => trs.map((tr) => ({ address: tr.dataset.address, balance: tr.dataset.balance }))),
    unnamed: await unnamed(page),
  };
  seen.screenshots.push(await shot(page, "health"));

  // The same pages on a 390 px wide phone, signed in with the same cookie.
  const phone = await context.browser().newContext({ viewport: { width: 390, height: 844 }, storageState: await context.storageState() });
  const narrow = await phone.newPage();
  seen.narrow = {};
  for (const id of ["overview", "settlements", "health"]) {
    await narrow.goto(`${DASHBOARD}#${id}`);
    await loaded(narrow, id);
    seen.narrow[id] = await overflow(narrow);
    seen.screenshots.push(await shot(narrow, `${id}-390px`));
  }
  await phone.close();
  return seen;
});
report(findings);
