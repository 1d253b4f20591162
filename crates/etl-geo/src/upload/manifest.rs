//! A TAK data package's `MANIFEST/manifest.xml`: its settings and what it says about each
//! entry.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::ReadError;
use crate::formats::xml::XmlReader;

/// What a data package's `MANIFEST/manifest.xml` says.
#[derive(Debug, Default)]
pub struct Manifest {
    pub settings: Map<String, Value>,
    pub contents: Vec<Content>,
}

#[derive(Debug)]
pub struct Content {
    pub entry: String,
    pub ignore: bool,
    pub uid: Option<String>,
}

/// Reads `<Configuration><Parameter name value/>` into settings and each
/// `<Contents><Content zipEntry ignore><Parameter name="uid" value/>` into contents.
pub fn read_manifest(path: &Path, max_xml_text: usize) -> Result<Manifest, ReadError> {
    use quick_xml::events::Event;
    let file = File::open(path)?;
    let mut xml = XmlReader::new(BufReader::new(file), max_xml_text);
    let mut buf = Vec::new();
    let mut manifest = Manifest::default();
    let mut section = String::new();
    let mut root_seen = false;
    loop {
        let at = xml.position();
        match xml.next(&mut buf)? {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.local_name().as_ref().to_owned();
                let attr = |key: &str| -> Option<String> {
                    e.attributes().flatten().find_map(|a| {
                        (a.key.local_name().as_ref() == key)
                            .then(|| {
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .ok()
                                    .map(|v| v.into_owned())
                            })
                            .flatten()
                    })
                };
                if !root_seen {
                    root_seen = true;
                    if name != "MissionPackageManifest" {
                        return Err(ReadError::invalid(
                            at,
                            format!("not a data package manifest: root element <{name}>"),
                        ));
                    }
                    continue;
                }
                match name.as_str() {
                    "Configuration" | "Contents" => section = name,
                    "Content" if section == "Contents" => manifest.contents.push(Content {
                        entry: attr("zipEntry").unwrap_or_default().replace('\\', "/"),
                        ignore: attr("ignore").is_some_and(|v| v == "true"),
                        uid: None,
                    }),
                    "Parameter" => {
                        let (Some(key), Some(value)) = (attr("name"), attr("value")) else {
                            continue;
                        };
                        if section == "Configuration" {
                            let value = match value.as_str() {
                                "true" => Value::Bool(true),
                                "false" => Value::Bool(false),
                                _ => Value::String(value),
                            };
                            manifest.settings.insert(key, value);
                        } else if let Some(content) = manifest.contents.last_mut()
                            && key == "uid"
                        {
                            content.uid = Some(value);
                        }
                    }
                    _ => {}
                }
            }
            Event::End(e) => {
                if matches!(e.local_name().as_ref(), "Configuration" | "Contents") {
                    section.clear();
                }
            }
            Event::Eof => {
                if xml.depth() > 0 {
                    return Err(ReadError::syntax(at, "unexpected end of the manifest"));
                }
                if !root_seen {
                    return Err(ReadError::syntax(at, "empty manifest"));
                }
                return Ok(manifest);
            }
            _ => {}
        }
    }
}
