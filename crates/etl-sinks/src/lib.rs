//! The sink side of tak-etl: what records become on the way out. Today this is the PostgreSQL
//! `COPY … FROM STDIN` row encoding (text and binary, PostGIS EWKB geometries) that etl-data's
//! PostGIS loads stream; the readers and the feature model live in `etl-geo`.

mod copy;

pub use copy::{
    COPY_BINARY_HEADER, COPY_BINARY_TRAILER, ColumnKind, ColumnSource, Conflict, CopyColumn,
    CopyEncoder,
};
