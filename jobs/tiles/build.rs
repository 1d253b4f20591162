//! Bundles the browser preview (web/) into `$OUT_DIR/web/dist/{preview.js,preview.css}`, which
//! `src/assets.rs` embeds into the binary, so the server needs no CDN and no files at run time.
//!
//! 1. package.json and package-lock.json are copied into `$OUT_DIR/web`, and `npm ci` installs
//!    the packages there, only when the lock file differs from the one of the last successful
//!    install (kept as a stamp file). Install scripts are not run (`--ignore-scripts`): esbuild
//!    works from its platform package without its postinstall step.
//! 2. `node web/build.mjs` bundles web/src with esbuild, resolving packages in
//!    `$OUT_DIR/web/node_modules` only.
//!
//! Escape hatch: when `ETL_TILES_WEB_DIST` names a directory holding a prebuilt `preview.js` and
//! `preview.css` (e.g. from `npm ci && node build.mjs` in web/), those are used and no npm or
//! node runs at all.
//!
//! `ETL_TILES_WEB_DIR` (= `$OUT_DIR/web`) is passed to the crate so that tests find the
//! installed packages (playwright-core) with `env!("ETL_TILES_WEB_DIR")`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const ASSETS: [&str; 2] = ["preview.js", "preview.css"];
const INSTALL_HINT: &str = "the browser preview is bundled at build time with Node.js and npm: \
    install Node.js >= 18 with npm (Debian: `apt-get install nodejs npm`), or set \
    ETL_TILES_WEB_DIST to a directory holding a prebuilt preview.js and preview.css \
    (`npm ci && node build.mjs` in jobs/tiles/web writes them to jobs/tiles/web/dist)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: etl-tileserver build script: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let web_src = manifest.join("web");
    let out = PathBuf::from(env_var("OUT_DIR")?).join("web");
    let dist = out.join("dist");

    for path in [
        "web/src",
        "web/build.mjs",
        "web/package.json",
        "web/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=ETL_TILES_WEB_DIST");
    println!("cargo:rustc-env=ETL_TILES_WEB_DIR={}", out.display());

    fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;

    if let Some(prebuilt) = env::var_os("ETL_TILES_WEB_DIST").filter(|v| !v.is_empty()) {
        let prebuilt = PathBuf::from(prebuilt);
        for name in ASSETS {
            let from = prebuilt.join(name);
            fs::copy(&from, dist.join(name)).map_err(|e| {
                format!(
                    "ETL_TILES_WEB_DIST={}: cannot copy {}: {e}",
                    prebuilt.display(),
                    from.display()
                )
            })?;
        }
        return Ok(());
    }

    for name in ["package.json", "package-lock.json"] {
        copy_if_changed(&web_src.join(name), &out.join(name))?;
    }
    install(&out)?;
    bundle(&web_src, &out, &dist)?;
    for name in ASSETS {
        let file = dist.join(name);
        let len = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Err(format!(
                "the bundler left no (or an empty) {}",
                file.display()
            ));
        }
    }
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = read(from)?;
    if fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        fs::write(to, &bytes).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    Ok(())
}

/// `npm ci` in `out`, unless the stamp (the lock file of the last successful install) matches.
fn install(out: &Path) -> Result<(), String> {
    let lock = read(&out.join("package-lock.json"))?;
    let stamp = out.join(".npm-ci.stamp");
    let installed = out.join("node_modules").is_dir();
    if installed && fs::read(&stamp).ok().as_deref() == Some(lock.as_slice()) {
        return Ok(());
    }
    // A failed or interrupted install must not look like a finished one next time.
    let _ = fs::remove_file(&stamp);
    let started = Instant::now();
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(out)
        .env("npm_config_update_notifier", "false");
    run_tool(npm, "npm ci")?;
    fs::write(&stamp, &lock).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    println!("npm ci took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `node web/build.mjs --out dist --modules out/node_modules`.
fn bundle(web_src: &Path, out: &Path, dist: &Path) -> Result<(), String> {
    let started = Instant::now();
    let mut node = Command::new("node");
    node.arg(web_src.join("build.mjs"))
        .arg("--out")
        .arg(dist)
        .arg("--modules")
        .arg(out.join("node_modules"))
        .current_dir(out);
    run_tool(node, "node build.mjs")?;
    println!("bundling took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn run_tool(mut command: Command, what: &str) -> Result<(), String> {
    let output = command.output().map_err(|e| {
        let program = command.get_program().to_string_lossy().into_owned();
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("`{program}` was not found on PATH: {INSTALL_HINT}")
        } else {
            format!("cannot run `{program}`: {e}; {INSTALL_HINT}")
        }
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "`{what}` failed ({}):\n{}{}\n{INSTALL_HINT}",
            output.status,
            stdout.trim_end(),
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!("\n{}", stderr.trim_end())
            }
        ));
    }
    // Build script output only shows with `cargo build -vv`; keep cargo's own lines apart.
    for line in stdout.lines().chain(stderr.lines()) {
        if !line.starts_with("cargo:") {
            println!("{what}: {line}");
        }
    }
    Ok(())
}
