//! Name resolution under the guard: every address a host resolves to is checked with
//! `OutboundGuard` before anything connects, both for `check_target` and, as reqwest's
//! DNS resolver, for every connection the client opens (no second, unchecked lookup).

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;

use registry_core::error::{RegistryError, Result};
use registry_core::outbound::OutboundGuard;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves `host` and checks every address: `OutboundRefused` if the guard refuses any
/// of them, `Upstream` if the name does not resolve.
pub(crate) async fn resolve_checked(
    guard: &OutboundGuard,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| RegistryError::Upstream(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(RegistryError::Upstream(format!(
            "{host} resolves to no address"
        )));
    }
    for addr in &addrs {
        guard.check(addr.ip()).map_err(|e| match e {
            RegistryError::OutboundRefused(why) => RegistryError::OutboundRefused(format!(
                "{host} resolves to a refused address: {why}"
            )),
            other => other,
        })?;
    }
    Ok(addrs)
}

/// reqwest's DNS resolver: resolution plus the guard. Its errors are `RegistryError`s,
/// found again in the source chain of the reqwest error (see [`registry_error_in`]).
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    guard: Arc<OutboundGuard>,
}

impl GuardedResolver {
    pub(crate) fn new(guard: Arc<OutboundGuard>) -> Self {
        GuardedResolver { guard }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the connector puts in the URL's port (or the scheme's default).
            let addrs = resolve_checked(&guard, &host, 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The `RegistryError` the resolver returned, if `err` was caused by one.
pub(crate) fn registry_error_in<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a RegistryError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<RegistryError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
