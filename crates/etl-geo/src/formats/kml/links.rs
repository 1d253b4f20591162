//! The files a KMZ's document links to with `NetworkLink`s, so that a KMZ whose `doc.kml` only
//! points at the `.kml` files packed beside it (a super-overlay, a multi-file export) is read
//! the way GDAL's LIBKML driver reads it: each linked file of the archive is a layer.
//!
//! Links are followed to depth 3 inside the archive (as CloudTAK does; LIBKML follows one
//! level), and only relative ones naming a `.kml` inside the same archive; nothing is fetched
//! here (etl-events fetches remote documents and hands them over as
//! [`crate::UploadOptions::linked`]).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use quick_xml::events::Event;

use super::tree::local_name;
use crate::error::ReadError;
use crate::formats::xml::XmlReader;

/// The most links followed from one document.
const MAX_LINKS: usize = 10_000;

/// The `href`s of the document's `NetworkLink`s (in `Link` or the older `Url`), in order.
pub fn network_links(path: &Path, max_xml_text: usize) -> Result<Vec<String>, ReadError> {
    hrefs_within(path, max_xml_text, "NetworkLink", &["Link", "Url"], false)
}

/// The distinct `href`s of the document's `IconStyle` icons, in order of first use: what a
/// placemark's `icon` property will hold.
pub fn icon_hrefs(path: &Path, max_xml_text: usize) -> Result<Vec<String>, ReadError> {
    hrefs_within(path, max_xml_text, "IconStyle", &["Icon"], true)
}

/// The texts of `href` elements inside an `inner` element inside an `outer` one (at most
/// [`MAX_LINKS`], each once when `distinct`).
fn hrefs_within(
    path: &Path,
    max_xml_text: usize,
    outer: &str,
    inner: &[&str],
    distinct: bool,
) -> Result<Vec<String>, ReadError> {
    let file = File::open(path)?;
    let mut xml = XmlReader::new(BufReader::new(file), max_xml_text);
    let mut buf = Vec::new();
    let mut out: Vec<String> = Vec::new();
    // Depths at which the outer element and, inside it, an inner one are open.
    let mut in_outer: Option<usize> = None;
    let mut in_inner: Option<usize> = None;
    loop {
        match xml.next(&mut buf)? {
            Event::Start(e) => {
                let name = e.name().into_inner().to_owned();
                let depth = xml.depth();
                let local = local_name(&name);
                if local == outer && in_outer.is_none() {
                    in_outer = Some(depth);
                } else if in_outer.is_some() && in_inner.is_none() && inner.contains(&local) {
                    in_inner = Some(depth);
                } else if local == "href" && in_inner.is_some() {
                    let href = xml.read_text(&mut buf)?;
                    let href = href.trim();
                    if !href.is_empty()
                        && out.len() < MAX_LINKS
                        && !(distinct && out.iter().any(|h| h == href))
                    {
                        out.push(href.to_owned());
                    }
                }
            }
            Event::End(_) => {
                let depth = xml.depth();
                if in_inner.is_some_and(|d| depth < d) {
                    in_inner = None;
                }
                if in_outer.is_some_and(|d| depth < d) {
                    in_outer = None;
                }
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

/// The archive entry a link names, relative to the document at `doc` (an entry name): `None`
/// for an absolute or remote link, one that climbs out of the archive, or one that is not a
/// `.kml`.
pub fn resolve(doc: &str, href: &str) -> Option<String> {
    let href = href.split(['?', '#']).next().unwrap_or(href);
    if href.contains("://") || href.starts_with('/') || href.contains('\\') {
        return None;
    }
    if !href.to_ascii_lowercase().ends_with(".kml") {
        return None;
    }
    let mut parts: Vec<&str> = doc.split('/').collect();
    parts.pop();
    for segment in href.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_of_the_document() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("doc.kml");
        std::fs::write(
            &doc,
            r#"<kml><Document>
<NetworkLink><Link><href> 0/0/0.kml </href></Link></NetworkLink>
<NetworkLink><Url><href>http://example.org/x.kml</href></Url></NetworkLink>
<Placemark><Style><IconStyle><Icon><href>icon.png</href></Icon></IconStyle></Style></Placemark>
<kml:NetworkLink xmlns:kml="http://www.opengis.net/kml/2.2"><kml:Link><kml:href>b.kml</kml:href></kml:Link></kml:NetworkLink>
</Document></kml>"#,
        )
        .unwrap();
        assert_eq!(
            network_links(&doc, 1 << 20).unwrap(),
            ["0/0/0.kml", "http://example.org/x.kml", "b.kml"]
        );
    }

    #[test]
    fn icons_of_the_document() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("doc.kml");
        std::fs::write(
            &doc,
            r#"<kml><Document>
<Style id="a"><IconStyle><Icon><href> files/a.png </href></Icon></IconStyle></Style>
<GroundOverlay><Icon><href>overlay.jpg</href></Icon></GroundOverlay>
<Placemark><Style><IconStyle><Icon><href>http://h/b.png?x=1</href></Icon></IconStyle></Style></Placemark>
<Placemark><Style><IconStyle><Icon><href>files/a.png</href></Icon></IconStyle></Style></Placemark>
</Document></kml>"#,
        )
        .unwrap();
        assert_eq!(
            icon_hrefs(&doc, 1 << 20).unwrap(),
            ["files/a.png", "http://h/b.png?x=1"]
        );
    }

    #[test]
    fn only_relative_kml_inside_the_archive() {
        assert_eq!(resolve("doc.kml", "0/0/0.kml"), Some("0/0/0.kml".into()));
        assert_eq!(resolve("a/doc.kml", "../b.kml#x"), Some("b.kml".into()));
        assert_eq!(resolve("a/doc.kml", "./c/d.KML"), Some("a/c/d.KML".into()));
        assert_eq!(resolve("doc.kml", "../up.kml"), None);
        assert_eq!(resolve("doc.kml", "http://h/x.kml"), None);
        assert_eq!(resolve("doc.kml", "/abs.kml"), None);
        assert_eq!(resolve("doc.kml", "image.png"), None);
    }
}
