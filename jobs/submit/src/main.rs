//! `etl-submit`: `etl-submit deploy ...` deploys job definitions and EventBridge rules; anything
//! else submits a job (`etl-submit JOB [options] -- [JOB ARGS]`, see `etl-submit --help`).

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "deploy") {
        args.remove(0);
        etl_submit::deploy::main(args)
    } else {
        etl_submit::submit::main(args)
    }
}
