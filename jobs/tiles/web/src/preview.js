// The browser preview of one PMTiles archive served by etl-tiles: a full-window MapLibre GL map
// of the archive's tiles (styled here, with no external resources: no glyphs or
// basemap) and a side panel with the layers, the TileJSON summary and the archive's own header
// and metadata read with the pmtiles library over HTTP Range requests.
//
// The page (src/preview.rs) hands over its URLs as JSON in
// <script type="application/json" id="etl-preview-config">. Test hooks: window.etlMap (the map)
// and window.etlPreview ({ state: 'loading' | 'ready' | 'error', error, metadata, ... }).

import maplibregl from 'maplibre-gl';
import { PMTiles, Compression, TileType } from 'pmtiles';
import 'maplibre-gl/dist/maplibre-gl.css';
import './preview.css';

/** The map's background colour; the headless check counts pixels that differ from it. */
const BACKGROUND = '#f2f0eb';

/** Distinct layer colours (Tableau 10), then golden-angle hues for any further layers. */
const PALETTE = [
  '#4e79a7',
  '#e15759',
  '#59a14f',
  '#f28e2b',
  '#b07aa1',
  '#76b7b2',
  '#edc948',
  '#ff9da7',
  '#9c755f',
  '#3d3d3d',
];

const SOURCE = 'archive';
const POLYGON = ['match', ['geometry-type'], ['Polygon', 'MultiPolygon'], true, false];
const LINE = ['match', ['geometry-type'], ['LineString', 'MultiLineString'], true, false];
const POINT = ['match', ['geometry-type'], ['Point', 'MultiPoint'], true, false];

const status = {
  state: 'loading',
  error: null,
  metadata: null,
  header: null,
  tilejson: null,
  background: BACKGROUND,
};
window.etlPreview = status;

/** Layer id of the style → { name, colour } of the vector layer (or raster) it draws. */
const styleLayers = new Map();

function layerColour(index) {
  if (index < PALETTE.length) return PALETTE[index];
  const hue = Math.round((index * 137.508) % 360);
  return `hsl(${hue}, 65%, 45%)`;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers: every text goes in through textContent, never innerHTML.

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') node.className = value;
    else if (key === 'style') Object.assign(node.style, value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function byId(id) {
  return document.getElementById(id);
}

/** A definition list of [label, value] rows; values that are nodes are inserted as they are. */
function keyValues(rows) {
  const dl = el('dl', { className: 'etl-kv' });
  for (const [key, value] of rows) {
    if (value === undefined || value === null || value === '') continue;
    dl.append(el('dt', null, key), el('dd', null, value));
  }
  return dl;
}

function fillSection(id, ...children) {
  const section = byId(id);
  if (!section) return null;
  const heading = section.querySelector('h2');
  section.replaceChildren(...(heading ? [heading] : []), ...children.flat());
  return section;
}

function swatch(colour) {
  return el('span', { className: 'etl-swatch', style: { background: colour }, 'aria-hidden': 'true' });
}

const numberFormat = new Intl.NumberFormat('en');

function formatNumber(n) {
  return typeof n === 'number' && Number.isFinite(n) ? numberFormat.format(n) : String(n);
}

function formatBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

function formatCoord(n) {
  return typeof n === 'number' && Number.isFinite(n) ? n.toFixed(5).replace(/\.?0+$/, '') : String(n);
}

function formatValue(value) {
  if (value === null) return 'null';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Attribution for MapLibre's control, which inserts it as HTML: the archive's text with only
 * http(s) links kept as links; any other markup becomes plain text. DOMParser builds an inert
 * document (no scripts run, nothing loads).
 */
function safeAttributionHtml(text) {
  const doc = new DOMParser().parseFromString(String(text), 'text/html');
  const walk = (node) => {
    let out = '';
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) {
        out += escapeHtml(child.textContent);
      } else if (child.nodeType === Node.ELEMENT_NODE) {
        const href = child.tagName === 'A' ? child.getAttribute('href') || '' : '';
        if (/^https?:\/\//i.test(href)) {
          out += `<a href="${escapeHtml(href)}" target="_blank" rel="noopener noreferrer">${escapeHtml(child.textContent)}</a>`;
        } else {
          out += walk(child);
        }
      }
    }
    return out;
  };
  return walk(doc.body).trim();
}

function errorMessage(err) {
  if (!err) return 'unknown error';
  if (typeof err === 'string') return err;
  if (err.error) return errorMessage(err.error);
  const message = err.message || String(err);
  // MapLibre throws WebGL context failures as a JSON dump of the context event.
  if (message.startsWith('{')) {
    try {
      const parsed = JSON.parse(message);
      if (parsed && parsed.message) {
        return parsed.statusMessage ? `${parsed.message}: ${parsed.statusMessage}` : parsed.message;
      }
    } catch {
      // not JSON after all
    }
  }
  return message;
}

// ---------------------------------------------------------------------------------------------
// State changes.

function fail(message) {
  if (status.state !== 'error') {
    status.state = 'error';
    status.error = message;
  }
  const box = byId('etl-error');
  if (box) {
    box.hidden = false;
    if (box.childElementCount >= 5) return;
    box.append(el('p', null, message));
  }
  document.body.dataset.state = 'error';
  setBusy(false);
}

function setBusy(busy) {
  const node = byId('etl-loading');
  if (node) node.hidden = !busy;
}

// ---------------------------------------------------------------------------------------------
// Inputs.

function readConfig() {
  const node = byId('etl-preview-config');
  if (!node) throw new Error('the page has no #etl-preview-config element');
  const config = JSON.parse(node.textContent || '{}');
  for (const key of ['name', 'tilejson', 'archive']) {
    if (typeof config[key] !== 'string') throw new Error(`the page config has no "${key}"`);
  }
  // `/view/NAME?encoding=mlt`: draw an MVT archive from the tiles the server transcodes to MLT.
  if (new URLSearchParams(window.location.search).get('encoding') === 'mlt') {
    config.tilejson += `${config.tilejson.includes('?') ? '&' : '?'}encoding=mlt`;
  }
  return config;
}

async function fetchJson(url) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: 'application/json' } });
  } catch (err) {
    throw new Error(`request failed: ${errorMessage(err)}`);
  }
  if (!response.ok) {
    let detail = '';
    try {
      detail = (await response.text()).trim().slice(0, 300);
    } catch {
      // the status says enough
    }
    throw new Error(`HTTP ${response.status} ${response.statusText}${detail ? `: ${detail}` : ''}`);
  }
  return response.json();
}

