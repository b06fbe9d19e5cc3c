//! The outbound clients against real sockets, one module per client, linked into one binary
//! (one test binary per crate: each link of the AWS SDK costs seconds and ~100 MB of disk).

mod guarded_client;
mod upstream_client;
