//! Discovery over HTTP: the `/v2/` check, tag listing with pagination, the catalog,
//! and the referrers API with `artifactType` filtering.

use crate::common;

use common::*;
use serde_json::{Value, json};

const REPO: &str = "discovery/app";

#[tokio::test]
async fn api_root_answers_200_with_the_version_header() {
    let reg = TestRegistry::new();
    for path in ["/v2/", "/v2"] {
        reg.get(path)
            .send()
            .await
            .assert_status(200)
            .assert_header("docker-distribution-api-version", "registry/2.0");
    }
}

#[tokio::test]
async fn every_answer_carries_the_version_header() {
    let reg = TestRegistry::new();
    let d = sha256(b"x");
    for res in [
        reg.get(format!("/v2/{REPO}/blobs/{d}")).send().await,
        reg.get(format!("/v2/{REPO}/manifests/latest")).send().await,
        reg.get("/v2/_catalog").send().await,
        reg.post(format!("/v2/{REPO}/blobs/uploads/")).send().await,
        reg.get("/v2/Invalid/tags/list").send().await,
    ] {
        res.assert_header("docker-distribution-api-version", "registry/2.0");
    }
}

async fn tag(reg: &TestRegistry, repo: &str, tags: &[&str]) {
    let body = to_bytes(&reg.image_manifest(repo, 1).await);
    for t in tags {
        reg.put_manifest(repo, t, OCI_MANIFEST, &body)
            .await
            .assert_status(201);
    }
}

async fn tags_page(reg: &TestRegistry, url: &str) -> (Value, Option<String>) {
    let res = reg.get(url).send().await;
    res.assert_status(200);
    assert!(
        res.expect_header("content-type")
            .starts_with("application/json"),
        "{res:?}"
    );
    (res.json(), res.header("link").map(str::to_owned))
}

/// The URL of a `Link: <url>; rel="next"` header.
fn next_url(link: &str) -> String {
    let (url, rel) = link
        .split_once(';')
        .unwrap_or_else(|| panic!("Link header without parameters: {link:?}"));
    assert_eq!(rel.trim(), "rel=\"next\"", "Link relation in {link:?}");
    url.trim()
        .strip_prefix('<')
        .and_then(|u| u.strip_suffix('>'))
        .unwrap_or_else(|| panic!("Link URL not in <>: {link:?}"))
        .to_owned()
}