/** Appends the page's token to a tile URL template that does not carry one yet. */
function withToken(url, token) {
  if (!token || /[?&]token=/.test(url)) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

function isRaster(tilejson) {
  const format = String(tilejson.format || '').toLowerCase();
  if (['png', 'jpg', 'jpeg', 'webp', 'avif'].includes(format)) return true;
  if (format === 'pbf' || format === 'mvt' || format === 'mlt') return false;
  return !Array.isArray(tilejson.vector_layers);
}

function validBounds(b) {
  return (
    Array.isArray(b) &&
    b.length === 4 &&
    b.every((v) => typeof v === 'number' && Number.isFinite(v)) &&
    b[0] < b[2] &&
    b[1] < b[3]
  );
}

function lonLatToTile(lon, lat, z) {
  const n = 2 ** z;
  const clampedLat = Math.max(-85.0511, Math.min(85.0511, lat));
  const x = Math.floor(((lon + 180) / 360) * n);
  const rad = (clampedLat * Math.PI) / 180;
  const y = Math.floor(((1 - Math.log(Math.tan(rad) + 1 / Math.cos(rad)) / Math.PI) / 2) * n);
  return [Math.max(0, Math.min(n - 1, x)), Math.max(0, Math.min(n - 1, y))];
}

/** Raster tile size (256 or 512) from one tile at the centre of the archive; 256 if unknown. */
async function probeRasterTileSize(template, tilejson) {
  try {
    const z = tilejson.minzoom ?? 0;
    const centre = Array.isArray(tilejson.center)
      ? tilejson.center
      : validBounds(tilejson.bounds)
        ? [(tilejson.bounds[0] + tilejson.bounds[2]) / 2, (tilejson.bounds[1] + tilejson.bounds[3]) / 2]
        : [0, 0];
    const [x, y] = lonLatToTile(centre[0], centre[1], z);
    const url = template.replace('{z}', z).replace('{x}', x).replace('{y}', y);
    const response = await fetch(url);
    if (response.status !== 200) return 256;
    const bitmap = await createImageBitmap(await response.blob());
    const size = bitmap.width;
    bitmap.close();
    return size >= 512 ? 512 : 256;
  } catch {
    return 256;
  }
}

// ---------------------------------------------------------------------------------------------
// Style.

function buildStyle(tilejson, tiles, rasterTileSize) {
  const source = {
    type: isRaster(tilejson) ? 'raster' : 'vector',
    tiles,
    minzoom: tilejson.minzoom ?? 0,
    maxzoom: tilejson.maxzoom ?? 22,
  };
  if (validBounds(tilejson.bounds)) source.bounds = tilejson.bounds;
  if (tilejson.attribution) source.attribution = safeAttributionHtml(tilejson.attribution);
  if (tilejson.scheme === 'tms') source.scheme = 'tms';
  // MapLibre Tiles (MapLibre GL JS 5.12 and later decode them).
  if (tilejson.encoding === 'mlt' && source.type === 'vector') source.encoding = 'mlt';
  if (source.type === 'raster') source.tileSize = rasterTileSize;

  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } }];
  const legend = [];
  if (source.type === 'raster') {
    layers.push({ id: 'raster', type: 'raster', source: SOURCE });
    styleLayers.set('raster', { name: tilejson.name || 'raster', colour: null });
    return { style: baseStyle(tilejson, source, layers), legend };
  }

  const fills = [];
  const outlines = [];
  const lines = [];
  const circles = [];
  const icons = [];
  // The archive's sprite sheet (the import's KML icons), indexed by the features' `icon`.
  const sprite = typeof tilejson.sprite === 'string' ? tilejson.sprite : null;
  (tilejson.vector_layers || []).forEach((vl, index) => {
    if (!vl || typeof vl.id !== 'string') return;
    const colour = layerColour(index);
    const name = vl.id;
    const base = { source: SOURCE, 'source-layer': name };
    const ids = {
      fill: `${name}:fill`,
      outline: `${name}:outline`,
      line: `${name}:line`,
      circle: `${name}:circle`,
    };
    fills.push({
      ...base,
      id: ids.fill,
      type: 'fill',
      filter: POLYGON,
      paint: { 'fill-color': colour, 'fill-opacity': 0.3 },
    });
    outlines.push({
      ...base,
      id: ids.outline,
      type: 'line',
      filter: POLYGON,
      paint: { 'line-color': colour, 'line-width': 1.25, 'line-opacity': 0.9 },
    });
    lines.push({
      ...base,
      id: ids.line,
      type: 'line',
      filter: LINE,
      layout: { 'line-cap': 'round', 'line-join': 'round' },
      paint: {
        'line-color': colour,
        'line-width': ['interpolate', ['linear'], ['zoom'], 4, 1.5, 14, 3.5],
      },
    });
    circles.push({
      ...base,
      id: ids.circle,
      type: 'circle',
      filter: POINT,
      paint: {
        'circle-color': colour,
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 4, 3.5, 14, 6],
        'circle-stroke-color': '#ffffff',
        'circle-stroke-width': 1.25,
        'circle-opacity': 0.95,
      },
    });
    if (sprite) {
      ids.icon = `${name}:icon`;
      icons.push({
        ...base,
        id: ids.icon,
        type: 'symbol',
        filter: ['all', POINT, ['has', 'icon']],
        layout: {
          'icon-image': ['get', 'icon'],
          'icon-allow-overlap': true,
          'icon-ignore-placement': true,
        },
      });
    }
    for (const id of Object.values(ids)) styleLayers.set(id, { name, colour });
    legend.push({ layer: vl, colour });
  });
  layers.push(...fills, ...outlines, ...lines, ...circles, ...icons);
  return { style: baseStyle(tilejson, source, layers, sprite), legend };
}

