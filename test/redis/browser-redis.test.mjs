// Two wsev-pubsub instances federated through a redis-server of our own, each serving
// its page (GET /) to a headless Chromium page: the pages subscribe to the same
// channel through the page's form, and a message published on one page shows up on the
// other (through Redis) exactly once, and back. Screenshots of both pages are kept as
// test artifacts in OUTDIR.
//
// usage: node test/redis/browser-redis.test.mjs /path/to/wsev-pubsub OUTDIR
//
// Chromium is Debian's /usr/bin/chromium, driven by playwright-core from
// test/browser/node_modules (../browser/chromium.mjs); redis-server and redis-cli
// are Debian's redis-server. scripts/deps.sh --test installs them all. Prints PASS/FAIL
// and "N passed, N failed".
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fatal, launchChromium, loadChromium } from '../browser/chromium.mjs';

const STEP_MS = 10_000;
const RUN_MS = 100_000;

const [pubsubExe, outDir] = process.argv.slice(2);
if (!pubsubExe || !outDir) {
  console.error('usage: node browser-redis.test.mjs /path/to/wsev-pubsub OUTDIR');
  process.exit(2);
}

await loadChromium();
try {
  execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
} catch {
  fatal('redis-server is missing (Debian package "redis-server").\n'
    + 'Install the test dependencies with:  scripts/deps.sh --test');
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function redisCli(port, ...args) {
  return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args],
    { encoding: 'utf8', timeout: STEP_MS }).trim();
}

async function startRedis(dir) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
    { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      await sleep(20);
      try {
        if (redisCli(port, 'PING') === 'PONG') return { proc, port };
      } catch { /* not yet */ }
      if (proc.exitCode !== null) break;
    }
    proc.kill('SIGKILL');
  }
  throw new Error('redis-server did not start');
}

async function startInstance(redisPort) {
  const proc = spawn(pubsubExe, ['--port', '0', '--no-tls', '--quiet', '--redis',
    `redis://127.0.0.1:${redisPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const lines = createInterface({ input: proc.stdout });
  const port = await withTimeout(new Promise((resolve, reject) => {
    lines.once('line', (line) => {
      const m = /^wsev-pubsub listening on port (\d+)$/.exec(line);
      if (m) resolve(Number(m[1])); else reject(new Error(`bad first line ${line}`));
    });
  }), STEP_MS, 'wsev-pubsub to start');
  const exit = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, port, exit, stderr: () => stderr };
}

async function waitUp(inst) {
  for (let i = 0; i < 250; i++) {
    const res = await fetch(`http://127.0.0.1:${inst.port}/stats`);
    const st = await res.json();
    if (st.redis === 'up') return;
    await sleep(20);
  }
  throw new Error(`instance ${inst.port} not connected to redis: ${inst.stderr()}`);
}

// The texts of the page's log entries of class "in" (messages received).
const received = (page) => page.$$eval('#log li.in', (lis) => lis.map((li) => li.textContent));

async function waitFor(what, fn) {
  for (let i = 0; i < STEP_MS / 20; i++) {
    if (await fn()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

let passed = 0;
let failed = 0;
const dir = mkdtempSync(join(tmpdir(), 'wsev-redis-browser-'));
let redis;
const instances = [];
let browser;
const runTimer = setTimeout(() => fatal(`the whole run took over ${RUN_MS} ms`), RUN_MS);

try {
  redis = await startRedis(dir);
  instances.push(await startInstance(redis.port), await startInstance(redis.port));
  await Promise.all(instances.map(waitUp));
  browser = await launchChromium(withTimeout);
  const pages = [];
  for (const inst of instances) {
    const ctx = await browser.newContext({ viewport: { width: 800, height: 600 } });
    const page = await ctx.newPage();
    await withTimeout(page.goto(`http://127.0.0.1:${inst.port}/`), STEP_MS, 'loading the page');
    await waitFor('the page to connect', async () => (await page.textContent('#status')) === 'open');
    pages.push(page);
  }
  const [a, b] = pages;
  for (const page of pages) {
    await page.fill('#channel', 'room');
    await page.click('#subscribe');
  }
  // Both instances hold the channel's subscription in Redis.
  await waitFor('PUBSUB NUMSUB wsev:room = 2',
    async () => redisCli(redis.port, 'PUBSUB', 'NUMSUB', 'wsev:room').split('\n')[1] === '2');

  await a.fill('#message', 'hello from A');
  await a.click('#publish');
  await waitFor('B to show the message from A', async () => (await received(b)).includes('hello from A'));
  await b.fill('#message', 'hello from B');
  await b.click('#publish');
  await waitFor('A to show the message from B', async () => (await received(a)).includes('hello from B'));
  await sleep(300); // nothing more may arrive
  const gotA = await received(a);
  const gotB = await received(b);
  const once = (list, text) => list.filter((t) => t === text).length === 1;
  if (!once(gotA, 'hello from A') || !once(gotA, 'hello from B')
    || !once(gotB, 'hello from A') || !once(gotB, 'hello from B')) {
    throw new Error(`each page must show each message once: A ${JSON.stringify(gotA)}, B ${JSON.stringify(gotB)}`);
  }
  mkdirSync(outDir, { recursive: true });
  await a.screenshot({ path: join(outDir, 'pubsub-redis-page-a.png') });
  await b.screenshot({ path: join(outDir, 'pubsub-redis-page-b.png') });
  console.log(`PASS two pages on two instances exchange messages through Redis `
    + `(screenshots: ${join(outDir, 'pubsub-redis-page-{a,b}.png')})`);
  passed++;
} catch (err) {
  console.log(`FAIL ${err.message}`);
  for (const inst of instances) console.log(`instance ${inst.port} stderr: ${inst.stderr()}`);
  failed++;
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const inst of instances) {
    inst.proc.kill('SIGTERM');
    const code = await withTimeout(inst.exit, STEP_MS, 'wsev-pubsub to exit').catch(() => -1);
    if (code !== 0) {
      console.log(`FAIL wsev-pubsub exit code ${code} after SIGTERM`);
      failed++;
    }
  }
  if (redis) redis.proc.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
  clearTimeout(runTimer);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
