//! KML geometry: coordinate text, Point / LineString / LinearRing / Polygon /
//! MultiGeometry / gx:Track / gx:MultiTrack, and GroundOverlay boxes.

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use serde_json::Value;

use super::tree::Tree;
use crate::formats::excerpt;
use crate::repair::{Repairs, close_ring as close_noted};

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Parses KML `coordinates` text: tuples `lon,lat[,alt]` separated by whitespace
/// (whitespace next to a comma is tolerated), appending `lon/lat` to `out` (altitude and
/// any further values are dropped). Works on the text slice directly: no allocation
/// besides `out`.
pub(super) fn parse_coordinates(text: &str, out: &mut Vec<Coord<f64>>) -> Result<(), String> {
    let b = text.as_bytes();
    let n = b.len();
    let mut i = 0;
    loop {
        while i < n && b.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        if i >= n {
            return Ok(());
        }
        let tuple_start = i;
        let mut vals = [0f64; 2];
        let mut count = 0usize;
        loop {
            let start = i;
            while i < n && b.get(i).copied().is_some_and(|c| !is_ws(c) && c != b',') {
                i += 1;
            }
            let token = text.get(start..i).unwrap_or("");
            if token.is_empty() {
                return Err(format!(
                    "empty value in coordinate tuple '{}'",
                    excerpt(tuple_text(text, tuple_start))
                ));
            }
            let v: f64 = token
                .parse()
                .map_err(|_| format!("invalid number '{}' in coordinates", excerpt(token)))?;
            if let Some(slot) = vals.get_mut(count) {
                *slot = v;
            }
            count += 1;
            let mut j = i;
            while j < n && b.get(j).copied().is_some_and(is_ws) {
                j += 1;
            }
            if j < n && b.get(j) == Some(&b',') {
                i = j + 1;
                while i < n && b.get(i).copied().is_some_and(is_ws) {
                    i += 1;
                }
            } else {
                break;
            }
        }
        if count < 2 {
            return Err(format!(
                "coordinate tuple '{}' has one value, expected lon,lat[,alt]",
                excerpt(tuple_text(text, tuple_start))
            ));
        }
        let [x, y] = vals;
        out.push(Coord { x, y });
    }
}

fn tuple_text(text: &str, start: usize) -> &str {
    let rest = text.get(start..).unwrap_or("");
    rest.split(|c: char| c.is_ascii_whitespace())
        .next()
        .unwrap_or(rest)
}

/// A `gx:coord`: `lon lat [alt]` separated by whitespace.
fn parse_gx_coord(text: &str) -> Result<Coord<f64>, String> {
    let mut it = text.split_ascii_whitespace();
    let mut next = || -> Result<f64, String> {
        let t = it
            .next()
            .ok_or_else(|| format!("gx:coord '{}' needs lon lat [alt]", excerpt(text.trim())))?;
        t.parse()
            .map_err(|_| format!("invalid number '{}' in gx:coord", excerpt(t)))
    };
    let x = next()?;
    let y = next()?;
    Ok(Coord { x, y })
}

/// The geometries of one Placemark.
#[derive(Default)]
pub(super) struct Collected {
    pub parts: Vec<Geometry<f64>>,
    /// `when` values of each gx:Track, in order.
    pub times: Vec<Vec<String>>,
    /// A MultiGeometry or MultiTrack was seen.
    pub multi: bool,
    pub multitrack: bool,
    /// Unclosed rings closed.
    pub repairs: Repairs,
}

