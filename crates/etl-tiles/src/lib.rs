//! The tiling engine behind `etl-pmtiles` (and the PMTiles outputs of other jobs): pure
//! computation, no AWS, no database, no async runtime (the archive read path is written as
//! futures so the tile server can drive it; synchronous callers run it to completion in place).
//!
//! - [`tile`]: tile coordinates, the PMTiles Hilbert tile id, Web Mercator world coordinates;
//! - [`geom`]: projecting features to world coordinates, clipping to a tile with a buffer,
//!   simplification that keeps polygons valid for MVT;
//! - [`mvt`]: Mapbox Vector Tile 2.1 encoding, and a decoder for tests and verification;
//! - [`archive`]: PMTiles v3 archives: writing (clustered, deduplicated), reading (one walk over
//!   a ranged-read trait, shared with the tile server), verifying.

pub mod archive;
pub mod geom;
pub mod mbtiles;
pub mod mlt;
pub mod mvt;
pub mod tile;
pub mod tiler;
pub mod zoom_guess;
