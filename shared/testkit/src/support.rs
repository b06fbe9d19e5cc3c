//! Helpers the contract suites and tests share: deterministic test data, names unique to
//! a run, image layers, draining byte streams, and opening blob reads (following
//! redirects to presigned URLs over HTTP).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use registry_core::ports::{BlobContent, ByteRange, ByteStream};
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

/// A lowercase hex suffix no other call makes, in this process or any other (the
/// LocalStack table and queues outlive runs), for names in shared backends: valid in
/// repository names, project names, upload ids, S3 keys and DynamoDB keys. It is the
/// process's start in milliseconds (10 digits), its full id (8 digits) and a counter
/// (at least 1 digit): the fixed widths keep any two suffixes apart.
pub fn run_suffix() -> String {
    static START_MS: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start_ms = *START_MS.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    format!(
        "{:010x}{:08x}{:x}",
        start_ms & 0xff_ffff_ffff,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An uncompressed tar layer holding `files` (regular files, mode 0644).
pub fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, *data)
            .expect("a tar entry in memory");
    }
    builder.into_inner().expect("a tar archive in memory")
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

/// Opens a blob read as a byte stream and its announced length.
///
/// A streamed answer is returned as is. A redirect (object stores answer with a
/// presigned URL) is followed with a plain HTTP GET, as a client follows the registry's
/// `307`: for a range read the client re-sends its `Range: bytes=start-end` header to the
/// new location, so the URL must not depend on the range. The answer is mapped to the
/// errors the port documents: `404` is `BlobUnknown`; `416`, or a partial answer that is
/// not exactly the requested range (S3 clamps a range past the end), is `RangeInvalid`;
/// any other failure is `Storage`.
pub async fn open_content(
    content: BlobContent,
    range: Option<ByteRange>,
) -> Result<(ByteStream, u64)> {
    match content {
        BlobContent::Stream { body, length } => Ok((body, length)),
        BlobContent::Redirect { url } => follow_redirect(&url, range).await,
    }
}

async fn follow_redirect(url: &str, range: Option<ByteRange>) -> Result<(ByteStream, u64)> {
    let storage = |what: &str, e: &dyn std::fmt::Display| {
        RegistryError::Storage(format!("following the blob redirect to {url}: {what}: {e}"))
    };
    let mut request = http_client().get(url);
    if let Some(r) = range {
        request = request.header("range", format!("bytes={}-{}", r.start, r.end));
    }
    let response = request.send().await.map_err(|e| storage("GET", &e))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let announced = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let content_range = header("content-range");
    match (status, range) {
        (404, _) => {
            return Err(RegistryError::BlobUnknown(format!(
                "the redirect to {url} answered 404"
            )));
        }
        (416, Some(r)) => {
            return Err(RegistryError::RangeInvalid(format!(
                "bytes {}-{}: the redirect answered 416",
                r.start, r.end
            )));
        }
        (200, None) => {}
        (206, Some(r)) => {
            let expected = format!("bytes {}-{}/", r.start, r.end);
            if !content_range
                .as_deref()
                .is_some_and(|v| v.starts_with(&expected))
            {
                return Err(RegistryError::RangeInvalid(format!(
                    "bytes {}-{}: the redirect answered Content-Range {content_range:?}",
                    r.start, r.end
                )));
            }
        }
        (200, Some(r)) if r.start == 0 && announced == Some(r.len()) => {}
        (200, Some(r)) => {
            return Err(RegistryError::RangeInvalid(format!(
                "bytes {}-{}: the redirect ignored the range and answered {announced:?} bytes",
                r.start, r.end
            )));
        }
        (other, _) => {
            let body = response.text().await.unwrap_or_default();
            return Err(storage(&format!("status {other}"), &body));
        }
    }
    let length = announced.ok_or_else(|| storage("no Content-Length", &status))?;
    let body = futures_util::stream::try_unfold(response, move |mut response| async move {
        match response.chunk().await {
            Ok(Some(chunk)) => Ok(Some((chunk, response))),
            Ok(None) => Ok(None),
            Err(e) => Err(RegistryError::Storage(format!(
                "reading the blob redirect body: {e}"
            ))),
        }
    });
    Ok((Box::pin(body), length))
}

/// One HTTP client for the whole test process (it pools connections).
fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

/// The bytes of a blob read (`range` is the range that was asked for, if any), checking
/// that the announced length matches them; a redirect is followed as
/// [`open_content`] does. Panics if the read fails.
pub async fn content_bytes(content: BlobContent, range: Option<ByteRange>) -> Vec<u8> {
    let (body, length) = open_content(content, range)
        .await
        .unwrap_or_else(|e| panic!("opening the blob read failed: {e}"));
    let bytes = collect(body).await.expect("reading the blob stream");
    assert_eq!(
        bytes.len() as u64,
        length,
        "a blob read announced {length} bytes but yielded {}",
        bytes.len()
    );
    bytes
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

    #[test]
    fn run_suffixes_are_distinct_lowercase_hex() {
        let suffixes: Vec<String> = (0..1000).map(|_| run_suffix()).collect();
        let distinct: std::collections::BTreeSet<&String> = suffixes.iter().collect();
        assert_eq!(distinct.len(), suffixes.len());
        for s in &suffixes {
            assert!(s.len() >= 19, "{s}");
            assert!(
                s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{s}"
            );
        }
    }
}
