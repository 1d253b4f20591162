#!/usr/bin/env node
// Headless check of one preview page:
//   node check-preview.mjs URL [--screenshot PATH] [--timeout SECONDS] [--modules DIR]
//
// Opens URL in Debian's chromium (CHROMIUM, default /usr/bin/chromium) through playwright-core,
// waits (bounded) for window.etlPreview.state to leave 'loading', reads the map's pixels back and
// prints ONE JSON line:
//   {"state", "error", "consoleErrors", "pageErrors", "failedRequests", "abortedRequests",
//    "drawnPixels", "totalPixels", "renderedFeatures", "layers", "metadataShown"}
// Exit 0 whatever the page did; exit 2 only when the browser cannot start (reason on stderr).
//
// playwright-core is looked up in --modules DIR, then $ETL_TILES_WEB_DIR (the build's
// $OUT_DIR/web, whose node_modules build.rs installs), $NODE_PATH, and web/node_modules.

import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CHROMIUM_ARGS } from './chromium.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));


function usage(message) {
  process.stderr.write(
    `${message}\nusage: node check-preview.mjs URL [--screenshot PATH] [--timeout SECONDS] [--modules DIR]\n`,
  );
  process.exit(2);
}

function parseArgs(argv) {
  const args = { url: null, screenshot: null, timeout: 30, modules: null };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--screenshot' || arg === '--timeout' || arg === '--modules') {
      const value = argv[i + 1];
      if (value === undefined) usage(`${arg} needs a value`);
      i += 1;
      if (arg === '--timeout') {
        args.timeout = Number(value);
        if (!(args.timeout > 0)) usage('--timeout needs a positive number of seconds');
      } else {
        args[arg.slice(2)] = value;
      }
    } else if (!arg.startsWith('--') && args.url === null) {
      args.url = arg;
    } else {
      usage(`unknown argument ${arg}`);
    }
  }
  if (!args.url) usage('no URL given');
  return args;
}

function loadPlaywright(modules) {
  const starts = [
    modules,
    process.env.ETL_TILES_WEB_DIR,
    ...(process.env.NODE_PATH || '').split(path.delimiter),
    path.join(here, '..'),
  ].filter(Boolean);
  const require = createRequire(import.meta.url);
  const resolved = require.resolve('playwright-core', { paths: starts });
  return require(resolved);
}

