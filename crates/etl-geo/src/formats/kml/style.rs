//! KML styles to simplestyle-like properties, with togeojson's names: `stroke`,
//! `stroke-opacity`, `stroke-width`, `fill`, `fill-opacity`, `icon`, `icon-color`,
//! `icon-opacity`, `icon-scale`, `icon-heading`, `icon-offset`, `icon-offset-units`,
//! `label-color`, `label-opacity`, `label-scale`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::geometry::{js_parse_float, num_value};
use super::tree::Tree;

pub(super) type Props = Map<String, Value>;

/// Style ids (`#id`) to their properties, and StyleMap ids to the style they stand for.
#[derive(Default)]
pub(super) struct Styles {
    styles: HashMap<String, Props>,
    aliases: HashMap<String, String>,
}

/// Bounds the number of distinct styles kept (a hostile file cannot grow memory without
/// limit through styles alone).
const MAX_STYLES: usize = 100_000;

/// `#id` for `id`, as togeojson's `normalizeId`.
pub(super) fn normalize_id(id: &str) -> String {
    if id.starts_with('#') {
        id.to_owned()
    } else {
        format!("#{id}")
    }
}

impl Styles {
    pub(super) fn get(&self, id: &str) -> Option<&Props> {
        self.styles
            .get(id)
            .or_else(|| self.styles.get(self.aliases.get(id)?))
    }

    fn insert(&mut self, id: String, props: Props) {
        if self.styles.len() < MAX_STYLES || self.styles.contains_key(&id) {
            self.styles.insert(id, props);
        }
    }

    /// Registers a `Style` element (its id, or the id of its enclosing `gx:CascadingStyle`).
    pub(super) fn add_style(&mut self, tree: &Tree, node: usize, fallback_id: Option<&str>) {
        let id = tree.attr(node, "id").or(fallback_id).unwrap_or("");
        if id.is_empty() {
            return;
        }
        self.insert(normalize_id(id), extract_style(tree, node));
    }

    /// Registers a `gx:CascadingStyle` (Google Earth): its `kml:id` names the inner Style.
    pub(super) fn add_cascading(&mut self, tree: &Tree, node: usize) {
        let id = tree
            .attr(node, "kml:id")
            .or_else(|| tree.attr(node, "id"))
            .map(str::to_owned);
        if let Some(style) = tree.find(node, "Style") {
            self.add_style(tree, style, id.as_deref());
        }
    }

    /// Registers a `StyleMap`: the `normal` pair (the first pair when none is keyed
    /// `normal`), by `styleUrl` reference or inline `Style`.
    pub(super) fn add_style_map(&mut self, tree: &Tree, node: usize) {
        let id = normalize_id(tree.attr(node, "id").unwrap_or(""));
        let pairs: Vec<usize> = tree
            .children(node)
            .filter(|&c| tree.is(c, "Pair"))
            .collect();
        let pair = pairs
            .iter()
            .copied()
            .find(|&p| tree.text_of(p, "key").trim() == "normal")
            .or_else(|| pairs.first().copied());
        let Some(pair) = pair else {
            return;
        };
        let url = tree.text_of(pair, "styleUrl");
        let url = url.trim();
        if !url.is_empty() {
            if self.aliases.len() < MAX_STYLES {
                self.aliases.insert(id, normalize_id(url));
            }
        } else if let Some(style) = tree.child(pair, "Style") {
            self.insert(id, extract_style(tree, style));
        }
    }
}

