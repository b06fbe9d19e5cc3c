//! Manifest endpoints over HTTP: push by tag and digest, pull and HEAD, content
//! negotiation, Docker and OCI kinds, reference checks, validation, size limit, delete
//! and retagging, and the `OCI-Subject` header.

use crate::common;

use common::*;
use serde_json::{Value, json};

const REPO: &str = "library/app";
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

async fn get_manifest(reg: &TestRegistry, repo: &str, reference: &str) -> Resp {
    reg.get(format!("/v2/{repo}/manifests/{reference}"))
        .send()
        .await
}

/// A Docker schema 2 image whose config and layer are pushed to `repo`.
async fn docker_manifest(reg: &TestRegistry, repo: &str, seed: u64) -> Vec<u8> {
    let config = json!({"architecture": "arm64", "os": "linux", "docker": seed})
        .to_string()
        .into_bytes();
    let layer = pattern(300, seed);
    reg.push_blob(repo, &config).await;
    reg.push_blob(repo, &layer).await;
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
}

fn index_of(media_type: &str, children: &[(&str, &[u8])]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, (child_type, body))| {
            let mut d = descriptor(child_type, body);
            d["platform"] = json!({"architecture": format!("arch{i}"), "os": "linux"});
            d
        })
        .collect();
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
}

#[tokio::test]
async fn push_by_tag_then_pull_by_tag_and_digest() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest(REPO, 1).await);
    let d = sha256(&body);
    let res = reg.put_manifest(REPO, "v1.0", OCI_MANIFEST, &body).await;
    res.assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/manifests/{d}"))
        .assert_header("docker-content-digest", &d);
    assert!(res.body.is_empty());

    for reference in ["v1.0", d.as_str()] {
        get_manifest(&reg, REPO, reference)
            .await
            .assert_status(200)
            .assert_header("content-type", OCI_MANIFEST)
            .assert_header("content-length", &body.len().to_string())
            .assert_header("docker-content-digest", &d)
            .assert_body(&body);

        let head = reg
            .head(format!("/v2/{REPO}/manifests/{reference}"))
            .send()
            .await;
        head.assert_status(200)
            .assert_header("content-type", OCI_MANIFEST)
            .assert_header("content-length", &body.len().to_string())
            .assert_header("docker-content-digest", &d);
        assert!(head.body.is_empty(), "HEAD answered a body: {head:?}");
    }
    reg.get(res.location()).send().await.assert_body(&body);
}

#[tokio::test]
async fn push_by_digest_creates_no_tag() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest(REPO, 2).await);
    let d = sha256(&body);
    reg.put_manifest(REPO, &d, OCI_MANIFEST, &body)
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/manifests/{d}"))
        .assert_header("docker-content-digest", &d);
    get_manifest(&reg, REPO, &d)
        .await
        .assert_status(200)
        .assert_header("content-type", OCI_MANIFEST)
        .assert_body(&body);
    let tags = reg.get(format!("/v2/{REPO}/tags/list")).send().await;
    tags.assert_status(200);
    assert_eq!(tags.json(), json!({"name": REPO, "tags": []}));
}

#[tokio::test]
async fn push_by_sha512_digest() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest(REPO, 3).await);
    let d = sha512(&body);
    reg.put_manifest(REPO, &d, OCI_MANIFEST, &body)
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/manifests/{d}"))
        .assert_header("docker-content-digest", &d);
    get_manifest(&reg, REPO, &d)
        .await
        .assert_status(200)
        .assert_header("docker-content-digest", &d)
        .assert_body(&body);
}

#[tokio::test]
async fn pushing_the_same_manifest_twice_is_fine() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest(REPO, 4).await);
    for _ in 0..2 {
        reg.put_manifest(REPO, "same", OCI_MANIFEST, &body)
            .await
            .assert_status(201);
    }
    get_manifest(&reg, REPO, "same").await.assert_body(&body);
}

#[tokio::test]
async fn content_type_parameters_are_ignored() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest(REPO, 5).await);
    reg.put_manifest(REPO, "p", &format!("{OCI_MANIFEST}; charset=utf-8"), &body)
        .await
        .assert_status(201);
    get_manifest(&reg, REPO, "p")
        .await
        .assert_status(200)
        .assert_header("content-type", OCI_MANIFEST);
}