function baseStyle(tilejson, source, layers, sprite) {
  const style = {
    version: 8,
    name: tilejson.name || 'etl-tiles preview',
    sources: { [SOURCE]: source },
    layers,
  };
  if (sprite) style.sprite = sprite;
  return style;
}

// ---------------------------------------------------------------------------------------------
// Panel.

function renderSummary(config, tilejson, tiles) {
  const bounds = validBounds(tilejson.bounds) ? tilejson.bounds.map(formatCoord).join(', ') : null;
  const center = Array.isArray(tilejson.center)
    ? `${formatCoord(tilejson.center[0])}, ${formatCoord(tilejson.center[1])}` +
      (tilejson.center.length > 2 ? ` @ z${tilejson.center[2]}` : '')
    : null;
  fillSection(
    'etl-summary',
    keyValues([
      ['Name', tilejson.name],
      ['Description', tilejson.description],
      ['Format', tilejson.format || (isRaster(tilejson) ? 'raster' : 'pbf')],
      ['Zoom', `${tilejson.minzoom ?? 0} – ${tilejson.maxzoom ?? '?'}`],
      ['Bounds', bounds],
      ['Center', center],
      ['Attribution', tilejson.attribution],
      ['Tiles', tiles[0]],
      ['TileJSON', el('a', { href: config.tilejson }, tilejson.tilejson ? `TileJSON ${tilejson.tilejson}` : 'TileJSON')],
    ]),
  );
}

