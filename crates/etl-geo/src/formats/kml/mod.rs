//! KML reader (streaming, one layer).
//!
//! Output mirrors placemark/togeojson 7.x (`kml()`), with the differences listed below.
//!
//! **Features.** Every `Placemark`, wherever it is nested (Document, Folder, or any
//! other element), is one record, in document order. `GroundOverlay` becomes a feature
//! with its `LatLonBox` (rotated by `rotation`) or `gx:LatLonQuad` footprint as a Polygon
//! and the property `"@geometry-type": "groundoverlay"` plus `icon` (the image href).
//! `NetworkLink`, `ScreenOverlay` and `PhotoOverlay` are skipped (no feature; togeojson
//! makes a feature of a NetworkLink's Region). Elements of other namespaces (`atom:`,
//! `xal:`, ...) are ignored; the `gx:` and `kml:` prefixes, and any prefix bound to a KML
//! namespace (such as Python ElementTree's `ns0:`), are read as KML.
//!
//! **Geometry** (2D; altitude and further values are dropped):
//! `Point`; `LineString` and `LinearRing` → LineString; `Polygon` with `outerBoundaryIs`
//! and `innerBoundaryIs` rings (unclosed rings are closed); `gx:Track` (`gx:coord`
//! "lon lat alt") → LineString (a Point when it has a single coord); `MultiGeometry`
//! (nested ones flattened) and `gx:MultiTrack` → MultiPoint / MultiLineString /
//! MultiPolygon when all parts have one type, else GeometryCollection (togeojson always
//! emits a GeometryCollection, or the bare part when there is one). Coordinates are
//! `lon,lat[,alt]` tuples separated by any whitespace (whitespace around commas is
//! tolerated), parsed straight from the text. A Placemark without geometry (or with an
//! empty `<coordinates/>`) is a feature with a null geometry. Broken coordinates (a
//! non-number, a one-value tuple, a Point with several tuples, non-finite values) reject that
//! record (a `Rejection` naming the placemark and the problem) and reading continues;
//! togeojson silently drops such tuples or parts. Degenerate ones are repaired, as for every
//! format (`crate::repair`): a line of one position is a Point, a ring of fewer than three
//! distinct positions a LineString, and the record's `repairs` say so.
//!
//! **Properties** (togeojson names; text values are kept verbatim, not trimmed):
//! `name`, `address`, `visibility` (boolean: false when "0"), `open`, `phoneNumber`,
//! `description` (always a string: CDATA is kept as text, where togeojson emits
//! `{"@type":"html","value":…}` for CDATA descriptions), `styleUrl` (`#id`), the resolved
//! style (see below), `ExtendedData/Data` (`name` → the `value` text) and
//! `SchemaData/SimpleData` (`name` → the text, typed by the `SimpleField type` of a
//! Schema read earlier: numbers for int/uint/short/ushort/float/double, booleans for
//! bool "1"/"true"/"0"/"false"/"" — togeojson makes any non-empty text `true`),
//! `timespan` `{begin, end}`, `timestamp` (TimeStamp/when), `coordinateProperties`
//! `{times}` (togeojson 7's name; older togeojson said `coordTimes`) for gx:Track `when`
//! values (one array for one track; an array of arrays for several tracks and always for
//! a gx:MultiTrack), and `path`: the names of the enclosing
//! Folders joined with " / " (not Documents; unnamed folders are left out; absent at top
//! level; an ExtendedData field named `path` wins). The feature id is the `id` attribute.
//!
//! **Styles.** `Style` (by id, in the Document or inside a Placemark), `StyleMap` (its
//! `normal` pair, by `styleUrl` or an inline Style) and Google Earth's
//! `gx:CascadingStyle` are resolved through the Placemark's `styleUrl`; an inline Style
//! applies on top. Properties: `fill`/`fill-opacity` (PolyStyle color; `fill` 0 →
//! `fill-opacity` 0; `outline` 0 → `stroke-opacity` 0), `stroke`/`stroke-opacity`/
//! `stroke-width` (LineStyle), `label-color`/`label-opacity`/`label-scale` (LabelStyle),
//! `icon-color`/`icon-opacity`/`icon-scale`/`icon-heading`/`icon-offset`/
//! `icon-offset-units`/`icon` (IconStyle). KML `aabbggrr` colors become `#rrggbb` plus an
//! opacity. **Limitation:** the reader streams, so a style is resolved only when it is
//! defined before the Placemark that uses it (writers normally put styles at the top of
//! the Document); a Placemark referring to a later style keeps its `styleUrl` without the
//! resolved properties. Likewise SimpleData is typed only by a Schema defined earlier.
//!
//! **Refused** (fatal `ReadError`): a root element other than `kml` ("not a KML document:
//! root element <x>"), any DTD (so no entity expansion or external entities), undefined
//! entities, nesting deeper than the XML limit, a truncated document, malformed XML.
//! Memory is bounded by the largest single Placemark (its element tree is built, used and
//! dropped), plus the styles seen so far.

mod geometry;
pub mod links;
mod read;
mod style;
mod tree;

use std::io::BufRead;

use crate::error::ReadError;
use crate::formats::{FeatureSource, ReadOptions};

/// Opens a streaming KML reader over `input` (one layer, `layer: 0`).
pub(crate) fn open(
    input: Box<dyn BufRead + Send>,
    opts: &ReadOptions,
) -> Result<FeatureSource, ReadError> {
    Ok(Box::new(read::KmlReader::new(input, opts.max_xml_text)))
}
