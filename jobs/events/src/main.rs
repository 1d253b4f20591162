// Parsing allocates many small strings and maps per feature; mimalloc handles that pattern with
// far less time in the allocator than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    etl_core::runner::main::<etl_events::EventsJob>()
}
