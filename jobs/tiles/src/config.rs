//! `etl-tiles serve` flags and environment (the Lambda takes the same settings from the
//! environment alone), and how they become the app's settings.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use etl_core::Profile;

use crate::app::{Cors, Settings};
use crate::archives::CacheSettings;
use crate::auth::Auth;
use crate::cloudtak::{CloudTakArgs, CloudTakSettings};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "etl-tiles",
    version,
    about = "Serves PMTiles archives as TileJSON + XYZ tiles, with a MapLibre preview; an AWS Lambda when AWS_LAMBDA_RUNTIME_API is set",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve the archives under --root (the default command).
    Serve(ServeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where the archives are: a directory or s3://bucket/prefix/ (NAME.pmtiles is served as NAME).
    #[arg(long, env = "ETL_TILES_ROOT")]
    pub root: Option<String>,

    /// Address to listen on (ignored in Lambda).
    #[arg(long, env = "ETL_TILES_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Named defaults: dev-test or prod. Only the log format follows it (json in prod); auth and
    /// CORS do not (auth is on unless --no-auth, CORS is off unless --cors-origins).
    #[arg(long, env = "ETL_PROFILE", default_value = "dev-test")]
    pub profile: Profile,

    /// Run without JWT auth. Refused (exit 64) unless the listener is loopback (127.0.0.1,
    /// [::1]), and always refused in Lambda mode.
    #[arg(
        long,
        env = "ETL_TILES_NO_AUTH",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        action = clap::ArgAction::SetTrue
    )]
    pub no_auth: bool,

    /// Browser origins allowed by CORS: "*", "none" or a comma-separated list (default: none).
    #[arg(long, env = "ETL_TILES_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Cache-Control of tiles (default "private, max-age=86400"; "public, max-age=86400" with --no-auth).
    #[arg(long, env = "ETL_TILES_CACHE_CONTROL")]
    pub cache_control: Option<String>,

    /// Absolute URL the API is reached at (https://tiles.example.com/prod); every URL the API
    /// hands out is built from it, never from Host / X-Forwarded-* headers. Required with auth;
    /// with --no-auth the default is http://LISTEN-ADDRESS.
    #[arg(long, env = "ETL_TILES_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// HS256 secret for JWT auth.
    #[arg(long, env = "ETL_TILES_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The JWT claim that lists the archives a token opens (names or patterns with *).
    #[arg(long, env = "ETL_TILES_JWT_CLAIM", default_value = "archives")]
    pub jwt_claim: String,

    /// Bytes of leaf directories cached (K/M/G suffixes).
    #[arg(long, env = "ETL_TILES_DIRECTORY_CACHE", default_value = "64M")]
    pub directory_cache: String,

    /// Open archives cached (header, metadata, root directory each).
    #[arg(long, env = "ETL_TILES_ARCHIVE_CACHE", default_value_t = 256)]
    pub archive_cache: usize,

    /// How long an S3 archive's ETag is trusted before it is checked again (local files are
    /// checked on every request).
    #[arg(long, env = "ETL_TILES_REVALIDATE", default_value = "5s")]
    pub revalidate: humantime::Duration,

    /// How long an S3 manifest (NAME.json) is trusted before it is checked again for a swap; a
    /// read of the version it named that fails (404/412) checks it at once. Local manifests are
    /// checked on every request.
    #[arg(long, env = "ETL_TILES_MANIFEST_RECHECK", default_value = "10s")]
    pub manifest_recheck: humantime::Duration,

    /// Tiles decompressed at once for clients that refuse gzip (default: 4 x CPU cores); more
    /// get 503 with Retry-After. Each may take up to 64 MiB.
    #[arg(long, env = "ETL_TILES_INFLATE_LIMIT")]
    pub inflate_limit: Option<usize>,

    #[command(flatten)]
    pub s3: etl_core::runner::S3Args,

    #[command(flatten)]
    pub cloudtak: CloudTakArgs,

    /// Log format: text or json (default: json in prod or when stderr is not a terminal).
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<etl_core::runner::LogFormat>,
}

