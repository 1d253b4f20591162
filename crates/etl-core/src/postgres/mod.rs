//! PostgreSQL / Aurora: connection from a URL or the ECS-injected secret JSON, error
//! classification into exit codes, identifier quoting and COPY.

mod copy;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub use copy::copy_in;

use crate::error::JobError;

/// Env var holding the ECS secret JSON `{"username","password","host","port","dbname"}`.
pub const SECRET_ENV: &str = "ETL_DATABASE_SECRET";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("no database configured: set DATABASE_URL, {SECRET_ENV}, or give a postgres:// URL")]
    NotConfigured,
    #[error("{SECRET_ENV}: {0}")]
    BadSecret(String),
    #[error("database URL: {0}")]
    BadUrl(String),
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: sqlx::Error,
    },
}

impl PgError {
    pub fn sql(context: impl Into<String>, source: sqlx::Error) -> Self {
        PgError::Sql {
            context: context.into(),
            source,
        }
    }
}

#[derive(serde::Deserialize)]
struct Secret {
    username: String,
    password: String,
    host: String,
    #[serde(default)]
    port: Option<serde_json::Value>,
    #[serde(default)]
    dbname: Option<String>,
}

/// Resolves the connection URL: an explicit `postgres://` URL with a host wins; otherwise
/// `DATABASE_URL`, then the secret JSON in `ETL_DATABASE_SECRET`.
pub fn resolve_url(
    explicit: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, PgError> {
    if let Some(url) = explicit {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"));
        if matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/')) {
            return Ok(url.to_string());
        }
    }
    if let Some(url) = env("DATABASE_URL").filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    if let Some(secret) = env(SECRET_ENV).filter(|s| !s.is_empty()) {
        let s: Secret =
            serde_json::from_str(&secret).map_err(|e| PgError::BadSecret(e.to_string()))?;
        let port = match s.port {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::String(p)) => p,
            _ => "5432".into(),
        };
        let db = s.dbname.unwrap_or_else(|| "postgres".into());
        return Ok(format!(
            "postgres://{}:{}@{}:{}/{}",
            pct(&s.username),
            pct(&s.password),
            s.host,
            port,
            pct(&db)
        ));
    }
    Err(PgError::NotConfigured)
}

fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens a pool. Connection failures are classified by [`classify`].
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, PgError> {
    let opts: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| PgError::BadUrl(e.to_string().replace(url, "<url>")))?;
    let opts = opts
        .application_name("tak-etl")
        .log_statements(tracing::log::LevelFilter::Trace);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(20))
        .connect_with(opts)
        .await
        .map_err(|e| PgError::sql("connecting to PostgreSQL", e))
}

/// Maps a database error to an exit kind: unreachable -> 69, serialization/deadlock/admin
/// shutdown -> 75, data exceptions and program limits -> 65, undefined objects/permissions,
/// dependent objects and unsupported features -> 78.
pub fn classify(err: &PgError) -> JobError {
    let msg = err.to_string();
    match err {
        PgError::NotConfigured | PgError::BadSecret(_) | PgError::BadUrl(_) => {
            JobError::config(msg)
        }
        PgError::Sql { source, .. } => match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => JobError::unavailable(msg),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                classify_sqlstate(&code, msg)
            }
            sqlx::Error::Configuration(_) => JobError::config(msg),
            _ => JobError::temporary(msg),
        },
    }
}

/// Maps a SQLSTATE to an exit kind by its class (first two characters).
pub fn classify_sqlstate(code: &str, msg: String) -> JobError {
    match code.get(..2).unwrap_or("") {
        "08" | "53" | "57" => JobError::unavailable(msg),
        "40" => JobError::temporary(msg),
        // Data exceptions, integrity violations, and program limits the input hit (too many
        // columns 54011, index row too large 54000): retrying the same input cannot help.
        "22" | "23" | "54" => JobError::bad_input(msg),
        // 2B: dependent objects still exist (views on a table being dropped); 0A: feature not
        // supported. Both need a schema or configuration change.
        "28" | "42" | "3D" | "3F" | "2B" | "0A" => JobError::config(msg),
        _ => JobError::temporary(msg),
    }
}

impl From<PgError> for JobError {
    fn from(e: PgError) -> Self {
        classify(&e)
    }
}

/// Quotes an identifier for SQL ("a""b").
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A possibly schema-qualified table name, validated and quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table`. Names are taken literally (case kept) and must be
    /// 1..=63 bytes without NUL.
    pub fn parse(s: &str) -> Result<TableName, String> {
        let (schema, name) = match s.split_once('.') {
            Some((a, b)) => (a, b),
            None => ("public", s),
        };
        for part in [schema, name] {
            if part.is_empty() || part.len() > 63 || part.contains('\0') || part.contains('.') {
                return Err(format!(
                    "invalid table name {s:?}: use NAME or SCHEMA.NAME, each 1 to 63 bytes"
                ));
            }
        }
        Ok(TableName {
            schema: schema.into(),
            name: name.into(),
        })
    }

    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Another table in the same schema.
    pub fn sibling(&self, name: &str) -> TableName {
        TableName {
            schema: self.schema.clone(),
            name: name.chars().take(63).collect(),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_resolution_order() {
        let none = |_: &str| None;
        assert_eq!(
            resolve_url(Some("postgres://u@h/db"), none).unwrap(),
            "postgres://u@h/db"
        );
        assert!(matches!(
            resolve_url(Some("postgres://"), none),
            Err(PgError::NotConfigured)
        ));
        let env = |k: &str| (k == "DATABASE_URL").then(|| "postgres://e@h/d".to_string());
        assert_eq!(
            resolve_url(Some("postgres://"), env).unwrap(),
            "postgres://e@h/d"
        );
        let secret = |k: &str| {
            (k == SECRET_ENV).then(|| {
                r#"{"username":"app","password":"p@ss/w:rd","host":"db.local","port":5433,"dbname":"tak"}"#
                    .to_string()
            })
        };
        assert_eq!(
            resolve_url(None, secret).unwrap(),
            "postgres://app:p%40ss%2Fw%3Ard@db.local:5433/tak"
        );
        let bad = |k: &str| (k == SECRET_ENV).then(|| "{".to_string());
        assert!(matches!(resolve_url(None, bad), Err(PgError::BadSecret(_))));
    }

    #[test]
    fn sqlstate_classes() {
        let code = |c: &str| classify_sqlstate(c, c.to_string()).kind.code();
        assert_eq!(code("08006"), 69);
        assert_eq!(code("57P01"), 69);
        assert_eq!(code("40001"), 75);
        assert_eq!(code("40P01"), 75);
        assert_eq!(code("22P02"), 65);
        assert_eq!(code("23505"), 65);
        assert_eq!(code("54011"), 65, "too many columns");
        assert_eq!(code("54000"), 65, "index row too large");
        assert_eq!(code("2BP01"), 78, "dependent objects still exist");
        assert_eq!(code("0A000"), 78, "feature not supported");
        assert_eq!(code("42P01"), 78);
        assert_eq!(code("28P01"), 78);
        assert_eq!(code("XX000"), 75);
        assert_eq!(code(""), 75);
    }

    #[test]
    fn table_names() {
        let t = TableName::parse("points").unwrap();
        assert_eq!(t.quoted(), "\"public\".\"points\"");
        let t = TableName::parse("gis.My\"Table").unwrap();
        assert_eq!(t.quoted(), "\"gis\".\"My\"\"Table\"");
        assert!(TableName::parse("").is_err());
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse(&"x".repeat(64)).is_err());
    }
}
