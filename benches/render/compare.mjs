#!/usr/bin/env node
// Draws two PMTiles archives side by side with MapLibre GL JS in Debian's headless Chromium, at
// the same views, and measures how much the pictures differ.
//
//   node compare.mjs --a A.pmtiles --b B.pmtiles --views views.json --out DIR
//                    [--label-a NAME] [--label-b NAME] [--modules DIR] [--timeout SECONDS]
//
// views.json: [{"name", "zoom", "lon", "lat"}, ...]. For each view it writes DIR/NAME.png (both
// maps side by side, labelled; NAME.jpg is a smaller copy) and prints one JSON line:
//   {"view", "zoom", "lon", "lat", "differing", "inkA", "inkB", "picture"}
// where `differing` is the share of pixels whose colour differs by more than 48 (sum of the
// RGB channels) between the two maps, and `ink*` the share of pixels that are not background.
// The two maps share one style made from the archives' vector_layers: every layer draws its
// polygons (fill, half opaque), lines (1 px) and points (2 px circles) in its own colour. An MLT
// archive (tile type 6) is read with the source's `encoding: "mlt"`.
// Exit 0 when every view rendered; 1 when one did not (its error is in its line); 2 on bad use.
//
// The archives are served by a small HTTP server in this process (with Range requests, as the
// pmtiles library reads them); maplibre-gl, pmtiles and playwright-core come from --modules
// DIR/node_modules (render.sh installs them there from jobs/tiles/web's lock file).

import { createServer } from 'node:http';
import { createReadStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

import { CHROMIUM_ARGS } from '../../jobs/tiles/web/test/chromium.mjs';


const SIDE = 512;

function usage(message) {
  process.stderr.write(
    `compare: ${message}\nusage: node compare.mjs --a A.pmtiles --b B.pmtiles --views views.json --out DIR [--label-a NAME] [--label-b NAME] [--modules DIR] [--timeout SECONDS]\n`,
  );
  process.exit(2);
}

function parseArgs(argv) {
  const args = { timeout: 120, modules: process.cwd() };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (!key.startsWith('--') || value === undefined) usage(`bad argument ${key}`);
    args[key.slice(2)] = value;
  }
  for (const k of ['a', 'b', 'views', 'out']) if (!args[k]) usage(`--${k} is required`);
  args.timeout = Number(args.timeout);
  if (!(args.timeout > 0)) usage('--timeout needs a positive number of seconds');
  args['label-a'] ||= path.basename(args.a);
  args['label-b'] ||= path.basename(args.b);
  return args;
}

