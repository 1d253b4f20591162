//! The preview pages: `GET /`, the archives as a table, and `GET /view/{name}`, one archive on a
//! MapLibre map (web/src/preview.js, embedded by [`crate::assets`]).
//!
//! Every interpolated text is HTML-escaped, archive names are percent-encoded as path segments
//! and the token as a query value. The map page hands its URLs to the script as JSON in
//! `<script type="application/json" id="etl-preview-config">`, never as JavaScript source. All URLs
//! are relative to the server root:
//! - `/assets/preview.css`, `/assets/preview.js`
//! - `/tiles/{name}`: TileJSON 3.0.0
//! - `/archives/{name}.pmtiles`: the raw archive, read with HTTP Range requests by the pmtiles
//!   library (header and metadata in the side panel)
//!
//! With a token each URL gets `?token=…`. Behind a path prefix (an API Gateway stage such as
//! `/prod`) use [`index_page_at`] and [`view_page_at`], which put the prefix before every URL.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

/// Everything but the unreserved characters of RFC 3986 is encoded, in path segments (so a `/` in
/// a name stays inside its segment) and in the token.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One row of the index page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedArchive {
    /// The name in URLs, without `.pmtiles`.
    pub name: String,
    pub bytes: u64,
    /// e.g. `mvt`, `png`.
    pub tile_type: String,
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// Why the archive cannot be served (e.g. a bad header); the row then has no links.
    pub error: Option<String>,
}

/// HTML-escapes `text` for element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// `path` with `?token=…` appended when there is a token.
fn with_token(path: &str, token: Option<&str>) -> String {
    match token {
        Some(token) => format!("{path}?token={}", encode_component(token)),
        None => path.to_owned(),
    }
}

/// A path prefix such as `/prod` as it goes before the URLs: each segment percent-encoded, a
/// leading `/`, no trailing `/`; empty for none.
fn normalize_base(base: &str) -> String {
    base.split('/')
        .filter(|segment| !segment.is_empty())
        .fold(String::new(), |mut out, segment| {
            out.push('/');
            out.push_str(&encode_component(segment));
            out
        })
}

/// `/view/{name}` with the token.
pub fn view_url(name: &str, token: Option<&str>) -> String {
    view_url_at("", name, token)
}

/// `/tiles/{name}` (TileJSON) with the token.
pub fn tilejson_url(name: &str, token: Option<&str>) -> String {
    tilejson_url_at("", name, token)
}

/// `/archives/{name}.pmtiles` (the raw archive, Range requests) with the token.
pub fn archive_url(name: &str, token: Option<&str>) -> String {
    archive_url_at("", name, token)
}

/// `/assets/{file}` with the token.
pub fn asset_url(file: &str, token: Option<&str>) -> String {
    asset_url_at("", file, token)
}

fn view_url_at(base: &str, name: &str, token: Option<&str>) -> String {
    with_token(&format!("{base}/view/{}", encode_component(name)), token)
}

fn tilejson_url_at(base: &str, name: &str, token: Option<&str>) -> String {
    with_token(&format!("{base}/tiles/{}", encode_component(name)), token)
}

fn archive_url_at(base: &str, name: &str, token: Option<&str>) -> String {
    with_token(
        &format!("{base}/archives/{}.pmtiles", encode_component(name)),
        token,
    )
}

fn asset_url_at(base: &str, file: &str, token: Option<&str>) -> String {
    with_token(&format!("{base}/assets/{}", encode_component(file)), token)
}

fn index_url_at(base: &str, token: Option<&str>) -> String {
    with_token(&format!("{base}/"), token)
}

/// JSON for a `<script type="application/json">` element: `<` as `\u003c`, so that neither
/// `</script>` nor `<!--` can end or change the element.
fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Display only: the f64 rounding does not matter.
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn head(out: &mut String, base: &str, title: &str, token: Option<&str>) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"icon\" href=\"data:,\">\n\
         <link rel=\"stylesheet\" href=\"{}\">\n",
        escape_html(title),
        escape_html(&asset_url_at(base, "preview.css", token)),
    );
}

