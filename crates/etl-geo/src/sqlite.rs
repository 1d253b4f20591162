//! Opening an untrusted SQLite file (an uploaded GeoPackage or MBTiles) for reading only.
//!
//! [`check_file`] looks at the file before SQLite does: a regular file (not a symbolic link)
//! that starts with the SQLite header and is as long as the header says. [`open_read_only`]
//! then opens it hardened: read-only and immutable (no journal, no locks, no WAL), no
//! following of symbolic links, the schema untrusted (no functions with side effects from
//! views), defensive mode on, triggers off, extra b-tree cell checks, no memory mapping,
//! temporary data on disk, and an optional deadline enforced inside SQLite.

use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, config::DbConfig};

/// SQLite virtual-machine steps between deadline checks.
pub const PROGRESS_STEPS: i32 = 100_000;

/// The first 16 bytes of every SQLite database.
pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Why a file was not opened. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum SqliteOpenError {
    /// The file could not be read or its path not resolved.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// It is not an SQLite database at all (or not a plain file).
    #[error("{0}")]
    NotSqlite(String),
    /// It is an SQLite database cut short.
    #[error("{0}")]
    Truncated(String),
    /// SQLite refused to open, configure or read it.
    #[error("SQLite error while {what}: {message}")]
    Sqlite {
        what: &'static str,
        message: String,
        #[source]
        source: rusqlite::Error,
    },
}

impl SqliteOpenError {
    fn sqlite(what: &'static str) -> impl Fn(rusqlite::Error) -> SqliteOpenError {
        move |source| SqliteOpenError::Sqlite {
            what,
            message: source.to_string().replace(['\n', '\r'], " "),
            source,
        }
    }
}

/// Refuses anything but a regular file that starts with the SQLite header and is as long as
/// the header says (a truncated upload would otherwise read as zero-filled pages).
pub fn check_file(path: &Path) -> Result<(), SqliteOpenError> {
    let md = std::fs::symlink_metadata(path)?;
    if md.file_type().is_symlink() {
        return Err(SqliteOpenError::NotSqlite(
            "the path is a symbolic link".into(),
        ));
    }
    if !md.is_file() {
        return Err(SqliteOpenError::NotSqlite("not a regular file".into()));
    }
    let mut head = Vec::with_capacity(100);
    std::fs::File::open(path)?
        .take(100)
        .read_to_end(&mut head)?;
    if !head.starts_with(SQLITE_HEADER) {
        return Err(SqliteOpenError::NotSqlite(
            "not an SQLite database (bad header)".into(),
        ));
    }
    let Some(head) = head.first_chunk::<100>() else {
        return Err(SqliteOpenError::NotSqlite(format!(
            "truncated SQLite file ({} bytes)",
            head.len()
        )));
    };
    let be32 = |o: usize| u32::from_be_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536u64,
        p if p >= 512 && p.is_power_of_two() => u64::from(p),
        p => {
            return Err(SqliteOpenError::NotSqlite(format!(
                "invalid SQLite page size {p}"
            )));
        }
    };
    // Opened immutable, SQLite does not look at a write-ahead log: in WAL mode (read and write
    // versions 2), changes an application has not checkpointed yet would be missed silently.
    if head[18] == 2 || head[19] == 2 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(SqliteOpenError::NotSqlite(
                "it has changes still in its -wal file (an application has it open): close it there, or checkpoint it, and retry".into(),
            ));
        }
    }
    // The in-header page count is valid when the change counter matches version-valid-for.
    let pages = u64::from(be32(28));
    if pages > 0 && be32(24) == be32(92) && md.len() < pages.saturating_mul(page_size) {
        return Err(SqliteOpenError::Truncated(format!(
            "truncated: the header says {pages} pages of {page_size} bytes, the file has {} bytes",
            md.len()
        )));
    }
    if md.len() < page_size {
        return Err(SqliteOpenError::Truncated(format!(
            "truncated: {} bytes, less than one {page_size}-byte page",
            md.len()
        )));
    }
    Ok(())
}

/// `file:` URI for `path` with everything but unreserved characters percent-encoded, opening
/// it read-only and immutable.
fn file_uri(path: &Path) -> Result<String, io::Error> {
    let abs = std::path::absolute(path)?;
    let mut uri = String::from("file:");
    for &b in abs.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    if !uri.starts_with("file:/") {
        // Windows drive paths: file:/C:/...
        uri.insert(5, '/');
    }
    uri.push_str("?mode=ro&immutable=1");
    Ok(uri)
}

/// Opens the SQLite file at `path` read-only and hardened (see the module documentation).
/// With a `deadline` (the instant, and the duration it was set from, for messages), SQLite
/// interrupts any statement still running at that instant. The schema is read before this
/// returns, so a file SQLite cannot make sense of fails here.
///
/// Call [`check_file`] first: SQLite reads a truncated file as if it were zero-filled.
pub fn open_read_only(
    path: &Path,
    deadline: Option<(Instant, Duration)>,
) -> Result<Connection, SqliteOpenError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE;
    let uri = file_uri(path)?;
    let conn = Connection::open_with_flags(Path::new(&uri), flags)
        .map_err(SqliteOpenError::sqlite("opening"))?;
    let configuring = SqliteOpenError::sqlite("configuring SQLite");
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .map_err(&configuring)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(&configuring)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
        .map_err(&configuring)?;
    conn.pragma_update(None, "trusted_schema", false)
        .map_err(&configuring)?;
    // Catch more corruption while reading b-tree cells; memory-map nothing.
    conn.pragma_update(None, "cell_size_check", true)
        .map_err(&configuring)?;
    conn.pragma_update(None, "mmap_size", 0)
        .map_err(&configuring)?;
    conn.pragma_update(None, "temp_store", "FILE")
        .map_err(&configuring)?;
    if let Some((at, _)) = deadline {
        conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= at))
            .map_err(&configuring)?;
    }
    // Reading the schema is the first real access: a damaged file fails here.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(SqliteOpenError::sqlite("reading the schema"))?;
    Ok(conn)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_reserved_characters() {
        let u = file_uri(Path::new("/tmp/a b?c#d%e.mbtiles")).unwrap();
        assert_eq!(u, "file:/tmp/a%20b%3Fc%23d%25e.mbtiles?mode=ro&immutable=1");
    }
}