function renderLayers(tilejson, legend) {
  if (isRaster(tilejson)) {
    fillSection('etl-layers', el('p', { className: 'etl-muted' }, 'Raster tiles: one raster layer.'));
    return;
  }
  if (legend.length === 0) {
    fillSection('etl-layers', el('p', { className: 'etl-muted' }, 'The TileJSON lists no vector layers.'));
    return;
  }
  const list = el('ul', { className: 'etl-layer-list' });
  for (const { layer, colour } of legend) {
    const fields = layer.fields && typeof layer.fields === 'object' ? Object.entries(layer.fields) : [];
    const zoom =
      layer.minzoom !== undefined || layer.maxzoom !== undefined
        ? `z${layer.minzoom ?? '?'}–${layer.maxzoom ?? '?'}`
        : null;
    list.append(
      el(
        'li',
        {
          dataset: { layer: layer.id },
          'data-minzoom': Number.isFinite(layer.minzoom) ? layer.minzoom : null,
          'data-maxzoom': Number.isFinite(layer.maxzoom) ? layer.maxzoom : Number.isFinite(layer.minzoom) ? 99 : null,
          title: Number.isFinite(layer.minzoom) ? `in tiles of zoom ${layer.minzoom} to ${layer.maxzoom ?? '…'}` : null,
        },
        el('div', { className: 'etl-layer-head' }, swatch(colour), el('strong', null, layer.id), zoom && el('span', { className: 'etl-muted' }, zoom)),
        layer.description && el('p', { className: 'etl-muted' }, layer.description),
        fields.length > 0
          ? el(
              'ul',
              { className: 'etl-fields' },
              fields.map(([field, type]) => el('li', null, el('code', null, field), ' ', el('span', { className: 'etl-muted' }, formatValue(type)))),
            )
          : el('p', { className: 'etl-muted' }, 'no fields'),
      ),
    );
  }
  fillSection('etl-layers', list);
}

const COMPRESSION = {
  [Compression.Unknown]: 'unknown',
  [Compression.None]: 'none',
  [Compression.Gzip]: 'gzip',
  [Compression.Brotli]: 'brotli',
  [Compression.Zstd]: 'zstd',
};

const TILE_TYPE = {
  [TileType.Unknown]: 'unknown',
  [TileType.Mvt]: 'MVT (vector)',
  [TileType.Png]: 'PNG',
  [TileType.Jpeg]: 'JPEG',
  [TileType.Webp]: 'WebP',
  [TileType.Avif]: 'AVIF',
  [TileType.Mlt]: 'MLT (vector)',
};

