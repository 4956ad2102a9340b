// Headless Chromium for the browser tests (browser.test.mjs, deflate.test.mjs,
// ../redis/browser-redis.test.mjs): Debian's /usr/bin/chromium (apt package "chromium")
// driven through the npm package playwright-core pinned beside this file
// (`npm ci --prefix test/browser`; scripts/deps.sh --test installs both). Without them
// a test fails with that hint; it is never skipped silently.
import { existsSync } from 'node:fs';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const HINT = 'Install the test dependencies with:  scripts/deps.sh --test\n'
  + '  (that is: apt-get install -y chromium; npm ci --prefix test/browser)';

// Ends the run as one failed case, in the tests' "N passed, N failed" format.
export function fatal(msg) {
  console.log(`FAIL ${msg}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}

let chromium;

// playwright-core's chromium (its BrowserType), or fatal() with the hint if Chromium or
// playwright-core is missing. Call it before starting anything: fatal() exits at once.
export async function loadChromium() {
  if (chromium) return chromium;
  if (!existsSync(CHROMIUM)) fatal(`${CHROMIUM} is missing (Debian package "chromium").\n${HINT}`);
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    fatal(`cannot load the npm package "playwright-core" from test/browser/node_modules `
      + `(${err.code || err.message}).\n${HINT}`);
  }
  return chromium;
}

// Launches headless Chromium with CHROMIUM_ARGS and `extraArgs`: a Browser, or with
// server: true a BrowserServer (chromium.launchServer). `wait` is the calling test's
// withTimeout(promise, ms, what), so that its own record of waits covers this one.
export async function launchChromium(wait, { extraArgs = [], server = false,
  what = 'launching Chromium' } = {}) {
  const pw = await loadChromium();
  const options = {
    executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs], timeout: 30_000,
  };
  return wait(server ? pw.launchServer(options) : pw.launch(options), 40_000, what);
}
