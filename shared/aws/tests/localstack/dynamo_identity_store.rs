//! Runs the identity store contract of `registry-testkit` against `DynamoMetadataStore`
//! on LocalStack, then checks what is particular to DynamoDB: the items follow the key
//! schema (and failed logins carry their TTL), groups and cascades larger than one
//! transaction (100 items), idempotent audit appends, and the calls each method costs.
//! Every test gets a fresh table (string `pk` HASH, string `sk` RANGE, on-demand), removed
//! when it ends. Fails, never skips, when LocalStack is not there.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use common::FreshTable;
use registry_aws::DynamoMetadataStore;
use registry_core::RegistryError;
use registry_core::identity::{AuditRecord, Group, Membership, Principal, Project, Role, User};
use registry_core::metrics::{CallCounts, scoped};
use registry_core::ports::{IdentityStore, PageRequest};

async fn dynamo_identity_store() -> (Arc<dyn IdentityStore>, FreshTable) {
    let table = FreshTable::create("registry-identity").await;
    (Arc::new(table.store()), table)
}

mod identity_store {
    registry_testkit::identity_store_contract_tests!(super::dynamo_identity_store);
}

async fn fresh() -> (DynamoMetadataStore, FreshTable) {
    let table = FreshTable::create("registry-identity").await;
    (table.store(), table)
}

fn user(name: &str) -> User {
    User {
        name: name.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        system_admin: false,
        disabled: false,
        created_at_ms: 1_000,
    }
}

fn group(name: &str, members: impl IntoIterator<Item = String>) -> Group {
    Group {
        name: name.to_owned(),
        members: members.into_iter().collect(),
        created_at_ms: 2_000,
    }
}

fn project(name: &str) -> Project {
    Project {
        name: name.to_owned(),
        public: false,
        created_at_ms: 3_000,
        vulnerability_policy: Default::default(),
        proxy: None,
    }
}

fn u(name: &str) -> Principal {
    Principal::User(name.to_owned())
}

fn users(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:04}")).collect()
}

/// The raw item at (`pk`, `sk`), read consistently.
async fn raw_item(
    table: &FreshTable,
    pk: &str,
    sk: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    table
        .clients
        .dynamodb
        .get_item()
        .table_name(&table.settings.table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
}

/// The DynamoDB calls in `counts`, by operation.
fn dynamodb_calls(counts: &CallCounts) -> BTreeMap<String, u64> {
    counts
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("DynamoDB.")?.to_owned(), *v)))
        .collect()
}

