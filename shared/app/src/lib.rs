//! The composition root: reads configuration (flags and environment, nowhere else),
//! builds the storage adapters and the `Registry`, and runs the local server.

pub mod config;
pub mod local;

pub use config::LocalConfig;
