//! GPX 1.0 and 1.1, streamed one `wpt`, `rte` or `trk` at a time, in document order.
//!
//! Layers are fixed ([`crate::GPX_LAYERS`]): 0 `waypoints`, 1 `routes`, 2 `tracks`. Elements are
//! matched by local name, so any namespace (or none) works for GPX 1.0 and 1.1 alike.
//!
//! Output follows @tmcw/togeojson's `gpx()` where it can:
//! - `wpt` → Point; properties `name`, `cmt`, `desc`, `type`, `time`, `keywords` (the first
//!   element of that name inside the feature, as togeojson does, so a track without its own
//!   `time` gets its first point's), `links` (`[{href, text, type}]` from GPX 1.1 `link`, or
//!   from GPX 1.0 `url`/`urlname`), `sym`, `src`, and `ele` (a number; geometry is 2D).
//! - `rte` → LineString of its `rtept`s; `_gpxType: "rte"` plus the properties above (no `sym`).
//!   A route of one point is a Point, one without points a feature without geometry.
//! - `trk` → MultiLineString, one line per `trkseg` with at least 2 distinct points; `_gpxType:
//!   "trk"` and `coordinateProperties`: `times` and
//!   per-point extension values (`heart` from Garmin `hr`, `cads`, `atemps`, `powers`, any other
//!   `<extensions>` child pluralised), laid out like togeojson (flat arrays for one segment,
//!   one array per segment otherwise). Degenerate tracks are repaired, never rejected (GDAL
//!   keeps them; togeojson drops them): empty segments, and one-point segments beside longer
//!   ones, are dropped; a track of one-point segments only is a MultiPoint of them (a Point for
//!   one), each point with its segment's first time and extension values in flat arrays; a
//!   track without points is a feature without geometry. The record's `repairs` say so.
//! - Line style from `<extensions><line>` (`stroke`, `stroke-opacity`, `stroke-width` in px) on
//!   routes and tracks, and namespaced elements of the feature's own `<extensions>` as
//!   `prefix_name` string properties (prefixes declared on the `gpx` root, plus `gpxx`).
//!
//! A point with a missing or non-numeric `lat`/`lon` rejects its whole waypoint, route or track
//! (togeojson silently drops the point). A root element other than
//! `gpx`, a truncated document, a DTD or malformed XML end reading.

mod extensions;
mod feature;
mod read;

use std::io::BufRead;

use crate::error::ReadError;
use crate::formats::{FeatureSource, ReadOptions};

pub(crate) fn open(
    input: Box<dyn BufRead + Send>,
    opts: &ReadOptions,
) -> Result<FeatureSource, ReadError> {
    let mut reader = read::GpxReader::new(input, opts.max_xml_text);
    reader.read_root()?;
    Ok(Box::new(reader))
}
