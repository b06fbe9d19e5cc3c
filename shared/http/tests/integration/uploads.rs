//! Upload sessions over HTTP: POST then PUT, chunked and streamed PATCH, out-of-order
//! and failed chunks, digest verification, status, cancel, expiry and request limits.

use crate::common;

use common::*;
use registry_core::RegistryConfig;

const REPO: &str = "uploads/test";

/// PATCHes `chunk` at `start` with `Content-Range` and `Content-Length`.
async fn patch_chunk(reg: &TestRegistry, loc: &str, start: usize, chunk: &[u8]) -> Resp {
    let end = start + chunk.len() - 1;
    reg.patch(loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{start}-{end}"))
        .bytes(chunk.to_vec())
        .send()
        .await
}

fn assert_upload_headers(res: &Resp, range_end: usize) -> String {
    let loc = res.location();
    assert!(
        loc.starts_with(&format!("/v2/{REPO}/blobs/uploads/")),
        "upload location {loc:?} in {res:?}"
    );
    res.assert_header("range", &format!("0-{range_end}"));
    assert_eq!(res.expect_header("docker-upload-uuid"), upload_id(&loc));
    loc
}

async fn assert_blob(reg: &TestRegistry, repo: &str, digest: &str, data: &[u8]) {
    reg.get(format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .assert_status(200)
        .assert_header("content-length", &data.len().to_string())
        .assert_header("docker-content-digest", digest)
        .assert_body(data);
}

#[tokio::test]
async fn post_then_put_monolithic() {
    let reg = TestRegistry::new();
    let res = reg.post(format!("/v2/{REPO}/blobs/uploads/")).send().await;
    res.assert_status(202).assert_header("content-length", "0");
    let loc = assert_upload_headers(&res, 0);
    let id = upload_id(&loc);
    assert!(id.len() >= 16, "upload id {id:?} is too short to be unique");

    let data = pattern(5000, 1);
    let d = sha256(&data);
    let put = reg
        .put(with_digest(&loc, &d))
        .header("content-type", "application/octet-stream")
        .bytes(data.clone())
        .send()
        .await;
    put.assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/blobs/{d}"))
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;

    // The session is closed.
    reg.get(&loc)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put(with_digest(&loc, &d))
        .bytes(data)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(reg.upload_files(), 0);
}

#[tokio::test]
async fn each_post_opens_a_distinct_session() {
    let reg = TestRegistry::new();
    let a = reg.start_upload(REPO).await;
    let b = reg.start_upload(REPO).await;
    assert_ne!(upload_id(&a), upload_id(&b));
}

#[tokio::test]
async fn post_announces_chunk_limits() {
    let reg = TestRegistry::with_config(RegistryConfig {
        chunk_min_length: 5 * 1024 * 1024,
        max_request_body: Some(6 * 1024 * 1024),
        ..RegistryConfig::default()
    });
    reg.post(format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .assert_status(202)
        .assert_header("oci-chunk-min-length", "5242880")
        .assert_header("oci-chunk-max-length", "6291456");

    let reg = TestRegistry::new();
    reg.post(format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .assert_status(202)
        .assert_header(
            "oci-chunk-min-length",
            &reg.config.chunk_min_length.to_string(),
        )
        .assert_no_header("oci-chunk-max-length");
}

#[tokio::test]
async fn chunked_upload_with_content_range() {
    let reg = TestRegistry::new();
    let data = pattern(25, 2);
    let mut loc = reg.start_upload(REPO).await;
    let id = upload_id(&loc);
    for (start, end) in [(0, 10), (10, 20), (20, 25)] {
        let res = patch_chunk(&reg, &loc, start, &data[start..end]).await;
        res.assert_status(202).assert_header("content-length", "0");
        assert!(res.body.is_empty());
        loc = assert_upload_headers(&res, end - 1);
        assert_eq!(upload_id(&loc), id, "the session changed id");
    }
    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    assert_upload_headers(&status, 24);

    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .header("content-length", "0")
        .send()
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/blobs/{d}"))
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;
    assert_eq!(reg.upload_files(), 0);
}

#[tokio::test]
async fn content_range_with_bytes_prefix_and_total_is_understood() {
    let reg = TestRegistry::new();
    let data = pattern(20, 3);
    let loc = reg.start_upload(REPO).await;
    reg.patch(&loc)
        .header("content-range", "bytes 0-9/20")
        .bytes(data[..10].to_vec())
        .send()
        .await
        .assert_status(202)
        .assert_header("range", "0-9");
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .header("content-range", "10-19")
        .bytes(data[10..].to_vec())
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let reg = TestRegistry::new();
    let data = pattern(300_000, 4);
    let loc = reg.start_upload(REPO).await;
    let first: Vec<Vec<u8>> = data[..100_000].chunks(4096).map(<[u8]>::to_vec).collect();
    let res = reg.patch(&loc).stream(first).send().await;
    res.assert_status(202);
    let loc = assert_upload_headers(&res, 99_999);
    // A second streamed PATCH, this one with only Content-Length, appends.
    let res = reg.patch(&loc).bytes(data[100_000..].to_vec()).send().await;
    res.assert_status(202);
    let loc = assert_upload_headers(&res, 299_999);

    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn put_with_the_final_chunk() {
    let reg = TestRegistry::new();
    let data = pattern(64, 5);
    let loc = reg.start_upload(REPO).await;
    let res = patch_chunk(&reg, &loc, 0, &data[..40]).await;
    res.assert_status(202);
    let loc = res.location();
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .header("content-type", "application/octet-stream")
        .header("content-range", "40-63")
        .bytes(data[40..].to_vec())
        .send()
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/blobs/{d}"))
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn put_without_body_and_without_content_length() {
    let reg = TestRegistry::new();
    let data = pattern(10, 6);
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &data).await.location();
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn out_of_order_chunk_is_416_and_the_upload_stays_usable() {
    let reg = TestRegistry::new();
    let data = pattern(30, 7);
    let loc = reg.start_upload(REPO).await;

    // The first chunk must start at 0.
    let res = patch_chunk(&reg, &loc, 5, &data[5..10]).await;
    res.assert_error(416, "BLOB_UPLOAD_INVALID");

    let loc = patch_chunk(&reg, &loc, 0, &data[..10]).await.location();
    // A gap, then an overlap: both out of order.
    patch_chunk(&reg, &loc, 20, &data[20..30])
        .await
        .assert_error(416, "BLOB_UPLOAD_INVALID");
    patch_chunk(&reg, &loc, 0, &data[..10])
        .await
        .assert_error(416, "BLOB_UPLOAD_INVALID");
    patch_chunk(&reg, &loc, 5, &data[5..15])
        .await
        .assert_error(416, "BLOB_UPLOAD_INVALID");

    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    let loc = assert_upload_headers(&status, 9);

    let res = patch_chunk(&reg, &loc, 10, &data[10..20]).await;
    res.assert_status(202);
    let loc = assert_upload_headers(&res, 19);
    let res = patch_chunk(&reg, &loc, 20, &data[20..]).await;
    res.assert_status(202);
    let loc = assert_upload_headers(&res, 29);
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn out_of_order_final_chunk_is_416_and_the_upload_stays_usable() {
    let reg = TestRegistry::new();
    let data = pattern(20, 8);
    let d = sha256(&data);
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &data[..10]).await.location();
    reg.put(with_digest(&loc, &d))
        .header("content-range", "12-19")
        .bytes(data[12..].to_vec())
        .send()
        .await
        .assert_error(416, "BLOB_UPLOAD_INVALID");
    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    let loc = assert_upload_headers(&status, 9);
    reg.put(with_digest(&loc, &d))
        .header("content-range", "10-19")
        .bytes(data[10..].to_vec())
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn chunk_shorter_than_its_content_range_is_refused_then_resent() {
    let reg = TestRegistry::new();
    let data = pattern(20, 9);
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &data[..10]).await.location();

    // Content-Range announces 10 bytes, the (chunked) body carries 4.
    reg.patch(&loc)
        .header("content-range", "10-19")
        .stream(vec![data[10..14].to_vec()])
        .send()
        .await
        .assert_error(400, "SIZE_INVALID");

    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    let loc = assert_upload_headers(&status, 9);

    let res = patch_chunk(&reg, &loc, 10, &data[10..]).await;
    res.assert_status(202);
    let loc = assert_upload_headers(&res, 19);
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn chunk_whose_connection_drops_is_refused_then_resent() {
    let reg = TestRegistry::new();
    let data = pattern(40, 10);
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &data[..20]).await.location();

    let res = reg
        .patch(&loc)
        .header("content-range", "20-39")
        .failing_stream(vec![data[20..30].to_vec()])
        .send()
        .await;
    assert!(
        res.status.is_client_error(),
        "a broken body must fail the chunk: {res:?}"
    );
    res.assert_error(400, "BLOB_UPLOAD_INVALID");

    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    let loc = assert_upload_headers(&status, 19);

    // Resending the same chunk works, and the bytes of the broken attempt are gone.
    let res = patch_chunk(&reg, &loc, 20, &data[20..]).await;
    res.assert_status(202);
    let loc = assert_upload_headers(&res, 39);
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn streamed_chunk_whose_connection_drops_is_refused_then_resent() {
    let reg = TestRegistry::new();
    let data = pattern(30, 11);
    let loc = reg.start_upload(REPO).await;
    let loc = reg
        .patch(&loc)
        .stream(vec![data[..10].to_vec()])
        .send()
        .await;
    loc.assert_status(202);
    let loc = loc.location();
    reg.patch(&loc)
        .failing_stream(vec![b"garbage that must not stay".to_vec()])
        .send()
        .await
        .assert_error(400, "BLOB_UPLOAD_INVALID");
    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    let loc = assert_upload_headers(&status, 9);
    let loc = reg
        .patch(&loc)
        .stream(vec![data[10..].to_vec()])
        .send()
        .await
        .location();
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn content_length_disagreeing_with_content_range_is_refused() {
    let reg = TestRegistry::new();
    let data = pattern(10, 12);
    let loc = reg.start_upload(REPO).await;
    let res = reg
        .patch(&loc)
        .header("content-range", "0-9")
        .header("content-length", "4")
        .raw_body(axum::body::Body::from(data[..4].to_vec()))
        .send()
        .await;
    assert!(res.status.is_client_error(), "accepted: {res:?}");
    assert!(!res.error_codes().is_empty());
    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    assert_upload_headers(&status, 0);
    let loc = patch_chunk(&reg, &loc, 0, &data).await.location();
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn digest_mismatch_discards_the_upload() {
    let reg = TestRegistry::new();
    let data = pattern(50, 13);
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &data).await.location();
    let wrong = sha256(b"not the content");
    reg.put(with_digest(&loc, &wrong))
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
    for d in [&wrong, &sha256(&data)] {
        reg.head(format!("/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .assert_status(404);
    }
    reg.get(&loc)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch(&loc)
        .bytes(b"more".to_vec())
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put(with_digest(&loc, &sha256(&data)))
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(reg.upload_files(), 0, "the upload's bytes were left behind");
    assert_eq!(reg.blob_files(), 0);
}

#[tokio::test]
async fn digest_mismatch_with_a_final_chunk_discards_the_upload() {
    let reg = TestRegistry::new();
    let loc = reg.start_upload(REPO).await;
    let wrong = sha256(b"not the content");
    reg.put(with_digest(&loc, &wrong))
        .bytes(pattern(10, 14))
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
    reg.get(&loc)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(reg.upload_files(), 0);
    assert_eq!(reg.blob_files(), 0);
}

#[tokio::test]
async fn put_without_digest_is_400() {
    let reg = TestRegistry::new();
    let loc = reg.start_upload(REPO).await;
    reg.put(&loc)
        .bytes(b"data".to_vec())
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
    assert_eq!(reg.blob_files(), 0);
}

#[tokio::test]
async fn upload_status_is_204_with_range() {
    let reg = TestRegistry::new();
    let loc = reg.start_upload(REPO).await;
    let res = reg.get(&loc).send().await;
    res.assert_status(204);
    assert!(res.body.is_empty());
    assert_upload_headers(&res, 0);
    let loc = patch_chunk(&reg, &loc, 0, &pattern(7, 15)).await.location();
    let res = reg.get(&loc).send().await;
    res.assert_status(204);
    assert_upload_headers(&res, 6);
}

#[tokio::test]
async fn cancel_upload_is_204_then_404() {
    let reg = TestRegistry::new();
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &pattern(100, 16))
        .await
        .location();
    let res = reg.delete(&loc).send().await;
    res.assert_status(204);
    assert!(res.body.is_empty());
    reg.get(&loc)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&loc)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    patch_chunk(&reg, &loc, 100, b"x")
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(reg.upload_files(), 0);
}

#[tokio::test]
async fn unknown_upload_ids_are_404_blob_upload_unknown() {
    let reg = TestRegistry::new();
    reg.start_upload(REPO).await;
    let d = sha256(b"x");
    for id in [
        "0123456789abcdef0123456789abcdef",
        "nope",
        "..%2f..%2fmetadata.redb",
        "%2e%2e",
    ] {
        let loc = format!("/v2/{REPO}/blobs/uploads/{id}");
        reg.get(&loc)
            .send()
            .await
            .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.patch(&loc)
            .bytes(b"x".to_vec())
            .send()
            .await
            .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.put(with_digest(&loc, &d))
            .bytes(b"x".to_vec())
            .send()
            .await
            .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.delete(&loc)
            .send()
            .await
            .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
    assert_eq!(reg.blob_files(), 0);
}

#[tokio::test]
async fn upload_ids_are_scoped_to_their_repository() {
    let reg = TestRegistry::new();
    let data = pattern(12, 17);
    let loc = reg.start_upload(REPO).await;
    let id = upload_id(&loc);
    let other = format!("/v2/other/repo/blobs/uploads/{id}");
    let d = sha256(&data);
    reg.get(&other)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch(&other)
        .bytes(data.clone())
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put(with_digest(&other, &d))
        .bytes(data.clone())
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&other)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.head(format!("/v2/other/repo/blobs/{d}"))
        .send()
        .await
        .assert_status(404);

    // The session in its own repository is untouched.
    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    assert_upload_headers(&status, 0);
    reg.put(with_digest(&loc, &d))
        .bytes(data.clone())
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn sha512_upload_with_digest_algorithm() {
    let reg = TestRegistry::new();
    let data = pattern(3000, 18);
    let res = reg
        .post(format!("/v2/{REPO}/blobs/uploads/?digest-algorithm=sha512"))
        .send()
        .await;
    res.assert_status(202);
    let loc = patch_chunk(&reg, &res.location(), 0, &data[..1000])
        .await
        .location();
    let loc = patch_chunk(&reg, &loc, 1000, &data[1000..2000])
        .await
        .location();
    let d = sha512(&data);
    reg.put(with_digest(&loc, &d))
        .header("content-range", "2000-2999")
        .bytes(data[2000..].to_vec())
        .send()
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/blobs/{d}"))
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn sha512_upload_without_the_algorithm_hint_still_verifies() {
    let reg = TestRegistry::new();
    let data = pattern(2500, 19);
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &data[..1200]).await.location();
    let loc = patch_chunk(&reg, &loc, 1200, &data[1200..])
        .await
        .location();
    let d = sha512(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &d);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn sha512_upload_without_hint_and_wrong_digest_is_refused() {
    let reg = TestRegistry::new();
    let data = pattern(100, 20);
    let loc = reg.start_upload(REPO).await;
    let loc = patch_chunk(&reg, &loc, 0, &data).await.location();
    let wrong = sha512(b"other");
    reg.put(with_digest(&loc, &wrong))
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
    reg.head(format!("/v2/{REPO}/blobs/{wrong}"))
        .send()
        .await
        .assert_status(404);
    assert_eq!(reg.upload_files(), 0);
}

#[tokio::test]
async fn sha512_hint_then_sha256_digest_still_verifies() {
    let reg = TestRegistry::new();
    let data = pattern(900, 21);
    let res = reg
        .post(format!("/v2/{REPO}/blobs/uploads/?digest-algorithm=sha512"))
        .send()
        .await;
    res.assert_status(202);
    let loc = patch_chunk(&reg, &res.location(), 0, &data)
        .await
        .location();
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;
}

#[tokio::test]
async fn idle_uploads_expire_and_activity_extends_them() {
    let reg = TestRegistry::new();
    let ttl = reg.config.upload_ttl_secs;
    let loc = reg.start_upload(REPO).await;
    reg.clock.advance_secs(ttl - 10);
    let loc = patch_chunk(&reg, &loc, 0, b"abc").await;
    loc.assert_status(202);
    let loc = loc.location();
    // Past the first deadline, but the PATCH moved it.
    reg.clock.advance_secs(20);
    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    assert_upload_headers(&status, 2);
    // Idle for a whole TTL: gone.
    reg.clock.advance_secs(ttl);
    reg.get(&loc)
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put(with_digest(&loc, &sha256(b"abc")))
        .send()
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.head(format!("/v2/{REPO}/blobs/{}", sha256(b"abc")))
        .send()
        .await
        .assert_status(404);
}

#[tokio::test]
async fn chunks_over_the_request_limit_are_413() {
    let reg = TestRegistry::with_config(RegistryConfig {
        max_request_body: Some(16),
        ..RegistryConfig::default()
    });
    let data = pattern(20, 22);
    let loc = reg.start_upload(REPO).await;
    // Announced too large by Content-Range / Content-Length.
    patch_chunk(&reg, &loc, 0, &data[..17])
        .await
        .assert_error(413, "SIZE_INVALID");
    // Too large, found out while streaming.
    reg.patch(&loc)
        .stream(vec![data[..10].to_vec(), data[10..].to_vec()])
        .send()
        .await
        .assert_error(413, "SIZE_INVALID");
    let status = reg.get(&loc).send().await;
    status.assert_status(204);
    assert_upload_headers(&status, 0);

    let loc = patch_chunk(&reg, &loc, 0, &data[..16]).await.location();
    let loc = patch_chunk(&reg, &loc, 16, &data[16..]).await.location();
    let d = sha256(&data);
    reg.put(with_digest(&loc, &d))
        .send()
        .await
        .assert_status(201);
    assert_blob(&reg, REPO, &d, &data).await;

    // A monolithic push over the limit is refused and leaves nothing.
    let big = pattern(17, 23);
    reg.post(format!("/v2/{REPO}/blobs/uploads/?digest={}", sha256(&big)))
        .bytes(big)
        .send()
        .await
        .assert_error(413, "SIZE_INVALID");
    assert_eq!(reg.upload_files(), 0);
}
