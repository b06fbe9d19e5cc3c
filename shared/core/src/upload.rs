//! Upload sessions and the hashing stream that verifies blob content as it is stored.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::digest::{DigestAlgorithm, DigestHasher};
use crate::error::{RegistryError, Result};
use crate::names::RepoName;
use crate::ports::{ByteStream, UploadCursor};

/// An upload in progress: where it stands and the running hash of what it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    pub id: String,
    pub repo: RepoName,
    /// Bytes received and stored so far.
    pub offset: u64,
    pub hash_algorithm: DigestAlgorithm,
    /// Base64 of the saved hash state after `offset` bytes.
    pub hash_state: String,
    pub store_state: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

impl UploadSession {
    pub fn new(
        id: String,
        repo: RepoName,
        algorithm: DigestAlgorithm,
        store_state: String,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Self {
        UploadSession {
            id,
            repo,
            offset: 0,
            hash_algorithm: algorithm,
            hash_state: B64.encode(DigestHasher::new(algorithm).save()),
            store_state,
            created_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }
    }

    pub fn cursor(&self) -> UploadCursor {
        UploadCursor {
            upload_id: self.id.clone(),
            offset: self.offset,
            store_state: self.store_state.clone(),
        }
    }

    pub fn hasher(&self) -> Result<DigestHasher> {
        let state = B64
            .decode(&self.hash_state)
            .map_err(|_| RegistryError::Storage("corrupt upload hash state".into()))?;
        DigestHasher::restore(self.hash_algorithm, &state)
    }

    pub fn set_hasher(&mut self, hasher: &DigestHasher) {
        self.hash_algorithm = hasher.algorithm();
        self.hash_state = B64.encode(hasher.save());
    }

    /// The inclusive end of the received range as the `Range` header shows it
    /// (`0-0` when nothing was received, as distribution does).
    pub fn range_end(&self) -> u64 {
        self.offset.saturating_sub(1)
    }
}

/// What a [`HashingStream`] saw: the hash and length of the bytes it passed on.
pub struct Tally {
    pub hasher: DigestHasher,
    pub length: u64,
}

/// Wraps `body` so every byte passed to the store is hashed and counted; fails the
/// stream with `PayloadTooLarge` past `limit` bytes.
pub fn hashing_stream(
    body: ByteStream,
    hasher: DigestHasher,
    limit: Option<u64>,
) -> (ByteStream, Arc<Mutex<Tally>>) {
    let tally = Arc::new(Mutex::new(Tally { hasher, length: 0 }));
    let seen = tally.clone();
    let stream = body.map(move |chunk| {
        let chunk = chunk?;
        let mut t = seen.lock().expect("tally lock");
        t.length += chunk.len() as u64;
        if let Some(limit) = limit
            && t.length > limit
        {
            return Err(RegistryError::PayloadTooLarge(format!(
                "request body over {limit} bytes; send the blob in smaller chunks \
                 (PATCH with Content-Range) or use the upload endpoint"
            )));
        }
        t.hasher.update(&chunk);
        Ok(chunk)
    });
    (Box::pin(stream), tally)
}

/// Takes the final tally out of its shared cell once the store is done with the stream.
pub fn into_tally(cell: Arc<Mutex<Tally>>) -> Tally {
    match Arc::try_unwrap(cell) {
        Ok(m) => m.into_inner().expect("tally lock"),
        Err(shared) => {
            let t = shared.lock().expect("tally lock");
            Tally {
                hasher: t.hasher.clone(),
                length: t.length,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use bytes::Bytes;

    #[tokio::test]
    async fn hashes_and_counts_what_passes() {
        let parts = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let body: ByteStream = Box::pin(futures_util::stream::iter(parts));
        let (s, cell) = hashing_stream(body, DigestHasher::new(DigestAlgorithm::Sha256), None);
        let collected: Vec<_> = s.collect().await;
        assert_eq!(collected.len(), 2);
        let t = into_tally(cell);
        assert_eq!(t.length, 11);
        assert_eq!(
            t.hasher.finish(),
            Digest::of(DigestAlgorithm::Sha256, b"hello world")
        );
    }

    #[tokio::test]
    async fn stops_past_the_limit() {
        let parts = vec![
            Ok(Bytes::from(vec![0u8; 10])),
            Ok(Bytes::from(vec![0u8; 10])),
        ];
        let body: ByteStream = Box::pin(futures_util::stream::iter(parts));
        let (s, _) = hashing_stream(body, DigestHasher::new(DigestAlgorithm::Sha256), Some(15));
        let collected: Vec<_> = s.collect().await;
        assert!(matches!(
            collected[1],
            Err(RegistryError::PayloadTooLarge(_))
        ));
    }
}
