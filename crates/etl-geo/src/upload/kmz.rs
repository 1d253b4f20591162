//! A KMZ upload: its document, the `.kml` files of the archive the document links to, and its
//! other entries as assets.

use super::{Asset, Upload, file_stem, in_part};
use crate::archive::Entry;
use crate::error::ReadError;
use crate::format::Format;
use crate::formats::kml::links::{network_links, resolve};

/// How deep NetworkLinks inside a KMZ are followed (the document's own links are depth 1).
pub const MAX_LINK_DEPTH: usize = 3;

impl Upload {
    /// A KMZ: `doc.kml` at the root, else the first `.kml` at the root, else the first
    /// `.kml` anywhere; the `.kml` entries its `NetworkLink`s name are layers too (named after
    /// their files); every other entry is an asset.
    pub(super) fn add_kmz(
        &mut self,
        stem: &str,
        label_prefix: Option<&str>,
        entries: &[Entry],
    ) -> Result<(), ReadError> {
        let is_kml = |e: &&Entry| e.name.to_ascii_lowercase().ends_with(".kml");
        let doc = entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case("doc.kml"))
            .or_else(|| {
                entries
                    .iter()
                    .filter(is_kml)
                    .find(|e| !e.name.contains('/'))
            })
            .or_else(|| entries.iter().find(is_kml))
            .ok_or_else(|| ReadError::Refused("KMZ without a .kml document".to_owned()))?;
        let prefix = label_prefix.map(|p| format!("{p}/")).unwrap_or_default();
        // The .kml files of the archive the document links to (a super-overlay, a multi-file
        // export) are layers of their own, as GDAL's LIBKML driver reads them. The document is
        // scanned for links only when the archive holds another .kml for them to name.
        let mut linked: Vec<&Entry> = Vec::new();
        if entries.iter().filter(is_kml).any(|e| e.name != doc.name) {
            // Links of linked documents too, to MAX_LINK_DEPTH (CloudTAK follows 3 levels).
            let mut queue = std::collections::VecDeque::from([(doc, 0usize)]);
            while let Some((at, depth)) = queue.pop_front() {
                if depth >= MAX_LINK_DEPTH {
                    continue;
                }
                let links = network_links(&at.path, self.opts.read.max_xml_text)
                    .map_err(|e| in_part(&format!("{prefix}{}", at.name), e))?;
                for href in links {
                    let Some(name) = resolve(&at.name, &href) else {
                        continue;
                    };
                    if let Some(e) = entries.iter().find(|e| e.name == name)
                        && e.name != doc.name
                        && !linked.iter().any(|l| l.name == e.name)
                    {
                        linked.push(e);
                        queue.push_back((e, depth + 1));
                    }
                }
            }
        }
        for e in entries {
            if e.name != doc.name && !linked.iter().any(|l| l.name == e.name) {
                self.assets.push(Asset {
                    name: format!("{prefix}{}", e.name),
                    bytes: e.bytes,
                    uid: None,
                });
            }
        }
        self.push_plain(
            Some(format!("{prefix}{}", doc.name)),
            doc.path.clone(),
            Format::Kml,
            stem,
        );
        for e in linked {
            self.push_plain(
                Some(format!("{prefix}{}", e.name)),
                e.path.clone(),
                Format::Kml,
                file_stem(&e.name),
            );
        }
        Ok(())
    }
}