/// Collects the geometry elements among the children of `node` (recursing into
/// MultiGeometry and MultiTrack).
pub(super) fn collect(tree: &Tree, node: usize, out: &mut Collected) -> Result<(), String> {
    let mut coords = Vec::new();
    for child in tree.children(node) {
        let local = super::tree::local_name(tree.name(child));
        if !tree.is(child, local) {
            continue;
        }
        match local {
            "MultiGeometry" => {
                out.multi = true;
                collect(tree, child, out)?;
            }
            "MultiTrack" => {
                out.multi = true;
                out.multitrack = true;
                collect(tree, child, out)?;
            }
            "Point" => {
                coords.clear();
                parse_coordinates(&tree.text_of(child, "coordinates"), &mut coords)
                    .map_err(|e| format!("Point: {e}"))?;
                match coords.as_slice() {
                    [] => {}
                    [c] => out.parts.push(Geometry::Point(Point(*c))),
                    more => {
                        return Err(format!(
                            "Point has {} coordinate tuples, expected one",
                            more.len()
                        ));
                    }
                }
            }
            "LineString" | "LinearRing" => {
                let mut line = Vec::new();
                parse_coordinates(&tree.text_of(child, "coordinates"), &mut line)
                    .map_err(|e| format!("{local}: {e}"))?;
                if !line.is_empty() {
                    out.parts.push(Geometry::LineString(LineString(line)));
                }
            }
            "Polygon" => {
                if let Some(p) = polygon(tree, child, &mut out.repairs)? {
                    out.parts.push(Geometry::Polygon(p));
                }
            }
            "Track" => {
                let mut line = Vec::new();
                for c in tree.find_all(child, "coord") {
                    line.push(parse_gx_coord(&tree.text(c))?);
                }
                let times: Vec<String> = tree
                    .find_all(child, "when")
                    .map(|w| tree.text(w).into_owned())
                    .collect();
                match line.as_slice() {
                    [] => {}
                    [c] => out.parts.push(Geometry::Point(Point(*c))),
                    _ => out.parts.push(Geometry::LineString(LineString(line))),
                }
                if !times.is_empty() {
                    out.times.push(times);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn ring(tree: &Tree, linear_ring: usize, repairs: &mut Repairs) -> Result<Vec<Coord<f64>>, String> {
    let mut r = Vec::new();
    parse_coordinates(&tree.text_of(linear_ring, "coordinates"), &mut r)
        .map_err(|e| format!("Polygon: {e}"))?;
    // Closed as togeojson and most KML consumers do, and noted as a repair.
    close_noted(&mut r, repairs);
    Ok(r)
}

/// Closes a `gx:LatLonQuad`, whose four corners KML lists unclosed.
fn close_ring(r: &mut Vec<Coord<f64>>) {
    if let (Some(first), Some(last)) = (r.first().copied(), r.last().copied())
        && first != last
    {
        r.push(first);
    }
}

fn polygon(
    tree: &Tree,
    node: usize,
    repairs: &mut Repairs,
) -> Result<Option<Polygon<f64>>, String> {
    let mut rings: Vec<Vec<Coord<f64>>> = Vec::new();
    let outer = tree.child(node, "outerBoundaryIs");
    if let Some(o) = outer {
        if let Some(lr) = tree.find(o, "LinearRing") {
            rings.push(ring(tree, lr, repairs)?);
        }
        for inner in tree
            .children(node)
            .filter(|&c| tree.is(c, "innerBoundaryIs"))
        {
            for lr in tree.find_all(inner, "LinearRing") {
                rings.push(ring(tree, lr, repairs)?);
            }
        }
    } else {
        for lr in tree.find_all(node, "LinearRing") {
            rings.push(ring(tree, lr, repairs)?);
        }
    }
    rings.retain(|r| !r.is_empty());
    let mut it = rings.into_iter();
    let Some(exterior) = it.next() else {
        return Ok(None);
    };
    Ok(Some(Polygon::new(
        LineString(exterior),
        it.map(LineString).collect(),
    )))
}

/// One geometry from the collected parts: none → `None`; a single part outside any
/// MultiGeometry → itself; otherwise a Multi* when all parts have the same type, else a
/// GeometryCollection.
pub(super) fn assemble(parts: Vec<Geometry<f64>>, multi: bool) -> Option<Geometry<f64>> {
    if parts.is_empty() {
        return None;
    }
    if parts.len() == 1 && !multi {
        return parts.into_iter().next();
    }
    if parts.iter().all(|g| matches!(g, Geometry::Point(_))) {
        return Some(Geometry::MultiPoint(MultiPoint(
            parts
                .into_iter()
                .filter_map(|g| match g {
                    Geometry::Point(p) => Some(p),
                    _ => None,
                })
                .collect(),
        )));
    }
    if parts.iter().all(|g| matches!(g, Geometry::LineString(_))) {
        return Some(Geometry::MultiLineString(MultiLineString(
            parts
                .into_iter()
                .filter_map(|g| match g {
                    Geometry::LineString(l) => Some(l),
                    _ => None,
                })
                .collect(),
        )));
    }
    if parts.iter().all(|g| matches!(g, Geometry::Polygon(_))) {
        return Some(Geometry::MultiPolygon(MultiPolygon(
            parts
                .into_iter()
                .filter_map(|g| match g {
                    Geometry::Polygon(p) => Some(p),
                    _ => None,
                })
                .collect(),
        )));
    }
    Some(Geometry::GeometryCollection(GeometryCollection(parts)))
}

/// The footprint of a GroundOverlay: `gx:LatLonQuad` coordinates, or a `LatLonBox`
/// (rotated by `rotation` degrees about its centre, like togeojson).
pub(super) fn ground_overlay(tree: &Tree, node: usize) -> Result<Option<Polygon<f64>>, String> {
    if let Some(quad) = tree.find(node, "LatLonQuad") {
        let mut r = Vec::new();
        parse_coordinates(&tree.text_of(quad, "coordinates"), &mut r)
            .map_err(|e| format!("gx:LatLonQuad: {e}"))?;
        if r.is_empty() {
            return Ok(None);
        }
        close_ring(&mut r);
        return Ok(Some(Polygon::new(LineString(r), Vec::new())));
    }
    let Some(bx) = tree.find(node, "LatLonBox") else {
        return Ok(None);
    };
    let num = |name: &str| js_parse_float(&tree.text_of(bx, name));
    let (Some(north), Some(south), Some(east), Some(west)) =
        (num("north"), num("south"), num("east"), num("west"))
    else {
        return Ok(None);
    };
    let mut r = vec![
        Coord { x: west, y: north },
        Coord { x: east, y: north },
        Coord { x: east, y: south },
        Coord { x: west, y: south },
        Coord { x: west, y: north },
    ];
    if let Some(rotation) = num("rotation") {
        let cx = (west + east) / 2.0;
        let cy = (south + north) / 2.0;
        for c in &mut r {
            let dx = c.x - cx;
            let dy = c.y - cy;
            let d = (dx * dx + dy * dy).sqrt();
            let a = dy.atan2(dx) + rotation.to_radians();
            *c = Coord {
                x: cx + a.cos() * d,
                y: cy + a.sin() * d,
            };
        }
    }
    Ok(Some(Polygon::new(LineString(r), Vec::new())))
}

/// JavaScript `parseFloat`: the longest numeric prefix after leading whitespace.
pub(super) fn js_parse_float(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let end = s
        .bytes()
        .position(|c| !matches!(c, b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E'))
        .unwrap_or(s.len());
    let mut prefix = s.get(..end)?;
    while !prefix.is_empty() {
        if let Ok(v) = prefix.parse::<f64>() {
            return Some(v);
        }
        prefix = prefix.get(..prefix.len() - 1)?;
    }
    None
}

/// A JSON number the way JavaScript prints it: integral values as integers.
pub(super) fn num_value(v: f64) -> Value {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<(f64, f64)>, String> {
        let mut v = Vec::new();
        parse_coordinates(s, &mut v)?;
        Ok(v.into_iter().map(|c| (c.x, c.y)).collect())
    }

    #[test]
    fn coordinates() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(
            parse("  1,2,3\n\t4.5,-6 ").unwrap(),
            vec![(1.0, 2.0), (4.5, -6.0)]
        );
        assert_eq!(parse("1, 2 3 ,4").unwrap(), vec![(1.0, 2.0), (3.0, 4.0)]);
        assert_eq!(parse("1,2,3,4").unwrap(), vec![(1.0, 2.0)]);
        assert!(parse("1").unwrap_err().contains("one value"));
        assert!(parse("no,no").unwrap_err().contains("'no'"));
        assert!(parse("1,,2").unwrap_err().contains("empty value"));
    }

    #[test]
    fn parse_float_like_js() {
        assert_eq!(js_parse_float(" 4px"), Some(4.0));
        assert_eq!(js_parse_float("1.3"), Some(1.3));
        assert_eq!(js_parse_float("1e"), Some(1.0));
        assert_eq!(js_parse_float("x"), None);
        assert_eq!(num_value(4.0), Value::from(4));
        assert_eq!(num_value(0.5), serde_json::json!(0.5));
    }
}
