//! CloudTAK's tile API (`tasks/pmtiles` in dfpc-coe/CloudTAK): archives in the asset bucket at
//! `profile/USER/FILE.pmtiles` and `public/NAME.pmtiles`, TileJSON and tiles behind CloudTAK's
//! tokens, and the features of MVT tiles as GeoJSON (`/query`, `/features`). Its settings are
//! CloudTAK's environment: `SigningSecret`, `ASSET_BUCKET`, `PMTILES_URL` (and `StackName`).
//! The routes are in [`crate::app`]; this module holds what they are built on.

pub mod cover;
pub mod geojson;
pub mod query;

use crate::archives::Archives;
use crate::auth::{Denied, SignedClaims, SigningAuth};
use crate::config::ConfigError;
use crate::request::{self, BadRequest};

/// CloudTAK's tile environment, as flags too.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CloudTakArgs {
    /// CloudTAK's JWT secret. When it is set, auth is on whatever else is set (--no-auth is
    /// refused); it checks CloudTAK's tokens on the CloudTAK routes, and is the secret of the
    /// archive-claim tokens too when ETL_TILES_JWT_SECRET is not set.
    #[arg(long, env = "SigningSecret", hide_env_values = true)]
    pub signing_secret: Option<String>,

    /// CloudTAK's asset bucket: turns on the CloudTAK routes over s3://ASSET_BUCKET/public/
    /// and s3://ASSET_BUCKET/profile/ (needs SigningSecret); also the default --root
    /// (s3://ASSET_BUCKET/public/).
    #[arg(long, env = "ASSET_BUCKET")]
    pub asset_bucket: Option<String>,

    /// The public URL of the tile API as CloudTAK knows it (https://tiles.map.example.com): the
    /// base of the tile URLs in CloudTAK TileJSON; the default --public-url.
    #[arg(long, env = "PMTILES_URL")]
    pub pmtiles_url: Option<String>,

    /// The name `GET /tiles` answers (CloudTAK's stack name).
    #[arg(long, env = "StackName")]
    pub stack_name: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl CloudTakArgs {
    pub fn signing_secret(&self) -> Option<&str> {
        self.signing_secret.as_deref().filter(|s| !s.is_empty())
    }

    pub fn asset_bucket(&self) -> Option<&str> {
        set(&self.asset_bucket)
    }

    pub fn pmtiles_url(&self) -> Option<&str> {
        set(&self.pmtiles_url)
    }

    /// The CloudTAK routes' settings: `None` without `ASSET_BUCKET`. `fallback_url` is the
    /// public URL used when `PMTILES_URL` is not set.
    pub fn settings(
        &self,
        fallback_url: Option<&str>,
    ) -> Result<Option<CloudTakSettings>, ConfigError> {
        let Some(bucket) = self.asset_bucket() else {
            return Ok(None);
        };
        if bucket.contains(['/', '\\']) || bucket.chars().any(char::is_control) {
            return Err(ConfigError(format!(
                "ASSET_BUCKET {bucket:?} is not a bucket name"
            )));
        }
        let secret = self.signing_secret().ok_or_else(|| {
            ConfigError(
                "ASSET_BUCKET is set but SigningSecret is not: the CloudTAK routes check CloudTAK's tokens with it".into(),
            )
        })?;
        let url = self.pmtiles_url().or(fallback_url).ok_or_else(|| {
            ConfigError(
                "ASSET_BUCKET is set but PMTILES_URL is not: CloudTAK TileJSON hands out tile URLs built from it".into(),
            )
        })?;
        let tiles_url = crate::config::public_url(url)
            .map_err(|e| ConfigError(e.0.replace("--public-url", "PMTILES_URL")))?;
        Ok(Some(CloudTakSettings {
            bucket: bucket.to_string(),
            auth: SigningAuth::new(secret.as_bytes()).map_err(ConfigError)?,
            tiles_url,
            stack_name: set(&self.stack_name)
                .unwrap_or("Default Tiles API")
                .to_string(),
        }))
    }
}

