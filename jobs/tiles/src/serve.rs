//! Start-up: flags and environment to a running server, or to a Lambda handler when the Lambda
//! runtime's environment is present. Exit codes: 0 after a clean stop, 64 for a bad setting
//! (including --no-auth on a listener that is not loopback, or in Lambda mode), 66 when the root
//! does not exist, 69 when the address cannot be bound or S3 is unreachable.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use etl_core::ExitKind;

use crate::app::{AppState, router};
use crate::archives::Archives;
use crate::cloudtak::CloudTak;
use crate::config::{Cli, Command, Listener, ServeArgs};
use crate::source::{Source, SourceError};

/// After SIGTERM, in-flight requests get this long before the process exits anyway (ECS sends
/// SIGKILL 30 s after SIGTERM).
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return ExitKind::after_clap_error(&e),
    };
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        None => cli.serve,
    };
    let format = args.log_format.unwrap_or_else(|| {
        use std::io::IsTerminal;
        if args.profile == etl_core::Profile::Prod || !std::io::stderr().is_terminal() {
            etl_core::runner::LogFormat::Json
        } else {
            etl_core::runner::LogFormat::Text
        }
    });
    etl_core::runner::init_logging(format, args.profile);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etl-tiles: cannot start the async runtime: {e}");
            return ExitKind::OsError.exit_code();
        }
    };
    rt.block_on(run(args))
}

async fn run(args: ServeArgs) -> ExitCode {
    let fail = |kind: ExitKind, msg: String| {
        tracing::error!("{msg}");
        eprintln!("etl-tiles: {msg}");
        kind.exit_code()
    };
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let (root, cache, cloudtak) =
        match (args.root(), args.cache_settings(), args.cloudtak_settings()) {
            (Ok(r), Ok(c), Ok(ct)) => (r, c, ct),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return fail(ExitKind::Usage, e.to_string());
            }
        };
    // Every setting is checked before the root is opened or an address bound; the addresses
    // `--listen` names decide whether running without auth is allowed.
    let addrs: Vec<SocketAddr> = if lambda {
        Vec::new()
    } else {
        match tokio::net::lookup_host(&args.listen).await {
            Ok(a) => a.collect(),
            Err(e) => {
                return fail(
                    ExitKind::Unavailable,
                    format!("cannot listen on {}: {e}", args.listen),
                );
            }
        }
    };
    let listener = match (lambda, addrs.first()) {
        (true, _) => Listener::Lambda,
        (false, Some(a)) => Listener::Socket(*a),
        (false, None) => {
            return fail(
                ExitKind::Unavailable,
                format!("cannot listen on {}: no address", args.listen),
            );
        }
    };
    let settings = match args.settings(listener) {
        Ok(s) => s,
        Err(e) => return fail(ExitKind::Usage, e.to_string()),
    };
    let source = match Source::open(&root, args.s3.config()).await {
        Ok(s) => s,
        Err(e @ SourceError::Io { .. }) => {
            return fail(ExitKind::NoInput, format!("--root {root}: {e}"));
        }
        Err(e) => return fail(ExitKind::Unavailable, format!("--root {root}: {e}")),
    };
    let described = source.describe();
    let archives = Archives::new(source, cache);
    let cloudtak = match cloudtak {
        None => None,
        Some(ct) => {
            let bucket = format!("s3://{}/", ct.bucket);
            match Source::open(&bucket, args.s3.config()).await {
                Ok(s) => Some(CloudTak {
                    archives: Archives::plain_paths(s, cache),
                    settings: ct,
                }),
                Err(e) => {
                    return fail(ExitKind::Unavailable, format!("ASSET_BUCKET {bucket}: {e}"));
                }
            }
        }
    };
    if let Some(ct) = &cloudtak {
        tracing::info!(bucket = %ct.settings.bucket, pmtiles_url = %ct.settings.tiles_url, "CloudTAK tile routes on");
    }
    if lambda {
        tracing::info!(root = %described, public_url = %settings.public_url, "running as a Lambda handler");
        let app = router(Arc::new(
            AppState::new(archives, settings).with_cloudtak(cloudtak),
        ));
        return match crate::lambda::run(app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(
                ExitKind::Unavailable,
                format!("the Lambda runtime failed: {e}"),
            ),
        };
    }
    let mut bound = Err(std::io::Error::other("no address"));
    for a in &addrs {
        bound = tokio::net::TcpListener::bind(a).await;
        if bound.is_ok() {
            break;
        }
    }
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            return fail(
                ExitKind::Unavailable,
                format!("cannot listen on {}: {e}", args.listen),
            );
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            return fail(
                ExitKind::Unavailable,
                format!("cannot listen on {}: {e}", args.listen),
            );
        }
    };
    // Again with the address actually bound: its port (when 0 was asked for) goes into the
    // default public URL, and a name that resolved to several addresses may have bound another.
    let settings = match args.settings(Listener::Socket(addr)) {
        Ok(s) => s,
        Err(e) => return fail(ExitKind::Usage, e.to_string()),
    };
    let auth = settings.auth.is_some();
    let public_url = settings.public_url.clone();
    let app = router(Arc::new(
        AppState::new(archives, settings).with_cloudtak(cloudtak),
    ));
    // Tests and scripts read the bound address (the port may have been 0) from this line.
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, root = %described, %public_url, auth, "serving tiles");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    let signal = stop_signal().await;
    tracing::info!(signal, "stopping: finishing in-flight requests");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(DRAIN_LIMIT, server).await {
        Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
        Ok(Ok(Err(e))) => fail(ExitKind::IoError, format!("server error: {e}")),
        Ok(Err(e)) => fail(ExitKind::Internal, format!("server task failed: {e}")),
        Err(_) => {
            tracing::warn!("requests still running after {DRAIN_LIMIT:?}; exiting");
            ExitCode::SUCCESS
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
