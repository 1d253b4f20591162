// The system allocator (glibc malloc), not mimalloc: an import parses, then tiles on every core,
// allocating and freeing a lot in between, and mimalloc keeps freed memory for a second before
// it returns it (mimalloc 3's `purge_delay`, settable only from the environment or through
// unsafe FFI). A default import of the 67 MB benchmark KML peaked at 100-120 MB with mimalloc
// and 35-45 MB with malloc, at about the same wall time (`benches/README.md`, etl-events).

fn main() -> std::process::ExitCode {
    etl_core::runner::main::<etl_events::EventsJob>()
}
