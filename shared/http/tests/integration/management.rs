//! The management API (`/api/v1`) over the embedded store with authentication on: every
//! endpoint's success path, the permissions (system admin, project admin, plain user,
//! robot, anonymous), duplicates, unknown names, robot secrets and their grants at
//! `/token`, memberships taking effect on `/v2`, the audit log, and auth-off mode.

use crate::common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use registry_core::ports::Clock;
use serde_json::{Value, json};

const ALICE_PW: &str = "alice-password";
const BOB_PW: &str = "bob-password";

fn admin(call: Call) -> Call {
    call.basic(ADMIN_USER, ADMIN_PASSWORD)
}

/// A registry with auth on, users `alice` and `bob`, and the private project `team`.
async fn setup() -> TestRegistry {
    let reg = TestRegistry::with_auth().await;
    // Audit ids order by time, then randomly: each change gets its own second.
    reg.clock.advance_secs(1);
    for (name, pw) in [("alice", ALICE_PW), ("bob", BOB_PW)] {
        admin(reg.post("/api/v1/users"))
            .json(&json!({"name": name, "password": pw}))
            .send()
            .await
            .assert_status(201);
        reg.clock.advance_secs(1);
    }
    admin(reg.post("/api/v1/projects"))
        .json(&json!({"name": "team", "public": false}))
        .send()
        .await
        .assert_status(201);
    reg.clock.advance_secs(1);
    reg
}

/// Pushes a small image to `repo` as the admin; returns the manifest digest.
async fn push_as_admin(reg: &TestRegistry, repo: &str) -> String {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = pattern(700, 7);
    for data in [&config, &layer] {
        admin(reg.post(format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(data))))
            .bytes(data.clone())
            .send()
            .await
            .assert_status(201);
    }
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
    }));
    admin(reg.put(format!("/v2/{repo}/manifests/v1")))
        .header("content-type", OCI_MANIFEST)
        .bytes(manifest.clone())
        .send()
        .await
        .assert_status(201);
    sha256(&manifest)
}