/// `GET /`: the archives with their size, tile type and zooms, each linking to its map view and
/// its TileJSON.
pub fn index_page(archives: &[ListedArchive], token: Option<&str>) -> String {
    index_page_at("", archives, token)
}

/// [`index_page`] under a path prefix such as `/prod` (empty for none).
pub fn index_page_at(base: &str, archives: &[ListedArchive], token: Option<&str>) -> String {
    let base = normalize_base(base);
    let base = base.as_str();
    let mut out = String::with_capacity(2048 + archives.len() * 400);
    head(&mut out, base, "Tile archives · etl-tiles", token);
    out.push_str("</head>\n<body class=\"etl-index\">\n<main>\n<h1>Tile archives</h1>\n");
    if archives.is_empty() {
        out.push_str(
            "<p class=\"etl-empty\">No archives: there are no <code>.pmtiles</code> files \
             where this server looks for them.</p>\n",
        );
    } else {
        let count = archives.len();
        let _ = writeln!(
            out,
            "<p class=\"etl-muted\">{count} archive{}. Open one to see it on a map.</p>",
            if count == 1 { "" } else { "s" }
        );
        out.push_str(
            "<table>\n<thead><tr><th>Archive</th><th class=\"etl-num\">Size</th><th>Tiles</th><th class=\"etl-num\">Zoom</th>\
             <th>TileJSON</th></tr></thead>\n<tbody>\n",
        );
        for archive in archives {
            let name = escape_html(&archive.name);
            let size = format_bytes(archive.bytes);
            match &archive.error {
                None => {
                    let _ = writeln!(
                        out,
                        "<tr><td><a href=\"{}\">{name}</a></td><td class=\"etl-num\">{size}</td>\
                         <td>{}</td><td class=\"etl-num\">{}–{}</td>\
                         <td><a href=\"{}\">TileJSON</a></td></tr>",
                        escape_html(&view_url_at(base, &archive.name, token)),
                        escape_html(&archive.tile_type),
                        archive.min_zoom,
                        archive.max_zoom,
                        escape_html(&tilejson_url_at(base, &archive.name, token)),
                    );
                }
                Some(error) => {
                    let _ = writeln!(
                        out,
                        "<tr><td>{name}</td><td class=\"etl-num\">{size}</td>\
                         <td class=\"etl-error\" colspan=\"3\">{}</td></tr>",
                        escape_html(error),
                    );
                }
            }
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// `GET /view/{name}`: the map page of one archive. The script reads its URLs from the
/// `etl-preview-config` JSON element.
pub fn view_page(name: &str, token: Option<&str>) -> String {
    view_page_at("", name, token)
}

/// [`view_page`] under a path prefix such as `/prod` (empty for none).
pub fn view_page_at(base: &str, name: &str, token: Option<&str>) -> String {
    let base = normalize_base(base);
    let base = base.as_str();
    let index = index_url_at(base, token);
    let config = json!({
        "name": name,
        "tilejson": tilejson_url_at(base, name, token),
        "archive": archive_url_at(base, name, token),
        "index": index,
        "token": token,
    });
    let html_name = escape_html(name);
    let mut out = String::with_capacity(4096);
    head(
        &mut out,
        base,
        &format!("{name} · etl-tiles preview"),
        token,
    );
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"etl-preview-config\">{}</script>\n\
         <script src=\"{}\" defer></script>\n\
         </head>\n<body class=\"etl-view\">\n<div id=\"etl-app\">\n\
         <div id=\"etl-map-wrap\">\n\
         <div id=\"etl-map\" role=\"region\" aria-label=\"Map of {html_name}\"></div>\n\
         <div id=\"etl-loading\" role=\"status\">Loading…</div>\n\
         <div id=\"etl-error\" role=\"alert\" hidden></div>\n\
         </div>\n\
         <aside id=\"etl-panel\">\n\
         <header><a href=\"{}\">← All archives</a>\n<h1>{html_name}</h1></header>\n\
         <section id=\"etl-summary\"><h2>Tiles</h2><p class=\"etl-muted\">Loading the TileJSON…</p></section>\n\
         <section id=\"etl-layers\"><h2>Layers</h2><p class=\"etl-muted\">Loading the TileJSON…</p></section>\n\
         <section id=\"etl-header\"><h2>Archive header</h2><p class=\"etl-muted\">Reading the archive…</p></section>\n\
         <section id=\"etl-metadata\"><h2>Metadata</h2><p class=\"etl-muted\">Reading the archive…</p></section>\n\
         </aside>\n</div>\n\
         <noscript><p>The map preview needs JavaScript.</p></noscript>\n\
         </body>\n</html>\n",
        script_json(&config),
        escape_html(&asset_url_at(base, "preview.js", token)),
        escape_html(&index),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(\"x\")</script> & 'q'";

    fn listed(name: &str) -> ListedArchive {
        ListedArchive {
            name: name.to_owned(),
            bytes: 23_429,
            tile_type: "mvt".to_owned(),
            min_zoom: 0,
            max_zoom: 12,
            error: None,
        }
    }

    /// The JSON in the page's config element, parsed.
    fn config_of(page: &str) -> serde_json::Value {
        let open = "<script type=\"application/json\" id=\"etl-preview-config\">";
        let start = page.find(open).expect("config element") + open.len();
        let end = start + page[start..].find("</script>").expect("end of config");
        serde_json::from_str(&page[start..end]).expect("config JSON")
    }

    #[test]
    fn escape_html_escapes_markup_and_quotes() {
        assert_eq!(
            escape_html(HOSTILE),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        assert_eq!(escape_html("plain-name_1.2 ü"), "plain-name_1.2 ü");
        assert_eq!(escape_html(""), "");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
    }

    #[test]
    fn urls_encode_names_as_segments_and_tokens_as_values() {
        assert_eq!(tilejson_url("roads", None), "/tiles/roads");
        assert_eq!(archive_url("roads", None), "/archives/roads.pmtiles");
        assert_eq!(view_url("a b/c?d#e", None), "/view/a%20b%2Fc%3Fd%23e");
        assert_eq!(
            tilejson_url("my.archive-1_x~", Some("ab.cd+ef/=&x")),
            "/tiles/my.archive-1_x~?token=ab.cd%2Bef%2F%3D%26x"
        );
        assert_eq!(
            asset_url("preview.js", Some("t")),
            "/assets/preview.js?token=t"
        );
        assert_eq!(view_url("ü", None), "/view/%C3%BC");
    }

    #[test]
    fn index_lists_archives_with_links_and_tokens() {
        let page = index_page(&[listed("roads"), listed("a b")], Some("tok en"));
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("href=\"/view/roads?token=tok%20en\""));
        assert!(page.contains("href=\"/tiles/roads?token=tok%20en\""));
        assert!(page.contains("href=\"/view/a%20b?token=tok%20en\""));
        assert!(page.contains("href=\"/assets/preview.css?token=tok%20en\""));
        assert!(page.contains("22.9 KiB"));
        assert!(page.contains("0–12"));
        assert!(page.contains("2 archives"));
        assert!(!page.contains("<script"), "the index needs no script");
    }

    #[test]
    fn index_without_token_has_plain_links() {
        let page = index_page(&[listed("roads")], None);
        assert!(page.contains("href=\"/view/roads\""));
        assert!(page.contains("href=\"/tiles/roads\""));
        assert!(!page.contains("token"));
        assert!(page.contains("1 archive."));
    }

    #[test]
    fn empty_index_says_so() {
        let page = index_page(&[], None);
        assert!(page.contains("No archives"));
        assert!(!page.contains("<table"));
    }

    #[test]
    fn index_escapes_hostile_names_types_and_errors() {
        let mut bad = listed(HOSTILE);
        bad.tile_type = "<b>png</b>".to_owned();
        let mut broken = listed("broken\"");
        broken.error = Some("<img src=x onerror=alert(1)> bad header".to_owned());
        let page = index_page(&[bad, broken], Some("\"><script>"));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;")
        );
        assert!(page.contains("&lt;b&gt;png&lt;/b&gt;"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt; bad header"));
        assert!(page.contains("broken&quot;"));
        // A broken archive gets no links.
        assert!(!page.contains("/view/broken"));
        assert!(page.contains("?token=%22%3E%3Cscript%3E"));
    }

    #[test]
    fn view_page_passes_urls_as_json_config() {
        let page = view_page("fixtures", Some("a.b+c"));
        let config = config_of(&page);
        assert_eq!(config["name"], "fixtures");
        assert_eq!(config["tilejson"], "/tiles/fixtures?token=a.b%2Bc");
        assert_eq!(
            config["archive"],
            "/archives/fixtures.pmtiles?token=a.b%2Bc"
        );
        assert_eq!(config["index"], "/?token=a.b%2Bc");
        assert_eq!(config["token"], "a.b+c");
        assert!(page.contains("<script src=\"/assets/preview.js?token=a.b%2Bc\" defer></script>"));
        assert!(page.contains("href=\"/assets/preview.css?token=a.b%2Bc\""));
        for id in [
            "etl-map",
            "etl-error",
            "etl-panel",
            "etl-layers",
            "etl-header",
            "etl-metadata",
        ] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
        }
    }

    #[test]
    fn view_page_without_token() {
        let page = view_page("fixtures", None);
        let config = config_of(&page);
        assert_eq!(config["tilejson"], "/tiles/fixtures");
        assert_eq!(config["archive"], "/archives/fixtures.pmtiles");
        assert!(config["token"].is_null());
        assert!(page.contains("<script src=\"/assets/preview.js\" defer></script>"));
        assert!(!page.contains("token="));
    }

    #[test]
    fn view_page_escapes_hostile_names_everywhere() {
        let name = "</script><script>alert(1)</script>\"'&";
        let page = view_page(name, Some("</script>"));
        // Exactly the two script elements of the page itself.
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        assert_eq!(page.matches("</script>").count(), 2, "{page}");
        assert!(page.contains(
            "<h1>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;</h1>"
        ));
        assert!(page.contains("<title>&lt;/script&gt;"));
        let config = config_of(&page);
        assert_eq!(config["name"], name);
        assert_eq!(config["token"], "</script>");
        assert_eq!(
            config["tilejson"],
            "/tiles/%3C%2Fscript%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%22%27%26?token=%3C%2Fscript%3E"
        );
    }

    #[test]
    fn pages_under_a_path_prefix() {
        for base in ["/prod", "prod/", "/prod/"] {
            let page = view_page_at(base, "roads", Some("t"));
            let config = config_of(&page);
            assert_eq!(config["tilejson"], "/prod/tiles/roads?token=t");
            assert_eq!(config["archive"], "/prod/archives/roads.pmtiles?token=t");
            assert_eq!(config["index"], "/prod/?token=t");
            assert!(page.contains("<script src=\"/prod/assets/preview.js?token=t\" defer>"));
            assert!(page.contains("href=\"/prod/assets/preview.css?token=t\""));
            let index = index_page_at(base, &[listed("roads")], None);
            assert!(index.contains("href=\"/prod/view/roads\""));
            assert!(index.contains("href=\"/prod/tiles/roads\""));
            assert!(index.contains("href=\"/prod/assets/preview.css\""));
        }
        assert_eq!(view_page_at("", "roads", None), view_page("roads", None));
        assert_eq!(view_page_at("/", "roads", None), view_page("roads", None));
        assert_eq!(normalize_base("/a\"b/<c>"), "/a%22b/%3Cc%3E");
    }

    #[test]
    fn bytes_are_readable() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KiB");
        assert_eq!(format_bytes(23_429), "22.9 KiB");
        assert_eq!(format_bytes(5 * 1024 * 1024 * 1024), "5.00 GiB");
        assert_eq!(format_bytes(u64::MAX), "16777216.0 TiB");
    }
}
