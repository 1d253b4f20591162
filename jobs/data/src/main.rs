fn main() -> std::process::ExitCode {
    etl_core::runner::main::<etl_data::DataJob>()
}
