//! The composition root: reads configuration (flags and environment, nowhere else),
//! builds the storage adapters and the `Registry`, and runs the server process.

pub mod cli;
pub mod compose;
pub mod config;
pub mod local;
pub mod logging;
pub mod vulndb;

pub use config::{Backend, LogFormat, ServerConfig};

/// The error of start-up and serving functions.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
