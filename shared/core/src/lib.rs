//! Domain types, use-cases and ports of the OCI registry; free of any cloud, HTTP or runtime crate.
//!
//! The HTTP layer decodes a request, calls one method of [`Registry`], and encodes the
//! answer. Storage is reached only through the ports in [`ports`].

pub mod admin;
pub mod auth;
pub mod digest;
pub mod error;
pub mod events;
pub mod identity;
pub mod keys;
pub mod manifest;
pub mod metrics;
pub mod names;
pub mod outbound;
pub mod ports;
pub mod proxy;
pub mod registry;
pub mod scan;
pub mod timefmt;
pub mod upload;
pub mod upload_token;
pub mod webhooks;
pub mod worker;

pub use digest::{Digest, DigestAlgorithm, DigestHasher};
pub use error::{RegistryError, Result};
pub use names::{Reference, RepoName, Tag};
pub use registry::{Registry, RegistryConfig};
