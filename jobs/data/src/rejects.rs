//! Rejected features: why each was refused, written as NDJSON (`input`, `line`, `ordinal`, `reason`).

use std::io::Write;

use etl_core::JobError;
use etl_core::store::{Location, ObjectWriter, Store};
use etl_geo::Record;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    pub input: String,
    pub line: u64,
    pub ordinal: u64,
    pub reason: String,
}

impl Reject {
    pub fn new(input: &str, rec: &Record, reason: String) -> Reject {
        Reject {
            input: input.to_string(),
            line: rec.line,
            ordinal: rec.ordinal,
            reason,
        }
    }
}

/// Where rejects go as they happen: an NDJSON object written atomically (it appears whole,
/// or not at all, on [`RejectsSink::commit`]), or nowhere when `--rejects` is not given.
/// Streaming keeps memory flat however many features a file rejects.
pub struct RejectsSink {
    writer: Option<Box<dyn ObjectWriter>>,
    location: String,
    count: u64,
}

impl RejectsSink {
    pub async fn open(store: &Store, url: Option<&str>) -> Result<RejectsSink, JobError> {
        let Some(url) = url else {
            return Ok(RejectsSink {
                writer: None,
                location: String::new(),
                count: 0,
            });
        };
        let loc = Location::parse(url).map_err(JobError::from)?;
        let writer = store.writer(&loc).await.map_err(JobError::from)?;
        Ok(RejectsSink {
            writer: Some(writer),
            location: loc.to_string(),
            count: 0,
        })
    }

    /// Appends one reject. Blocking (an S3 part upload may happen): call from a blocking thread.
    pub fn push(&mut self, r: &Reject) -> Result<(), JobError> {
        self.count += 1;
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let line = serde_json::to_string(r).unwrap_or_default();
        w.write_all(line.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            .map_err(|e| JobError::temporary(format!("{}: {e}", self.location)))
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Makes the rejects object appear; returns its location, if one was asked for.
    pub fn commit(self) -> Result<Option<String>, JobError> {
        match self.writer {
            None => Ok(None),
            Some(w) => {
                w.commit().map_err(JobError::from)?;
                Ok(Some(self.location))
            }
        }
    }
}
