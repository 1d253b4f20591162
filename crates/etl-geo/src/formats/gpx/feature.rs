//! What one `wpt`, `rte` or `trk` collected, and the feature made of it: properties as
//! togeojson names them, and the geometry, degenerate routes and tracks repaired rather than
//! rejected (see the module documentation of `gpx`).

use geo_types::{Coord, Geometry, LineString, MultiLineString, MultiPoint, Point};
use serde_json::{Map, Value};

use crate::feature::Feature;
use crate::formats::{Rejection, accept, excerpt};
use crate::repair::{Repair, Repairs};

/// Properties taken from the first element of that name anywhere inside the feature, like
/// togeojson's `getMulti`.
pub(super) const TEXT_PROPS: [&str; 6] = ["name", "cmt", "desc", "type", "time", "keywords"];
pub(super) const TIME: usize = 4;
const NAME: usize = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Wpt,
    Rte,
    Trk,
}

impl Kind {
    pub(super) fn layer(self) -> u32 {
        match self {
            Kind::Wpt => 0,
            Kind::Rte => 1,
            Kind::Trk => 2,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Wpt => "waypoint",
            Kind::Rte => "route",
            Kind::Trk => "track",
        }
    }
}

/// A JSON number for `x`: an integer when it is one (so `164` stays `164`), else a float.
pub(super) fn number(x: f64) -> Option<Value> {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Value::from(x as i64));
    }
    serde_json::Number::from_f64(x).map(Value::Number)
}

/// togeojson's `parseNumeric`: a number when the text is one, else the text.
pub(super) fn numeric_or_text(text: String) -> Value {
    match text.trim().parse::<f64>().ok().and_then(number) {
        Some(n) => n,
        None => Value::String(text),
    }
}

#[derive(Default)]
pub(super) struct Line {
    pub(super) coords: Vec<Coord<f64>>,
    pub(super) times: Vec<Value>,
    /// Per-point extension values by property name (`heart`, `cads`…), indexed by point.
    pub(super) ext: Vec<(String, Vec<Value>)>,
    pub(super) points: usize,
}

impl Line {
    /// Sets the value of extension element `local` (`hr` → `heart`, else pluralised) at
    /// `index`, allocating the name only the first time it is seen.
    pub(super) fn set_ext(&mut self, local: &str, index: usize, value: Value) {
        let heart = matches!(local, "hr" | "heart");
        let found = self.ext.iter().position(|(n, _)| {
            if heart {
                n == "heart"
            } else {
                n.len() == local.len() + 1 && n.starts_with(local) && n.ends_with('s')
            }
        });
        let values = match found {
            Some(i) => &mut self.ext[i].1,
            None => {
                let name = if heart {
                    "heart".to_owned()
                } else {
                    format!("{local}s")
                };
                self.ext.push((name, Vec::new()));
                let last = self.ext.len() - 1;
                &mut self.ext[last].1
            }
        };
        if values.len() <= index {
            values.resize(index + 1, Value::Null);
        }
        values[index] = value;
    }

    pub(super) fn finish(&mut self) {
        for (_, values) in &mut self.ext {
            values.resize(self.points, Value::Null);
        }
    }
}

/// Everything collected for one feature.
pub(super) struct Acc {
    pub(super) kind: Kind,
    pub(super) text: [Option<String>; 6],
    pub(super) src: Option<String>,
    pub(super) sym: Option<String>,
    pub(super) ele: Option<Value>,
    pub(super) url: Option<String>,
    pub(super) urlname: Option<String>,
    pub(super) ns: Map<String, Value>,
    pub(super) links: Vec<Value>,
    pub(super) style: Map<String, Value>,
    pub(super) style_seen: bool,
    pub(super) point: Option<Coord<f64>>,
    pub(super) lines: Vec<Line>,
    pub(super) bad: Option<String>,
    pub(super) points_seen: usize,
}

