// Opens an `x402 receipts --html` page in headless Chromium and reports what it shows: the
// totals, the rows of every table and the budget as their `data-*` attributes hold them, the
// charts and their text alternatives, any script or image on the page (an escaping bug would
// add one), any request the page made, and, at a phone's width, whether the page is wider than
// the screen. Saves a screenshot at each width.
//
//   node spending-report.mjs REPORT.html SCREENSHOT_DIR
import { mkdirSync } from "node:fs";
import { resolve, join } from "node:path";
import { pathToFileURL } from "node:url";
import { report, screenshot as takeScreenshot, withPage } from "./browser.mjs";

const [file, shots] = process.argv.slice(2);
if (!file || !shots) {
  throw new Error("usage: node spending-report.mjs REPORT.html SCREENSHOT_DIR");
}
const url = pathToFileURL(resolve(file)).href;
mkdirSync(shots, { recursive: true });

/** Loads the page, noting every request but the page's own and every console error. */
async function open(page) {
  const requests = [];
  const errors = [];
  page.on("request", (request) => {
    if (request.url() !== url) requests.push(request.url());
  });
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(url, { waitUntil: "load" });
  return { requests, errors };
}

/** Everything the test checks, read in the page. */
function read() {
  const all = (selector) => [...document.querySelectorAll(selector)];
  const micro = (el, name = "microUsd") =>
    el.dataset[name] === undefined ? null : Number(el.dataset[name]);
  const total = (id) => {
    const el = document.querySelector(`[data-testid="${id}"]`);
    return el && { microUsd: micro(el), usd: el.dataset.usd, payments: Number(el.dataset.payments) };
  };
  const rows = (id) =>
    all(`[data-testid="${id}"]`).map((el) => ({
      key: el.dataset.key,
      microUsd: micro(el),
      usd: el.dataset.usd,
      payments: Number(el.dataset.payments),
    }));
  const cell = (row, label) => row.querySelector(`[data-label="${label}"]`)?.textContent ?? null;
  const name = (el) =>
    (el.getAttribute("aria-labelledby") ?? "")
      .split(/\s+/)
      .map((id) => document.getElementById(id)?.textContent ?? "")
      .join(" ")
      .trim();
  return {
    title: document.title,
    h1: document.querySelector("h1")?.textContent,
    h2: all("h2").map((h) => h.textContent),
    paid: total("total-paid"),
    unknown: total("total-unknown"),
    listed: Number(document.querySelector('[data-testid="payment-count"]')?.dataset.count),
    noPayments: document.querySelector('[data-testid="no-payments"]') !== null,
    byService: rows("service-total"),
    byPayee: rows("payee-total"),
    byDay: rows("day-total"),
    dailyByService: all('[data-testid="daily-service"]').map((el) => ({
      day: el.dataset.day,
      key: el.dataset.key,
      microUsd: micro(el),
    })),
    payments: all('[data-testid="payment"]').map((el) => ({
      id: Number(el.dataset.id),
      status: el.dataset.status,
      microUsd: micro(el),
      usd: el.dataset.usd,
      transaction: el.dataset.transaction,
      shown: {
        time: cell(el, "Time"),
        amount: cell(el, "Amount"),
        service: cell(el, "Service"),
        payee: cell(el, "Payee"),
        url: cell(el, "URL"),
        network: cell(el, "Network"),
        transaction: cell(el, "Transaction"),
      },
    })),
    budget: all('[data-testid="budget-limit"]').map((el) => ({
      name: el.dataset.name,
      limitMicroUsd: micro(el, "limitMicroUsd"),
      usedMicroUsd: micro(el, "usedMicroUsd"),
      meter: el.querySelector("meter")?.value ?? null,
      text: el.textContent,
    })),
    charts: all("figure.chart svg").map((svg) => ({
      role: svg.getAttribute("role"),
      name: name(svg),
      bars: svg.querySelectorAll("rect").length,
      caption: svg.closest("figure").querySelector("figcaption")?.textContent ?? "",
    })),
    tables: all("table").map((table) => ({
      caption: table.querySelector("caption")?.textContent ?? "",
      headers: table.querySelectorAll("th").length,
      scoped: table.querySelectorAll("th[scope]").length,
    })),
    scripts: all("script").length,
    images: all("img, iframe, object, embed").length,
    injected: typeof window.pwned !== "undefined",
    viewport: { width: window.innerWidth, scrollWidth: document.documentElement.scrollWidth },
  };
}

const desktop = await withPage(async (page) => {
  const seen = await open(page);
  const findings = await page.evaluate(read);
  const screenshot = join(shots, "spending-report.png");
  await takeScreenshot(page, screenshot);
  return { ...findings, ...seen, screenshot };
});

const narrow = await withPage(
  async (page) => {
    const seen = await open(page);
    const findings = await page.evaluate(read);
    // Every payment card fits the screen, not only the page.
    const widest = await page.evaluate(() =>
      Math.max(0, ...[...document.querySelectorAll('[data-testid="payment"]')].map((row) => row.getBoundingClientRect().right)),
    );
    // Nor does any part scroll sideways on its own (visually hidden text aside).
    const scrollers = await page.evaluate(() =>
      [...document.querySelectorAll("body *")]
        .filter((el) => el.clientWidth > 1 && el.scrollWidth > el.clientWidth + 1)
        .filter((el) => getComputedStyle(el).overflowX !== "visible")
        .map((el) => `${el.tagName.toLowerCase()}.${el.className}`),
    );
    const screenshot = join(shots, "spending-report-390px.png");
    await takeScreenshot(page, screenshot);
    return { viewport: findings.viewport, widestPayment: widest, scrollers, requests: seen.requests, errors: seen.errors, screenshot };
  },
  { viewport: { width: 390, height: 844 } },
);

report({ desktop, narrow });
