// Bundles the preview (src/preview.js and the CSS it imports) with esbuild into one minified
// IIFE preview.js and one preview.css (maplibre-gl's CSS + ours). build.rs runs it as
//   node build.mjs --out $OUT_DIR/web/dist --modules $OUT_DIR/web/node_modules
// and by hand, after `npm ci` here, `node build.mjs` writes web/dist/.
//
// Packages are looked up in --modules only: esbuild itself through createRequire (Node's ESM
// loader ignores NODE_PATH), the bundled imports through esbuild's nodePaths.

import { createRequire } from 'node:module';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const args = { out: path.join(here, 'dist'), modules: path.join(here, 'node_modules') };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    const value = argv[i + 1];
    if ((flag === '--out' || flag === '--modules') && value !== undefined) {
      args[flag.slice(2)] = value;
      i += 1;
    } else {
      throw new Error(`unknown argument ${flag}; usage: node build.mjs [--out DIR] [--modules DIR]`);
    }
  }
  return { out: path.resolve(args.out), modules: path.resolve(args.modules) };
}

async function main() {
  const { out, modules } = parseArgs(process.argv.slice(2));
  if (!existsSync(path.join(modules, 'esbuild'))) {
    throw new Error(`esbuild is not installed in ${modules}; run \`npm ci\` next to package.json first`);
  }
  // A require rooted in the directory that holds node_modules resolves from there only.
  const require = createRequire(path.join(path.dirname(modules), 'build.cjs'));
  const esbuild = require('esbuild');
  mkdirSync(out, { recursive: true });

  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: { preview: path.join(here, 'src', 'preview.js') },
    outdir: out,
    bundle: true,
    minify: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    nodePaths: [modules],
    define: { 'process.env.NODE_ENV': '"production"' },
    charset: 'utf8',
    sourcemap: false,
    legalComments: 'eof',
    logLevel: 'warning',
    metafile: true,
  });
  for (const [file, info] of Object.entries(result.metafile.outputs)) {
    console.log(`${path.resolve(here, file)}: ${info.bytes} bytes`);
  }
  for (const name of ['preview.js', 'preview.css']) {
    if (!existsSync(path.join(out, name))) throw new Error(`esbuild wrote no ${name} into ${out}`);
  }
}

main().catch((err) => {
  console.error(`build.mjs: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
