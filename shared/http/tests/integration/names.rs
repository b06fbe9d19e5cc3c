//! Names and methods over HTTP: repository name and tag validation on every endpoint,
//! path traversal attempts, repository names that look like endpoints, unsupported
//! methods, and the rule that every error code is one the spec defines.

use crate::common;

use axum::http::Method;
use common::*;

/// Every endpoint below `/v2/<name>/`, as (method, path suffix) pairs.
fn endpoints(d: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, "manifests/latest".into()),
        (Method::HEAD, "manifests/latest".into()),
        (Method::PUT, "manifests/latest".into()),
        (Method::DELETE, "manifests/latest".into()),
        (Method::GET, format!("manifests/{d}")),
        (Method::GET, format!("blobs/{d}")),
        (Method::HEAD, format!("blobs/{d}")),
        (Method::DELETE, format!("blobs/{d}")),
        (Method::POST, "blobs/uploads/".into()),
        (Method::POST, format!("blobs/uploads/?digest={d}")),
        (
            Method::POST,
            format!("blobs/uploads/?mount={d}&from=library/x"),
        ),
        (Method::GET, "blobs/uploads/0123456789abcdef".into()),
        (Method::PATCH, "blobs/uploads/0123456789abcdef".into()),
        (
            Method::PUT,
            format!("blobs/uploads/0123456789abcdef?digest={d}"),
        ),
        (Method::DELETE, "blobs/uploads/0123456789abcdef".into()),
        (Method::GET, "tags/list".into()),
        (Method::GET, format!("referrers/{d}")),
    ]
}

#[tokio::test]
async fn invalid_repository_names_are_400_name_invalid() {
    let reg = TestRegistry::new();
    let d = reg.push_blob("library/x", b"x").await;
    let too_long = "a".repeat(256);
    let too_long_nested = format!("{}/{}", "a".repeat(128), "b".repeat(127));
    let names = [
        "Upper",
        "library/Upper",
        "UPPER",
        "..",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        "a..b",
        "a___b",
        "-a",
        "a-",
        "_a",
        "a%20b",
        "%2e%2e",
        "%2E%2E",
        "a/%2e%2e/b",
        "..%2f..%2fetc",
        "a%2fb",
        "a%00b",
        too_long.as_str(),
        too_long_nested.as_str(),
    ];
    for name in names {
        for (method, suffix) in endpoints(&d) {
            let is_head = method == Method::HEAD;
            let res = reg
                .req(method, format!("/v2/{name}/{suffix}"))
                .header("content-type", OCI_MANIFEST)
                .bytes(b"x".to_vec())
                .send()
                .await;
            if is_head {
                res.assert_status(400);
            } else {
                res.assert_error(400, "NAME_INVALID");
            }
        }
    }
    // Nothing was created under any of these names.
    let catalog = reg.get("/v2/_catalog").send().await;
    assert_eq!(
        catalog.json(),
        serde_json::json!({"repositories": ["library/x"]})
    );
    assert_eq!(reg.upload_files(), 0);
}

#[tokio::test]
async fn names_at_the_length_limit_and_with_separators_are_accepted() {
    let reg = TestRegistry::new();
    let longest = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(longest.len(), 255);
    for name in [
        longest.as_str(),
        "a",
        "0/1/2/3",
        "a.b_c__d---e/f-g",
        "library/ubuntu",
    ] {
        let (d, body) = reg.push_image(name, "latest", 1).await;
        reg.get(format!("/v2/{name}/manifests/latest"))
            .send()
            .await
            .assert_status(200)
            .assert_header("docker-content-digest", &d)
            .assert_body(&body);
        let tags = reg.get(format!("/v2/{name}/tags/list")).send().await;
        tags.assert_status(200);
        assert_eq!(
            tags.json(),
            serde_json::json!({"name": name, "tags": ["latest"]})
        );
    }
}

