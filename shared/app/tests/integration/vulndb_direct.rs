//! `registry vulndb import --direct`: a directory of OSV files (and a zip) imported
//! straight into an embedded backend no server has open; a malformed file fails the
//! import and leaves the current database as it was.

use registry_app::ServerConfig;
use registry_app::compose::stores;
use registry_app::vulndb::import_direct;
use serde_json::json;

fn advisory(id: &str, ecosystem: &str, name: &str, fixed: &str) -> String {
    json!({"id": id, "modified": "2024-01-01T00:00:00Z",
           "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_imported_and_a_bad_file_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig::parse_from_args([
        "registry",
        "--backend",
        "embedded",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let osv = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(osv.path().join("pypi")).unwrap();
    std::fs::write(
        osv.path().join("pypi/GHSA-1.json"),
        advisory("GHSA-1", "PyPI", "jinja2", "3.1.3"),
    )
    .unwrap();
    std::fs::write(
        osv.path().join("ALPINE-CVE-1.json"),
        advisory("ALPINE-CVE-1", "Alpine:v3.19", "openssl", "3.1.4-r1"),
    )
    .unwrap();
    let info = import_direct(&config, osv.path()).await.unwrap();
    assert_eq!((info.advisories, info.keys), (2, 2));
    let current = stores(&config)
        .await
        .unwrap()
        .vulns
        .current_db()
        .await
        .unwrap();
    assert_eq!(current, Some(info.clone()));

    std::fs::write(osv.path().join("broken.json"), "{not json").unwrap();
    let err = import_direct(&config, osv.path()).await.unwrap_err();
    assert!(err.to_string().contains("broken.json"), "{err}");
    let still = stores(&config)
        .await
        .unwrap()
        .vulns
        .current_db()
        .await
        .unwrap();
    assert_eq!(still, Some(info), "the failed import changed nothing");
}
