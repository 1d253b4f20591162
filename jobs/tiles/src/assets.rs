//! The preview's static assets, bundled by build.rs (esbuild over web/src) and embedded here: no
//! CDN and no files at run time.

use std::sync::LazyLock;

use xxhash_rust::xxh3::xxh3_64;

/// One embedded file with what a response needs.
#[derive(Debug)]
pub struct Asset {
    /// The `Content-Type` header value.
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A strong, quoted `ETag` header value: the xxh3 of the body in hex.
    pub etag: String,
}

const PREVIEW_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/dist/preview.js"));
const PREVIEW_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/dist/preview.css"));

static ASSETS: LazyLock<[(&str, Asset); 2]> = LazyLock::new(|| {
    [
        (
            "preview.js",
            new_asset("text/javascript; charset=utf-8", PREVIEW_JS),
        ),
        (
            "preview.css",
            new_asset("text/css; charset=utf-8", PREVIEW_CSS),
        ),
    ]
});

fn new_asset(content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        content_type,
        body,
        etag: format!("\"{:016x}\"", xxh3_64(body)),
    }
}

/// The asset served as `/assets/{file}`: `preview.js` or `preview.css`; None for anything else.
pub fn asset(file: &str) -> Option<&'static Asset> {
    ASSETS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, asset)| asset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_assets_are_embedded_and_non_empty() {
        let js = asset("preview.js").expect("preview.js");
        let css = asset("preview.css").expect("preview.css");
        assert!(js.body.len() > 100_000, "{} bytes of JS", js.body.len());
        assert!(css.body.len() > 1_000, "{} bytes of CSS", css.body.len());
        assert!(js.content_type.starts_with("text/javascript"));
        assert!(css.content_type.starts_with("text/css"));
    }

    #[test]
    fn the_bundle_holds_maplibre_pmtiles_and_our_code() {
        let js = String::from_utf8_lossy(asset("preview.js").expect("preview.js").body);
        assert!(js.contains("MapLibre GL JS"), "no MapLibre license banner");
        assert!(js.contains("maplibregl-"), "no MapLibre class names");
        assert!(js.contains("etl-preview-config"), "not our entry point");
        assert!(
            js.contains("Wrong magic number for PMTiles archive"),
            "no pmtiles"
        );
        let css = String::from_utf8_lossy(asset("preview.css").expect("preview.css").body);
        assert!(css.contains(".maplibregl-map"), "no MapLibre CSS");
        assert!(css.contains("#etl-panel"), "not our CSS");
    }

    #[test]
    fn etags_are_strong_quoted_xxh3() {
        for name in ["preview.js", "preview.css"] {
            let a = asset(name).expect(name);
            assert_eq!(a.etag, format!("\"{:016x}\"", xxh3_64(a.body)));
            assert!(a.etag.len() == 18 && a.etag.starts_with('"') && a.etag.ends_with('"'));
        }
        assert_ne!(
            asset("preview.js").expect("js").etag,
            asset("preview.css").expect("css").etag
        );
    }

    #[test]
    fn unknown_names_give_none() {
        for name in [
            "",
            "preview",
            "PREVIEW.JS",
            "../preview.js",
            "preview.js.map",
            "index.html",
        ] {
            assert!(asset(name).is_none(), "{name}");
        }
    }
}