#[tokio::test]
async fn repository_names_that_look_like_endpoints_route_correctly() {
    let reg = TestRegistry::new();
    for name in [
        "x/blobs",
        "x/blobs/uploads",
        "a/manifests/b",
        "r/tags/list",
        "r/referrers",
        "v2",
    ] {
        let data = pattern(77, name.len() as u64);
        // Chunked upload through the Location the registry hands out.
        let loc = reg.start_upload(name).await;
        assert!(
            loc.starts_with(&format!("/v2/{name}/blobs/uploads/")),
            "{name}: {loc}"
        );
        let res = reg
            .patch(&loc)
            .header("content-range", "0-76")
            .bytes(data.clone())
            .send()
            .await;
        res.assert_status(202).assert_header("range", "0-76");
        let d = sha256(&data);
        reg.put(with_digest(&res.location(), &d))
            .send()
            .await
            .assert_status(201)
            .assert_header("location", &format!("/v2/{name}/blobs/{d}"));
        reg.get(format!("/v2/{name}/blobs/{d}"))
            .send()
            .await
            .assert_status(200)
            .assert_body(&data);

        let (md, body) = reg.push_image(name, "t", 2).await;
        reg.get(format!("/v2/{name}/manifests/{md}"))
            .send()
            .await
            .assert_status(200)
            .assert_body(&body);
        let tags = reg.get(format!("/v2/{name}/tags/list")).send().await;
        tags.assert_status(200);
        assert_eq!(
            tags.json(),
            serde_json::json!({"name": name, "tags": ["t"]})
        );
        reg.get(format!("/v2/{name}/referrers/{md}"))
            .send()
            .await
            .assert_status(200);
    }
    // Each name is its own repository: the parents were never created.
    reg.get("/v2/x/tags/list")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    reg.get("/v2/a/tags/list")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn invalid_tags_are_400_manifest_invalid() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest("library/x", 3).await);
    let too_long = "t".repeat(129);
    for tag in [".x", "-x", "a%2fb", "a%20b", "caf%C3%A9", too_long.as_str()] {
        reg.put_manifest("library/x", tag, OCI_MANIFEST, &body)
            .await
            .assert_error(400, "MANIFEST_INVALID");
        reg.get(format!("/v2/library/x/manifests/{tag}"))
            .send()
            .await
            .assert_error(400, "MANIFEST_INVALID");
        reg.head(format!("/v2/library/x/manifests/{tag}"))
            .send()
            .await
            .assert_status(400);
        reg.delete(format!("/v2/library/x/manifests/{tag}"))
            .send()
            .await
            .assert_error(400, "MANIFEST_INVALID");
    }
    // A reference with a colon is read as a digest.
    reg.put_manifest("library/x", "a:b", OCI_MANIFEST, &body)
        .await
        .assert_error(400, "DIGEST_INVALID");
    let tags = reg.get("/v2/library/x/tags/list").send().await;
    assert_eq!(tags.json()["tags"], serde_json::json!([]));

    // The longest tag the grammar allows, and the other allowed characters.
    let longest = "t".repeat(128);
    for tag in [longest.as_str(), "_x", "A-b.c_d", "0", "v1.2.3-rc.1"] {
        reg.put_manifest("library/x", tag, OCI_MANIFEST, &body)
            .await
            .assert_status(201);
        reg.get(format!("/v2/library/x/manifests/{tag}"))
            .send()
            .await
            .assert_status(200)
            .assert_body(&body);
    }
}

/// Requests whose method the endpoint does not support.
fn unsupported(d: &str) -> Vec<(Method, String)> {
    vec![
        (Method::POST, "/v2/r/manifests/latest".into()),
        (Method::PATCH, "/v2/r/manifests/latest".into()),
        (Method::PUT, format!("/v2/r/blobs/{d}")),
        (Method::POST, format!("/v2/r/blobs/{d}")),
        (Method::PATCH, format!("/v2/r/blobs/{d}")),
        (Method::PUT, "/v2/r/tags/list".into()),
        (Method::DELETE, "/v2/r/tags/list".into()),
        (Method::POST, format!("/v2/r/referrers/{d}")),
        (Method::DELETE, format!("/v2/r/referrers/{d}")),
        (Method::GET, "/v2/r/blobs/uploads/".into()),
        (Method::PUT, "/v2/r/blobs/uploads/".into()),
        (Method::DELETE, "/v2/r/blobs/uploads/".into()),
        (Method::POST, "/v2/r/blobs/uploads/0123456789abcdef".into()),
    ]
}

