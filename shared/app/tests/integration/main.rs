//! The app's integration tests, one module per area, linked into one binary
//! (one test binary per crate: each link of the AWS SDK costs seconds and ~100 MB of disk).

mod authz_matrix;
mod cli;
mod common;
mod key_rotation;
mod proxy;
mod resources_manifest;
mod scanning;
mod vulndb_direct;
mod webhooks;
