// Parsing allocates many small strings and maps per feature; mimalloc spends far less time on
// that pattern than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // `verify`, `show` and `merge` are archive tools; anything else is a tiling run with
    // tippecanoe's flags, driven by the shared runner.
    let sub = std::env::args().nth(1);
    match sub.as_deref() {
        Some("verify") | Some("show") | Some("merge") => etl_pmtiles::tools::main(),
        _ => etl_core::runner::main::<etl_pmtiles::PmtilesJob>(),
    }
}
