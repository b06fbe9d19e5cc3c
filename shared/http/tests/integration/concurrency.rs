//! Concurrent requests over HTTP: the same blob pushed many times at once, racing tag
//! updates, racing chunks of one upload, and independent uploads interleaved.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;

const WORKERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_monolithic_pushes_of_the_same_blob() {
    let reg = TestRegistry::new();
    let data = pattern(256 * 1024, 1);
    let d = sha256(&data);
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let call = reg
                .post(format!("/v2/race/blob/blobs/uploads/?digest={d}"))
                .stream(data.chunks(10_000).map(<[u8]>::to_vec).collect());
            tokio::spawn(call.send())
        })
        .collect();
    for t in tasks {
        t.await
            .expect("push task")
            .assert_status(201)
            .assert_header("docker-content-digest", &d);
    }
    reg.get(format!("/v2/race/blob/blobs/{d}"))
        .send()
        .await
        .assert_status(200)
        .assert_header("content-length", &data.len().to_string())
        .assert_body(&data);
    assert_eq!(reg.upload_files(), 0);
    assert_eq!(reg.blob_files(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_the_same_blob_to_different_repositories() {
    let reg = TestRegistry::new();
    let data = pattern(100_000, 2);
    let d = sha256(&data);
    let tasks: Vec<_> = (0..WORKERS)
        .map(|i| {
            let call = reg
                .post(format!("/v2/race/repo{i}/blobs/uploads/?digest={d}"))
                .bytes(data.clone());
            tokio::spawn(call.send())
        })
        .collect();
    for t in tasks {
        t.await.expect("push task").assert_status(201);
    }
    for i in 0..WORKERS {
        reg.get(format!("/v2/race/repo{i}/blobs/{d}"))
            .send()
            .await
            .assert_status(200)
            .assert_body(&data);
    }
    assert_eq!(reg.blob_files(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_manifest_puts_to_one_tag_end_with_one_of_them() {
    let reg = TestRegistry::new();
    let mut bodies = Vec::new();
    for i in 0..WORKERS {
        bodies.push(to_bytes(&reg.image_manifest("race/tag", i as u64).await));
    }
    let digests: BTreeSet<String> = bodies.iter().map(|b| sha256(b)).collect();
    assert_eq!(digests.len(), WORKERS);
    let tasks: Vec<_> = bodies
        .iter()
        .map(|body| {
            let call = reg
                .put("/v2/race/tag/manifests/latest")
                .header("content-type", OCI_MANIFEST)
                .bytes(body.clone());
            tokio::spawn(call.send())
        })
        .collect();
    for t in tasks {
        t.await.expect("put task").assert_status(201);
    }
    let res = reg.get("/v2/race/tag/manifests/latest").send().await;
    res.assert_status(200);
    let winner = res.expect_header("docker-content-digest").to_owned();
    assert!(digests.contains(&winner), "tag resolves to {winner}");
    assert_eq!(
        sha256(&res.body),
        winner,
        "the tag's body is not its digest"
    );
    for body in &bodies {
        reg.get(format!("/v2/race/tag/manifests/{}", sha256(body)))
            .send()
            .await
            .assert_status(200)
            .assert_body(body);
    }
    let tags = reg.get("/v2/race/tag/tags/list").send().await;
    assert_eq!(tags.json()["tags"], serde_json::json!(["latest"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_chunks_for_one_range_accept_exactly_one() {
    let reg = TestRegistry::new();
    let data = pattern(2000, 3);
    let loc = reg.start_upload("race/chunks").await;
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let call = reg
                .patch(&loc)
                .header("content-range", "0-999")
                .bytes(data[..1000].to_vec());
            tokio::spawn(call.send())
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        let res = t.await.expect("patch task");
        match res.status.as_u16() {
            202 => {
                accepted += 1;
                res.assert_header("range", "0-999");
            }
            _ => {
                res.assert_error(416, "BLOB_UPLOAD_INVALID");
            }
        }
    }
    assert_eq!(accepted, 1, "exactly one of the racing chunks must land");
    let res = reg
        .patch(&loc)
        .header("content-range", "1000-1999")
        .bytes(data[1000..].to_vec())
        .send()
        .await;
    res.assert_status(202).assert_header("range", "0-1999");
    let d = sha256(&data);
    reg.put(with_digest(&res.location(), &d))
        .send()
        .await
        .assert_status(201);
    reg.get(format!("/v2/race/chunks/blobs/{d}"))
        .send()
        .await
        .assert_body(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_chunked_uploads_stay_independent() {
    let reg = Arc::new(TestRegistry::new());
    let tasks: Vec<_> = (0..WORKERS)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                let data = pattern(50_000 + i * 1000, 10 + i as u64);
                let mut loc = reg.start_upload("race/many").await;
                let mut offset = 0;
                for chunk in data.chunks(7000) {
                    let end = offset + chunk.len() - 1;
                    let res = reg
                        .patch(&loc)
                        .header("content-range", format!("{offset}-{end}"))
                        .bytes(chunk.to_vec())
                        .send()
                        .await;
                    res.assert_status(202)
                        .assert_header("range", &format!("0-{end}"));
                    loc = res.location();
                    offset = end + 1;
                    tokio::task::yield_now().await;
                }
                let d = sha256(&data);
                reg.put(with_digest(&loc, &d))
                    .send()
                    .await
                    .assert_status(201);
                (d, data)
            })
        })
        .collect();
    for t in tasks {
        let (d, data) = t.await.expect("upload task");
        reg.get(format!("/v2/race/many/blobs/{d}"))
            .send()
            .await
            .assert_status(200)
            .assert_body(&data);
    }
    assert_eq!(reg.upload_files(), 0);
}