function renderHeader(header) {
  const section = fillSection(
    'etl-header',
    keyValues([
      ['Spec version', header.specVersion],
      ['Tile type', TILE_TYPE[header.tileType] ?? `type ${header.tileType}`],
      ['Tile compression', COMPRESSION[header.tileCompression] ?? String(header.tileCompression)],
      ['Internal compression', COMPRESSION[header.internalCompression] ?? String(header.internalCompression)],
      ['Zoom', `${header.minZoom} – ${header.maxZoom}`],
      ['Bounds', [header.minLon, header.minLat, header.maxLon, header.maxLat].map(formatCoord).join(', ')],
      ['Center', `${formatCoord(header.centerLon)}, ${formatCoord(header.centerLat)} @ z${header.centerZoom}`],
      ['Addressed tiles', formatNumber(header.numAddressedTiles)],
      ['Tile entries', formatNumber(header.numTileEntries)],
      ['Tile contents', formatNumber(header.numTileContents)],
      ['Clustered', header.clustered ? 'yes' : 'no'],
      ['Root directory', formatBytes(header.rootDirectoryLength)],
      ['Metadata', formatBytes(header.jsonMetadataLength)],
      ['Leaf directories', formatBytes(header.leafDirectoryLength)],
      ['Tile data', formatBytes(header.tileDataLength)],
      ['ETag', header.etag],
    ]),
  );
  if (section) section.dataset.state = 'shown';
}

function summariseMetadataValue(key, value) {
  if (Array.isArray(value)) {
    const ids = value.map((v) => (v && typeof v === 'object' && typeof v.id === 'string' ? v.id : null)).filter(Boolean);
    const noun = key === 'vector_layers' ? 'layer' : 'item';
    const head = `${value.length} ${noun}${value.length === 1 ? '' : 's'}`;
    return ids.length > 0 ? `${head}: ${ids.join(', ')}` : head;
  }
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    const json = JSON.stringify(value);
    return json.length <= 160 ? json : `{ ${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ', …' : ''} }`;
  }
  return formatValue(value);
}

function renderMetadata(metadata) {
  const rows =
    metadata && typeof metadata === 'object' && !Array.isArray(metadata)
      ? Object.entries(metadata).map(([key, value]) => [key, summariseMetadataValue(key, value)])
      : [['value', formatValue(metadata)]];
  const section = fillSection(
    'etl-metadata',
    rows.length > 0 ? keyValues(rows) : el('p', { className: 'etl-muted' }, 'The archive has empty metadata.'),
    el('details', { className: 'etl-raw' }, el('summary', null, 'Raw JSON'), el('pre', null, JSON.stringify(metadata, null, 2))),
  );
  if (section) section.dataset.state = 'shown';
}

