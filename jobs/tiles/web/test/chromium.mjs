// Debian's chromium, headless, as the preview check and the rendered benchmark
// (benches/render/compare.mjs) start it.

/** Flags that work as root without a GPU and without network beyond loopback. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  // WebGL without a GPU: with --disable-gpu, Debian's chromium (148) offers no WebGL at all
  // unless ANGLE is told to use SwiftShader (software Vulkan); --enable-unsafe-swiftshader alone
  // (which playwright-core adds by default) is not enough, --use-angle=swiftshader is.
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
];
