//! PLACEHOLDER: being written (issue 4).

use std::io::BufRead;

use crate::error::ReadError;
use crate::formats::{FeatureSource, ReadOptions};

pub(crate) fn open(
    _input: Box<dyn BufRead + Send>,
    _opts: &ReadOptions,
) -> Result<FeatureSource, ReadError> {
    Err(ReadError::Refused("kml reader not written yet".into()))
}