#[tokio::test]
async fn unsupported_methods_are_405_unsupported() {
    let reg = TestRegistry::new();
    let data = b"blob body".to_vec();
    let d = sha256(&data);
    reg.push_image("r", "latest", 4).await;
    for (method, path) in unsupported(&d) {
        reg.req(method, path)
            .header("content-type", "application/octet-stream")
            .bytes(data.clone())
            .send()
            .await
            .assert_error(405, "UNSUPPORTED");
    }
    // None of them stored anything.
    reg.head(format!("/v2/r/blobs/{d}"))
        .send()
        .await
        .assert_status(404);
    reg.get("/v2/r/manifests/latest")
        .send()
        .await
        .assert_status(200);
    assert_eq!(reg.upload_files(), 0);
}

/// RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405
/// response containing a list of the target resource's currently supported methods."
/// The distribution spec defers to RFC 9110 where it says nothing itself.
#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let reg = TestRegistry::new();
    let d = sha256(b"x");
    let mut missing = Vec::new();
    for (method, path) in unsupported(&d) {
        let res = reg.req(method.clone(), &path).send().await;
        res.assert_status(405);
        if res.header("allow").is_none() {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "405 answers without an Allow header: {missing:#?}"
    );
}

/// The spec: "The `code` field MUST be one of the following" (`code-1` … `code-14`).
#[tokio::test]
async fn every_error_code_is_one_the_spec_defines() {
    let reg = TestRegistry::new();
    let (manifest, body) = reg.push_image("r", "latest", 5).await;
    let blob = reg.push_blob("r", &pattern(10, 6)).await;
    let unknown = sha256(b"unknown");
    let upload = reg.start_upload("r").await;
    let mut answers = vec![
        reg.get("/v2/Bad/tags/list").send().await,
        reg.get("/v2/r/tags/list?n=-1").send().await,
        reg.get("/v2/_catalog?n=x").send().await,
        reg.get("/v2/nope/tags/list").send().await,
        reg.get("/v2/r/manifests/-tag").send().await,
        reg.put_manifest("r", ".tag", OCI_MANIFEST, &body).await,
        reg.get("/v2/r/manifests/missing").send().await,
        reg.get(format!("/v2/r/blobs/{unknown}")).send().await,
        reg.get("/v2/r/blobs/sha256:zz").send().await,
        reg.get(format!("/v2/r/blobs/{blob}"))
            .header("range", "bytes=100-")
            .send()
            .await,
        reg.put_manifest("r", "x", OCI_MANIFEST, b"not json").await,
        reg.put_manifest("r", &unknown, OCI_MANIFEST, &body).await,
        reg.post("/v2/r/manifests/latest").send().await,
        reg.get("/v2/r/blobs/uploads/0000").send().await,
        reg.patch(&upload)
            .header("content-range", "5-9")
            .bytes(b"12345".to_vec())
            .send()
            .await,
        reg.patch(&upload)
            .header("content-range", "0-9")
            .stream(vec![b"123".to_vec()])
            .send()
            .await,
        reg.get(format!("/v2/r/referrers/{manifest}x")).send().await,
    ];
    let mut manifest_with_unknown_blob = reg.image_manifest("r", 7).await;
    manifest_with_unknown_blob["config"] = descriptor(OCI_CONFIG, b"missing");
    answers.push(
        reg.put_manifest(
            "r",
            "y",
            OCI_MANIFEST,
            &to_bytes(&manifest_with_unknown_blob),
        )
        .await,
    );

    let mut offending = Vec::new();
    for res in &answers {
        assert!(res.status.is_client_error(), "not an error: {res:?}");
        for code in res.error_codes() {
            if !SPEC_ERROR_CODES.contains(&code.as_str()) {
                offending.push(format!("{} -> {} {code}", res.what, res.status));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "error codes the spec does not define: {offending:#?}"
    );
}
