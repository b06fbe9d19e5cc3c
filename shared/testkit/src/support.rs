//! Helpers the contract suites share: deterministic test data and draining byte streams.

use bytes::Bytes;
use futures_util::StreamExt;
use registry_core::ports::{BlobContent, ByteStream};
use registry_core::{RegistryError, Result};

/// `len` deterministic pseudo-random bytes; different `seed`s give different bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    // xorshift64*: cheap, and no run of bytes repeats, so misplaced bytes are caught.
    let mut state = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x2545_F491_4F6C_DD1D)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A body stream of `chunks`, in order.
pub fn stream_of<I>(chunks: I) -> ByteStream
where
    I: IntoIterator,
    I::Item: Into<Bytes>,
{
    let items: Vec<Result<Bytes>> = chunks.into_iter().map(|c| Ok(c.into())).collect();
    Box::pin(futures_util::stream::iter(items))
}

/// A body stream that yields `chunks` and then fails, as a client connection that drops
/// mid-chunk.
pub fn failing_stream(chunks: Vec<Bytes>) -> ByteStream {
    let items = chunks
        .into_iter()
        .map(Ok)
        .chain(std::iter::once(Err(RegistryError::Storage(
            "client went away (simulated)".into(),
        ))));
    Box::pin(futures_util::stream::iter(items))
}

/// All bytes of `stream`, or its first error.
pub async fn collect(mut stream: ByteStream) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// The bytes of a blob read, checking that the announced length matches them.
///
/// Redirect answers cannot be followed here (the testkit has no HTTP client); an adapter
/// that redirects must wrap its store in the test factory so reads are streamed.
pub async fn content_bytes(content: BlobContent) -> Vec<u8> {
    match content {
        BlobContent::Stream { body, length } => {
            let bytes = collect(body).await.expect("reading the blob stream");
            assert_eq!(
                bytes.len() as u64,
                length,
                "a streamed read announced {length} bytes but yielded {}",
                bytes.len()
            );
            bytes
        }
        BlobContent::Redirect { url } => panic!(
            "the blob read answered with a redirect to {url}; the contract suite needs \
             streamed content"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_deterministic_and_distinct() {
        assert_eq!(pattern(100, 1), pattern(100, 1));
        assert_ne!(pattern(100, 1), pattern(100, 2));
        assert_eq!(pattern(13, 5).len(), 13);
        assert_eq!(&pattern(100, 3)[..10], &pattern(10, 3)[..]);
    }
}