/// Where the router answers: a Lambda handler, or a socket listening on an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Lambda,
    Socket(SocketAddr),
}

/// A setting that cannot work; the server does not start (exit 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Plain bytes or a K/M/G (binary) suffix.
pub fn parse_bytes(v: &str) -> Result<u64, ConfigError> {
    let v = v.trim();
    let (num, mult) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(ConfigError(format!("{v:?}: expected bytes, e.g. 64M"))),
            };
            (&v[..i], mult)
        }
        _ => (v, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| ConfigError(format!("{v:?}: expected bytes, e.g. 64M")))
}

impl ServeArgs {
    /// `--root`, else CloudTAK's public archives `s3://ASSET_BUCKET/public/`.
    pub fn root(&self) -> Result<String, ConfigError> {
        match (&self.root, self.cloudtak.asset_bucket()) {
            (Some(r), _) => Ok(r.clone()),
            (None, Some(bucket)) => Ok(format!("s3://{bucket}/public/")),
            (None, None) => Err(ConfigError(
                "--root (or ETL_TILES_ROOT, or ASSET_BUCKET) is required: a directory or s3://bucket/prefix/".into(),
            )),
        }
    }

    /// The CloudTAK routes' settings (`None` without `ASSET_BUCKET`); `PMTILES_URL` defaults to
    /// `--public-url`.
    pub fn cloudtak_settings(&self) -> Result<Option<CloudTakSettings>, ConfigError> {
        self.cloudtak.settings(self.public_url.as_deref())
    }

    pub fn cache_settings(&self) -> Result<CacheSettings, ConfigError> {
        Ok(CacheSettings {
            directory_bytes: parse_bytes(&self.directory_cache)
                .map_err(|e| ConfigError(format!("--directory-cache {e}")))?,
            archives: self.archive_cache.max(1),
            revalidate: Duration::from(self.revalidate),
            manifest_recheck: Duration::from(self.manifest_recheck),
        })
    }

