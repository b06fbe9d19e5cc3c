//! Signing-key rotation through configuration: a token signed by the previous key keeps
//! working while that key is listed in `REGISTRY_TOKEN_PREVIOUS_KEYS`, and stops when it
//! is removed; the public half of a key is enough to verify.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use registry_app::ServerConfig;
use registry_app::compose::build_state;
use registry_core::auth::{Caller, KeySet};
use tower::ServiceExt;

async fn app(
    dir: &std::path::Path,
    signing: &str,
    previous: Option<&str>,
) -> registry_http::AppState {
    let data = dir.to_str().unwrap();
    let key = format!("--token-signing-key={signing}");
    let mut args = vec![
        "registry",
        "--backend",
        "embedded",
        "--data-dir",
        data,
        "--admin-password",
        "pw",
        &key,
    ];
    let prev;
    if let Some(p) = previous {
        prev = format!("--token-previous-keys={p}");
        args.push(&prev);
    }
    build_state(&ServerConfig::parse_from_args(args), true)
        .await
        .expect("state")
}

async fn status_with(state: &registry_http::AppState, token: &str) -> StatusCode {
    let req = Request::get("/v2/")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    registry_http::router(state.clone())
        .oneshot(req)
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_keys_verify_until_removed() {
    // One data dir per process: each holds its database open (a token needs none).
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_, old) = KeySet::generate_pem().unwrap();
    let (_, new) = KeySet::generate_pem().unwrap();

    let before = app(dirs[0].path(), &old, None).await;
    let admin = before
        .auth
        .as_ref()
        .unwrap()
        .caller_of_subject("user:admin")
        .await
        .unwrap();
    assert!(matches!(admin, Caller::User { .. }));
    let token = before
        .auth
        .as_ref()
        .unwrap()
        .issue(&admin, &[], false)
        .await
        .unwrap()
        .token;
    assert_eq!(status_with(&before, &token).await, StatusCode::OK);

    // Rotated, the old key listed as previous (its public half is enough).
    let public_old = KeySet::from_pems(
        (&registry_core::auth::token::key_id(&old).unwrap(), &old),
        [],
    )
    .unwrap()
    .public_pems()
    .remove(0)
    .1;
    let rotated = app(dirs[1].path(), &new, Some(&public_old)).await;
    assert_eq!(status_with(&rotated, &token).await, StatusCode::OK);
    let fresh = rotated
        .auth
        .as_ref()
        .unwrap()
        .issue(&admin, &[], false)
        .await
        .unwrap()
        .token;
    assert_eq!(status_with(&rotated, &fresh).await, StatusCode::OK);
    assert_eq!(status_with(&before, &fresh).await, StatusCode::UNAUTHORIZED);

    // The old key retired: its tokens no longer verify.
    let retired = app(dirs[2].path(), &new, None).await;
    assert_eq!(
        status_with(&retired, &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status_with(&retired, &fresh).await, StatusCode::OK);
}

#[test]
fn concatenated_pems_split_into_blocks() {
    let (_, a) = KeySet::generate_pem().unwrap();
    let (_, b) = KeySet::generate_pem().unwrap();
    let blocks = registry_core::auth::token::split_pems(&format!("{a}\n{b}"));
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        registry_core::auth::token::key_id_of_any(&blocks[1]).unwrap(),
        registry_core::auth::token::key_id(&b).unwrap()
    );
}