async function loadArchive(config) {
  try {
    const archive = new PMTiles(config.archive);
    const header = await archive.getHeader();
    status.header = header;
    renderHeader(header);
    const metadata = await archive.getMetadata();
    status.metadata = metadata ?? {};
    renderMetadata(status.metadata);
  } catch (err) {
    const message = `archive ${config.archive}: ${errorMessage(err)}`;
    fillSection('etl-metadata', el('p', { className: 'etl-muted' }, `Could not read the archive: ${errorMessage(err)}`));
    fail(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Map.

function popupContent(features) {
  const root = el('div', { className: 'etl-popup' });
  const seen = new Set();
  let shown = 0;
  for (const feature of features) {
    const info = styleLayers.get(feature.layer.id);
    const layerName = info ? info.name : feature.sourceLayer || feature.layer.id;
    const key = `${layerName}\u0000${feature.id ?? ''}\u0000${JSON.stringify(feature.properties)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (shown === 8) {
      root.append(el('p', { className: 'etl-muted' }, 'more features here…'));
      break;
    }
    shown += 1;
    const props = Object.entries(feature.properties || {});
    root.append(
      el(
        'section',
        null,
        el(
          'h3',
          null,
          info && info.colour ? swatch(info.colour) : null,
          layerName,
          el('span', { className: 'etl-muted' }, ` ${feature.geometry ? feature.geometry.type : ''}${feature.id !== undefined ? ` #${feature.id}` : ''}`),
        ),
        props.length > 0
          ? el(
              'table',
              null,
              el(
                'tbody',
                null,
                props.map(([k, v]) => el('tr', null, el('th', null, k), el('td', null, formatValue(v)))),
              ),
            )
          : el('p', { className: 'etl-muted' }, 'no properties'),
      ),
    );
  }
  return root;
}

function createMap(tilejson, style) {
  const minzoom = tilejson.minzoom ?? 0;
  const maxzoom = tilejson.maxzoom ?? 22;
  const options = {
    container: 'etl-map',
    style,
    canvasContextAttributes: { preserveDrawingBuffer: true, antialias: true },
    attributionControl: { compact: true },
    dragRotate: false,
    pitchWithRotate: false,
    maxZoom: Math.min(24, Math.max(22, maxzoom + 4)),
  };
  if (validBounds(tilejson.bounds)) {
    options.bounds = tilejson.bounds;
    options.fitBoundsOptions = { padding: 48, maxZoom: Math.max(minzoom, maxzoom) };
  } else if (Array.isArray(tilejson.center) && tilejson.center.length >= 2) {
    options.center = [tilejson.center[0], tilejson.center[1]];
    options.zoom = tilejson.center[2] ?? minzoom;
  } else {
    options.center = [0, 0];
    options.zoom = minzoom;
  }

  const map = new maplibregl.Map(options);
  window.etlMap = map;
  if (map.getZoom() < minzoom) map.jumpTo({ zoom: minzoom });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
  map.addControl(new maplibregl.ScaleControl(), 'bottom-left');

  // With a listener here MapLibre reports errors to us instead of console.error.
  map.on('error', (event) => {
    const where = event.sourceId ? ` (source ${event.sourceId})` : '';
    fail(`map${where}: ${errorMessage(event.error || event)}`);
  });

  const interactive = [...styleLayers.keys()].filter((id) => id !== 'raster');
  const near = (point) => [
    [point.x - 4, point.y - 4],
    [point.x + 4, point.y + 4],
  ];
  if (interactive.length > 0) {
    const popup = new maplibregl.Popup({ maxWidth: '360px', closeButton: true });
    map.on('click', (event) => {
      const features = map.queryRenderedFeatures(near(event.point), { layers: interactive });
      if (features.length === 0) {
        popup.remove();
        return;
      }
      popup.setLngLat(event.lngLat).setDOMContent(popupContent(features)).addTo(map);
    });
    map.on('mousemove', (event) => {
      const hit = map.queryRenderedFeatures(near(event.point), { layers: interactive }).length > 0;
      map.getCanvas().style.cursor = hit ? 'pointer' : '';
    });
    map.on('mouseout', () => {
      map.getCanvas().style.cursor = '';
    });
  }

  const markZoomRange = () => {
    const zoom = map.getZoom();
    for (const item of document.querySelectorAll('#etl-layers li[data-minzoom]')) {
      const min = Number(item.dataset.minzoom);
      const max = Number(item.dataset.maxzoom);
      // Past the archive's maxzoom MapLibre overzooms the last tiles, so those layers stay.
      const tileZoom = Math.min(Math.floor(zoom), maxzoom);
      item.classList.toggle('etl-out-of-range', tileZoom < min || tileZoom > max);
    }
  };
  map.on('zoomend', markZoomRange);
  markZoomRange();

  return new Promise((resolve) => {
    const onIdle = () => {
      if (map.isStyleLoaded() && map.areTilesLoaded()) {
        map.off('idle', onIdle);
        resolve(map);
      }
    };
    map.on('idle', onIdle);
  });
}

// ---------------------------------------------------------------------------------------------

async function main() {
  let config;
  try {
    config = readConfig();
  } catch (err) {
    fail(`page config: ${errorMessage(err)}`);
    return;
  }
  const archiveLoaded = loadArchive(config);

  let tilejson;
  try {
    tilejson = await fetchJson(config.tilejson);
    if (!tilejson || !Array.isArray(tilejson.tiles) || tilejson.tiles.length === 0) {
      throw new Error('no "tiles" URLs in it');
    }
  } catch (err) {
    fail(`TileJSON ${config.tilejson}: ${errorMessage(err)}`);
    return;
  }
  status.tilejson = tilejson;
  const tiles = tilejson.tiles.map((url) => withToken(String(url), config.token));
  const rasterTileSize = isRaster(tilejson) ? await probeRasterTileSize(tiles[0], tilejson) : 512;
  const { style, legend } = buildStyle(tilejson, tiles, rasterTileSize);
  renderSummary(config, tilejson, tiles);
  renderLayers(tilejson, legend);

  let mapReady;
  try {
    mapReady = createMap(tilejson, style);
  } catch (err) {
    fail(`map: ${errorMessage(err)}`);
    return;
  }
  await Promise.all([mapReady, archiveLoaded]);
  if (status.state === 'loading') {
    status.state = 'ready';
    document.body.dataset.state = 'ready';
  }
  setBusy(false);
}

main().catch((err) => fail(`preview: ${errorMessage(err)}`));