#[tokio::test]
async fn tags_are_listed_in_lexical_order() {
    let reg = TestRegistry::new();
    tag(&reg, REPO, &["v2", "latest", "a", "B", "v10", "_x", "1.0"]).await;
    let (body, link) = tags_page(&reg, &format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(
        body,
        json!({"name": REPO, "tags": ["1.0", "B", "_x", "a", "latest", "v10", "v2"]})
    );
    assert_eq!(link, None);
}

#[tokio::test]
async fn tags_paginate_with_n_last_and_link() {
    let reg = TestRegistry::new();
    tag(&reg, REPO, &["e", "c", "a", "d", "b"]).await;
    let base = format!("/v2/{REPO}/tags/list");

    let (body, link) = tags_page(&reg, &format!("{base}?n=2")).await;
    assert_eq!(body, json!({"name": REPO, "tags": ["a", "b"]}));
    let link = link.expect("a Link header on the first page");
    assert_eq!(link, format!("<{base}?n=2&last=b>; rel=\"next\""));

    let (body, link) = tags_page(&reg, &next_url(&link)).await;
    assert_eq!(body["tags"], json!(["c", "d"]));
    let link = link.expect("a Link header on the second page");
    assert_eq!(link, format!("<{base}?n=2&last=d>; rel=\"next\""));

    let (body, link) = tags_page(&reg, &next_url(&link)).await;
    assert_eq!(body["tags"], json!(["e"]));
    assert_eq!(link, None, "Link header on the last page");

    // A page that ends exactly at the last tag has no Link either.
    let (body, link) = tags_page(&reg, &format!("{base}?n=5")).await;
    assert_eq!(body["tags"], json!(["a", "b", "c", "d", "e"]));
    assert_eq!(link, None);
    let (body, link) = tags_page(&reg, &format!("{base}?n=2&last=c")).await;
    assert_eq!(body["tags"], json!(["d", "e"]));
    assert_eq!(link, None);

    let (body, link) = tags_page(&reg, &format!("{base}?n=100")).await;
    assert_eq!(body["tags"], json!(["a", "b", "c", "d", "e"]));
    assert_eq!(link, None);

    // `last` alone, and a `last` that is not itself a tag.
    let (body, _) = tags_page(&reg, &format!("{base}?last=c")).await;
    assert_eq!(body["tags"], json!(["d", "e"]));
    let (body, _) = tags_page(&reg, &format!("{base}?last=bb")).await;
    assert_eq!(body["tags"], json!(["c", "d", "e"]));
    let (body, link) = tags_page(&reg, &format!("{base}?last=zzz")).await;
    assert_eq!(body["tags"], json!([]));
    assert_eq!(link, None);
}

#[tokio::test]
async fn tags_n_zero_is_an_empty_list_without_link() {
    let reg = TestRegistry::new();
    tag(&reg, REPO, &["a", "b"]).await;
    let (body, link) = tags_page(&reg, &format!("/v2/{REPO}/tags/list?n=0")).await;
    assert_eq!(body, json!({"name": REPO, "tags": []}));
    assert_eq!(link, None);
}

#[tokio::test]
async fn tags_with_an_invalid_n_are_400() {
    let reg = TestRegistry::new();
    tag(&reg, REPO, &["a"]).await;
    for n in ["-1", "abc", "1.5", "0x10"] {
        let res = reg.get(format!("/v2/{REPO}/tags/list?n={n}")).send().await;
        res.assert_status(400);
        assert_eq!(res.error_codes().len(), 1, "{res:?}");
    }
}

#[tokio::test]
async fn tags_of_an_unknown_repository_are_404_name_unknown() {
    let reg = TestRegistry::new();
    tag(&reg, REPO, &["a"]).await;
    reg.get("/v2/no/such/repo/tags/list")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    reg.get("/v2/no/such/repo/tags/list?n=0")
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn repository_without_tags_lists_an_empty_array() {
    let reg = TestRegistry::new();
    reg.push_blob(REPO, b"a blob makes the repository").await;
    let (body, link) = tags_page(&reg, &format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(body, json!({"name": REPO, "tags": []}));
    assert_eq!(link, None);
}

#[tokio::test]
async fn catalog_lists_repositories_with_pagination() {
    let reg = TestRegistry::new();
    let (body, link) = tags_page(&reg, "/v2/_catalog").await;
    assert_eq!(body, json!({"repositories": []}));
    assert_eq!(link, None);

    reg.push_blob("c", b"1").await;
    reg.push_blob("a/b", b"2").await;
    reg.push_image("b", "latest", 3).await;
    reg.push_blob("a", b"4").await;
    reg.push_blob("c/d/e", b"5").await;
    // An upload that was never finished does not make a repository.
    reg.start_upload("not/yet").await;

    let (body, link) = tags_page(&reg, "/v2/_catalog").await;
    assert_eq!(
        body,
        json!({"repositories": ["a", "a/b", "b", "c", "c/d/e"]})
    );
    assert_eq!(link, None);

    let (body, link) = tags_page(&reg, "/v2/_catalog?n=2").await;
    assert_eq!(body, json!({"repositories": ["a", "a/b"]}));
    let link = link.expect("a Link header on the first catalog page");
    assert_eq!(link, "</v2/_catalog?n=2&last=a%2Fb>; rel=\"next\"");
    let (body, link) = tags_page(&reg, &next_url(&link)).await;
    assert_eq!(body["repositories"], json!(["b", "c"]));
    let link = link.expect("a Link header on the second catalog page");
    let (body, link) = tags_page(&reg, &next_url(&link)).await;
    assert_eq!(body["repositories"], json!(["c/d/e"]));
    assert_eq!(link, None);

    let (body, link) = tags_page(&reg, "/v2/_catalog?n=0").await;
    assert_eq!(body, json!({"repositories": []}));
    assert_eq!(link, None);
    let (body, _) = tags_page(&reg, "/v2/_catalog?last=b").await;
    assert_eq!(body["repositories"], json!(["c", "c/d/e"]));

    reg.get("/v2/_catalog?n=many")
        .send()
        .await
        .assert_status(400);
}

// ---- referrers ----

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIG_CONFIG: &str = "application/vnd.example.signature.config.v1+json";

/// An artifact manifest referring to `subject`.
async fn referrer(
    reg: &TestRegistry,
    repo: &str,
    subject: &str,
    artifact_type: Option<&str>,
    config_type: &str,
    annotations: Value,
) -> (String, Vec<u8>) {
    let config = b"{}";
    let layer = pattern(40, annotations.to_string().len() as u64);
    reg.push_blob(repo, config).await;
    reg.push_blob(repo, &layer).await;
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_type, config),
        "layers": [descriptor("application/octet-stream", &layer)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 100},
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    let body = to_bytes(&m);
    let d = sha256(&body);
    reg.put_manifest(repo, &d, OCI_MANIFEST, &body)
        .await
        .assert_status(201)
        .assert_header("oci-subject", subject);
    (d, body)
}

async fn referrers(reg: &TestRegistry, repo: &str, subject: &str, query: &str) -> Resp {
    let res = reg
        .get(format!("/v2/{repo}/referrers/{subject}{query}"))
        .send()
        .await;
    res.assert_status(200)
        .assert_header("content-type", OCI_INDEX);
    let body = res.json();
    assert_eq!(body["schemaVersion"], json!(2), "{res:?}");
    assert_eq!(body["mediaType"], json!(OCI_INDEX), "{res:?}");
    assert!(body["manifests"].is_array(), "{res:?}");
    res
}

/// The referrers' descriptors, sorted by digest so the comparison ignores order.
fn descriptors(res: &Resp) -> Vec<Value> {
    let mut list = res.json()["manifests"].as_array().unwrap().clone();
    list.sort_by_key(|d| d["digest"].as_str().unwrap_or_default().to_owned());
    list
}

fn sorted(mut list: Vec<Value>) -> Vec<Value> {
    list.sort_by_key(|d| d["digest"].as_str().unwrap_or_default().to_owned());
    list
}

#[tokio::test]
async fn referrers_list_manifests_with_artifact_type_and_annotations() {
    let reg = TestRegistry::new();
    let (subject, _) = reg.push_image(REPO, "latest", 1).await;
    let (sbom, sbom_body) = referrer(
        &reg,
        REPO,
        &subject,
        Some(SBOM),
        OCI_EMPTY,
        json!({"org.example.sbom.format": "json"}),
    )
    .await;
    let (sig, sig_body) = referrer(
        &reg,
        REPO,
        &subject,
        None,
        SIG_CONFIG,
        json!({"org.example.signature.fingerprint": "abcd"}),
    )
    .await;
    // An index referrer without artifactType: the descriptor has none.
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 100},
        "annotations": {"org.example.kind": "bundle"},
    }));
    let index_digest = sha256(&index);
    reg.put_manifest(REPO, &index_digest, OCI_INDEX, &index)
        .await
        .assert_status(201)
        .assert_header("oci-subject", &subject);
    // Not a referrer: a plain image in the same repository.
    reg.push_image(REPO, "other", 2).await;

    let res = referrers(&reg, REPO, &subject, "").await;
    res.assert_no_header("oci-filters-applied");
    assert_eq!(
        descriptors(&res),
        sorted(vec![
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": sbom,
                "size": sbom_body.len(),
                "artifactType": SBOM,
                "annotations": {"org.example.sbom.format": "json"},
            }),
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": sig,
                "size": sig_body.len(),
                "artifactType": SIG_CONFIG,
                "annotations": {"org.example.signature.fingerprint": "abcd"},
            }),
            json!({
                "mediaType": OCI_INDEX,
                "digest": index_digest,
                "size": index.len(),
                "annotations": {"org.example.kind": "bundle"},
            }),
        ])
    );
}

