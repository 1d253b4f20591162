//! `etl-tiles serve` flags and environment (the Lambda takes the same settings from the
//! environment alone), and how they become the app's settings.

use std::time::Duration;

use axum::http::HeaderValue;
use etl_core::Profile;

use crate::app::{Cors, Settings};
use crate::archives::CacheSettings;
use crate::auth::Auth;

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

    /// Named defaults: dev-test (no auth, CORS *) or prod (JWT auth, no CORS unless configured).
    #[arg(long, env = "ETL_PROFILE", default_value = "dev-test")]
    pub profile: Profile,

    /// Browser origins allowed by CORS: "*", "none" or a comma-separated list (default: * in dev-test, none in prod).
    #[arg(long, env = "ETL_TILES_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Cache-Control of tiles (default "public, max-age=86400"; "private, max-age=86400" when auth is on).
    #[arg(long, env = "ETL_TILES_CACHE_CONTROL")]
    pub cache_control: Option<String>,

    /// Absolute URL the API is reached at, for TileJSON tile URLs (default: from Host / X-Forwarded-*).
    #[arg(long, env = "ETL_TILES_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// JWT auth: on or off (default: off in dev-test, on in prod).
    #[arg(long, env = "ETL_TILES_AUTH")]
    pub auth: Option<OnOff>,

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

    /// S3 endpoint for S3-compatible servers; also AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL.
    #[arg(long, env = "ETL_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Log format: text or json (default: json in prod or when stderr is not a terminal).
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<etl_core::runner::LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
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
    pub fn root(&self) -> Result<&str, ConfigError> {
        self.root.as_deref().ok_or_else(|| {
            ConfigError(
                "--root (or ETL_TILES_ROOT) is required: a directory or s3://bucket/prefix/".into(),
            )
        })
    }

    pub fn s3_endpoint(&self) -> Option<String> {
        self.s3_endpoint.clone().or_else(|| {
            ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        })
    }

    pub fn cache_settings(&self) -> Result<CacheSettings, ConfigError> {
        Ok(CacheSettings {
            directory_bytes: parse_bytes(&self.directory_cache)
                .map_err(|e| ConfigError(format!("--directory-cache {e}")))?,
            archives: self.archive_cache.max(1),
            revalidate: Duration::from(self.revalidate),
        })
    }

    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let auth_on = match self.auth {
            Some(OnOff::On) => true,
            Some(OnOff::Off) => false,
            None => self.profile == Profile::Prod,
        };
        let auth = if auth_on {
            let secret = self.jwt_secret.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
                ConfigError(format!(
                    "auth is on (profile {}) but no JWT secret is set: set ETL_TILES_JWT_SECRET, or --auth off",
                    self.profile
                ))
            })?;
            if secret.len() < 32 {
                return Err(ConfigError(
                    "the JWT secret is shorter than 32 bytes: HS256 wants at least 256 bits".into(),
                ));
            }
            Some(Auth::new(secret.as_bytes(), &self.jwt_claim).map_err(ConfigError)?)
        } else {
            None
        };
        let cors = match self.cors_origins.as_deref().map(str::trim) {
            None if self.profile == Profile::Prod => Cors::Off,
            None | Some("*") => Cors::Any,
            Some("none") | Some("") => Cors::Off,
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
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "--public-url {u:?}: expected an absolute http(s) URL"
            )));
        }
        Ok(Settings {
            cache_control,
            public_url: self.public_url.clone(),
            cors,
            auth,
        })
    }
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

    #[test]
    fn profiles() {
        let dev = args(&["--root", "/tmp", "--profile", "dev-test"])
            .settings()
            .unwrap();
        assert!(dev.auth.is_none());
        assert_eq!(dev.cors, Cors::Any);
        assert_eq!(dev.cache_control, "public, max-age=86400");
        let err = args(&["--root", "/tmp", "--profile", "prod"]).settings();
        assert!(err.is_err());
        let prod = args(&[
            "--profile",
            "prod",
            "--jwt-secret",
            "0123456789abcdef0123456789abcdef",
        ])
        .settings()
        .unwrap();
        assert!(prod.auth.is_some());
        assert_eq!(prod.cors, Cors::Off);
        assert_eq!(prod.cache_control, "private, max-age=86400");
        let short = args(&["--auth", "on", "--jwt-secret", "short"]).settings();
        assert!(short.is_err());
        let cors = args(&[
            "--cors-origins",
            "https://a.example, http://b.example:8080/",
        ])
        .settings()
        .unwrap();
        assert_eq!(
            cors.cors,
            Cors::Origins(vec![
                "https://a.example".into(),
                "http://b.example:8080".into()
            ])
        );
        assert!(args(&["--cors-origins", "a.example"]).settings().is_err());
    }
}