impl Acc {
    pub(super) fn new(kind: Kind) -> Self {
        Acc {
            kind,
            text: Default::default(),
            src: None,
            sym: None,
            ele: None,
            url: None,
            urlname: None,
            ns: Map::new(),
            links: Vec::new(),
            style: Map::new(),
            style_seen: false,
            point: None,
            lines: Vec::new(),
            bad: None,
            points_seen: 0,
        }
    }

    pub(super) fn set_text(&mut self, i: usize, value: String) {
        if let Some(slot) = self.text.get_mut(i)
            && slot.is_none()
            && !value.is_empty()
        {
            *slot = Some(value);
        }
    }

    pub(super) fn wants_text(&self, i: usize) -> bool {
        matches!(self.text.get(i), Some(None))
    }

    fn label(&self, line: u64) -> String {
        match &self.text[NAME] {
            Some(name) => format!("{} \"{}\"", self.kind.noun(), excerpt(name.trim())),
            None => format!("{} starting on line {line}", self.kind.noun()),
        }
    }

    /// The feature, or why it is rejected, and what was repaired to make it.
    pub(super) fn into_feature(mut self, line: u64) -> (Result<Feature, Rejection>, Repairs) {
        let label = self.label(line);
        let mut repairs = Repairs::NONE;
        if let Some(bad) = self.bad.take() {
            return (Err(Rejection::new(format!("{label}: {bad}"))), repairs);
        }
        let mut props = Map::new();
        match self.kind {
            Kind::Rte => {
                props.insert("_gpxType".into(), "rte".into());
            }
            Kind::Trk => {
                props.insert("_gpxType".into(), "trk".into());
            }
            Kind::Wpt => {}
        }
        for (i, value) in std::mem::take(&mut self.text).into_iter().enumerate() {
            if let Some(value) = value {
                props.insert(TEXT_PROPS[i].into(), Value::String(value));
            }
        }
        if let Some(src) = self.src.take() {
            props.insert("src".into(), Value::String(src));
        }
        props.append(&mut self.ns);
        if let Some(href) = self.url.take() {
            let mut link = Map::new();
            link.insert("href".into(), Value::String(href));
            if let Some(text) = self.urlname.take() {
                link.insert("text".into(), Value::String(text));
            }
            self.links.push(Value::Object(link));
        }
        if !self.links.is_empty() {
            props.insert(
                "links".into(),
                Value::Array(std::mem::take(&mut self.links)),
            );
        }
        let geometry = match self.kind {
            Kind::Wpt => {
                if let Some(sym) = self.sym.take() {
                    props.insert("sym".into(), Value::String(sym));
                }
                if let Some(ele) = self.ele.take() {
                    props.insert("ele".into(), ele);
                }
                let Some(c) = self.point else {
                    return (
                        Err(Rejection::new(format!("{label}: no coordinates"))),
                        repairs,
                    );
                };
                Some(Geometry::Point(Point(c)))
            }
            Kind::Rte => {
                props.append(&mut self.style);
                // No points: a feature without geometry; one: a Point (the shared repair).
                let coords = self.lines.pop().map(|l| l.coords).unwrap_or_default();
                (!coords.is_empty()).then_some(Geometry::LineString(LineString(coords)))
            }
            Kind::Trk => {
                props.append(&mut self.style);
                let (geometry, cp) = track(self.lines, &mut repairs);
                if geometry.is_some() {
                    props.insert("coordinateProperties".into(), Value::Object(cp));
                }
                geometry
            }
        };
        let feature = accept(
            Feature {
                id: None,
                geometry,
                properties: props,
            },
            &mut repairs,
        )
        .map_err(|r| Rejection::new(format!("{label}: {}", r.reason)));
        (feature, repairs)
    }
}

/// A segment of fewer than 2 distinct positions (consecutive duplicates collapsed).
fn degenerate(coords: &[Coord<f64>]) -> bool {
    coords.windows(2).all(|w| w[0] == w[1])
}