#[tokio::test]
async fn referrers_filter_by_artifact_type() {
    let reg = TestRegistry::new();
    let (subject, _) = reg.push_image(REPO, "latest", 3).await;
    let (sbom, _) = referrer(
        &reg,
        REPO,
        &subject,
        Some(SBOM),
        OCI_EMPTY,
        json!({"n": "1"}),
    )
    .await;
    referrer(&reg, REPO, &subject, None, SIG_CONFIG, json!({"n": "2"})).await;

    let res = referrers(&reg, REPO, &subject, &format!("?artifactType={SBOM}")).await;
    res.assert_header("oci-filters-applied", "artifactType");
    let list = descriptors(&res);
    assert_eq!(list.len(), 1, "{res:?}");
    assert_eq!(list[0]["digest"], json!(sbom));

    // The artifact type taken from the config media type filters too ('+' encoded, as
    // a '+' in a query string is a space).
    let encoded = SIG_CONFIG.replace('+', "%2B");
    let res = referrers(&reg, REPO, &subject, &format!("?artifactType={encoded}")).await;
    res.assert_header("oci-filters-applied", "artifactType");
    assert_eq!(descriptors(&res).len(), 1);

    let res = referrers(&reg, REPO, &subject, "?artifactType=application/vnd.none").await;
    res.assert_header("oci-filters-applied", "artifactType");
    assert_eq!(res.json()["manifests"], json!([]));
}

