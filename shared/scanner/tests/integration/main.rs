//! The scanner's integration tests, one module per area, linked into one binary
//! (one test binary per crate: each link of the AWS SDK costs seconds and ~100 MB of disk).

mod layers;
mod matching;