    /// The app's settings for a router answering on `listener`. Fails closed: auth is on
    /// unless `--no-auth` on a loopback listener, and then a secret and a public URL are needed.
    pub fn settings(&self, listener: Listener) -> Result<Settings, ConfigError> {
        let signing = self.cloudtak.signing_secret();
        if self.no_auth && signing.is_some() {
            return Err(ConfigError(
                "--no-auth (ETL_TILES_NO_AUTH) is refused while SigningSecret is set: auth is on whenever SigningSecret is".into(),
            ));
        }
        let auth = if self.no_auth {
            match listener {
                Listener::Lambda => {
                    return Err(ConfigError(
                        "--no-auth (ETL_TILES_NO_AUTH) is refused in Lambda mode: the Lambda always checks tokens".into(),
                    ));
                }
                Listener::Socket(a) if !a.ip().is_loopback() => {
                    return Err(ConfigError(format!(
                        "--no-auth (ETL_TILES_NO_AUTH) is refused on {a}: only a loopback listener (127.0.0.1, [::1]) may run without auth"
                    )));
                }
                Listener::Socket(_) => None,
            }
        } else {
            let own = self.jwt_secret.as_deref().filter(|s| !s.is_empty());
            let secret = own.or(signing).ok_or_else(|| {
                ConfigError(
                    "auth is on (it is off only with --no-auth on a loopback listener) but no JWT secret is set: set ETL_TILES_JWT_SECRET (or SigningSecret)".into(),
                )
            })?;
            // CloudTAK's SigningSecret is taken as the deployment made it.
            if own.is_some() && secret.len() < 32 {
                return Err(ConfigError(
                    "the JWT secret is shorter than 32 bytes: HS256 wants at least 256 bits".into(),
                ));
            }
            Some(Auth::new(secret.as_bytes(), &self.jwt_claim).map_err(ConfigError)?)
        };
        let given_url = self.public_url.as_ref().or(self
            .cloudtak
            .pmtiles_url
            .as_ref()
            .filter(|u| !u.trim().is_empty()));
        let public_url = match (given_url, listener) {
            (Some(u), _) => public_url(u)?,
            (None, Listener::Socket(a)) if auth.is_none() => format!("http://{a}"),
            (None, _) => {
                return Err(ConfigError(
                    "--public-url (ETL_TILES_PUBLIC_URL, or PMTILES_URL) is required when auth is on: TileJSON and the pages hand out URLs built from it, never from the request's Host header".into(),
                ));
            }
        };
        let cors = match self.cors_origins.as_deref().map(str::trim) {
            None | Some("none") | Some("") => Cors::Off,
            Some("*") => Cors::Any,
            Some(list) => {
                let origins: Vec<String> = list
                    .split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect();
                for o in &origins {
                    if !(o.starts_with("http://") || o.starts_with("https://"))
                        || HeaderValue::from_str(o).is_err()
                    {
                        return Err(ConfigError(format!(
                            "--cors-origins: {o:?} is not an origin like https://app.example.com"
                        )));
                    }
                }
                Cors::Origins(origins)
            }
        };
        let cache_control = match &self.cache_control {
            Some(c) => c.clone(),
            // Behind auth, a shared cache must not hand one user's tiles to another.
            None if auth.is_some() => "private, max-age=86400".to_string(),
            None => "public, max-age=86400".to_string(),
        };
        let cache_control = HeaderValue::from_str(&cache_control).map_err(|_| {
            ConfigError(format!(
                "--cache-control {cache_control:?} is not a header value"
            ))
        })?;
        let inflate_limit = match self.inflate_limit {
            Some(0) => {
                return Err(ConfigError("--inflate-limit must be at least 1".into()));
            }
            Some(n) => n,
            None => 4 * std::thread::available_parallelism().map_or(1, usize::from),
        };
        Ok(Settings {
            cache_control,
            public_url,
            cors,
            auth,
            inflate_limit,
        })
    }
}

