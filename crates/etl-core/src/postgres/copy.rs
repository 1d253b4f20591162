//! `COPY … FROM STDIN` of pre-encoded rows.

use sqlx::PgConnection;

use super::PgError;

/// Streams `data` (complete COPY rows in the statement's format) through `statement`, in chunks
/// so a large batch does not become one huge protocol message. Returns the rows copied.
pub async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    data: &[u8],
) -> Result<u64, PgError> {
    const CHUNK: usize = 1 << 20;
    let mut copy = conn
        .copy_in_raw(statement)
        .await
        .map_err(|e| PgError::sql("starting COPY", e))?;
    for chunk in data.chunks(CHUNK) {
        if let Err(e) = copy.send(chunk).await {
            let _ = copy.abort("send failed").await;
            return Err(PgError::sql("sending COPY data", e));
        }
    }
    copy.finish()
        .await
        .map_err(|e| PgError::sql("finishing COPY", e))
}