/** In the page: pixels that differ from the background, rendered features and their layers. */
function inspectPage() {
  const status = window.etlPreview || null;
  const map = window.etlMap || null;
  const result = {
    state: status ? status.state : 'no-preview',
    error: status ? status.error : 'window.etlPreview is not set',
    drawnPixels: 0,
    totalPixels: 0,
    renderedFeatures: 0,
    layers: [],
    metadataShown: false,
    readError: null,
  };
  const section = document.getElementById('etl-metadata');
  result.metadataShown = Boolean(
    status && status.metadata && section && section.dataset.state === 'shown' && section.querySelector('dd'),
  );
  if (!map) return result;
  try {
    const features = map.queryRenderedFeatures();
    result.renderedFeatures = features.length;
    result.layers = [...new Set(features.map((f) => f.layer.id))].sort();
  } catch (err) {
    result.readError = `queryRenderedFeatures: ${err && err.message}`;
  }
  try {
    const parse = (colour) => {
      const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(String(colour || '').trim());
      return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : null;
    };
    let bg = parse(status && status.background);
    if (!bg && map.getLayer('background')) bg = parse(map.getPaintProperty('background', 'background-color'));
    const source = map.getCanvas();
    const copy = document.createElement('canvas');
    copy.width = source.width;
    copy.height = source.height;
    const ctx = copy.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(source, 0, 0);
    const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
    result.totalPixels = copy.width * copy.height;
    let drawn = 0;
    let blank = true;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] !== 0) blank = false;
      const diff = bg
        ? Math.abs(data[i] - bg[0]) + Math.abs(data[i + 1] - bg[1]) + Math.abs(data[i + 2] - bg[2])
        : 0;
      if (diff > 12) drawn += 1;
    }
    result.drawnPixels = drawn;
    if (blank) result.readError = 'the map canvas reads back fully transparent (no WebGL output)';
    else if (!bg) result.readError = 'unknown background colour';
  } catch (err) {
    result.readError = `reading the canvas: ${err && err.message}`;
  }
  return result;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let chromium;
  try {
    ({ chromium } = loadPlaywright(args.modules));
  } catch (err) {
    process.stderr.write(`check-preview: cannot load playwright-core: ${err.message}\n`);
    process.exit(2);
  }

  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'etl-preview-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 800 },
      timeout: 30_000,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    process.stderr.write(`check-preview: the browser did not start: ${err.message}\n`);
    process.exit(2);
  }

  const consoleErrors = [];
  const pageErrors = [];
  const failedRequests = [];
  const abortedRequests = [];
  let output;
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (message) => {
      if (message.type() === 'error') {
        const where = message.location();
        consoleErrors.push(where && where.url ? `${message.text()} (${where.url}:${where.lineNumber})` : message.text());
      }
    });
    page.on('pageerror', (err) => pageErrors.push(err.stack || err.message || String(err)));
    page.on('requestfailed', (request) => {
      const reason = request.failure() ? request.failure().errorText : 'failed';
      const line = `${request.method()} ${request.url()}: ${reason}`;
      // MapLibre cancels tile requests it no longer needs; those are not failures.
      if (reason === 'net::ERR_ABORTED') abortedRequests.push(line);
      else failedRequests.push(line);
    });
    page.on('response', (response) => {
      if (response.status() >= 400) {
        failedRequests.push(`${response.request().method()} ${response.url()}: HTTP ${response.status()}`);
      }
    });

    const deadline = Date.now() + args.timeout * 1000;
    let navigationError = null;
    let documentStatus = null;
    try {
      const response = await page.goto(args.url, { waitUntil: 'load', timeout: args.timeout * 1000 });
      documentStatus = response ? response.status() : null;
      if (documentStatus !== null && documentStatus >= 400) {
        throw new Error(`the page itself answered HTTP ${documentStatus}`);
      }
      await page.waitForFunction(() => window.etlPreview && window.etlPreview.state !== 'loading', null, {
        timeout: Math.max(1000, deadline - Date.now()),
        polling: 100,
      });
    } catch (err) {
      navigationError = err.message.split('\n')[0];
    }

    let inspected;
    try {
      inspected = await page.evaluate(inspectPage);
    } catch (err) {
      inspected = { state: 'no-page', error: `inspecting the page: ${err.message.split('\n')[0]}` };
    }
    if (navigationError) {
      if (inspected.state === 'loading') {
        inspected.error = inspected.error || `timed out after ${args.timeout} s waiting for the preview: ${navigationError}`;
      } else if (inspected.state === 'no-preview' || inspected.state === 'no-page' || !inspected.error) {
        inspected.error = navigationError;
      }
    }
    if (args.screenshot) {
      try {
        await page.screenshot({ path: args.screenshot });
      } catch (err) {
        inspected.screenshotError = err.message.split('\n')[0];
      }
    }
    output = {
      state: inspected.state,
      error: inspected.error ?? null,
      consoleErrors,
      pageErrors,
      failedRequests,
      abortedRequests,
      drawnPixels: inspected.drawnPixels ?? 0,
      totalPixels: inspected.totalPixels ?? 0,
      renderedFeatures: inspected.renderedFeatures ?? 0,
      layers: inspected.layers ?? [],
      metadataShown: inspected.metadataShown ?? false,
    };
    if (documentStatus !== 200) output.documentStatus = documentStatus;
    if (inspected.readError) output.readError = inspected.readError;
    if (inspected.screenshotError) output.screenshotError = inspected.screenshotError;
  } finally {
    await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  }
  process.stdout.write(`${JSON.stringify(output)}\n`);
}

main().catch((err) => {
  // A failure of this script itself (not of the page) still prints one JSON line.
  process.stdout.write(
    `${JSON.stringify({ state: 'check-failed', error: String(err && err.stack ? err.stack : err), consoleErrors: [], pageErrors: [], failedRequests: [], abortedRequests: [], drawnPixels: 0, totalPixels: 0, renderedFeatures: 0, layers: [], metadataShown: false })}\n`,
  );
  process.exit(0);
});