/// The `access` claim of a token from `/token` as `[(name, [actions])]`.
fn token_access(token: &str) -> Vec<(String, Vec<String>)> {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).unwrap();
    claims["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// A bearer token from `GET /token` for `user:password` (no scopes).
async fn token_for(reg: &TestRegistry, user: &str, password: &str) -> String {
    let res = reg
        .get("/token?service=registry")
        .basic(user, password)
        .send()
        .await;
    res.assert_status(200);
    res.json()["token"].as_str().unwrap().to_owned()
}

fn assert_challenge(res: &Resp) {
    res.assert_error(401, "UNAUTHORIZED");
    res.assert_header("www-authenticate", "Basic realm=\"registry\"");
}

fn names(res: &Resp, key: &str) -> Vec<String> {
    res.json()[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {res:?}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn openapi_document_is_served_without_credentials() {
    let reg = TestRegistry::with_auth().await;
    let res = reg.get("/api/v1/openapi.json").send().await;
    res.assert_status(200);
    assert!(
        res.expect_header("content-type")
            .starts_with("application/json")
    );
    let doc = res.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/projects/{project}/robots"]["post"].is_object());
}

#[tokio::test]
async fn callers_without_valid_credentials_get_a_basic_challenge() {
    let reg = setup().await;
    assert_challenge(&reg.get("/api/v1/me").send().await);
    assert_challenge(&reg.get("/api/v1/users").send().await);
    assert_challenge(
        &reg.post("/api/v1/projects")
            .json(&json!({"name": "x"}))
            .send()
            .await,
    );
    assert_challenge(&reg.get("/api/v1/me").basic("alice", "wrong").send().await);
    assert_challenge(&reg.get("/api/v1/me").basic("nobody", "x").send().await);
    assert_challenge(&reg.get("/api/v1/me").bearer("not-a-token").send().await);
    // An anonymous token from /token names no caller.
    let res = reg.get("/token?service=registry").send().await;
    res.assert_status(200);
    let anonymous = res.json()["token"].as_str().unwrap().to_owned();
    assert_challenge(&reg.get("/api/v1/me").bearer(&anonymous).send().await);
}

#[tokio::test]
async fn me_with_basic_and_bearer() {
    let reg = setup().await;
    let res = admin(reg.get("/api/v1/me")).send().await;
    res.assert_status(200);
    assert_eq!(
        res.json(),
        json!({"subject": "user:admin", "systemAdmin": true})
    );
    let token = token_for(&reg, "alice", ALICE_PW).await;
    let res = reg.get("/api/v1/me").bearer(&token).send().await;
    res.assert_status(200);
    assert_eq!(
        res.json(),
        json!({"subject": "user:alice", "systemAdmin": false})
    );
    // A token of a user deleted since is refused.
    admin(reg.delete("/api/v1/users/alice"))
        .send()
        .await
        .assert_status(204);
    assert_challenge(&reg.get("/api/v1/me").bearer(&token).send().await);
}

#[tokio::test]
async fn users_lifecycle() {
    let reg = setup().await;
    let res = admin(reg.post("/api/v1/users"))
        .json(&json!({"name": "carol", "password": "pw", "systemAdmin": false}))
        .send()
        .await;
    res.assert_status(201);
    let body = res.json();
    assert_eq!(body["name"], "carol");
    assert_eq!(body["systemAdmin"], false);
    assert_eq!(body["disabled"], false);
    assert_eq!(body["createdAt"], reg.clock.now_millis());
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");

    // Duplicates, invalid names and bodies.
    admin(reg.post("/api/v1/users"))
        .json(&json!({"name": "carol", "password": "other"}))
        .send()
        .await
        .assert_error(409, "UNSUPPORTED");
    for bad in ["Carol", ".x", "a/b", ""] {
        admin(reg.post("/api/v1/users"))
            .json(&json!({"name": bad, "password": "pw"}))
            .send()
            .await
            .assert_error(400, "NAME_INVALID");
    }
    admin(reg.post("/api/v1/users"))
        .json(&json!({"name": "dave"}))
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");
    admin(reg.post("/api/v1/users"))
        .json(&json!({"name": "dave", "password": ""}))
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");
    admin(reg.post("/api/v1/users"))
        .bytes(&b"{not json"[..])
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");

    // Read, list with pagination.
    let res = admin(reg.get("/api/v1/users/carol")).send().await;
    res.assert_status(200);
    assert_eq!(res.json()["name"], "carol");
    admin(reg.get("/api/v1/users/nobody"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    let res = admin(reg.get("/api/v1/users")).send().await;
    res.assert_status(200).assert_no_header("link");
    assert_eq!(names(&res, "users"), ["admin", "alice", "bob", "carol"]);
    let res = admin(reg.get("/api/v1/users?n=2")).send().await;
    assert_eq!(names(&res, "users"), ["admin", "alice"]);
    res.assert_header("link", "</api/v1/users?n=2&last=alice>; rel=\"next\"");
    let res = admin(reg.get("/api/v1/users?n=2&last=alice")).send().await;
    assert_eq!(names(&res, "users"), ["bob", "carol"]);
    res.assert_no_header("link");
    admin(reg.get("/api/v1/users?n=x"))
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");

    // Flags: system admin, disabled.
    let res = admin(reg.patch("/api/v1/users/carol"))
        .json(&json!({"systemAdmin": true}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.json()["systemAdmin"], true);
    let res = reg.get("/api/v1/users").basic("carol", "pw").send().await;
    res.assert_status(200);
    admin(reg.patch("/api/v1/users/carol"))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .assert_status(200);
    assert_challenge(&reg.get("/api/v1/me").basic("carol", "pw").send().await);
    admin(reg.patch("/api/v1/users/nobody"))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    admin(reg.patch("/api/v1/users/carol"))
        .json(&json!({"admin": true}))
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");

    // Delete.
    admin(reg.delete("/api/v1/users/carol"))
        .send()
        .await
        .assert_status(204);
    admin(reg.delete("/api/v1/users/carol"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    admin(reg.get("/api/v1/users/carol"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn a_user_reads_itself_and_changes_its_own_password_only() {
    let reg = setup().await;
    let alice = |c: Call| c.basic("alice", ALICE_PW);
    let res = alice(reg.get("/api/v1/users/alice")).send().await;
    res.assert_status(200);
    assert_eq!(res.json()["name"], "alice");
    // Not another user, not even whether it exists.
    alice(reg.get("/api/v1/users/bob"))
        .send()
        .await
        .assert_error(403, "DENIED");
    alice(reg.get("/api/v1/users/nobody"))
        .send()
        .await
        .assert_error(403, "DENIED");
    alice(reg.patch("/api/v1/users/bob"))
        .json(&json!({"password": "mine"}))
        .send()
        .await
        .assert_error(403, "DENIED");
    alice(reg.patch("/api/v1/users/alice"))
        .json(&json!({"systemAdmin": true}))
        .send()
        .await
        .assert_error(403, "DENIED");
    alice(reg.patch("/api/v1/users/alice"))
        .json(&json!({"disabled": false}))
        .send()
        .await
        .assert_error(403, "DENIED");

    // Its own password: the new one logs in, the old one no more.
    let res = alice(reg.patch("/api/v1/users/alice"))
        .json(&json!({"password": "new-secret"}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.json()["systemAdmin"], false);
    reg.get("/token?service=registry")
        .basic("alice", "new-secret")
        .send()
        .await
        .assert_status(200);
    reg.get("/token?service=registry")
        .basic("alice", ALICE_PW)
        .send()
        .await
        .assert_status(401);
    // Through a bearer token too.
    let token = token_for(&reg, "alice", "new-secret").await;
    reg.patch("/api/v1/users/alice")
        .bearer(&token)
        .json(&json!({"password": "third"}))
        .send()
        .await
        .assert_status(200);
    reg.get("/api/v1/me")
        .basic("alice", "third")
        .send()
        .await
        .assert_status(200);

    // An admin sets another user's password.
    admin(reg.patch("/api/v1/users/bob"))
        .json(&json!({"password": "reset"}))
        .send()
        .await
        .assert_status(200);
    reg.get("/api/v1/me")
        .basic("bob", "reset")
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn plain_users_may_not_administer() {
    let reg = setup().await;
    let alice = |c: Call| c.basic("alice", ALICE_PW);
    let denied = [
        alice(reg.get("/api/v1/users")).send().await,
        alice(reg.post("/api/v1/users"))
            .json(&json!({"name": "eve", "password": "pw"}))
            .send()
            .await,
        alice(reg.delete("/api/v1/users/bob")).send().await,
        alice(reg.get("/api/v1/groups")).send().await,
        alice(reg.post("/api/v1/groups"))
            .json(&json!({"name": "g", "members": []}))
            .send()
            .await,
        alice(reg.post("/api/v1/projects"))
            .json(&json!({"name": "mine"}))
            .send()
            .await,
        alice(reg.get("/api/v1/projects/team")).send().await,
        alice(reg.patch("/api/v1/projects/team"))
            .json(&json!({"public": true}))
            .send()
            .await,
        alice(reg.delete("/api/v1/projects/team")).send().await,
        alice(reg.get("/api/v1/projects/team/members")).send().await,
        alice(reg.put("/api/v1/projects/team/members/user:alice"))
            .json(&json!({"role": "admin"}))
            .send()
            .await,
        alice(reg.post("/api/v1/projects/team/robots"))
            .json(&json!({"name": "ci", "actions": ["pull"]}))
            .send()
            .await,
        alice(reg.get("/api/v1/projects/team/robots")).send().await,
        alice(reg.get("/api/v1/audit")).send().await,
        // Unknown projects look the same to a caller without the right.
        alice(reg.get("/api/v1/projects/nothing/members"))
            .send()
            .await,
    ];
    for res in &denied {
        res.assert_error(403, "DENIED");
    }
    // Nothing was created.
    let res = admin(reg.get("/api/v1/projects")).send().await;
    assert_eq!(names(&res, "projects"), ["team"]);
    let res = admin(reg.get("/api/v1/users")).send().await;
    assert_eq!(names(&res, "users"), ["admin", "alice", "bob"]);
}

#[tokio::test]
async fn groups_lifecycle() {
    let reg = setup().await;
    let res = admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "devs", "members": ["bob", "alice"]}))
        .send()
        .await;
    res.assert_status(201);
    assert_eq!(
        res.json(),
        json!({"name": "devs", "members": ["alice", "bob"]})
    );
    admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "devs", "members": []}))
        .send()
        .await
        .assert_error(409, "UNSUPPORTED");
    admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "ops", "members": ["ghost"]}))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "Ops"}))
        .send()
        .await
        .assert_error(400, "NAME_INVALID");
    admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "ops"}))
        .send()
        .await
        .assert_status(201);

    let res = admin(reg.get("/api/v1/groups")).send().await;
    res.assert_status(200);
    assert_eq!(names(&res, "groups"), ["devs", "ops"]);
    let res = admin(reg.get("/api/v1/groups?n=1")).send().await;
    assert_eq!(names(&res, "groups"), ["devs"]);
    res.assert_header("link", "</api/v1/groups?n=1&last=devs>; rel=\"next\"");

    let res = admin(reg.get("/api/v1/groups/devs")).send().await;
    res.assert_status(200);
    assert_eq!(res.json()["members"], json!(["alice", "bob"]));
    admin(reg.get("/api/v1/groups/nothing"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");

    let res = admin(reg.put("/api/v1/groups/devs"))
        .json(&json!({"members": ["alice"]}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.json(), json!({"name": "devs", "members": ["alice"]}));
    admin(reg.put("/api/v1/groups/nothing"))
        .json(&json!({"members": []}))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    admin(reg.put("/api/v1/groups/devs"))
        .json(&json!({"members": ["ghost"]}))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");

    admin(reg.delete("/api/v1/groups/ops"))
        .send()
        .await
        .assert_status(204);
    admin(reg.delete("/api/v1/groups/ops"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn projects_lifecycle_and_visibility() {
    let reg = setup().await;
    let res = admin(reg.post("/api/v1/projects"))
        .json(&json!({"name": "open", "public": true}))
        .send()
        .await;
    res.assert_status(201);
    assert_eq!(
        res.json(),
        json!({"name": "open", "public": true, "createdAt": reg.clock.now_millis(),
               "vulnerabilityPolicy": {"allowlist": [], "blockUnscanned": false}})
    );
    admin(reg.post("/api/v1/projects"))
        .json(&json!({"name": "hidden"}))
        .send()
        .await
        .assert_status(201);
    admin(reg.post("/api/v1/projects"))
        .json(&json!({"name": "team"}))
        .send()
        .await
        .assert_error(409, "UNSUPPORTED");
    for bad in ["Team", "a/b", "a.", "x".repeat(65).as_str()] {
        admin(reg.post("/api/v1/projects"))
            .json(&json!({"name": bad}))
            .send()
            .await
            .assert_error(400, "NAME_INVALID");
    }

    // Admins list all; others their projects and the public ones.
    let res = admin(reg.get("/api/v1/projects")).send().await;
    assert_eq!(names(&res, "projects"), ["hidden", "open", "team"]);
    let res = admin(reg.get("/api/v1/projects?n=2")).send().await;
    res.assert_header("link", "</api/v1/projects?n=2&last=open>; rel=\"next\"");
    let res = reg
        .get("/api/v1/projects")
        .basic("alice", ALICE_PW)
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(names(&res, "projects"), ["open"]);
    admin(reg.put("/api/v1/projects/team/members/user:alice"))
        .json(&json!({"role": "guest"}))
        .send()
        .await
        .assert_status(200);
    let res = reg
        .get("/api/v1/projects")
        .basic("alice", ALICE_PW)
        .send()
        .await;
    assert_eq!(names(&res, "projects"), ["open", "team"]);
    let res = reg
        .get("/api/v1/projects?n=1")
        .basic("alice", ALICE_PW)
        .send()
        .await;
    assert_eq!(names(&res, "projects"), ["open"]);
    res.assert_header("link", "</api/v1/projects?n=1&last=open>; rel=\"next\"");
    let res = reg
        .get("/api/v1/projects?n=1&last=open")
        .basic("alice", ALICE_PW)
        .send()
        .await;
    assert_eq!(names(&res, "projects"), ["team"]);
    res.assert_no_header("link");

    // Read, change, delete.
    let res = admin(reg.get("/api/v1/projects/hidden")).send().await;
    res.assert_status(200);
    assert_eq!(res.json()["public"], false);
    admin(reg.get("/api/v1/projects/nothing"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    let res = admin(reg.patch("/api/v1/projects/hidden"))
        .json(&json!({"public": true}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.json()["public"], true);
    admin(reg.patch("/api/v1/projects/nothing"))
        .json(&json!({"public": true}))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    admin(reg.delete("/api/v1/projects/hidden"))
        .send()
        .await
        .assert_status(204);
    admin(reg.delete("/api/v1/projects/hidden"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn a_project_admin_manages_its_members_and_robots_only() {
    let reg = setup().await;
    admin(reg.post("/api/v1/projects"))
        .json(&json!({"name": "other"}))
        .send()
        .await
        .assert_status(201);
    admin(reg.put("/api/v1/projects/team/members/user:alice"))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .assert_status(200);
    let alice = |c: Call| c.basic("alice", ALICE_PW);

    let res = alice(reg.get("/api/v1/projects/team")).send().await;
    res.assert_status(200);
    assert_eq!(res.json()["name"], "team");
    let res = alice(reg.put("/api/v1/projects/team/members/user:bob"))
        .json(&json!({"role": "developer"}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(
        res.json(),
        json!({"principal": "user:bob", "role": "developer"})
    );
    let res = alice(reg.get("/api/v1/projects/team/members")).send().await;
    res.assert_status(200);
    assert_eq!(
        res.json(),
        json!({"members": [
            {"principal": "user:alice", "role": "admin"},
            {"principal": "user:bob", "role": "developer"},
        ]})
    );
    alice(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "ci", "actions": ["pull"]}))
        .send()
        .await
        .assert_status(201);
    alice(reg.get("/api/v1/projects/team/robots"))
        .send()
        .await
        .assert_status(200);
    alice(reg.delete("/api/v1/projects/team/robots/robot$team+ci"))
        .send()
        .await
        .assert_status(204);
    alice(reg.delete("/api/v1/projects/team/members/user:bob"))
        .send()
        .await
        .assert_status(204);

    // Not the project itself, not another project, nothing system-wide.
    for res in [
        alice(reg.patch("/api/v1/projects/team"))
            .json(&json!({"public": true}))
            .send()
            .await,
        alice(reg.delete("/api/v1/projects/team")).send().await,
        alice(reg.get("/api/v1/projects/other")).send().await,
        alice(reg.get("/api/v1/projects/other/members"))
            .send()
            .await,
        alice(reg.put("/api/v1/projects/other/members/user:alice"))
            .json(&json!({"role": "admin"}))
            .send()
            .await,
        alice(reg.post("/api/v1/projects/other/robots"))
            .json(&json!({"name": "ci", "actions": ["pull"]}))
            .send()
            .await,
        alice(reg.get("/api/v1/users")).send().await,
        alice(reg.get("/api/v1/audit")).send().await,
    ] {
        res.assert_error(403, "DENIED");
    }

    // Project admin through a group.
    admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "leads", "members": ["bob"]}))
        .send()
        .await
        .assert_status(201);
    reg.get("/api/v1/projects/other/members")
        .basic("bob", BOB_PW)
        .send()
        .await
        .assert_error(403, "DENIED");
    admin(reg.put("/api/v1/projects/other/members/group:leads"))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .assert_status(200);
    reg.get("/api/v1/projects/other/members")
        .basic("bob", BOB_PW)
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn members_take_effect_on_v2_and_their_removal_denies() {
    let reg = setup().await;
    let digest = push_as_admin(&reg, "team/app").await;
    let pull = |user: &'static str, pw: &'static str| {
        reg.get(format!("/v2/team/app/manifests/{digest}"))
            .basic(user, pw)
            .send()
    };
    pull("bob", BOB_PW).await.assert_error(403, "DENIED");

    let res = admin(reg.put("/api/v1/projects/team/members/user:bob"))
        .json(&json!({"role": "guest"}))
        .send()
        .await;
    res.assert_status(200);
    pull("bob", BOB_PW).await.assert_status(200);
    // Guest: no push.
    reg.post("/v2/team/app/blobs/uploads/")
        .basic("bob", BOB_PW)
        .send()
        .await
        .assert_error(403, "DENIED");
    // Promoted to developer: push.
    admin(reg.put("/api/v1/projects/team/members/user%3Abob"))
        .json(&json!({"role": "developer"}))
        .send()
        .await
        .assert_status(200);
    reg.post("/v2/team/app/blobs/uploads/")
        .basic("bob", BOB_PW)
        .send()
        .await
        .assert_status(202);

    admin(reg.delete("/api/v1/projects/team/members/user:bob"))
        .send()
        .await
        .assert_status(204);
    pull("bob", BOB_PW).await.assert_error(403, "DENIED");
    admin(reg.delete("/api/v1/projects/team/members/user:bob"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");

    // Through a group.
    admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "devs", "members": ["alice"]}))
        .send()
        .await
        .assert_status(201);
    pull("alice", ALICE_PW).await.assert_error(403, "DENIED");
    admin(reg.put("/api/v1/projects/team/members/group:devs"))
        .json(&json!({"role": "guest"}))
        .send()
        .await
        .assert_status(200);
    pull("alice", ALICE_PW).await.assert_status(200);

    // The principal and the project must exist; the principal and role must parse.
    for (path, role, status, code) in [
        ("team/members/user:ghost", "guest", 404, "NAME_UNKNOWN"),
        ("team/members/group:ghost", "guest", 404, "NAME_UNKNOWN"),
        (
            "team/members/robot:robot$team+ghost",
            "guest",
            404,
            "NAME_UNKNOWN",
        ),
        ("nothing/members/user:bob", "guest", 404, "NAME_UNKNOWN"),
        ("team/members/bob", "guest", 400, "UNSUPPORTED"),
        ("team/members/user:bob", "owner", 400, "UNSUPPORTED"),
    ] {
        admin(reg.put(format!("/api/v1/projects/{path}")))
            .json(&json!({"role": role}))
            .send()
            .await
            .assert_error(status, code);
    }
    admin(reg.get("/api/v1/projects/nothing/members"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn robot_secrets_are_shown_once_and_grant_only_the_robots_actions() {
    let reg = setup().await;
    let digest = push_as_admin(&reg, "team/app").await;
    let res = admin(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "ci", "actions": ["pull", "push"], "expiresInDays": null}))
        .send()
        .await;
    res.assert_status(201);
    res.assert_header("cache-control", "no-store");
    let created = res.json();
    assert_eq!(created["name"], "robot$team+ci");
    assert_eq!(created["actions"], json!(["pull", "push"]));
    assert_eq!(created["expiresAt"], Value::Null);
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43);

    // Listed without the secret.
    let res = admin(reg.get("/api/v1/projects/team/robots")).send().await;
    res.assert_status(200);
    assert_eq!(
        res.json(),
        json!({"robots": [{"name": "robot$team+ci", "actions": ["pull", "push"], "expiresAt": null}]})
    );
    assert!(!String::from_utf8_lossy(&res.body).contains(&secret));

    // Duplicates and bad input.
    admin(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "ci", "actions": ["pull"]}))
        .send()
        .await
        .assert_error(409, "UNSUPPORTED");
    admin(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "CI", "actions": ["pull"]}))
        .send()
        .await
        .assert_error(400, "NAME_INVALID");
    admin(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "x", "actions": []}))
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");
    admin(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "x", "actions": ["fly"]}))
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");
    admin(reg.post("/api/v1/projects/nothing/robots"))
        .json(&json!({"name": "x", "actions": ["pull"]}))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");

    // The secret logs in at /token, granted only what the robot holds.
    let res = reg
        .get("/token?service=registry&scope=repository:team/app:pull,push,delete")
        .basic("robot$team+ci", &secret)
        .send()
        .await;
    res.assert_status(200);
    let token = res.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        token_access(&token),
        [(
            "team/app".to_owned(),
            vec!["pull".to_owned(), "push".to_owned()]
        )]
    );
    reg.get(format!("/v2/team/app/manifests/{digest}"))
        .bearer(&token)
        .send()
        .await
        .assert_status(200);
    reg.get(format!("/v2/team/app/manifests/{digest}"))
        .basic("robot$team+ci", &secret)
        .send()
        .await
        .assert_status(200);
    reg.delete(format!("/v2/team/app/manifests/{digest}"))
        .basic("robot$team+ci", &secret)
        .send()
        .await
        .assert_error(403, "DENIED");
    reg.get("/token?service=registry")
        .basic("robot$team+ci", "wrong")
        .send()
        .await
        .assert_status(401);
    // A robot is no project admin.
    let res = reg
        .get("/api/v1/me")
        .basic("robot$team+ci", &secret)
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(
        res.json(),
        json!({"subject": "robot:robot$team+ci", "systemAdmin": false})
    );
    reg.get("/api/v1/projects/team/robots")
        .basic("robot$team+ci", &secret)
        .send()
        .await
        .assert_error(403, "DENIED");
    // A robot may be made a member (the principal exists).
    admin(reg.put("/api/v1/projects/team/members/robot:robot$team+ci"))
        .json(&json!({"role": "maintainer"}))
        .send()
        .await
        .assert_status(200);
    reg.head(format!("/v2/team/app/manifests/{digest}"))
        .basic("robot$team+ci", &secret)
        .send()
        .await
        .assert_status(200);

    // Deleted: no more logins; deleting again or in another project is unknown.
    admin(reg.delete("/api/v1/projects/team/robots/robot%24team%2Bci"))
        .send()
        .await
        .assert_status(204);
    reg.get("/token?service=registry")
        .basic("robot$team+ci", &secret)
        .send()
        .await
        .assert_status(401);
    admin(reg.delete("/api/v1/projects/team/robots/robot$team+ci"))
        .send()
        .await
        .assert_error(404, "NAME_UNKNOWN");
    let res = admin(reg.get("/api/v1/projects/team/robots")).send().await;
    assert_eq!(res.json(), json!({"robots": []}));
}

