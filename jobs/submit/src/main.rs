//! `etl-submit`: submits a job (`etl-submit JOB [options] -- [JOB ARGS]`), or with `deploy`
//! deploys job definitions and EventBridge rules (see `etl-submit --help`).

fn main() -> std::process::ExitCode {
    etl_submit::submit::main(std::env::args_os().skip(1).collect())
}
