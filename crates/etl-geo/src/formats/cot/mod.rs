//! TAK Cursor-on-Target (CoT) XML: one `<event>`, an `<events>` root holding many, or a
//! stream of `<event>` documents one after another (each may carry its own `<?xml …?>`).
//! Every event is one feature of layer 0; the feature id is the event `uid`.
//!
//! Output follows node-CoT's `to_geojson` where it can:
//! - Geometry: Point from `<point lat lon>` (2D). For `u-d-f`, `u-d-r`, `b-m-r` and `u-rb-a`
//!   events, `<link point="lat,lon[,hae]">` lists give a LineString, or a Polygon when the
//!   first and last positions are equal (`u-d-r` rectangles are closed first). Circles and
//!   ellipses (`u-d-c-c`, `u-r-b-c-c`, `u-d-c-e`) stay the center Point with a
//!   `shape: {ellipse: {major, minor, angle}}` property (node-CoT draws a polygon).
//! - Properties: `callsign` (contact), `center` (`[lon, lat, hae]`), `type`, `how`, `time`,
//!   `start`, `stale`, `hae`, `ce`, `le` (numbers, omitted when not numeric), `contact` (other
//!   contact attributes), `remarks`, `group` (`__group`), `status`, `takv`, `precisionlocation`,
//!   `course`/`speed`/`slope` (track), `droid` (uid@Droid), `links` (link attributes; point links
//!   of shapes excluded), `archived`, `labels` (labels_on, boolean), `flow` (`_flow-tags_`),
//!   `creator`, `icon` (usericon), `stroke`, `stroke-opacity`, `stroke-width`, `stroke-style`,
//!   `fill`, `fill-opacity` (polygons), `marker-color`, `marker-opacity` (ARGB colors as node-CoT).
//! - Every other `<detail>` child is kept under its element name by a generic XML→JSON
//!   conversion (attributes as keys, text as `_text`, repeated children as arrays), bounded in
//!   depth and size.
//!
//! An event without `<point>`, or with a non-numeric `lat`/`lon`, is a rejection naming its
//! uid. A root element other than `event`/`events`, a truncated document, a DTD or malformed
//! XML end reading.

mod read;

use std::io::BufRead;

use crate::error::ReadError;
use crate::formats::{FeatureSource, ReadOptions};

pub(crate) fn open(
    input: Box<dyn BufRead + Send>,
    opts: &ReadOptions,
) -> Result<FeatureSource, ReadError> {
    let mut reader = read::CotReader::new(input, opts.max_xml_text);
    reader.read_root()?;
    Ok(Box::new(reader))
}
