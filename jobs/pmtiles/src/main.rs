// Parsing allocates many small strings and maps per feature; mimalloc spends far less time on
// that pattern than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A tiling run with tippecanoe's flags by default; `verify`, `show` and `merge` are the
    // archive tools.
    etl_core::runner::Binary::<etl_pmtiles::PmtilesJob>::new()
        .tools(etl_pmtiles::tools::run)
        .main()
}