/// A track's geometry and `coordinateProperties`, by the rules of `crate::repair` applied per
/// segment: empty segments are dropped; one-point segments beside real ones are dropped; a
/// track of one-point segments only is a MultiPoint of them (a Point for one), each point
/// taking its segment's first time and extension values; no points at all is no geometry.
fn track(lines: Vec<Line>, repairs: &mut Repairs) -> (Option<Geometry<f64>>, Map<String, Value>) {
    let segments = lines.len();
    let lines: Vec<Line> = lines.into_iter().filter(|l| !l.coords.is_empty()).collect();
    if lines.is_empty() {
        return (None, Map::new());
    }
    if lines.len() < segments {
        repairs.insert(Repair::PartsDropped);
    }
    let (real, points): (Vec<Line>, Vec<Line>) =
        lines.into_iter().partition(|l| !degenerate(&l.coords));
    if !real.is_empty() {
        if !points.is_empty() {
            repairs.insert(Repair::PartsDropped);
        }
        let (cp, coords) = coordinate_properties(real);
        let geometry = Geometry::MultiLineString(MultiLineString(
            coords.into_iter().map(LineString).collect(),
        ));
        return (Some(geometry), cp);
    }
    let (cp, mut coords) = first_positions(points);
    let geometry = if coords.len() == 1 {
        repairs.insert(Repair::LineToPoint);
        coords.pop().map(|c| Geometry::Point(Point(c)))
    } else {
        repairs.insert(Repair::LinesToPoints);
        Some(Geometry::MultiPoint(MultiPoint(
            coords.into_iter().map(Point).collect(),
        )))
    };
    (geometry, cp)
}

/// The first position of each degenerate segment with its per-point values (flat arrays, one
/// entry per point, `null` where a segment had none).
fn first_positions(lines: Vec<Line>) -> (Map<String, Value>, Vec<Coord<f64>>) {
    let n = lines.len();
    let mut cp = Map::new();
    let mut coords = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for (i, line) in lines.into_iter().enumerate() {
        coords.extend(line.coords.first().copied());
        times.push(line.times.into_iter().next().unwrap_or(Value::Null));
        for (name, values) in line.ext {
            let slot = cp
                .entry(name)
                .or_insert_with(|| Value::Array(vec![Value::Null; n]));
            if let (Value::Array(per_point), Some(v)) = (slot, values.into_iter().next())
                && let Some(s) = per_point.get_mut(i)
            {
                *s = v;
            }
        }
    }
    if times.iter().any(|t| !t.is_null()) {
        cp.insert("times".into(), Value::Array(times));
    }
    (cp, coords)
}

/// togeojson's `coordinateProperties` for the kept segments of a track: flat arrays for one
/// segment, one array per segment otherwise (`times` only for segments that have times).
fn coordinate_properties(lines: Vec<Line>) -> (Map<String, Value>, Vec<Vec<Coord<f64>>>) {
    let multi = lines.len() > 1;
    let mut cp = Map::new();
    let mut coords = Vec::with_capacity(lines.len());
    let mut times: Vec<Value> = Vec::new();
    let lengths: Vec<usize> = lines.iter().map(|l| l.coords.len()).collect();
    let mut exts: Vec<Vec<(String, Vec<Value>)>> = Vec::with_capacity(lines.len());
    for line in lines {
        if !line.times.is_empty() {
            times.push(Value::Array(line.times));
        }
        coords.push(line.coords);
        exts.push(line.ext);
    }
    if !times.is_empty() {
        let value = if multi {
            Value::Array(times)
        } else {
            times.pop().unwrap_or(Value::Null)
        };
        cp.insert("times".into(), value);
    }
    for (i, ext) in exts.into_iter().enumerate() {
        for (name, values) in ext {
            if multi {
                let slot = cp.entry(name).or_insert_with(|| {
                    Value::Array(
                        lengths
                            .iter()
                            .map(|n| Value::Array(vec![Value::Null; *n]))
                            .collect(),
                    )
                });
                if let Value::Array(per_line) = slot
                    && let Some(s) = per_line.get_mut(i)
                {
                    *s = Value::Array(values);
                }
            } else {
                cp.insert(name, Value::Array(values));
            }
        }
    }
    (cp, coords)
}