#[tokio::test]
async fn manifest_without_media_type_field_takes_the_content_type() {
    let reg = TestRegistry::new();
    let mut m = reg.image_manifest(REPO, 6).await;
    m.as_object_mut().unwrap().remove("mediaType");
    let body = to_bytes(&m);
    reg.put_manifest(REPO, "bare", OCI_MANIFEST, &body)
        .await
        .assert_status(201);
    get_manifest(&reg, REPO, "bare")
        .await
        .assert_header("content-type", OCI_MANIFEST)
        .assert_body(&body);
}

#[tokio::test]
async fn accept_negotiation() {
    let reg = TestRegistry::new();
    let (d, body) = reg.push_image(REPO, "latest", 7).await;
    let with_accept = |reference: String, accept: &'static str| {
        reg.get(format!("/v2/{REPO}/manifests/{reference}"))
            .header("accept", accept)
            .send()
    };
    for reference in ["latest".to_owned(), d.clone()] {
        // Only Docker types: the OCI manifest is not admitted.
        with_accept(reference.clone(), DOCKER_MANIFEST)
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
        with_accept(
            reference.clone(),
            "application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
        reg.head(format!("/v2/{REPO}/manifests/{reference}"))
            .header("accept", DOCKER_MANIFEST)
            .send()
            .await
            .assert_status(404);

        for accept in [
            "*/*",
            "application/*",
            OCI_MANIFEST,
            "application/vnd.docker.distribution.manifest.v2+json;q=0.9, \
             application/vnd.oci.image.manifest.v1+json;q=0.5",
        ] {
            with_accept(reference.clone(), accept)
                .await
                .assert_status(200)
                .assert_header("content-type", OCI_MANIFEST)
                .assert_body(&body);
        }
    }
    // Several Accept header lines are all considered.
    reg.get(format!("/v2/{REPO}/manifests/latest"))
        .header("accept", DOCKER_MANIFEST)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .assert_status(200)
        .assert_body(&body);
}

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let reg = TestRegistry::new();
    let amd = docker_manifest(&reg, REPO, 8).await;
    let arm = docker_manifest(&reg, REPO, 9).await;
    for body in [&amd, &arm] {
        reg.put_manifest(REPO, &sha256(body), DOCKER_MANIFEST, body)
            .await
            .assert_status(201);
    }
    get_manifest(&reg, REPO, &sha256(&amd))
        .await
        .assert_status(200)
        .assert_header("content-type", DOCKER_MANIFEST)
        .assert_body(&amd);

    let list = index_of(
        DOCKER_LIST,
        &[(DOCKER_MANIFEST, &amd), (DOCKER_MANIFEST, &arm)],
    );
    let d = sha256(&list);
    reg.put_manifest(REPO, "multi", DOCKER_LIST, &list)
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &d);
    reg.get(format!("/v2/{REPO}/manifests/multi"))
        .header("accept", format!("{DOCKER_LIST}, {DOCKER_MANIFEST}"))
        .send()
        .await
        .assert_status(200)
        .assert_header("content-type", DOCKER_LIST)
        .assert_header("docker-content-digest", &d)
        .assert_body(&list);
}

#[tokio::test]
async fn docker_foreign_layers_need_not_be_pushed() {
    let reg = TestRegistry::new();
    let config = br#"{"os":"windows"}"#;
    reg.push_blob(REPO, config).await;
    let body = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "size": 1234,
            "digest": sha256(b"a windows base layer"),
            "urls": ["https://example.com/base-layer"],
        }],
    }));
    reg.put_manifest(REPO, "windows", DOCKER_MANIFEST, &body)
        .await
        .assert_status(201);
}

#[tokio::test]
async fn oci_index_whose_children_exist() {
    let reg = TestRegistry::new();
    let (_, a) = reg.push_image(REPO, "a", 10).await;
    let (_, b) = reg.push_image(REPO, "b", 11).await;
    let index = index_of(OCI_INDEX, &[(OCI_MANIFEST, &a), (OCI_MANIFEST, &b)]);
    let d = sha256(&index);
    reg.put_manifest(REPO, "index", OCI_INDEX, &index)
        .await
        .assert_status(201)
        .assert_header("location", &format!("/v2/{REPO}/manifests/{d}"))
        .assert_header("docker-content-digest", &d);
    get_manifest(&reg, REPO, "index")
        .await
        .assert_status(200)
        .assert_header("content-type", OCI_INDEX)
        .assert_header("content-length", &index.len().to_string())
        .assert_body(&index);
    // An index of indexes.
    let outer = index_of(OCI_INDEX, &[(OCI_INDEX, &index)]);
    reg.put_manifest(REPO, "outer", OCI_INDEX, &outer)
        .await
        .assert_status(201);
}

