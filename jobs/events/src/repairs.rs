//! The repaired records of one import: counted for the manifest (`repaired`, and `repairs` by
//! kind), and each kind logged once, with the first record it was made to, so a file of a
//! million one-point tracks does not log a million lines.

use etl_geo::{Repair, Repairs};
use serde_json::{Map, Value, json};

/// Repaired records of one import, in total and by kind.
#[derive(Debug, Default)]
pub(crate) struct RepairTally {
    /// Accepted records with at least one repair.
    repaired: u64,
    /// Records with each kind, in [`Repair::ALL`] order.
    by_kind: [u64; Repair::ALL.len()],
}

impl RepairTally {
    /// Counts one accepted record's repairs; logs each kind the first time it is seen.
    pub(crate) fn note(
        &mut self,
        repairs: Repairs,
        input: &str,
        layer: Option<&String>,
        line: u64,
    ) {
        if repairs.is_empty() {
            return;
        }
        self.repaired += 1;
        for (kind, n) in Repair::ALL.iter().zip(self.by_kind.iter_mut()) {
            if !repairs.contains(*kind) {
                continue;
            }
            if *n == 0 {
                tracing::warn!(
                    input = %input,
                    layer = layer.map_or("", String::as_str),
                    line,
                    repair = kind.name(),
                    "repaired: {} (first such record; the manifest counts them all)",
                    kind.describe()
                );
            }
            *n += 1;
        }
    }

    /// `repaired` (always) and `repairs` (by kind, when there were any) into the manifest.
    pub(crate) fn into_manifest(self, manifest: &mut Map<String, Value>) {
        manifest.insert("repaired".into(), json!(self.repaired));
        if self.repaired > 0 {
            let kinds: Map<String, Value> = Repair::ALL
                .iter()
                .zip(self.by_kind)
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.name().to_owned(), json!(n)))
                .collect();
            manifest.insert("repairs".into(), Value::Object(kinds));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_and_kinds() {
        let mut t = RepairTally::default();
        let layer = "tracks".to_owned();
        t.note(Repairs::NONE, "a.gpx", Some(&layer), 1);
        t.note(Repair::LineToPoint.into(), "a.gpx", Some(&layer), 2);
        let mut both = Repairs::from(Repair::LineToPoint);
        both.insert(Repair::PartsDropped);
        t.note(both, "a.gpx", Some(&layer), 3);
        let mut m = Map::new();
        t.into_manifest(&mut m);
        assert_eq!(
            Value::Object(m),
            json!({"repaired": 2, "repairs": {"line_to_point": 2, "parts_dropped": 1}})
        );
        let mut m = Map::new();
        RepairTally::default().into_manifest(&mut m);
        assert_eq!(Value::Object(m), json!({"repaired": 0}));
    }
}
