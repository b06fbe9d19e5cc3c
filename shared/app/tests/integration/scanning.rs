//! Scanning through the whole local registry (embedded backend, workers running): an
//! image pushed over `/v2` is scanned from the scan queue; a vulnerability database
//! uploaded as a zip to `/api/v1/vulndb` (system admins only) becomes current and rescans
//! it; `/api/v1/scan-reports` answers in the registry's format and in Harbor's; the SBOM
//! is a referrer of the image.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use common::basic;
use registry_app::ServerConfig;
use registry_app::compose::build;
use registry_core::worker::PollConfig;
use serde_json::{Value, json};

const ADMIN: &str = "root";
const PASSWORD: &str = "pw-for-scanning";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Env {
    app: axum::Router,
    _dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::parse_from_args([
        "registry",
        "--backend",
        "embedded",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--admin-user",
        ADMIN,
        "--admin-password",
        PASSWORD,
    ]);
    let composed = build(&config, false).await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let poll = PollConfig {
        idle: Duration::from_millis(20),
        ..PollConfig::default()
    };
    let scan_worker = composed
        .scanning
        .clone()
        .expect("scanning on embedded")
        .worker;
    let stopped_scan = stopped.clone();
    tokio::spawn(async move { scan_worker.run(poll, stopped_scan).await });
    let webhook_worker = composed.events.clone().unwrap().worker;
    tokio::spawn(async move { webhook_worker.run(poll, stopped).await });
    Env {
        app: registry_http::router(composed.state),
        _dir: dir,
        stop,
    }
}

