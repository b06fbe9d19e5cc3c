//! Blob endpoints over HTTP: monolithic push, pull (GET, HEAD, ranges), repository
//! scoping, delete, cross-repository mounts and digest validation.

use crate::common;

use common::*;

const REPO: &str = "library/blobs-test";

#[tokio::test]
async fn monolithic_post_with_digest_creates_the_blob() {
    let reg = TestRegistry::new();
    let data = pattern(3000, 1);
    let d = sha256(&data);
    let res = reg
        .post(format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .bytes(data.clone())
        .send()
        .await;
    res.assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/blobs/{d}"))
        .assert_header("docker-content-digest", &d)
        .assert_header("content-length", "0");
    assert!(res.body.is_empty());

    let loc = res.location();
    let got = reg.get(&loc).send().await;
    got.assert_status(200)
        .assert_header("content-length", "3000")
        .assert_header("docker-content-digest", &d)
        .assert_body(&data);
    assert_eq!(reg.upload_files(), 0, "the upload file was left behind");
}

#[tokio::test]
async fn monolithic_post_streamed_in_many_frames() {
    let reg = TestRegistry::new();
    let data = pattern(1 << 20, 2);
    let d = sha256(&data);
    let frames: Vec<Vec<u8>> = data.chunks(7919).map(<[u8]>::to_vec).collect();
    reg.post(format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
        .stream(frames)
        .send()
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &d);
    reg.get(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_body(&data);
}

#[tokio::test]
async fn monolithic_post_with_wrong_digest_is_refused_and_leaves_nothing() {
    let reg = TestRegistry::new();
    let data = pattern(100, 3);
    let wrong = sha256(b"something else");
    reg.post(format!("/v2/{REPO}/blobs/uploads/?digest={wrong}"))
        .bytes(data.clone())
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
    for d in [wrong, sha256(&data)] {
        reg.head(format!("/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .assert_status(404);
        reg.get(format!("/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .assert_error(404, "BLOB_UNKNOWN");
    }
    assert_eq!(reg.upload_files(), 0);
    assert_eq!(reg.blob_files(), 0);
}

#[tokio::test]
async fn empty_blob_round_trips() {
    let reg = TestRegistry::new();
    let d = sha256(b"");
    assert_eq!(
        d,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    reg.post(format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
        .bytes(Vec::new())
        .send()
        .await
        .assert_status(201);
    reg.get(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_header("content-length", "0")
        .assert_body(b"");
    reg.head(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_header("content-length", "0");
}

#[tokio::test]
async fn head_answers_size_and_digest_without_body() {
    let reg = TestRegistry::new();
    let data = pattern(4321, 4);
    let d = reg.push_blob(REPO, &data).await;
    let res = reg.head(format!("/v2/{REPO}/blobs/{d}")).send().await;
    res.assert_status(200)
        .assert_header("content-length", "4321")
        .assert_header("docker-content-digest", &d);
    assert!(res.body.is_empty(), "HEAD answered a body: {res:?}");
}

#[tokio::test]
async fn unknown_blob_is_404_blob_unknown() {
    let reg = TestRegistry::new();
    reg.push_blob(REPO, b"exists").await;
    let d = sha256(b"never pushed");
    reg.get(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    reg.head(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_status(404);
    reg.get(format!("/v2/no/such/repo/blobs/{d}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn range_requests_follow_rfc_9110() {
    let reg = TestRegistry::new();
    let data = pattern(100, 5);
    let d = reg.push_blob(REPO, &data).await;
    let url = format!("/v2/{REPO}/blobs/{d}");
    let ranged = |range: &'static str| reg.get(&url).header("range", range).send();

    let res = ranged("bytes=10-19").await;
    res.assert_status(206)
        .assert_header("content-range", "bytes 10-19/100")
        .assert_header("content-length", "10")
        .assert_header("docker-content-digest", &d)
        .assert_body(&data[10..20]);

    ranged("bytes=95-")
        .await
        .assert_status(206)
        .assert_header("content-range", "bytes 95-99/100")
        .assert_body(&data[95..]);

    // An end past the blob is clamped to its last byte.
    ranged("bytes=90-1000")
        .await
        .assert_status(206)
        .assert_header("content-range", "bytes 90-99/100")
        .assert_header("content-length", "10")
        .assert_body(&data[90..]);

    // Suffix ranges: the last n bytes, or the whole blob when n is larger.
    ranged("bytes=-7")
        .await
        .assert_status(206)
        .assert_header("content-range", "bytes 93-99/100")
        .assert_body(&data[93..]);
    ranged("bytes=-500")
        .await
        .assert_status(206)
        .assert_header("content-range", "bytes 0-99/100")
        .assert_body(&data);

    ranged("bytes=0-0")
        .await
        .assert_status(206)
        .assert_header("content-range", "bytes 0-0/100")
        .assert_body(&data[..1]);

    // Unsatisfiable: starts at or after the end.
    ranged("bytes=100-").await.assert_status(416);
    ranged("bytes=100-200").await.assert_status(416);
    ranged("bytes=-0").await.assert_status(416);

    // A range unit the server does not know must be ignored (RFC 9110 §14.2).
    ranged("items=0-5")
        .await
        .assert_status(200)
        .assert_no_header("content-range")
        .assert_body(&data);
}

#[tokio::test]
async fn range_of_an_unknown_blob_is_404() {
    let reg = TestRegistry::new();
    let d = sha256(b"missing");
    reg.get(format!("/v2/{REPO}/blobs/{d}"))
        .header("range", "bytes=0-1")
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn blobs_are_scoped_to_the_repositories_that_link_them() {
    let reg = TestRegistry::new();
    let data = pattern(64, 6);
    let d = reg.push_blob("team/a", &data).await;
    reg.push_blob("team/b", b"b has other blobs").await;
    reg.get(format!("/v2/team/b/blobs/{d}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    reg.head(format!("/v2/team/b/blobs/{d}"))
        .send()
        .await
        .assert_status(404);
    reg.delete(format!("/v2/team/b/blobs/{d}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    reg.get(format!("/v2/team/a/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_body(&data);
}

#[tokio::test]
async fn delete_blob_is_202_then_404() {
    let reg = TestRegistry::new();
    let data = pattern(50, 7);
    let d = reg.push_blob("one", &data).await;
    reg.push_blob("two", &data).await;
    let res = reg.delete(format!("/v2/one/blobs/{d}")).send().await;
    res.assert_status(202);
    assert!(res.body.is_empty());
    reg.get(format!("/v2/one/blobs/{d}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    reg.head(format!("/v2/one/blobs/{d}"))
        .send()
        .await
        .assert_status(404);
    reg.delete(format!("/v2/one/blobs/{d}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    // Another repository linking the same content still serves it.
    reg.get(format!("/v2/two/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_body(&data);
}

#[tokio::test]
async fn blob_can_be_pushed_again_after_delete() {
    let reg = TestRegistry::new();
    let data = pattern(80, 8);
    let d = reg.push_blob(REPO, &data).await;
    reg.delete(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_status(202);
    reg.push_blob(REPO, &data).await;
    reg.get(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_body(&data);
}

#[tokio::test]
async fn cross_repository_mount_creates_the_link() {
    let reg = TestRegistry::new();
    let data = pattern(700, 9);
    let d = reg.push_blob("source/repo", &data).await;
    let res = reg
        .post(format!(
            "/v2/target/repo/blobs/uploads/?mount={d}&from=source/repo"
        ))
        .send()
        .await;
    res.assert_status(201)
        .assert_header("location", &format!("/v2/target/repo/blobs/{d}"))
        .assert_header("docker-content-digest", &d);
    reg.get(res.location())
        .send()
        .await
        .assert_status(200)
        .assert_body(&data);
    reg.head(format!("/v2/target/repo/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_header("content-length", "700");
    assert_eq!(reg.upload_files(), 0);
}

#[tokio::test]
async fn mount_of_an_unknown_blob_falls_back_to_an_upload_session() {
    let reg = TestRegistry::new();
    reg.push_blob("source", b"unrelated").await;
    let data = pattern(33, 10);
    let d = sha256(&data);
    let res = reg
        .post(format!("/v2/target/blobs/uploads/?mount={d}&from=source"))
        .send()
        .await;
    res.assert_status(202);
    let loc = res.location();
    assert!(
        loc.starts_with("/v2/target/blobs/uploads/"),
        "upload location {loc:?}"
    );
    assert_eq!(res.expect_header("docker-upload-uuid"), upload_id(&loc));
    // The session is usable to push the blob.
    reg.put(with_digest(&loc, &d))
        .bytes(data.clone())
        .send()
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &d);
    reg.get(format!("/v2/target/blobs/{d}"))
        .send()
        .await
        .assert_body(&data);
}

#[tokio::test]
async fn mount_from_a_repository_that_does_not_exist_falls_back_to_202() {
    let reg = TestRegistry::new();
    let d = sha256(b"nowhere");
    reg.post(format!(
        "/v2/target/blobs/uploads/?mount={d}&from=does/not/exist"
    ))
    .send()
    .await
    .assert_status(202);
    reg.get(format!("/v2/target/blobs/{d}"))
        .send()
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn automatic_mount_without_from() {
    let reg = TestRegistry::new();
    let data = pattern(123, 11);
    let d = reg.push_blob("somewhere/else", &data).await;
    reg.post(format!("/v2/mine/blobs/uploads/?mount={d}"))
        .send()
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/mine/blobs/{d}"))
        .assert_header("docker-content-digest", &d);
    reg.get(format!("/v2/mine/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_body(&data);
}

#[tokio::test]
async fn sha512_monolithic_push() {
    let reg = TestRegistry::new();
    let data = pattern(2048, 12);
    let d = sha512(&data);
    reg.post(format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
        .bytes(data.clone())
        .send()
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/blobs/{d}"))
        .assert_header("docker-content-digest", &d);
    reg.get(format!("/v2/{REPO}/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_header("docker-content-digest", &d)
        .assert_body(&data);
    // The same bytes under their sha256 digest were never pushed.
    reg.head(format!("/v2/{REPO}/blobs/{}", sha256(&data)))
        .send()
        .await
        .assert_status(404);
}

#[tokio::test]
async fn invalid_digests_are_400_digest_invalid() {
    let reg = TestRegistry::new();
    reg.push_blob(REPO, b"make the repository exist").await;
    let bad = [
        "sha256:abc".to_owned(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "g".repeat(64)),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha512:{}", "a".repeat(64)),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
        "notadigest".to_owned(),
        "sha256:".to_owned(),
    ];
    for d in &bad {
        reg.get(format!("/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .assert_error(400, "DIGEST_INVALID");
        reg.head(format!("/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .assert_status(400);
        reg.delete(format!("/v2/{REPO}/blobs/{d}"))
            .send()
            .await
            .assert_error(400, "DIGEST_INVALID");
        reg.post(format!("/v2/{REPO}/blobs/uploads/?digest={d}"))
            .bytes(b"x".to_vec())
            .send()
            .await
            .assert_error(400, "DIGEST_INVALID");
        let loc = reg.start_upload(REPO).await;
        reg.put(with_digest(&loc, d))
            .bytes(b"x".to_vec())
            .send()
            .await
            .assert_error(400, "DIGEST_INVALID");
    }
    reg.post(format!("/v2/{REPO}/blobs/uploads/?digest-algorithm=md5"))
        .send()
        .await
        .assert_error(400, "DIGEST_INVALID");
    assert_eq!(reg.blob_files(), 1);
}
