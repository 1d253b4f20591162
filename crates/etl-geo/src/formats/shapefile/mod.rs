//! PLACEHOLDER: being written (issue 4).

use std::path::Path;

use crate::error::ReadError;
use crate::formats::{FeatureSource, ReadOptions};

/// Opens the layer whose `.shp` is at `shp` (siblings `.shx`, `.dbf`, `.prj`, `.cpg` beside it).
pub(crate) fn open_layer(_shp: &Path, _opts: &ReadOptions) -> Result<FeatureSource, ReadError> {
    Err(ReadError::Refused(
        "shapefile reader not written yet".into(),
    ))
}
