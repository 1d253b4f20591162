// The system allocator (glibc malloc), not mimalloc: an import parses, then tiles on every core,
// allocating and freeing a lot in between, and mimalloc 3 keeps freed memory for a second
// (`purge_delay`, settable only from the environment or through unsafe FFI) while the tiler
// allocates more. With the default flags, the benchmark imports (`benches/events.sh`) peak at
// 33-48 MB with malloc against 104-194 MB with mimalloc, at 1-8 % more wall time.

fn main() -> std::process::ExitCode {
    etl_core::runner::main::<etl_events::EventsJob>()
}