/** Serves the page, the libraries and the two archives (with Range support). */
function serve(files) {
  const server = createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const size = statSync(file.path).size;
    const headers = { 'Content-Type': file.type, 'Accept-Ranges': 'bytes' };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(range[2] ? Number(range[2]) : size - 1, size - 1);
      if (start > end) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        ...headers,
        'Content-Range': `bytes ${start}-${end}/${size}`,
        'Content-Length': end - start + 1,
      });
      createReadStream(file.path, { start, end }).pipe(res);
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': size });
      createReadStream(file.path).pipe(res);
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8">
<link rel="stylesheet" href="/maplibre-gl.css">
<style>
  body { margin: 0; font: 14px sans-serif; background: #fff; }
  .row { display: flex; }
  .cell { width: ${SIDE}px; }
  .map { width: ${SIDE}px; height: ${SIDE}px; }
  .label { height: 24px; line-height: 24px; padding: 0 6px; background: #222; color: #fff; }
</style>
<script src="/maplibre-gl.js"></script>
<script src="/pmtiles.js"></script>
</head><body>
<div class="row">
  <div class="cell"><div class="label" id="la"></div><div class="map" id="a"></div></div>
  <div class="cell"><div class="label" id="lb"></div><div class="map" id="b"></div></div>
</div>
<script>
const COLOURS = ['#d7191c', '#2b83ba', '#1a9641', '#7b3294', '#e66101', '#008837'];
const BACKGROUND = '#f4f1ea';
async function layersOf(url) {
  const meta = await new pmtiles.PMTiles(url).getMetadata();
  return (meta.vector_layers || []).map((l) => l.id);
}
function style(source, ids, mlt) {
  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } }];
  ids.forEach((id, i) => {
    const colour = COLOURS[i % COLOURS.length];
    layers.push(
      { id: id + '-fill', type: 'fill', source: 'data', 'source-layer': id,
        filter: ['==', ['geometry-type'], 'Polygon'], paint: { 'fill-color': colour, 'fill-opacity': 0.5 } },
      { id: id + '-line', type: 'line', source: 'data', 'source-layer': id,
        filter: ['==', ['geometry-type'], 'LineString'], paint: { 'line-color': colour, 'line-width': 1 } },
      { id: id + '-point', type: 'circle', source: 'data', 'source-layer': id,
        filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-color': colour, 'circle-radius': 2 } },
    );
  });
  const data = { type: 'vector', url: 'pmtiles://' + source };
  // MapLibre Tiles (PMTiles tile type 6) are decoded only when the source says so.
  if (mlt) data.encoding = 'mlt';
  return { version: 8, sources: { data }, layers };
}
function idle(map) {
  return new Promise((resolve) => {
    map.once('idle', resolve);
    map.triggerRepaint();
  });
}
function pixels(map) {
  const source = map.getCanvas();
  const copy = document.createElement('canvas');
  copy.width = source.width;
  copy.height = source.height;
  const ctx = copy.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0);
  return ctx.getImageData(0, 0, copy.width, copy.height).data;
}
window.setup = async (a, b, labelA, labelB) => {
  const protocol = new pmtiles.Protocol();
  maplibregl.addProtocol('pmtiles', protocol.tile);
  const ids = [...new Set([...(await layersOf(a)), ...(await layersOf(b))])];
  document.getElementById('la').textContent = labelA;
  document.getElementById('lb').textContent = labelB;
  const isMlt = async (url) => (await new pmtiles.PMTiles(url).getHeader()).tileType === 6;
  const [mltA, mltB] = [await isMlt(a), await isMlt(b)];
  const make = (container, url, mlt) => new maplibregl.Map({
    container, style: style(url, ids, mlt), center: [0, 0], zoom: 0, interactive: false,
    attributionControl: false, fadeDuration: 0, pixelRatio: 1,
    canvasContextAttributes: { preserveDrawingBuffer: true, antialias: false },
  });
  window.maps = [make('a', a, mltA), make('b', b, mltB)];
  window.maps.forEach((m, i) => m.on('error', (e) => {
    const err = e && e.error;
    console.error('map ' + 'ab'[i] + ': ' + ((err && (err.message || String(err))) || 'error'));
  }));
  await Promise.all(window.maps.map((m) => new Promise((r) => m.once('load', r))));
  return ids;
};
window.show = async (view) => {
  for (const m of window.maps) m.jumpTo({ center: [view.lon, view.lat], zoom: view.zoom });
  await Promise.all(window.maps.map(idle));
  const [pa, pb] = window.maps.map(pixels);
  const bg = [0xf4, 0xf1, 0xea];
  let differing = 0, inkA = 0, inkB = 0;
  const n = Math.min(pa.length, pb.length) / 4;
  for (let i = 0; i < n * 4; i += 4) {
    const d = Math.abs(pa[i] - pb[i]) + Math.abs(pa[i + 1] - pb[i + 1]) + Math.abs(pa[i + 2] - pb[i + 2]);
    if (d > 48) differing += 1;
    if (Math.abs(pa[i] - bg[0]) + Math.abs(pa[i + 1] - bg[1]) + Math.abs(pa[i + 2] - bg[2]) > 12) inkA += 1;
    if (Math.abs(pb[i] - bg[0]) + Math.abs(pb[i + 1] - bg[1]) + Math.abs(pb[i + 2] - bg[2]) > 12) inkB += 1;
  }
  return { differing: differing / n, inkA: inkA / n, inkB: inkB / n, pixels: n };
};
</script></body></html>`;

/** `promise`, or an error after `seconds` (page.evaluate itself never times out). */
function bounded(promise, seconds, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const require = createRequire(path.join(path.resolve(args.modules), 'node_modules', 'x.js'));
  // By path: the packages' "exports" maps do not list their browser bundles.
  const lib = (p) => {
    const file = path.join(path.resolve(args.modules), 'node_modules', p);
    try {
      statSync(file);
    } catch {
      usage(`${file} not found (is --modules the directory render.sh installed into?)`);
    }
    return file;
  };
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (err) {
    usage(`cannot load playwright-core from ${args.modules}/node_modules: ${err.message}`);
  }
  const views = JSON.parse(readFileSync(args.views, 'utf8'));
  if (!Array.isArray(views) || views.length === 0) usage(`${args.views}: no views`);
  await mkdir(args.out, { recursive: true });
  const pagePath = path.join(args.out, 'compare.html');
  writeFileSync(pagePath, PAGE);
  const server = await serve({
    '/': { path: pagePath, type: 'text/html' },
    '/maplibre-gl.js': { path: lib('maplibre-gl/dist/maplibre-gl.js'), type: 'text/javascript' },
    '/maplibre-gl.css': { path: lib('maplibre-gl/dist/maplibre-gl.css'), type: 'text/css' },
    '/pmtiles.js': { path: lib('pmtiles/dist/pmtiles.js'), type: 'text/javascript' },
    '/a.pmtiles': { path: path.resolve(args.a), type: 'application/octet-stream' },
    '/b.pmtiles': { path: path.resolve(args.b), type: 'application/octet-stream' },
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  let failed = 0;
  try {
    const page = await browser.newPage({ viewport: { width: 2 * SIDE, height: SIDE + 24 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // MapLibre reports a tile it cannot parse on the console, not as a page error.
    page.on('console', (m) => {
      if (m.type() === 'error') {
        const at = m.location() && m.location().url;
        // The page asks for no favicon; the browser does.
        if (!(at && at.endsWith('/favicon.ico'))) errors.push(at ? `${m.text()} (${at})` : m.text());
      }
    });
    page.setDefaultTimeout(args.timeout * 1000);
    await page.goto(`${base}/`);
    try {
      await bounded(
        page.evaluate(
          ([a, b, la, lb]) => window.setup(a, b, la, lb),
          [`${base}/a.pmtiles`, `${base}/b.pmtiles`, args['label-a'], args['label-b']],
        ),
        args.timeout,
        'loading the two maps',
      );
    } catch (err) {
      throw new Error(`${err.message}; page errors: ${JSON.stringify(errors)}`);
    }
    for (const view of views) {
      const picture = path.join(args.out, `${view.name}.png`);
      const line = { view: view.name, zoom: view.zoom, lon: view.lon, lat: view.lat };
      try {
        const r = await bounded(page.evaluate((v) => window.show(v), view), args.timeout, 'drawing');
        await page.evaluate(
          ([la, lb]) => {
            document.getElementById('la').textContent = la;
            document.getElementById('lb').textContent = lb;
          },
          [`${args['label-a']} z${view.zoom}`, `${args['label-b']} z${view.zoom}`],
        );
        await page.screenshot({ path: picture, type: 'png' });
        // A smaller copy for documents (benches/README.md shows some).
        await page.screenshot({ path: picture.replace(/\.png$/, '.jpg'), type: 'jpeg', quality: 60 });
        Object.assign(line, {
          differing: Number(r.differing.toFixed(4)),
          inkA: Number(r.inkA.toFixed(4)),
          inkB: Number(r.inkB.toFixed(4)),
          picture,
        });
      } catch (err) {
        failed += 1;
        line.error = String(err && err.message);
      }
      if (errors.length) {
        line.pageErrors = errors.splice(0);
        failed += 1;
      }
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  } finally {
    await browser.close();
    server.close();
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  process.stderr.write(`compare: ${err && err.stack}\n`);
  process.exit(1);
});