/// togeojson's `fixColor`: `aabbggrr` → `#rrggbb` plus `<prefix>-opacity`; 6 or 3 hex
/// digits are kept as they are.
fn fix_color(v: &str, prefix: &str, out: &mut Props) {
    let key = if prefix == "stroke" || prefix == "fill" {
        prefix.to_owned()
    } else {
        format!("{prefix}-color")
    };
    let v = v.trim();
    let v = v.strip_prefix('#').unwrap_or(v);
    match v.len() {
        3 | 6 => {
            out.insert(key, Value::String(format!("#{v}")));
        }
        8 if v.is_ascii() => {
            let (Some(a), Some(b), Some(g), Some(r)) =
                (v.get(0..2), v.get(2..4), v.get(4..6), v.get(6..8))
            else {
                return;
            };
            let opacity =
                u8::from_str_radix(a, 16).map_or(Value::Null, |a| num_value(f64::from(a) / 255.0));
            out.insert(format!("{prefix}-opacity"), opacity);
            out.insert(key, Value::String(format!("#{r}{g}{b}")));
        }
        _ => {}
    }
}

fn numeric(tree: &Tree, node: usize, source: &str, target: &str, out: &mut Props) {
    if let Some(i) = tree.find(node, source)
        && let Some(v) = js_parse_float(&tree.text(i))
    {
        out.insert(target.to_owned(), num_value(v));
    }
}

fn color(tree: &Tree, node: usize, prefix: &str, out: &mut Props) {
    if let Some(c) = tree.find(node, "color") {
        fix_color(&tree.text(c), prefix, out);
    }
}

/// The `icon` property from the first `Icon`'s `href`.
pub(super) fn icon_href(tree: &Tree, node: usize, out: &mut Props) {
    if let Some(icon) = tree.find(node, "Icon") {
        let href = tree.text_of(icon, "href");
        if !href.is_empty() {
            out.insert("icon".to_owned(), Value::String(href.into_owned()));
        }
    }
}

/// togeojson's `extractStyle`: the first PolyStyle, LineStyle, LabelStyle and IconStyle
/// found under `node` (a Style, or a Placemark for inline styles).
pub(super) fn extract_style(tree: &Tree, node: usize) -> Props {
    let mut out = Props::new();
    if let Some(poly) = tree.find(node, "PolyStyle") {
        color(tree, poly, "fill", &mut out);
        if tree.find(poly, "fill").is_some_and(|f| tree.text(f) == "0") {
            out.insert("fill-opacity".to_owned(), Value::from(0));
        }
        if tree
            .find(poly, "outline")
            .is_some_and(|f| tree.text(f) == "0")
        {
            out.insert("stroke-opacity".to_owned(), Value::from(0));
        }
    }
    if let Some(line) = tree.find(node, "LineStyle") {
        color(tree, line, "stroke", &mut out);
        numeric(tree, line, "width", "stroke-width", &mut out);
    }
    if let Some(label) = tree.find(node, "LabelStyle") {
        color(tree, label, "label", &mut out);
        numeric(tree, label, "scale", "label-scale", &mut out);
    }
    if let Some(icon) = tree.find(node, "IconStyle") {
        color(tree, icon, "icon", &mut out);
        numeric(tree, icon, "scale", "icon-scale", &mut out);
        numeric(tree, icon, "heading", "icon-heading", &mut out);
        if let Some(hot) = tree.find(icon, "hotSpot") {
            let x = tree.attr(hot, "x").and_then(js_parse_float);
            let y = tree.attr(hot, "y").and_then(js_parse_float);
            if let (Some(x), Some(y)) = (x, y) {
                out.insert(
                    "icon-offset".to_owned(),
                    Value::Array(vec![num_value(x), num_value(y)]),
                );
                let unit = |k| Value::String(tree.attr(hot, k).unwrap_or("").to_owned());
                out.insert(
                    "icon-offset-units".to_owned(),
                    Value::Array(vec![unit("xunits"), unit("yunits")]),
                );
            }
        }
        icon_href(tree, icon, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors() {
        let mut p = Props::new();
        fix_color("7f0000ff", "stroke", &mut p);
        assert_eq!(p["stroke"], "#ff0000");
        assert_eq!(p["stroke-opacity"], serde_json::json!(127.0 / 255.0));
        let mut p = Props::new();
        fix_color("#ff0", "label", &mut p);
        assert_eq!(p["label-color"], "#ff0");
        assert!(p.get("label-opacity").is_none());
    }
}
