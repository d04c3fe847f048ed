// Starts Debian's headless Chromium through playwright-core for the browser tests. The
// browser is the system's (`scripts/install-system-deps.sh` installs it); `X402_CHROMIUM`
// names another executable. Each test script imports `withPage`, does its steps and prints
// one JSON line of what it saw, which the Rust test asserts on.
import { chromium } from "playwright-core";
import { existsSync } from "node:fs";

const candidates = [process.env.X402_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"];

/** The Chromium executable, or an error that says how to install it. */
export function chromiumPath() {
  const found = candidates.find((path) => path && existsSync(path));
  if (!found) {
    throw new Error(
      "no Chromium found: run scripts/install-system-deps.sh (Debian package `chromium`) or set X402_CHROMIUM",
    );
  }
  return found;
}

/**
 * Runs `steps(page, context)` in a fresh headless browser at the given viewport and closes it
 * whatever happens. `viewport` defaults to a desktop window.
 */
export async function withPage(steps, { viewport = { width: 1280, height: 900 } } = {}) {
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    // Tests run as root on CI, where Chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    return await steps(page, context);
  } finally {
    await browser.close();
  }
}

/** Prints the test's findings as the last line of standard output. */
export function report(findings) {
  process.stdout.write(`${JSON.stringify(findings)}\n`);
}

/**
 * Saves a full-page screenshot of `page` at `path`. Headless Chromium sometimes answers
 * "Unable to capture screenshot" on a loaded 2-core machine while it is still compositing: a
 * screenshot is evidence, not the thing under test, so it is tried again (three times in all,
 * a frame apart) before the error is let through.
 */
export async function screenshot(page, path) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.screenshot({ path, fullPage: true });
    } catch (error) {
      if (attempt >= 3 || !String(error?.message).includes("Unable to capture screenshot")) throw error;
      await page.waitForTimeout(250 * attempt);
    }
  }
}