#[tokio::test]
async fn index_with_a_missing_child_is_manifest_blob_unknown() {
    let reg = TestRegistry::new();
    let (_, a) = reg.push_image(REPO, "a", 12).await;
    let missing = to_bytes(&reg.image_manifest(REPO, 13).await);
    let index = index_of(OCI_INDEX, &[(OCI_MANIFEST, &a), (OCI_MANIFEST, &missing)]);
    reg.put_manifest(REPO, "index", OCI_INDEX, &index)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    get_manifest(&reg, REPO, "index")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    get_manifest(&reg, REPO, &sha256(&index))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");

    // A child present only in another repository does not count either.
    let (_, elsewhere) = reg.push_image("other/repo", "x", 14).await;
    let index = index_of(OCI_INDEX, &[(OCI_MANIFEST, &elsewhere)]);
    reg.put_manifest(REPO, "index", OCI_INDEX, &index)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn image_with_an_unknown_blob_is_manifest_blob_unknown() {
    let reg = TestRegistry::new();
    let good = reg.image_manifest(REPO, 15).await;

    let mut unknown_layer = good.clone();
    unknown_layer["layers"]
        .as_array_mut()
        .unwrap()
        .push(descriptor(OCI_LAYER, b"never pushed layer"));
    let mut unknown_config = good.clone();
    unknown_config["config"] = descriptor(OCI_CONFIG, b"{\"never\":\"pushed\"}");

    // A blob linked only in another repository does not count.
    let foreign = pattern(99, 16);
    reg.push_blob("other/repo", &foreign).await;
    let mut other_repo_layer = good.clone();
    other_repo_layer["layers"]
        .as_array_mut()
        .unwrap()
        .push(descriptor(OCI_LAYER, &foreign));

    for m in [unknown_layer, unknown_config, other_repo_layer] {
        let body = to_bytes(&m);
        reg.put_manifest(REPO, "broken", OCI_MANIFEST, &body)
            .await
            .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
        get_manifest(&reg, REPO, &sha256(&body))
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    get_manifest(&reg, REPO, "broken")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn invalid_manifests_are_manifest_invalid() {
    let reg = TestRegistry::new();
    let good = reg.image_manifest(REPO, 17).await;
    let mut schema1 = good.clone();
    schema1["schemaVersion"] = json!(1);
    let mut no_schema = good.clone();
    no_schema.as_object_mut().unwrap().remove("schemaVersion");
    let mut no_config = good.clone();
    no_config.as_object_mut().unwrap().remove("config");
    let mut bad_layer_digest = good.clone();
    bad_layer_digest["layers"][0]["digest"] = json!("sha256:nothex");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"this is not json".to_vec()),
        (
            OCI_MANIFEST,
            b"{\"schemaVersion\": 2, \"config\": ".to_vec(),
        ),
        (OCI_MANIFEST, b"{}".to_vec()),
        (OCI_MANIFEST, b"[]".to_vec()),
        (OCI_MANIFEST, to_bytes(&schema1)),
        (OCI_MANIFEST, to_bytes(&no_schema)),
        (OCI_MANIFEST, to_bytes(&no_config)),
        (OCI_MANIFEST, to_bytes(&bad_layer_digest)),
        (
            OCI_INDEX,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": 5})),
        ),
        ("text/plain", b"{\"schemaVersion\": 2}".to_vec()),
    ];
    for (content_type, body) in cases {
        reg.put_manifest(REPO, "bad", content_type, &body)
            .await
            .assert_error(400, "MANIFEST_INVALID");
    }
    get_manifest(&reg, REPO, "bad")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn media_type_and_content_type_must_agree() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest(REPO, 18).await);
    for content_type in [OCI_INDEX, DOCKER_MANIFEST] {
        reg.put_manifest(REPO, "mismatch", content_type, &body)
            .await
            .assert_error(400, "MANIFEST_INVALID");
    }
    get_manifest(&reg, REPO, "mismatch")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn digest_in_url_must_match_the_body() {
    let reg = TestRegistry::new();
    let body = to_bytes(&reg.image_manifest(REPO, 19).await);
    for wrong in [sha256(b"other"), sha512(b"other")] {
        reg.put_manifest(REPO, &wrong, OCI_MANIFEST, &body)
            .await
            .assert_error(400, "DIGEST_INVALID");
        get_manifest(&reg, REPO, &wrong)
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    get_manifest(&reg, REPO, &sha256(&body))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

/// A manifest of exactly `size` bytes (compact JSON padded by an annotation).
async fn manifest_of_size(reg: &TestRegistry, size: usize) -> Vec<u8> {
    let mut m = reg.image_manifest(REPO, 20).await;
    m["annotations"] = json!({"pad": ""});
    let base = serde_json::to_vec(&m).unwrap().len();
    m["annotations"]["pad"] = json!("x".repeat(size - base));
    let body = serde_json::to_vec(&m).unwrap();
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn manifest_of_4_mib_is_accepted() {
    let reg = TestRegistry::new();
    let body = manifest_of_size(&reg, MAX_MANIFEST).await;
    reg.put_manifest(REPO, "big", OCI_MANIFEST, &body)
        .await
        .assert_status(201)
        .assert_header("docker-content-digest", &sha256(&body));
    get_manifest(&reg, REPO, "big")
        .await
        .assert_status(200)
        .assert_header("content-length", &MAX_MANIFEST.to_string())
        .assert_body(&body);
}

#[tokio::test]
async fn manifest_over_4_mib_is_413_and_not_stored() {
    let reg = TestRegistry::new();
    let body = manifest_of_size(&reg, MAX_MANIFEST + 1).await;
    reg.put_manifest(REPO, "huge", OCI_MANIFEST, &body)
        .await
        .assert_error(413, "MANIFEST_INVALID");
    get_manifest(&reg, REPO, "huge")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    get_manifest(&reg, REPO, &sha256(&body))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    // Also when the body comes without Content-Length.
    reg.put(format!("/v2/{REPO}/manifests/huge"))
        .header("content-type", OCI_MANIFEST)
        .stream(body.chunks(100_000).map(<[u8]>::to_vec).collect())
        .send()
        .await
        .assert_error(413, "MANIFEST_INVALID");
    get_manifest(&reg, REPO, "huge")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn unknown_manifests_are_404_manifest_unknown() {
    let reg = TestRegistry::new();
    reg.push_image(REPO, "exists", 21).await;
    let d = sha256(b"no such manifest");
    for reference in ["missing", d.as_str()] {
        get_manifest(&reg, REPO, reference)
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
        reg.head(format!("/v2/{REPO}/manifests/{reference}"))
            .send()
            .await
            .assert_status(404);
        get_manifest(&reg, "no/such/repo", reference)
            .await
            .assert_status(404);
    }
}

#[tokio::test]
async fn manifests_are_scoped_to_their_repository() {
    let reg = TestRegistry::new();
    let (d, _) = reg.push_image("team/a", "latest", 22).await;
    reg.push_image("team/b", "other", 23).await;
    for reference in ["latest", d.as_str()] {
        get_manifest(&reg, "team/b", reference)
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
        reg.delete(format!("/v2/team/b/manifests/{reference}"))
            .send()
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    get_manifest(&reg, "team/a", "latest")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn delete_by_digest_removes_the_manifest_and_its_tags() {
    let reg = TestRegistry::new();
    let (d, body) = reg.push_image(REPO, "v1", 24).await;
    reg.put_manifest(REPO, "latest", OCI_MANIFEST, &body)
        .await
        .assert_status(201);
    reg.push_image(REPO, "unrelated", 25).await;

    let res = reg.delete(format!("/v2/{REPO}/manifests/{d}")).send().await;
    res.assert_status(202);
    assert!(res.body.is_empty());
    for reference in ["v1", "latest", d.as_str()] {
        get_manifest(&reg, REPO, reference)
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    let tags = reg.get(format!("/v2/{REPO}/tags/list")).send().await;
    assert_eq!(tags.json()["tags"], json!(["unrelated"]));
    reg.delete(format!("/v2/{REPO}/manifests/{d}"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    get_manifest(&reg, REPO, "unrelated")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn delete_by_tag_keeps_the_manifest() {
    let reg = TestRegistry::new();
    let (d, body) = reg.push_image(REPO, "v1", 26).await;
    reg.put_manifest(REPO, "v2", OCI_MANIFEST, &body)
        .await
        .assert_status(201);
    let res = reg.delete(format!("/v2/{REPO}/manifests/v1")).send().await;
    res.assert_status(202);
    assert!(res.body.is_empty());
    get_manifest(&reg, REPO, "v1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    get_manifest(&reg, REPO, &d)
        .await
        .assert_status(200)
        .assert_body(&body);
    get_manifest(&reg, REPO, "v2").await.assert_status(200);
    let tags = reg.get(format!("/v2/{REPO}/tags/list")).send().await;
    assert_eq!(tags.json()["tags"], json!(["v2"]));
    reg.delete(format!("/v2/{REPO}/manifests/v1"))
        .send()
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_of_unknown_manifest_is_404() {
    let reg = TestRegistry::new();
    reg.push_image(REPO, "exists", 27).await;
    let d = sha256(b"nothing");
    for reference in ["nothing", d.as_str()] {
        reg.delete(format!("/v2/{REPO}/manifests/{reference}"))
            .send()
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
        reg.delete(format!("/v2/no/such/repo/manifests/{reference}"))
            .send()
            .await
            .assert_status(404);
    }
}

#[tokio::test]
async fn retagging_moves_the_tag() {
    let reg = TestRegistry::new();
    let (a, a_body) = reg.push_image(REPO, "stable", 28).await;
    let (b, b_body) = reg.push_image(REPO, "stable", 29).await;
    assert_ne!(a, b);
    get_manifest(&reg, REPO, "stable")
        .await
        .assert_status(200)
        .assert_header("docker-content-digest", &b)
        .assert_body(&b_body);
    get_manifest(&reg, REPO, &a)
        .await
        .assert_status(200)
        .assert_body(&a_body);
    let tags = reg.get(format!("/v2/{REPO}/tags/list")).send().await;
    assert_eq!(tags.json()["tags"], json!(["stable"]));
    // Deleting the old manifest leaves the moved tag alone.
    reg.delete(format!("/v2/{REPO}/manifests/{a}"))
        .send()
        .await
        .assert_status(202);
    get_manifest(&reg, REPO, "stable")
        .await
        .assert_header("docker-content-digest", &b);
}

#[tokio::test]
async fn oci_subject_header_for_manifests_with_a_subject() {
    let reg = TestRegistry::new();
    // The subject does not exist: the push must still be accepted.
    let subject = sha256(b"a subject pushed later, or never");
    let mut m = reg.image_manifest(REPO, 30).await;
    m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 1234});
    let body = to_bytes(&m);
    reg.put_manifest(REPO, &sha256(&body), OCI_MANIFEST, &body)
        .await
        .assert_status(201)
        .assert_header("oci-subject", &subject);

    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1234},
    }));
    reg.put_manifest(REPO, &sha256(&index), OCI_INDEX, &index)
        .await
        .assert_status(201)
        .assert_header("oci-subject", &subject);

    let plain = to_bytes(&reg.image_manifest(REPO, 31).await);
    reg.put_manifest(REPO, "plain", OCI_MANIFEST, &plain)
        .await
        .assert_status(201)
        .assert_no_header("oci-subject");
}

#[tokio::test]
async fn invalid_digest_references_are_400() {
    let reg = TestRegistry::new();
    reg.push_image(REPO, "exists", 32).await;
    for reference in [
        "sha256:abc".to_owned(),
        format!("sha256:{}", "Z".repeat(64)),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
    ] {
        get_manifest(&reg, REPO, &reference)
            .await
            .assert_error(400, "DIGEST_INVALID");
        reg.delete(format!("/v2/{REPO}/manifests/{reference}"))
            .send()
            .await
            .assert_error(400, "DIGEST_INVALID");
        reg.put_manifest(REPO, &reference, OCI_MANIFEST, b"{}")
            .await
            .assert_error(400, "DIGEST_INVALID");
    }
}