impl Env {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        ct: &str,
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        common::send(&self.app, method, uri, auth, ct, body).await
    }

    async fn admin(
        &self,
        method: Method,
        uri: &str,
        ct: &str,
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        self.send(method, uri, Some(&basic(ADMIN, PASSWORD)), ct, body)
            .await
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        common::push_blob(&self.app, &basic(ADMIN, PASSWORD), repo, data).await
    }

    async fn report(
        &self,
        repo: &str,
        digest: &str,
        format: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, body) = self
            .admin(
                Method::GET,
                &format!("/api/v1/scan-reports?repository={repo}&digest={digest}{format}"),
                "application/json",
                vec![],
            )
            .await;
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// Waits until the image's report satisfies `done`.
    async fn wait_report(&self, repo: &str, digest: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _, report) = self.report(repo, digest, "").await;
            if status == StatusCode::OK && done(&report) {
                return report;
            }
            assert!(Instant::now() < deadline, "report: {status} {report}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn layer() -> Vec<u8> {
    registry_testkit::support::tar_layer(&[
        (
            "etc/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        ),
        (
            "var/lib/dpkg/status",
            b"Package: perl-base\nStatus: install ok installed\nVersion: 5.36.0-7+deb12u1\nSource: perl\n\n",
        ),
    ])
}

/// A zip of OSV files: one Debian advisory on perl fixed in `fixed`.
fn osv_zip(fixed: &str) -> Vec<u8> {
    let advisory = json!({
        "id": "DEBIAN-CVE-2023-47038", "modified": "2024-01-01T00:00:00Z",
        "aliases": ["CVE-2023-47038"], "summary": "perl: heap overflow in regular expressions",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "perl"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]
    });
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "debian/DEBIAN-CVE-2023-47038.json",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(advisory.to_string().as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_images_are_scanned_and_rescanned_after_an_upload() {
    let env = env().await;
    let repo = "team/perl";
    let config = env
        .push_blob(repo, b"{\"architecture\":\"amd64\",\"os\":\"linux\"}")
        .await;
    let layer = layer();
    let layer_digest = env.push_blob(repo, &layer).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let (status, headers, _) = env
        .admin(
            Method::PUT,
            &format!("/v2/{repo}/manifests/v1"),
            OCI_MANIFEST,
            manifest,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let digest = headers["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();

    // Scanned on push, before any database: packages found, no findings.
    let report = env
        .wait_report(repo, &digest, |r| r["status"] == "completed")
        .await;
    assert_eq!(report["packages"], 1);
    assert_eq!(report["findings"], json!([]));
    assert!(report.get("dbVersion").is_none());

    // Only system admins import; a bad zip is refused with nothing changed.
    let (status, _, _) = env
        .send(
            Method::POST,
            "/api/v1/vulndb",
            None,
            "application/zip",
            osv_zip("5.36.0-7+deb12u2"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = env
        .admin(
            Method::POST,
            "/api/v1/vulndb",
            "application/zip",
            b"not a zip".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    let (_, _, status_body) = env.admin(Method::GET, "/api/v1/vulndb", "", vec![]).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&status_body).unwrap()["current"],
        Value::Null
    );

    let (status, _, body) = env
        .admin(
            Method::POST,
            "/api/v1/vulndb?source=osv.zip",
            "application/zip",
            osv_zip("5.36.0-7+deb12u2"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    let imported: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(imported["advisories"], 1);
    assert_eq!(imported["source"], "osv.zip");

    // The import rescans: the report now names the advisory and the database version.
    let report = env
        .wait_report(repo, &digest, |r| r["dbVersion"] == imported["version"])
        .await;
    assert_eq!(report["summary"]["high"], 1);
    let finding = &report["findings"][0];
    assert_eq!(finding["id"], "DEBIAN-CVE-2023-47038");
    assert_eq!(finding["package"], "perl-base");
    assert_eq!(finding["installedVersion"], "5.36.0-7+deb12u1");
    assert_eq!(finding["fixedVersion"], "5.36.0-7+deb12u2");
    assert_eq!(finding["severity"], "HIGH");
    assert_eq!(finding["layer"], layer_digest.as_str());

    // Harbor's report format.
    let (status, headers, harbor) = env.report(repo, &digest, "&format=harbor").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "application/vnd.security.vulnerability.report; version=1.1"
    );
    assert_eq!(harbor["severity"], "High");
    assert_eq!(harbor["artifact"]["digest"], digest.as_str());
    assert_eq!(harbor["artifact"]["mime_type"], OCI_MANIFEST);
    assert_eq!(harbor["vulnerabilities"][0]["id"], "CVE-2023-47038");
    assert_eq!(
        harbor["vulnerabilities"][0]["fix_version"],
        "5.36.0-7+deb12u2"
    );

    // The SBOM is a referrer of the image.
    let (status, _, body) = env
        .admin(
            Method::GET,
            &format!("/v2/{repo}/referrers/{digest}"),
            "",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let index: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.cyclonedx+json"
    );
    assert_eq!(index["manifests"][0]["digest"], report["sbom"]);

    // Reports need pull access: an outsider is denied.
    let (status, _, _) = env
        .admin(
            Method::POST,
            "/api/v1/users",
            "application/json",
            serde_json::to_vec(&json!({"name": "outsider", "password": "outsider-pw-1"})).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = env
        .send(
            Method::GET,
            &format!("/api/v1/scan-reports?repository={repo}&digest={digest}"),
            Some(&basic("outsider", "outsider-pw-1")),
            "",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A policy that blocks HIGH: the pull is refused with the policy and the counts,
    // a HEAD still answers; allowlisting the CVE lets the pull through.
    let json_body = |v: Value| serde_json::to_vec(&v).unwrap();
    let (status, _, body) = env
        .admin(
            Method::POST,
            "/api/v1/projects",
            "application/json",
            json_body(json!({"name": "team"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    let (status, _, body) = env
        .admin(
            Method::PATCH,
            "/api/v1/projects/team",
            "application/json",
            json_body(json!({"vulnerabilityPolicy": {"blockSeverity": "HIGH"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (status, _, body) = env
        .admin(Method::GET, &format!("/v2/{repo}/manifests/v1"), "", vec![])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "DENIED");
    let message = error["errors"][0]["message"].as_str().unwrap();
    for part in [
        "project team's vulnerability policy",
        "blockSeverity HIGH",
        "1 findings at HIGH",
        "1 HIGH",
        "DEBIAN-CVE-2023-47038",
    ] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    let (status, _, _) = env
        .admin(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/v1"),
            "",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = env
        .admin(
            Method::PATCH,
            "/api/v1/projects/team",
            "application/json",
            json_body(json!({"vulnerabilityPolicy": {"blockSeverity": "HIGH", "allowlist": ["CVE-2023-47038"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = env
        .admin(Method::GET, &format!("/v2/{repo}/manifests/v1"), "", vec![])
        .await;
    assert_eq!(status, StatusCode::OK, "allowlisted by its CVE alias");

    // blockUnscanned: an image whose scan failed is refused.
    let (status, _, _) = env
        .admin(
            Method::PATCH,
            "/api/v1/projects/team",
            "application/json",
            json_body(json!({"vulnerabilityPolicy": {"blockUnscanned": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let bad_layer = env.push_blob(repo, &b"not a tar".repeat(100)).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": bad_layer, "size": 900}],
    }))
    .unwrap();
    let (status, headers, _) = env
        .admin(
            Method::PUT,
            &format!("/v2/{repo}/manifests/bad"),
            OCI_MANIFEST,
            manifest,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let bad = headers["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    env.wait_report(repo, &bad, |r| r["status"] == "failed")
        .await;
    let (status, _, body) = env
        .admin(
            Method::GET,
            &format!("/v2/{repo}/manifests/bad"),
            "",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        String::from_utf8_lossy(&body).contains("its scan failed"),
        "{body:?}"
    );
    let (status, _, _) = env
        .admin(Method::GET, &format!("/v2/{repo}/manifests/v1"), "", vec![])
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the scanned image passes blockUnscanned"
    );
}