#[tokio::test]
async fn robots_expire() {
    let reg = setup().await;
    let res = admin(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "tmp", "actions": ["pull"], "expiresInDays": 1}))
        .send()
        .await;
    res.assert_status(201);
    let body = res.json();
    assert_eq!(body["expiresAt"], reg.clock.now_millis() + 86_400_000);
    let secret = body["secret"].as_str().unwrap().to_owned();
    reg.get("/api/v1/me")
        .basic("robot$team+tmp", &secret)
        .send()
        .await
        .assert_status(200);
    reg.clock.advance_secs(86_400);
    assert_challenge(
        &reg.get("/api/v1/me")
            .basic("robot$team+tmp", &secret)
            .send()
            .await,
    );
    admin(reg.post("/api/v1/projects/team/robots"))
        .json(&json!({"name": "zero", "actions": ["pull"], "expiresInDays": 0}))
        .send()
        .await
        .assert_error(400, "UNSUPPORTED");
}

#[tokio::test]
async fn every_change_is_audited() {
    let reg = setup().await;
    admin(reg.post("/api/v1/groups"))
        .json(&json!({"name": "devs", "members": ["alice"]}))
        .send()
        .await
        .assert_status(201);
    reg.clock.advance_secs(1);
    admin(reg.put("/api/v1/projects/team/members/user:alice"))
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .assert_status(200);
    reg.clock.advance_secs(1);
    reg.post("/api/v1/projects/team/robots")
        .basic("alice", ALICE_PW)
        .json(&json!({"name": "ci", "actions": ["pull"]}))
        .send()
        .await
        .assert_status(201);
    reg.clock.advance_secs(1);
    reg.patch("/api/v1/users/bob")
        .basic("bob", BOB_PW)
        .json(&json!({"password": "changed"}))
        .send()
        .await
        .assert_status(200);
    reg.clock.advance_secs(1);
    admin(reg.delete("/api/v1/projects/team/members/user:alice"))
        .send()
        .await
        .assert_status(204);
    reg.clock.advance_secs(1);
    admin(reg.delete("/api/v1/projects/team/robots/robot$team+ci"))
        .send()
        .await
        .assert_status(204);
    reg.clock.advance_secs(1);

    let res = admin(reg.get("/api/v1/audit")).send().await;
    res.assert_status(200);
    let records = res.json()["records"].as_array().unwrap().clone();
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            for key in ["id", "atMs", "actor", "action", "target", "detail"] {
                assert!(r.get(key).is_some(), "{key} missing in {r}");
            }
            (
                r["actor"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("system", "user.create", "user:admin"),
        ("user:admin", "user.create", "user:alice"),
        ("user:admin", "user.create", "user:bob"),
        ("user:admin", "project.create", "project:team"),
        ("user:admin", "group.create", "group:devs"),
        ("user:admin", "member.set", "project:team"),
        ("user:alice", "robot.create", "robot:robot$team+ci"),
        ("user:bob", "user.update", "user:bob"),
        ("user:admin", "member.remove", "project:team"),
        ("user:admin", "robot.delete", "robot:robot$team+ci"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(records[5]["detail"], "user:alice=admin");
    assert_eq!(records[7]["detail"], "password");

    // Paging by id.
    let first = records[0]["id"].as_str().unwrap();
    let res = admin(reg.get(format!("/api/v1/audit?after={first}&n=2")))
        .send()
        .await;
    res.assert_status(200);
    let page = res.json()["records"].as_array().unwrap().clone();
    assert_eq!(page, records[1..3]);
}

#[tokio::test]
async fn with_authentication_off_every_call_is_a_system_admin() {
    let reg = TestRegistry::new();
    let res = reg.get("/api/v1/me").send().await;
    res.assert_status(200);
    assert_eq!(
        res.json(),
        json!({"subject": "system", "systemAdmin": true})
    );
    reg.post("/api/v1/users")
        .json(&json!({"name": "alice", "password": "pw"}))
        .send()
        .await
        .assert_status(201);
    reg.clock.advance_secs(1);
    reg.post("/api/v1/projects")
        .json(&json!({"name": "team"}))
        .send()
        .await
        .assert_status(201);
    reg.clock.advance_secs(1);
    reg.put("/api/v1/projects/team/members/user:alice")
        .json(&json!({"role": "developer"}))
        .send()
        .await
        .assert_status(200);
    let res = reg.get("/api/v1/audit").send().await;
    res.assert_status(200);
    let records = res.json()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r["actor"] == "system"));
    reg.get("/api/v1/openapi.json")
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn the_last_active_system_admin_cannot_be_removed() {
    let reg = setup().await;
    // Alone: the admin can neither be deleted, demoted nor disabled.
    admin(reg.delete(format!("/api/v1/users/{ADMIN_USER}")))
        .send()
        .await
        .assert_error(403, "DENIED");
    for patch in [json!({"systemAdmin": false}), json!({"disabled": true})] {
        admin(reg.patch(format!("/api/v1/users/{ADMIN_USER}")))
            .json(&patch)
            .send()
            .await
            .assert_error(403, "DENIED");
    }
    // A disabled admin does not count as another admin.
    admin(reg.patch("/api/v1/users/bob"))
        .json(&json!({"systemAdmin": true, "disabled": true}))
        .send()
        .await
        .assert_status(200);
    admin(reg.delete(format!("/api/v1/users/{ADMIN_USER}")))
        .send()
        .await
        .assert_error(403, "DENIED");
    // With another active admin, the first may go.
    admin(reg.patch("/api/v1/users/alice"))
        .json(&json!({"systemAdmin": true}))
        .send()
        .await
        .assert_status(200);
    admin(reg.patch(format!("/api/v1/users/{ADMIN_USER}")))
        .json(&json!({"systemAdmin": false}))
        .send()
        .await
        .assert_status(200);
    reg.patch("/api/v1/users/alice")
        .basic("alice", ALICE_PW)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .assert_error(403, "DENIED");
}