fn calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_follow_the_key_schema() {
    let (store, table) = fresh().await;
    store.create_user(&user("alice")).await.unwrap();
    store
        .put_group(&group("ops", ["alice".to_owned()]))
        .await
        .unwrap();
    store.create_project(&project("team")).await.unwrap();
    store
        .set_member("team", &u("alice"), Role::Developer)
        .await
        .unwrap();
    const W: u64 = 1_700_000_000_500;
    store.record_login_failure("alice", W).await.unwrap();
    let record = AuditRecord {
        id: "0000000001000-x".to_owned(),
        at_ms: 1_000,
        actor: "user:admin".to_owned(),
        action: "user.create".to_owned(),
        target: "user:alice".to_owned(),
        detail: String::new(),
    };
    store.append_audit(&record).await.unwrap();

    let v = |item: &std::collections::HashMap<String, AttributeValue>| {
        serde_json::from_str::<serde_json::Value>(item["v"].as_s().expect("v is a string"))
            .expect("v is JSON")
    };
    let alice = raw_item(&table, "USER#alice", "USER").await.expect("user");
    assert_eq!(v(&alice)["name"], "alice");
    assert!(raw_item(&table, "USERS", "USER#alice").await.is_some());
    let ops = raw_item(&table, "GROUP#ops", "GROUP").await.expect("group");
    assert_eq!(v(&ops)["members"], serde_json::json!(["alice"]));
    assert!(raw_item(&table, "GROUPS", "GROUP#ops").await.is_some());
    assert!(raw_item(&table, "USER#alice", "GROUP#ops").await.is_some());
    assert!(raw_item(&table, "PROJECT#team", "PROJECT").await.is_some());
    assert!(raw_item(&table, "PROJECTS", "PROJECT#team").await.is_some());
    let m = raw_item(&table, "PROJECT#team", "MEMBER#user:alice")
        .await
        .expect("membership");
    assert_eq!(v(&m)["role"], "developer");
    let rm = raw_item(&table, "PRINCIPAL#user:alice", "PROJECT#team")
        .await
        .expect("reverse membership");
    assert_eq!(v(&rm), v(&m));
    let audit = raw_item(&table, "AUDIT", &record.id).await.expect("audit");
    assert_eq!(v(&audit)["action"], "user.create");
    let fails = raw_item(&table, "LOGINFAIL#alice", "LOGINFAIL")
        .await
        .expect("failed logins");
    assert_eq!(fails["count"].as_n().unwrap(), "1");
    assert_eq!(fails["window_start_ms"].as_n().unwrap(), &W.to_string());
    // TTL: the window's start in seconds (rounded up) plus a day.
    assert_eq!(
        fails["expires_at"].as_n().unwrap(),
        &(W.div_ceil(1000) + 24 * 3600).to_string()
    );
    store.record_login_failure("alice", W).await.unwrap();
    let fails = raw_item(&table, "LOGINFAIL#alice", "LOGINFAIL")
        .await
        .unwrap();
    assert_eq!(fails["count"].as_n().unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_larger_than_a_transaction() {
    let (store, _table) = fresh().await;
    let first = users("u", 0..250);
    store.put_group(&group("big", first.clone())).await.unwrap();
    assert_eq!(
        store.get_group("big").await.unwrap(),
        Some(group("big", first.clone()))
    );
    for name in [&first[0], &first[97], &first[98], &first[249]] {
        assert_eq!(store.groups_of(name).await.unwrap(), vec!["big".to_owned()]);
    }
    // Re-put: 130 dropped, 120 kept, 110 added (240 removals and puts: 3+ transactions).
    let second: Vec<String> = first[130..]
        .iter()
        .cloned()
        .chain(users("v", 0..110))
        .collect();
    store
        .put_group(&group("big", second.clone()))
        .await
        .unwrap();
    for name in &first[..130] {
        assert!(
            store.groups_of(name).await.unwrap().is_empty(),
            "{name} was dropped"
        );
    }
    for name in &second {
        assert_eq!(
            store.groups_of(name).await.unwrap(),
            vec!["big".to_owned()],
            "{name} is a member"
        );
    }
    // Deleting a user of a large group rewrites the group.
    store.create_user(&user(&second[0])).await.unwrap();
    assert!(store.delete_user(&second[0]).await.unwrap());
    let stored = store.get_group("big").await.unwrap().unwrap();
    assert_eq!(stored.members.len(), second.len() - 1);
    assert!(!stored.members.contains(&second[0]));

    assert!(store.delete_group("big").await.unwrap());
    for name in &second {
        assert!(store.groups_of(name).await.unwrap().is_empty(), "{name}");
    }
    assert!(
        store
            .list_groups(&PageRequest {
                after: None,
                limit: 10
            })
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_larger_than_a_transaction() {
    let (store, _table) = fresh().await;
    // A user in 120 projects and 10 groups: 260 items to remove besides the user.
    store.create_user(&user("alice")).await.unwrap();
    store.create_user(&user("bob")).await.unwrap();
    let projects: Vec<String> = (0..120).map(|i| format!("p{i:03}")).collect();
    for p in &projects {
        store.set_member(p, &u("alice"), Role::Guest).await.unwrap();
    }
    for i in 0..10 {
        store
            .put_group(&group(
                &format!("g{i}"),
                ["alice".to_owned(), "bob".to_owned()],
            ))
            .await
            .unwrap();
    }
    assert_eq!(
        store.memberships_of(&[u("alice")]).await.unwrap().len(),
        120
    );
    assert!(store.delete_user("alice").await.unwrap());
    assert!(store.get_user("alice").await.unwrap().is_none());
    assert!(
        store
            .memberships_of(&[u("alice")])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.groups_of("alice").await.unwrap().is_empty());
    for p in &projects {
        assert!(store.list_members(p).await.unwrap().is_empty(), "{p}");
    }
    for i in 0..10 {
        assert_eq!(
            store.get_group(&format!("g{i}")).await.unwrap(),
            Some(group(&format!("g{i}"), ["bob".to_owned()]))
        );
    }
    assert_eq!(store.groups_of("bob").await.unwrap().len(), 10);

    // A project with 130 members.
    store.create_project(&project("team")).await.unwrap();
    let members = users("m", 0..130);
    for m in &members {
        store
            .set_member("team", &u(m), Role::Developer)
            .await
            .unwrap();
        store.set_member("other", &u(m), Role::Guest).await.unwrap();
    }
    assert_eq!(store.list_members("team").await.unwrap().len(), 130);
    assert!(store.delete_project("team").await.unwrap());
    assert!(store.get_project("team").await.unwrap().is_none());
    assert!(store.list_members("team").await.unwrap().is_empty());
    let principals: Vec<Principal> = members.iter().map(|m| u(m)).collect();
    let left = store.memberships_of(&principals).await.unwrap();
    assert_eq!(left.len(), 130);
    assert!(left.iter().all(|m: &Membership| m.project == "other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_appends_are_idempotent_and_ids_unique() {
    let (store, _table) = fresh().await;
    let record = AuditRecord {
        id: "0000000001000-a".to_owned(),
        at_ms: 1_000,
        actor: "user:admin".to_owned(),
        action: "member.set".to_owned(),
        target: "project:team".to_owned(),
        detail: "user:alice developer".to_owned(),
    };
    store.append_audit(&record).await.unwrap();
    store
        .append_audit(&record)
        .await
        .expect("appending the same record again is success");
    let mut other = record.clone();
    other.detail = "something else".to_owned();
    match store.append_audit(&other).await {
        Err(RegistryError::Conflict(_)) => {}
        r => panic!("another record under a used id: expected Conflict, got {r:?}"),
    }
    assert_eq!(store.list_audit(None, 10).await.unwrap(), vec![record]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_per_method() {
    let (store, _table) = fresh().await;
    let (r, c) = scoped(store.create_user(&user("alice"))).await;
    r.unwrap();
    assert_eq!(dynamodb_calls(&c), calls(&[("TransactWriteItems", 1)]));
    let (r, c) = scoped(store.get_user("alice")).await;
    assert!(r.unwrap().is_some());
    assert_eq!(dynamodb_calls(&c), calls(&[("GetItem", 1)]));
    let (r, c) = scoped(store.update_user(&user("alice"))).await;
    assert!(r.unwrap());
    assert_eq!(dynamodb_calls(&c), calls(&[("PutItem", 1)]));
    let members: BTreeSet<String> = ["alice".to_owned(), "bob".to_owned()].into();
    let (r, c) = scoped(store.put_group(&group("ops", members))).await;
    r.unwrap();
    assert_eq!(
        dynamodb_calls(&c),
        calls(&[("GetItem", 1), ("TransactWriteItems", 1)])
    );
    let (r, c) = scoped(store.set_member("team", &u("alice"), Role::Admin)).await;
    r.unwrap();
    assert_eq!(dynamodb_calls(&c), calls(&[("TransactWriteItems", 1)]));
    let (r, c) = scoped(store.memberships_of(&[u("alice"), u("alice")])).await;
    assert_eq!(r.unwrap().len(), 1);
    assert_eq!(dynamodb_calls(&c), calls(&[("Query", 1)]));
    let (r, c) = scoped(store.groups_of("alice")).await;
    assert_eq!(r.unwrap(), vec!["ops".to_owned()]);
    assert_eq!(dynamodb_calls(&c), calls(&[("Query", 1)]));

    const W: u64 = 1_700_000_000_000;
    let (r, c) = scoped(store.record_login_failure("alice", W)).await;
    assert_eq!(r.unwrap(), 1);
    // A first failure: the UpdateItem finds no count, the PutItem opens the window.
    assert_eq!(
        dynamodb_calls(&c),
        calls(&[("UpdateItem", 1), ("PutItem", 1)])
    );
    let (r, c) = scoped(store.record_login_failure("alice", W)).await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(dynamodb_calls(&c), calls(&[("UpdateItem", 1)]));
    let (r, c) = scoped(store.login_failures("alice", W)).await;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(dynamodb_calls(&c), calls(&[("GetItem", 1)]));

    let (r, c) = scoped(store.delete_user("alice")).await;
    assert!(r.unwrap());
    // The user's partition, its group, its memberships, one transaction.
    assert_eq!(
        dynamodb_calls(&c),
        calls(&[("Query", 2), ("GetItem", 1), ("TransactWriteItems", 1)])
    );
}
