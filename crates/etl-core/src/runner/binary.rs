//! A binary's command line: its main job (what runs without a subcommand) and its clap
//! subcommands — other jobs (`etl-data retention`) or plain tools (`etl-pmtiles verify`).
//!
//! One clap command is built for the whole binary, so `--help` lists the subcommands, a
//! subcommand's `--help` is its own, and the runner's flags (`--profile`, `--s3-endpoint`, …)
//! are accepted before or after the subcommand name.

use std::ffi::{OsStr, OsString};
use std::marker::PhantomData;
use std::process::ExitCode;

use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::CommonArgs;
use crate::error::ExitKind;
use crate::job::Job;

type Augment = Box<dyn Fn(Command) -> Command>;
type Run = Box<dyn Fn(&Command, &ArgMatches) -> ExitCode>;
type Schema = Box<dyn Fn() -> serde_json::Value>;

/// One or more subcommands of a binary.
struct Sub {
    augment: Augment,
    /// Whether a subcommand of this name is one of these.
    handles: Box<dyn Fn(&str) -> bool>,
    /// Runs it, given the binary's command and matches.
    run: Run,
    /// The JSON Schema of its config (`SUB --print-schema`), for a job.
    schema: Option<Schema>,
}

/// The command line of a binary whose main job is `J`.
pub struct Binary<J: Job> {
    subs: Vec<Sub>,
    job: PhantomData<J>,
}

impl<J: Job> Default for Binary<J> {
    fn default() -> Self {
        Binary {
            subs: Vec::new(),
            job: PhantomData,
        }
    }
}

impl<J: Job> Binary<J> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds job `R` as subcommand `name`: its own flags and config, run by the same runner
    /// (logs, summary, signals, exit codes) as the main job.
    pub fn job<R: Job>(mut self, name: &'static str) -> Self {
        self.subs.push(Sub {
            augment: Box::new(move |cmd| {
                cmd.subcommand(R::Config::augment_args(
                    Command::new(name)
                        .about(R::ABOUT)
                        .version(env!("CARGO_PKG_VERSION")),
                ))
            }),
            handles: Box::new(move |n| n == name),
            run: Box::new(move |cmd, matches| {
                let (Some((_, sub_matches)), Some(sub_cmd)) =
                    (matches.subcommand(), cmd.find_subcommand(name))
                else {
                    return ExitKind::Internal.exit_code();
                };
                exit_code(super::run_matches::<R>(sub_cmd, sub_matches))
            }),
            schema: Some(Box::new(super::schema::<R>)),
        });
        self
    }

    /// Adds the subcommands of `S` as tools: they take the runner's flags (for S3 settings)
    /// but not its run summary; `run` prints its own output and returns the exit code.
    pub fn tools<S: clap::Subcommand + 'static>(
        mut self,
        run: fn(S, &CommonArgs) -> ExitCode,
    ) -> Self {
        self.subs.push(Sub {
            augment: Box::new(S::augment_subcommands),
            handles: Box::new(S::has_subcommand),
            run: Box::new(move |_, matches| {
                let parsed = S::from_arg_matches(matches)
                    .and_then(|s| CommonArgs::from_arg_matches(matches).map(|c| (s, c)));
                match parsed {
                    Ok((sub, common)) => run(sub, &common),
                    Err(e) => ExitKind::after_clap_error(&e),
                }
            }),
            schema: None,
        });
        self
    }

    /// The clap command of the whole binary.
    pub fn command(&self) -> Command {
        let mut cmd = super::command::<J>();
        if !self.subs.is_empty() {
            // With a subcommand the main job's required flags are not asked for (and its flags
            // are refused, see `run`). `help` is not a subcommand, so an input may be called that.
            cmd = cmd
                .subcommand_negates_reqs(true)
                .disable_help_subcommand(true);
        }
        self.subs.iter().fold(cmd, |cmd, sub| (sub.augment)(cmd))
    }

    /// Parses the process arguments, runs the main job or a subcommand and returns its code.
    pub fn main(self) -> ExitCode {
        self.run(std::env::args_os().collect())
    }

    /// Runs the binary on `args` (program name first) and returns the exit code.
    pub fn run(&self, args: Vec<OsString>) -> ExitCode {
        // Before parsing: a config's required flags are not needed to print its schema.
        // The subcommand is the first argument that names one (runner flags may come first).
        if args.iter().skip(1).any(|a| a == "--print-schema") {
            let sub = args
                .iter()
                .skip(1)
                .filter_map(|a| a.to_str())
                .find(|a| self.subs.iter().any(|s| (s.handles)(a)));
            return exit_code(self.print_schema(sub.map(OsStr::new)));
        }
        let cmd = self.command();
        let matches = match cmd.clone().try_get_matches_from(&args) {
            Ok(m) => m,
            Err(e) => return ExitKind::after_clap_error(&e),
        };
        if let Some((name, _)) = matches.subcommand() {
            // The runner's flags (global) may come before the subcommand's name; the main
            // job's may not, since the subcommand would ignore them.
            if let Some(arg) = cmd.get_arguments().find(|a| {
                !a.is_global_set()
                    && matches.value_source(a.get_id().as_str())
                        == Some(clap::parser::ValueSource::CommandLine)
            }) {
                let flag = arg
                    .get_long()
                    .map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                eprintln!(
                    "{}: {flag} is not a flag of `{name}` (give it after `{name}` if `{name} --help` lists it)",
                    J::NAME
                );
                return ExitKind::Usage.exit_code();
            }
            return match self.subs.iter().find(|s| (s.handles)(name)) {
                Some(sub) => (sub.run)(&cmd, &matches),
                None => ExitKind::Internal.exit_code(),
            };
        }
        exit_code(super::run_matches::<J>(&cmd, &matches))
    }

    fn print_schema(&self, first: Option<&OsStr>) -> i32 {
        let sub = first
            .and_then(OsStr::to_str)
            .and_then(|n| self.subs.iter().find(|s| (s.handles)(n)).map(|s| (n, s)));
        let schema = match sub {
            None => super::schema::<J>(),
            Some((
                _,
                Sub {
                    schema: Some(schema),
                    ..
                },
            )) => schema(),
            Some((name, _)) => {
                eprintln!("{}: `{name}` has no config schema", J::NAME);
                return ExitKind::Usage.code();
            }
        };
        match serde_json::to_string_pretty(&schema) {
            Ok(text) => {
                println!("{text}");
                0
            }
            Err(e) => {
                eprintln!("{}: cannot print the schema: {e}", J::NAME);
                ExitKind::Internal.code()
            }
        }
    }
}

/// The process exit code for a job's code (0 to 255; anything else is 1).
pub(super) fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Prints a clap error (or the help or version it carries) and returns the exit code.
pub(super) fn clap_exit(e: &clap::Error) -> i32 {
    if let Err(print) = e.print() {
        eprintln!("{e} (and printing it failed: {print})");
    }
    if e.use_stderr() {
        ExitKind::Usage.code()
    } else {
        0
    }
}
