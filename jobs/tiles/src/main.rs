// Many small allocations per request (headers, directory lookups); mimalloc handles that
// pattern well across threads.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    etl_tileserver::serve::main()
}
