//! Where features go: a PostGIS table or a GeoJSON object (file or S3).

pub mod object;
pub mod postgres;
