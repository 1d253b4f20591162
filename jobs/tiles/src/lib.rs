//! The tile API of the deployment: TileJSON and tiles out of PMTiles archives in a directory or
//! under an S3 prefix, served by axum as a server or as an AWS Lambda behind API Gateway, with a
//! MapLibre preview page whose JavaScript is bundled at build time and embedded in the binary.

pub mod app;
pub mod archives;
pub mod assets;
pub mod auth;
pub mod cloudtak;
pub mod config;
pub mod lambda;
pub mod negotiate;
pub mod preview;
pub mod request;
pub mod serve;
pub mod source;
