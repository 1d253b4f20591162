//! Prints `z/x/y` of every tile in a PMTiles archive, one per line, in tile-id order, with run
//! lengths expanded (a run of N ids sharing one tile prints N lines). Used by
//! `benches/tiles.sh` to make the list of existing tiles that the load test requests.
//!
//! ```sh
//! cargo run --release -p etl-tiles --example tile_list -- ARCHIVE [--min-zoom Z] [--max-zoom Z] > paths.txt
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::process::ExitCode;

use etl_tiles::archive::Archive;
use etl_tiles::tile::tile_coord;

const USAGE: &str = "usage: tile_list ARCHIVE [--min-zoom Z] [--max-zoom Z]";

struct Args {
    path: String,
    min_zoom: u8,
    max_zoom: u8,
}

fn parse_zoom(flag: &str, value: Option<String>) -> Result<u8, String> {
    let v = value.ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
    v.parse::<u8>()
        .map_err(|_| format!("{flag}: '{v}' is not a zoom level (0-31)\n{USAGE}"))
}

fn parse_args() -> Result<Args, String> {
    let mut path = None;
    let (mut min_zoom, mut max_zoom) = (0u8, u8::MAX);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--min-zoom" => min_zoom = parse_zoom("--min-zoom", it.next())?,
            "--max-zoom" => max_zoom = parse_zoom("--max-zoom", it.next())?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            s if s.starts_with('-') => return Err(format!("unknown option '{s}'\n{USAGE}")),
            _ if path.is_some() => return Err(format!("more than one ARCHIVE given\n{USAGE}")),
            _ => path = Some(a),
        }
    }
    let path = path.ok_or_else(|| USAGE.to_string())?;
    Ok(Args {
        path,
        min_zoom,
        max_zoom,
    })
}

/// Writes the list; returns the number of tiles written.
fn run(args: &Args) -> Result<u64, String> {
    let file = File::open(&args.path).map_err(|e| format!("{}: {e}", args.path))?;
    let mut archive =
        Archive::open(BufReader::new(file)).map_err(|e| format!("{}: {e}", args.path))?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut written = 0u64;
    for entry in archive.entries() {
        let entry = entry.map_err(|e| format!("{}: {e}", args.path))?;
        for id in entry.tile_id..entry.tile_id.saturating_add(u64::from(entry.run_length)) {
            let c = tile_coord(id)
                .ok_or_else(|| format!("{}: invalid tile id {id} in a directory", args.path))?;
            if c.z < args.min_zoom || c.z > args.max_zoom {
                continue;
            }
            writeln!(out, "{}/{}/{}", c.z, c.x, c.y).map_err(|e| format!("stdout: {e}"))?;
            written += 1;
        }
    }
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    Ok(written)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(n) => {
            eprintln!("tile_list: {n} tiles");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            // A closed pipe (`tile_list … | head`) is not worth a complaint.
            if !msg.contains("Broken pipe") {
                eprintln!("tile_list: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}