#[tokio::test]
async fn referrers_of_an_unknown_subject_or_repository_are_an_empty_index() {
    let reg = TestRegistry::new();
    reg.push_image(REPO, "latest", 4).await;
    let unknown = sha256(b"nobody refers to this");
    let res = referrers(&reg, REPO, &unknown, "").await;
    assert_eq!(res.json()["manifests"], json!([]));
    let res = referrers(&reg, "no/such/repo", &unknown, "").await;
    assert_eq!(res.json()["manifests"], json!([]));
}

#[tokio::test]
async fn referrers_pushed_before_their_subject_are_listed() {
    let reg = TestRegistry::new();
    let subject_body = to_bytes(&reg.image_manifest(REPO, 5).await);
    let subject = sha256(&subject_body);
    let (r, _) = referrer(&reg, REPO, &subject, Some(SBOM), OCI_EMPTY, json!({})).await;
    reg.put_manifest(REPO, "latest", OCI_MANIFEST, &subject_body)
        .await
        .assert_status(201);
    let res = referrers(&reg, REPO, &subject, "").await;
    let list = descriptors(&res);
    assert_eq!(list.len(), 1, "{res:?}");
    assert_eq!(list[0]["digest"], json!(r));
}

#[tokio::test]
async fn referrers_are_scoped_to_their_repository() {
    let reg = TestRegistry::new();
    let (subject, body) = reg.push_image("team/a", "latest", 6).await;
    reg.push_image("team/b", "latest", 6).await;
    assert_eq!(sha256(&body), subject);
    referrer(&reg, "team/a", &subject, Some(SBOM), OCI_EMPTY, json!({})).await;
    let res = referrers(&reg, "team/b", &subject, "").await;
    assert_eq!(res.json()["manifests"], json!([]));
    let res = referrers(&reg, "team/a", &subject, "").await;
    assert_eq!(descriptors(&res).len(), 1);
}

#[tokio::test]
async fn deleted_referrers_disappear() {
    let reg = TestRegistry::new();
    let (subject, _) = reg.push_image(REPO, "latest", 7).await;
    let (a, _) = referrer(
        &reg,
        REPO,
        &subject,
        Some(SBOM),
        OCI_EMPTY,
        json!({"k": "a"}),
    )
    .await;
    let (b, _) = referrer(
        &reg,
        REPO,
        &subject,
        Some(SBOM),
        OCI_EMPTY,
        json!({"k": "b"}),
    )
    .await;
    assert_eq!(
        descriptors(&referrers(&reg, REPO, &subject, "").await).len(),
        2
    );
    reg.delete(format!("/v2/{REPO}/manifests/{a}"))
        .send()
        .await
        .assert_status(202);
    let res = referrers(&reg, REPO, &subject, "").await;
    let list = descriptors(&res);
    assert_eq!(list.len(), 1, "{res:?}");
    assert_eq!(list[0]["digest"], json!(b));
}

#[tokio::test]
async fn referrers_with_an_invalid_digest_are_400() {
    let reg = TestRegistry::new();
    reg.push_image(REPO, "latest", 8).await;
    for d in [
        "sha256:abc",
        "latest",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        reg.get(format!("/v2/{REPO}/referrers/{d}"))
            .send()
            .await
            .assert_error(400, "DIGEST_INVALID");
    }
}