/// How the CloudTAK routes answer.
#[derive(Clone)]
pub struct CloudTakSettings {
    /// The asset bucket (`ASSET_BUCKET`).
    pub bucket: String,
    /// CloudTAK's tokens (`SigningSecret`).
    pub auth: SigningAuth,
    /// `PMTILES_URL` without a trailing `/`.
    pub tiles_url: String,
    /// What `GET /tiles` names.
    pub stack_name: String,
}

impl std::fmt::Debug for CloudTakSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudTakSettings")
            .field("bucket", &self.bucket)
            .field("tiles_url", &self.tiles_url)
            .field("stack_name", &self.stack_name)
            .finish_non_exhaustive()
    }
}

/// The CloudTAK routes' archives (the asset bucket, names `public/NAME` and
/// `profile/USER/FILE`) and settings.
pub struct CloudTak {
    pub archives: Archives,
    pub settings: CloudTakSettings,
}

/// An archive as a CloudTAK route names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRef {
    /// `public/NAME.pmtiles`: any valid token.
    Public { name: String },
    /// `profile/USER/FILE.pmtiles`: the owner's profile token, or one naming the file.
    Profile { user: String, file: String },
}

impl ArchiveRef {
    /// Checks each path parameter (one segment, no traversal) before anything is read.
    pub fn public(name: &str) -> Result<ArchiveRef, BadRequest> {
        Ok(ArchiveRef::Public {
            name: request::archive_name(name)?.to_string(),
        })
    }

    pub fn profile(user: &str, file: &str) -> Result<ArchiveRef, BadRequest> {
        Ok(ArchiveRef::Profile {
            user: request::archive_name(user)?.to_string(),
            file: request::archive_name(file)?.to_string(),
        })
    }

    /// The key of the archive in the bucket without `.pmtiles` (CloudTAK's "prefix"), which is
    /// also its name in the archive cache.
    pub fn path(&self) -> String {
        match self {
            ArchiveRef::Public { name } => format!("public/{name}"),
            ArchiveRef::Profile { user, file } => format!("profile/{user}/{file}"),
        }
    }

    /// Whether a valid token's claims open this archive (CloudTAK answers 401 when not).
    pub fn check(&self, claims: &SignedClaims) -> Result<(), Denied> {
        match self {
            ArchiveRef::Public { .. } => Ok(()),
            ArchiveRef::Profile { user, file } if claims.grants_profile(user, file) => Ok(()),
            ArchiveRef::Profile { .. } => Err(Denied::Unauthorized("Unauthorized Access".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(
            ArchiveRef::profile("a@b.example", "f1").unwrap().path(),
            "profile/a@b.example/f1"
        );
        assert_eq!(ArchiveRef::public("roads").unwrap().path(), "public/roads");
        for (user, file) in [
            ("..", "x"),
            ("a", ".."),
            ("a/b", "x"),
            ("", "x"),
            ("a", "x\ny"),
        ] {
            assert!(
                ArchiveRef::profile(user, file).is_err(),
                "{user:?} {file:?}"
            );
        }
        assert!(ArchiveRef::public("../profile").is_err());
    }

    #[test]
    fn settings_need_secret_and_url() {
        let mut a = CloudTakArgs::default();
        assert!(
            a.settings(None).unwrap().is_none(),
            "off without ASSET_BUCKET"
        );
        a.asset_bucket = Some("assets".into());
        assert!(a.settings(None).unwrap_err().0.contains("SigningSecret"));
        a.signing_secret = Some("s".into());
        assert!(a.settings(None).unwrap_err().0.contains("PMTILES_URL"));
        let s = a.settings(Some("https://t.example/")).unwrap().unwrap();
        assert_eq!(s.tiles_url, "https://t.example");
        a.pmtiles_url = Some("https://tiles.map.example".into());
        let s = a.settings(Some("https://t.example/")).unwrap().unwrap();
        assert_eq!(
            (
                s.bucket.as_str(),
                s.tiles_url.as_str(),
                s.stack_name.as_str()
            ),
            ("assets", "https://tiles.map.example", "Default Tiles API")
        );
        a.pmtiles_url = Some("tiles.map.example".into());
        assert!(a.settings(None).unwrap_err().0.contains("PMTILES_URL"));
    }
}