/// An absolute http(s) URL with a host, no query or fragment; returned without a trailing `/`.
pub fn public_url(u: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError(format!("--public-url {u:?}: {why}"));
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| bad("expected an absolute http(s) URL"))?;
    if rest.starts_with('/') || rest.is_empty() {
        return Err(bad("no host"));
    }
    if u.contains(['?', '#']) || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("expected no query, fragment or spaces"));
    }
    Ok(u.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;

    fn args(a: &[&str]) -> ServeArgs {
        let mut v = vec!["etl-tiles", "serve"];
        v.extend_from_slice(a);
        match Cli::try_parse_from(v).unwrap().command {
            Some(Command::Serve(s)) => s,
            None => panic!("no serve"),
        }
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("M").is_err());
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn local(port: u16) -> Listener {
        Listener::Socket(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn auth_is_on_unless_turned_off_on_loopback() {
        // Whatever the profile, no secret: no start.
        for profile in ["dev-test", "prod"] {
            let err = args(&["--root", "/tmp", "--profile", profile])
                .settings(local(8080))
                .err()
                .unwrap();
            assert!(err.0.contains("ETL_TILES_JWT_SECRET"), "{err}");
        }
        let err = args(&["--jwt-secret", SECRET])
            .settings(local(8080))
            .err()
            .unwrap();
        assert!(err.0.contains("--public-url"), "{err}");
        let on = args(&[
            "--jwt-secret",
            SECRET,
            "--public-url",
            "https://t.example/prod/",
        ])
        .settings(local(8080))
        .unwrap();
        assert!(on.auth.is_some());
        assert_eq!(on.public_url, "https://t.example/prod");
        assert_eq!(on.cors, Cors::Off);
        assert_eq!(on.cache_control, "private, max-age=86400");
        assert!(on.inflate_limit >= 4);
        let short = args(&["--jwt-secret", "short", "--public-url", "https://t.example"])
            .settings(local(8080));
        assert!(short.is_err());

        let off = args(&["--no-auth"]).settings(local(8080)).unwrap();
        assert!(off.auth.is_none());
        assert_eq!(off.public_url, "http://127.0.0.1:8080");
        assert_eq!(off.cors, Cors::Off);
        assert_eq!(off.cache_control, "public, max-age=86400");
        let v6 = args(&["--no-auth"])
            .settings(Listener::Socket("[::1]:9000".parse().unwrap()))
            .unwrap();
        assert_eq!(v6.public_url, "http://[::1]:9000");
        for refused in [
            Listener::Lambda,
            Listener::Socket("0.0.0.0:8080".parse().unwrap()),
            Listener::Socket("[::]:8080".parse().unwrap()),
            Listener::Socket("192.0.2.7:8080".parse().unwrap()),
        ] {
            let err = args(&["--no-auth", "--public-url", "https://t.example"])
                .settings(refused)
                .err()
                .unwrap();
            assert!(err.0.contains("--no-auth"), "{refused:?}: {err}");
        }
        // In Lambda mode a secret and a public URL make it start.
        let lambda = args(&["--jwt-secret", SECRET, "--public-url", "https://t.example"])
            .settings(Listener::Lambda)
            .unwrap();
        assert!(lambda.auth.is_some());
    }

    #[test]
    fn cloudtak_environment() {
        // CloudTAK's variables alone make a working configuration, with auth on.
        let ct = args(&[
            "--signing-secret",
            "short",
            "--asset-bucket",
            "assets",
            "--pmtiles-url",
            "https://tiles.map.example/",
        ]);
        assert_eq!(ct.root().unwrap(), "s3://assets/public/");
        let s = ct.settings(Listener::Lambda).unwrap();
        assert!(s.auth.is_some());
        assert_eq!(s.public_url, "https://tiles.map.example");
        let c = ct.cloudtak_settings().unwrap().unwrap();
        assert_eq!(c.tiles_url, "https://tiles.map.example");
        assert_eq!(c.bucket, "assets");
        // Auth is on whenever SigningSecret is set: --no-auth is refused, whatever the profile.
        for profile in ["dev-test", "prod"] {
            let err = args(&["--signing-secret", "s", "--no-auth", "--profile", profile])
                .settings(local(8080))
                .err()
                .unwrap();
            assert!(err.0.contains("SigningSecret"), "{err}");
        }
        // The archive-claim mode keeps its own secret when it has one.
        let both = args(&[
            "--signing-secret",
            "short",
            "--jwt-secret",
            "short-too",
            "--public-url",
            "https://t.example",
        ]);
        assert!(
            both.settings(local(8080)).is_err(),
            "ETL_TILES_JWT_SECRET is still checked"
        );
        assert!(args(&[]).root().is_err());
    }

    #[test]
    fn cors_and_public_url() {
        let base = ["--no-auth"];
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            args(&a).settings(local(1))
        };
        assert_eq!(with(&["--cors-origins", "*"]).unwrap().cors, Cors::Any);
        assert_eq!(with(&["--cors-origins", "none"]).unwrap().cors, Cors::Off);
        assert_eq!(
            with(&[
                "--cors-origins",
                "https://a.example, http://b.example:8080/"
            ])
            .unwrap()
            .cors,
            Cors::Origins(vec![
                "https://a.example".into(),
                "http://b.example:8080".into()
            ])
        );
        assert!(with(&["--cors-origins", "a.example"]).is_err());
        assert_eq!(
            with(&["--public-url", "http://localhost:9999/"])
                .unwrap()
                .public_url,
            "http://localhost:9999"
        );
        for bad in [
            "tiles.example",
            "https://",
            "https:///x",
            "https://t.example/?a=b",
            "https://t.example/#x",
            "https://t .example",
        ] {
            assert!(with(&["--public-url", bad]).is_err(), "{bad}");
        }
        assert!(with(&["--inflate-limit", "0"]).is_err());
        assert_eq!(with(&["--inflate-limit", "3"]).unwrap().inflate_limit, 3);
    }
}
