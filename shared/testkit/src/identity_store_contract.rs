//! The contract every [`IdentityStore`] adapter must pass: users, groups, robots and
//! projects (create, read, update, delete, paged listings), memberships and their
//! reverse lookups, the cascades of the deletes, the audit log, failed-login counting,
//! and the atomicity the port promises under concurrent writers.
//!
//! Each check takes a fresh, empty store. Run them all, one test each, with
//! [`identity_store_contract_tests!`](crate::identity_store_contract_tests).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use registry_core::identity::{
    Action, AuditRecord, Group, Membership, Principal, Project, Robot, Role, User,
};
use registry_core::ports::{IdentityStore, Page, PageRequest};
use registry_core::{RegistryError, Result};

fn user(name: &str) -> User {
    User {
        name: name.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        system_admin: false,
        disabled: false,
        created_at_ms: 1_000,
    }
}

fn group(name: &str, members: &[&str]) -> Group {
    Group {
        name: name.to_owned(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        created_at_ms: 2_000,
    }
}

fn robot(name: &str) -> Robot {
    Robot {
        name: name.to_owned(),
        secret_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        grants: BTreeMap::from([
            (
                "team".to_owned(),
                BTreeSet::from([Action::Pull, Action::Push]),
            ),
            ("public".to_owned(), BTreeSet::from([Action::Pull])),
        ]),
        expires_at_ms: Some(9_000_000),
        created_by: "user:admin".to_owned(),
        created_at_ms: 3_000,
    }
}

fn project(name: &str, public: bool) -> Project {
    Project {
        name: name.to_owned(),
        public,
        created_at_ms: 4_000,
        vulnerability_policy: Default::default(),
        proxy: None,
    }
}

fn u(name: &str) -> Principal {
    Principal::User(name.to_owned())
}

fn g(name: &str) -> Principal {
    Principal::Group(name.to_owned())
}

fn r(name: &str) -> Principal {
    Principal::Robot(name.to_owned())
}

fn member(project: &str, principal: Principal, role: Role) -> Membership {
    Membership {
        project: project.to_owned(),
        principal,
        role,
    }
}

fn audit(at_ms: u64, suffix: &str, action: &str) -> AuditRecord {
    AuditRecord {
        id: format!("{at_ms:013}-{suffix}"),
        at_ms,
        actor: "user:admin".to_owned(),
        action: action.to_owned(),
        target: format!("user:{suffix}"),
        detail: if suffix.len().is_multiple_of(2) {
            String::new()
        } else {
            format!("detail of {suffix} with ünïcødé")
        },
    }
}

fn page(after: Option<&str>, limit: usize) -> PageRequest {
    PageRequest {
        after: after.map(str::to_owned),
        limit,
    }
}

fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Memberships sorted by project, then principal in its `kind:name` form, to compare
/// where the port leaves the order open.
fn sorted(mut v: Vec<Membership>) -> Vec<Membership> {
    v.sort_by_key(|m| (m.project.clone(), m.principal.to_string()));
    v
}

async fn memberships(store: &dyn IdentityStore, principals: &[Principal]) -> Vec<Membership> {
    sorted(store.memberships_of(principals).await.unwrap())
}

fn expect_conflict<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    match result {
        Err(RegistryError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

/// Every page of a listing of `limit` names, checking each page's size and `more`.
async fn walk<F, Fut>(limit: usize, list: &F) -> Vec<String>
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page>>,
{
    let mut all = Vec::new();
    let mut after = None;
    for _ in 0..1_000 {
        let p = list(page(after.as_deref(), limit)).await.unwrap();
        assert!(p.items.len() <= limit, "a page holds at most `limit` names");
        all.extend(p.items.iter().cloned());
        if !p.more {
            return all;
        }
        assert_eq!(p.items.len(), limit, "a page with `more` must be full");
        after = p.items.last().cloned();
    }
    panic!("pagination never ended");
}

/// The names every listing check inserts, in insertion order, and the same in byte order.
const LISTED: [&str; 8] = [
    "bob", "alice", "carol", "al", "alice-2", "zed", "alice.b", "a_b",
];
const LISTED_SORTED: [&str; 8] = [
    "a_b", "al", "alice", "alice-2", "alice.b", "bob", "carol", "zed",
];

/// A listing of the names [`LISTED`] holds them in byte order, strictly after `after`, at
/// most `limit` a page, `more` exactly when names remain.
async fn check_listing<F, Fut>(what: &str, list: F)
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page>>,
{
    let expected = names(&LISTED_SORTED);
    let full = list(page(None, 100)).await.unwrap();
    assert_eq!(
        full,
        Page {
            items: expected.clone(),
            more: false
        },
        "{what}: the whole listing"
    );
    for limit in [1, 2, 3, 7, 8] {
        assert_eq!(
            walk(limit, &list).await,
            expected,
            "{what}: walking pages of {limit}"
        );
    }
    let short = list(page(None, 7)).await.unwrap();
    assert_eq!(
        short,
        Page {
            items: expected[..7].to_vec(),
            more: true
        },
        "{what}: one name short"
    );
    let mid = list(page(Some("al"), 2)).await.unwrap();
    assert_eq!(
        mid,
        Page {
            items: names(&["alice", "alice-2"]),
            more: true
        },
        "{what}: after a name"
    );
    let between = list(page(Some("alicf"), 2)).await.unwrap();
    assert_eq!(
        between,
        Page {
            items: names(&["bob", "carol"]),
            more: true
        },
        "{what}: after a name that is not listed"
    );
    let tail = list(page(Some("carol"), 5)).await.unwrap();
    assert_eq!(
        tail,
        Page {
            items: names(&["zed"]),
            more: false
        },
        "{what}: the last page"
    );
    let past = list(page(Some("zed"), 5)).await.unwrap();
    assert_eq!(past, Page::default(), "{what}: past the end");
}

/// A user round-trips field for field; `update_user` replaces an existing user only;
/// `delete_user` says whether it removed one; a deleted name can be created again.
pub async fn users_round_trip(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(store.get_user("alice").await.unwrap(), None);
    let mut alice = user("alice");
    alice.system_admin = true;
    store.create_user(&alice).await.unwrap();
    store.create_user(&user("alicia")).await.unwrap();
    assert_eq!(store.get_user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.get_user("alic").await.unwrap(), None);
    assert_eq!(store.get_user("alice2").await.unwrap(), None);

    let mut changed = alice.clone();
    changed.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3$new".to_owned();
    changed.system_admin = false;
    changed.disabled = true;
    assert!(store.update_user(&changed).await.unwrap());
    assert_eq!(
        store.get_user("alice").await.unwrap(),
        Some(changed.clone())
    );
    assert!(
        !store.update_user(&user("nobody")).await.unwrap(),
        "update_user of a missing user must say false"
    );
    assert_eq!(
        store.get_user("nobody").await.unwrap(),
        None,
        "update_user must not create a user"
    );
    assert_eq!(
        store.list_users(&page(None, 10)).await.unwrap().items,
        names(&["alice", "alicia"])
    );

    assert!(store.delete_user("alice").await.unwrap());
    assert_eq!(store.get_user("alice").await.unwrap(), None);
    assert!(!store.delete_user("alice").await.unwrap());
    assert!(!store.delete_user("nobody").await.unwrap());
    assert_eq!(
        store.get_user("alicia").await.unwrap(),
        Some(user("alicia"))
    );
    assert_eq!(
        store.list_users(&page(None, 10)).await.unwrap().items,
        names(&["alicia"])
    );
    store
        .create_user(&alice)
        .await
        .expect("a deleted name can be created again");
    assert_eq!(store.get_user("alice").await.unwrap(), Some(alice));
}

/// `create_user` of an existing name fails with `Conflict` and changes nothing.
pub async fn create_user_conflict(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    let first = user("alice");
    store.create_user(&first).await.unwrap();
    let mut second = user("alice");
    second.password_hash = "other".to_owned();
    second.system_admin = true;
    expect_conflict(store.create_user(&second).await, "create_user twice");
    assert_eq!(store.get_user("alice").await.unwrap(), Some(first));
    assert_eq!(
        store.list_users(&page(None, 10)).await.unwrap(),
        Page {
            items: names(&["alice"]),
            more: false
        }
    );
}

/// Users list in byte order with `after` / `limit` / `more`; other kinds never appear.
pub async fn list_users_pagination(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(
        store.list_users(&page(None, 10)).await.unwrap(),
        Page::default()
    );
    for name in LISTED {
        store.create_user(&user(name)).await.unwrap();
    }
    store.put_group(&group("aaa", &["alice"])).await.unwrap();
    store.create_robot(&robot("aaa")).await.unwrap();
    store.create_project(&project("zzz", true)).await.unwrap();
    check_listing("list_users", |p| async move { store.list_users(&p).await }).await;
}

/// A group round-trips with its members; `put_group` replaces it; `delete_group` says
/// whether it removed one.
pub async fn groups_round_trip(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(store.get_group("ops").await.unwrap(), None);
    let ops = group("ops", &["alice", "bob"]);
    store.put_group(&ops).await.unwrap();
    assert_eq!(store.get_group("ops").await.unwrap(), Some(ops.clone()));
    assert_eq!(store.get_group("op").await.unwrap(), None);

    let mut replaced = group("ops", &["carol"]);
    replaced.created_at_ms = 5_000;
    store.put_group(&replaced).await.unwrap();
    assert_eq!(store.get_group("ops").await.unwrap(), Some(replaced));
    let empty = group("empty", &[]);
    store.put_group(&empty).await.unwrap();
    assert_eq!(store.get_group("empty").await.unwrap(), Some(empty));
    assert_eq!(
        store.list_groups(&page(None, 10)).await.unwrap(),
        Page {
            items: names(&["empty", "ops"]),
            more: false
        }
    );

    assert!(store.delete_group("ops").await.unwrap());
    assert_eq!(store.get_group("ops").await.unwrap(), None);
    assert!(!store.delete_group("ops").await.unwrap());
    assert!(!store.delete_group("never").await.unwrap());
    assert_eq!(
        store.list_groups(&page(None, 10)).await.unwrap().items,
        names(&["empty"])
    );
}

/// Groups list in byte order with `after` / `limit` / `more`; other kinds never appear.
pub async fn list_groups_pagination(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(
        store.list_groups(&page(None, 10)).await.unwrap(),
        Page::default()
    );
    for (i, name) in LISTED.iter().enumerate() {
        let members: Vec<&str> = LISTED[..i].to_vec();
        store.put_group(&group(name, &members)).await.unwrap();
    }
    // Re-putting a group does not list it twice.
    store.put_group(&group("bob", &["someone"])).await.unwrap();
    store.create_user(&user("aaa")).await.unwrap();
    store.create_robot(&robot("zzz")).await.unwrap();
    store.create_project(&project("aaa", false)).await.unwrap();
    check_listing(
        "list_groups",
        |p| async move { store.list_groups(&p).await },
    )
    .await;
}

/// `groups_of` follows `put_group`: members added gain the group, members dropped on a
/// re-put lose it, other groups stay; names come in byte order.
pub async fn groups_of_follows_put_group(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    for name in ["alice", "bob", "carol", "dave"] {
        store.create_user(&user(name)).await.unwrap();
    }
    assert!(store.groups_of("alice").await.unwrap().is_empty());
    store
        .put_group(&group("ops", &["alice", "bob"]))
        .await
        .unwrap();
    store
        .put_group(&group("dev", &["alice", "carol"]))
        .await
        .unwrap();
    store.put_group(&group("all", &["alice"])).await.unwrap();
    assert_eq!(
        store.groups_of("alice").await.unwrap(),
        names(&["all", "dev", "ops"])
    );
    assert_eq!(store.groups_of("bob").await.unwrap(), names(&["ops"]));
    assert_eq!(store.groups_of("carol").await.unwrap(), names(&["dev"]));
    assert!(store.groups_of("dave").await.unwrap().is_empty());
    assert!(store.groups_of("alic").await.unwrap().is_empty());

    // Re-put ops: bob dropped, dave added, alice kept.
    store
        .put_group(&group("ops", &["alice", "dave"]))
        .await
        .unwrap();
    assert_eq!(
        store.groups_of("alice").await.unwrap(),
        names(&["all", "dev", "ops"])
    );
    assert!(
        store.groups_of("bob").await.unwrap().is_empty(),
        "a member dropped by a re-put must lose the group"
    );
    assert_eq!(store.groups_of("dave").await.unwrap(), names(&["ops"]));
    assert_eq!(store.groups_of("carol").await.unwrap(), names(&["dev"]));

    // Re-put with no members.
    store.put_group(&group("dev", &[])).await.unwrap();
    assert_eq!(
        store.groups_of("alice").await.unwrap(),
        names(&["all", "ops"])
    );
    assert!(store.groups_of("carol").await.unwrap().is_empty());

    // References are not checked: a member that is no user still gets the entry.
    store.put_group(&group("ghosts", &["ghost"])).await.unwrap();
    assert_eq!(store.groups_of("ghost").await.unwrap(), names(&["ghosts"]));
}

/// `delete_group` removes its members' group entries and the group's memberships, and
/// nothing of other groups or of its members.
pub async fn delete_group_removes_group_entries_and_memberships(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_user(&user("alice")).await.unwrap();
    store.create_user(&user("bob")).await.unwrap();
    store
        .put_group(&group("ops", &["alice", "bob"]))
        .await
        .unwrap();
    store.put_group(&group("dev", &["alice"])).await.unwrap();
    store.set_member("a", &g("ops"), Role::Admin).await.unwrap();
    store
        .set_member("b", &g("ops"), Role::Developer)
        .await
        .unwrap();
    store.set_member("a", &g("dev"), Role::Guest).await.unwrap();
    store
        .set_member("a", &u("alice"), Role::Maintainer)
        .await
        .unwrap();
    // A user and a robot named like the group keep their memberships.
    store.set_member("c", &u("ops"), Role::Guest).await.unwrap();
    store.set_member("c", &r("ops"), Role::Guest).await.unwrap();

    assert!(store.delete_group("ops").await.unwrap());
    assert_eq!(store.get_group("ops").await.unwrap(), None);
    assert_eq!(store.groups_of("alice").await.unwrap(), names(&["dev"]));
    assert!(store.groups_of("bob").await.unwrap().is_empty());
    assert!(store.memberships_of(&[g("ops")]).await.unwrap().is_empty());
    assert_eq!(
        store.list_members("a").await.unwrap(),
        vec![
            member("a", g("dev"), Role::Guest),
            member("a", u("alice"), Role::Maintainer),
        ]
    );
    assert!(store.list_members("b").await.unwrap().is_empty());
    assert_eq!(
        store.list_members("c").await.unwrap(),
        vec![
            member("c", r("ops"), Role::Guest),
            member("c", u("ops"), Role::Guest),
        ]
    );
    assert_eq!(store.get_user("alice").await.unwrap(), Some(user("alice")));
    assert_eq!(store.get_user("bob").await.unwrap(), Some(user("bob")));
    assert_eq!(
        store.get_group("dev").await.unwrap(),
        Some(group("dev", &["alice"]))
    );

    // A group put again under the same name starts without the old memberships.
    store.put_group(&group("ops", &["bob"])).await.unwrap();
    assert!(store.memberships_of(&[g("ops")]).await.unwrap().is_empty());
    assert_eq!(store.groups_of("bob").await.unwrap(), names(&["ops"]));
    assert_eq!(store.groups_of("alice").await.unwrap(), names(&["dev"]));
}

/// A robot round-trips field for field (grants, expiry); `delete_robot` says whether it
/// removed one; a deleted name can be created again.
pub async fn robots_round_trip(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(store.get_robot("team+ci").await.unwrap(), None);
    let ci = robot("team+ci");
    let mut forever = robot("team+forever");
    forever.expires_at_ms = None;
    forever.grants = BTreeMap::new();
    store.create_robot(&ci).await.unwrap();
    store.create_robot(&forever).await.unwrap();
    assert_eq!(store.get_robot("team+ci").await.unwrap(), Some(ci.clone()));
    assert_eq!(
        store.get_robot("team+forever").await.unwrap(),
        Some(forever.clone())
    );
    assert_eq!(store.get_robot("team").await.unwrap(), None);
    assert_eq!(
        store.list_robots(&page(None, 10)).await.unwrap(),
        Page {
            items: names(&["team+ci", "team+forever"]),
            more: false
        }
    );

    assert!(store.delete_robot("team+ci").await.unwrap());
    assert_eq!(store.get_robot("team+ci").await.unwrap(), None);
    assert!(!store.delete_robot("team+ci").await.unwrap());
    assert!(!store.delete_robot("never").await.unwrap());
    assert_eq!(
        store.list_robots(&page(None, 10)).await.unwrap().items,
        names(&["team+forever"])
    );
    store.create_robot(&ci).await.unwrap();
    assert_eq!(store.get_robot("team+ci").await.unwrap(), Some(ci));
}

/// `create_robot` of an existing name fails with `Conflict` and changes nothing.
pub async fn create_robot_conflict(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    let first = robot("team+ci");
    store.create_robot(&first).await.unwrap();
    let mut second = robot("team+ci");
    second.secret_hash = "other".to_owned();
    second.expires_at_ms = None;
    expect_conflict(store.create_robot(&second).await, "create_robot twice");
    assert_eq!(store.get_robot("team+ci").await.unwrap(), Some(first));
    assert_eq!(
        store.list_robots(&page(None, 10)).await.unwrap(),
        Page {
            items: names(&["team+ci"]),
            more: false
        }
    );
}

/// Robots list in byte order with `after` / `limit` / `more`; other kinds never appear.
pub async fn list_robots_pagination(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(
        store.list_robots(&page(None, 10)).await.unwrap(),
        Page::default()
    );
    for name in LISTED {
        store.create_robot(&robot(name)).await.unwrap();
    }
    store.create_user(&user("zzz")).await.unwrap();
    store.put_group(&group("aaa", &[])).await.unwrap();
    store.create_project(&project("aaa", true)).await.unwrap();
    check_listing(
        "list_robots",
        |p| async move { store.list_robots(&p).await },
    )
    .await;
}

/// A project round-trips; `update_project` replaces an existing project only;
/// `delete_project` says whether it removed one.
pub async fn projects_round_trip(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(store.get_project("team").await.unwrap(), None);
    let team = project("team", false);
    store.create_project(&team).await.unwrap();
    store.create_project(&project("team2", true)).await.unwrap();
    assert_eq!(store.get_project("team").await.unwrap(), Some(team.clone()));
    assert_eq!(store.get_project("tea").await.unwrap(), None);

    let public = Project {
        public: true,
        ..team.clone()
    };
    assert!(store.update_project(&public).await.unwrap());
    assert_eq!(
        store.get_project("team").await.unwrap(),
        Some(public.clone())
    );
    assert!(
        !store
            .update_project(&project("nothing", true))
            .await
            .unwrap(),
        "update_project of a missing project must say false"
    );
    assert_eq!(
        store.get_project("nothing").await.unwrap(),
        None,
        "update_project must not create a project"
    );
    assert_eq!(
        store.list_projects(&page(None, 10)).await.unwrap(),
        Page {
            items: names(&["team", "team2"]),
            more: false
        }
    );

    assert!(store.delete_project("team").await.unwrap());
    assert_eq!(store.get_project("team").await.unwrap(), None);
    assert!(!store.delete_project("team").await.unwrap());
    assert!(!store.delete_project("nothing").await.unwrap());
    assert_eq!(
        store.list_projects(&page(None, 10)).await.unwrap().items,
        names(&["team2"])
    );
    store.create_project(&team).await.unwrap();
    assert_eq!(store.get_project("team").await.unwrap(), Some(team));
}

/// `create_project` of an existing name fails with `Conflict` and changes nothing.
pub async fn create_project_conflict(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    let first = project("team", false);
    store.create_project(&first).await.unwrap();
    store
        .set_member("team", &u("alice"), Role::Admin)
        .await
        .unwrap();
    expect_conflict(
        store.create_project(&project("team", true)).await,
        "create_project twice",
    );
    assert_eq!(store.get_project("team").await.unwrap(), Some(first));
    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![member("team", u("alice"), Role::Admin)],
        "a refused create must keep the project's members"
    );
    assert_eq!(
        store.list_projects(&page(None, 10)).await.unwrap(),
        Page {
            items: names(&["team"]),
            more: false
        }
    );
}

/// Projects list in byte order with `after` / `limit` / `more`; memberships and other
/// kinds never appear.
pub async fn list_projects_pagination(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert_eq!(
        store.list_projects(&page(None, 10)).await.unwrap(),
        Page::default()
    );
    for name in LISTED {
        store.create_project(&project(name, false)).await.unwrap();
        store
            .set_member(name, &u("alice"), Role::Guest)
            .await
            .unwrap();
    }
    store.create_user(&user("aaa")).await.unwrap();
    store.put_group(&group("zzz", &[])).await.unwrap();
    store.create_robot(&robot("aaa")).await.unwrap();
    check_listing(
        "list_projects",
        |p| async move { store.list_projects(&p).await },
    )
    .await;
}

/// One name may be a user, a group, a robot and a project at once; each is its own item
/// and its own principal.
pub async fn kinds_have_separate_names(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_user(&user("x")).await.unwrap();
    store.put_group(&group("x", &["x"])).await.unwrap();
    store.create_robot(&robot("x")).await.unwrap();
    store.create_project(&project("x", true)).await.unwrap();
    assert_eq!(store.get_user("x").await.unwrap(), Some(user("x")));
    assert_eq!(
        store.get_group("x").await.unwrap(),
        Some(group("x", &["x"]))
    );
    assert_eq!(store.get_robot("x").await.unwrap(), Some(robot("x")));
    assert_eq!(
        store.get_project("x").await.unwrap(),
        Some(project("x", true))
    );
    for list in [
        store.list_users(&page(None, 10)).await.unwrap(),
        store.list_groups(&page(None, 10)).await.unwrap(),
        store.list_robots(&page(None, 10)).await.unwrap(),
        store.list_projects(&page(None, 10)).await.unwrap(),
    ] {
        assert_eq!(
            list,
            Page {
                items: names(&["x"]),
                more: false
            }
        );
    }
    store.set_member("x", &u("x"), Role::Guest).await.unwrap();
    store
        .set_member("x", &g("x"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("x", &r("x"), Role::Maintainer)
        .await
        .unwrap();
    assert_eq!(
        memberships(store, &[u("x")]).await,
        vec![member("x", u("x"), Role::Guest)]
    );
    assert_eq!(
        memberships(store, &[g("x")]).await,
        vec![member("x", g("x"), Role::Developer)]
    );
    assert_eq!(
        memberships(store, &[r("x")]).await,
        vec![member("x", r("x"), Role::Maintainer)]
    );

    assert!(store.delete_robot("x").await.unwrap());
    assert_eq!(store.get_user("x").await.unwrap(), Some(user("x")));
    assert_eq!(
        store.get_project("x").await.unwrap(),
        Some(project("x", true))
    );
    assert_eq!(
        store.list_members("x").await.unwrap(),
        vec![
            member("x", g("x"), Role::Developer),
            member("x", u("x"), Role::Guest),
        ]
    );
    assert!(store.delete_user("x").await.unwrap());
    assert_eq!(
        store.get_group("x").await.unwrap(),
        Some(group("x", &[])),
        "deleting user x leaves group x, without the user"
    );
    assert_eq!(
        store.list_members("x").await.unwrap(),
        vec![member("x", g("x"), Role::Developer)]
    );
}

/// `set_member` gives a role and, for the same project and principal, replaces it (one
/// membership, in both directions); references are not checked.
pub async fn set_member_replaces_role(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_project(&project("team", false)).await.unwrap();
    store
        .set_member("team", &u("alice"), Role::Guest)
        .await
        .unwrap();
    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![member("team", u("alice"), Role::Guest)]
    );
    store
        .set_member("team", &u("alice"), Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![member("team", u("alice"), Role::Admin)],
        "set_member must replace the role, not add a second membership"
    );
    assert_eq!(
        memberships(store, &[u("alice")]).await,
        vec![member("team", u("alice"), Role::Admin)],
        "the reverse entry must carry the new role"
    );
    store
        .set_member("team", &u("alice"), Role::Developer)
        .await
        .unwrap();
    assert_eq!(
        memberships(store, &[u("alice")]).await,
        vec![member("team", u("alice"), Role::Developer)]
    );
    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![member("team", u("alice"), Role::Developer)]
    );

    // Neither the project nor the principal has to exist.
    store
        .set_member("nowhere", &r("ghost"), Role::Guest)
        .await
        .unwrap();
    assert_eq!(
        store.list_members("nowhere").await.unwrap(),
        vec![member("nowhere", r("ghost"), Role::Guest)]
    );
    assert_eq!(
        memberships(store, &[r("ghost")]).await,
        vec![member("nowhere", r("ghost"), Role::Guest)]
    );
}

/// `remove_member` removes one membership in both directions and says whether there
/// was one; the principal's other memberships and the project's other members stay.
pub async fn remove_member(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store
        .set_member("team", &u("alice"), Role::Admin)
        .await
        .unwrap();
    store
        .set_member("team", &u("bob"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("other", &u("alice"), Role::Developer)
        .await
        .unwrap();

    assert!(store.remove_member("team", &u("alice")).await.unwrap());
    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![member("team", u("bob"), Role::Guest)]
    );
    assert_eq!(
        memberships(store, &[u("alice")]).await,
        vec![member("other", u("alice"), Role::Developer)]
    );
    assert!(!store.remove_member("team", &u("alice")).await.unwrap());
    assert!(!store.remove_member("team", &g("alice")).await.unwrap());
    assert!(!store.remove_member("nowhere", &u("bob")).await.unwrap());
    assert_eq!(
        memberships(store, &[u("bob")]).await,
        vec![member("team", u("bob"), Role::Guest)]
    );
    assert!(store.remove_member("team", &u("bob")).await.unwrap());
    assert!(store.list_members("team").await.unwrap().is_empty());
    assert!(store.memberships_of(&[u("bob")]).await.unwrap().is_empty());
}

/// `list_members` lists the memberships of one project only, ordered by principal.
pub async fn list_members(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert!(store.list_members("team").await.unwrap().is_empty());
    store
        .set_member("team", &u("bob"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("team", &r("team+ci"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("team", &g("ops"), Role::Maintainer)
        .await
        .unwrap();
    store
        .set_member("team", &u("alice"), Role::Admin)
        .await
        .unwrap();
    // Projects whose keys sort next to this one's.
    store
        .set_member("tea", &u("carol"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team2", &u("dave"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team-x", &u("erin"), Role::Guest)
        .await
        .unwrap();
    store.create_project(&project("team", true)).await.unwrap();

    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![
            member("team", g("ops"), Role::Maintainer),
            member("team", r("team+ci"), Role::Developer),
            member("team", u("alice"), Role::Admin),
            member("team", u("bob"), Role::Developer),
        ]
    );
    assert_eq!(
        store.list_members("tea").await.unwrap(),
        vec![member("tea", u("carol"), Role::Guest)]
    );
    assert!(store.list_members("te").await.unwrap().is_empty());
}

/// `memberships_of` a user and its groups returns every membership of any of them,
/// across projects, each once, and nothing of other principals.
pub async fn memberships_of_user_and_groups(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_user(&user("alice")).await.unwrap();
    store
        .put_group(&group("ops", &["alice", "bob"]))
        .await
        .unwrap();
    store.put_group(&group("dev", &["alice"])).await.unwrap();
    store
        .set_member("team", &u("alice"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("team", &g("ops"), Role::Maintainer)
        .await
        .unwrap();
    store
        .set_member("infra", &g("ops"), Role::Admin)
        .await
        .unwrap();
    store
        .set_member("web", &g("dev"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("solo", &u("alice"), Role::Guest)
        .await
        .unwrap();
    // Other principals, some named alike.
    store
        .set_member("team", &u("bob"), Role::Admin)
        .await
        .unwrap();
    store
        .set_member("secret", &r("alice"), Role::Admin)
        .await
        .unwrap();
    store
        .set_member("secret", &u("alice2"), Role::Admin)
        .await
        .unwrap();
    store
        .set_member("secret", &g("op"), Role::Admin)
        .await
        .unwrap();

    let mut principals = vec![u("alice")];
    principals.extend(store.groups_of("alice").await.unwrap().iter().map(|n| g(n)));
    assert_eq!(principals, vec![u("alice"), g("dev"), g("ops")]);
    let want = vec![
        member("infra", g("ops"), Role::Admin),
        member("solo", u("alice"), Role::Guest),
        member("team", g("ops"), Role::Maintainer),
        member("team", u("alice"), Role::Developer),
        member("web", g("dev"), Role::Guest),
    ];
    assert_eq!(memberships(store, &principals).await, want);
    let doubled: Vec<Principal> = principals.iter().chain(&principals).cloned().collect();
    assert_eq!(
        memberships(store, &doubled).await,
        want,
        "a principal named twice yields its memberships once"
    );
    assert_eq!(
        memberships(store, &[u("alice")]).await,
        vec![
            member("solo", u("alice"), Role::Guest),
            member("team", u("alice"), Role::Developer),
        ]
    );
    assert_eq!(
        memberships(store, &[g("ops")]).await,
        vec![
            member("infra", g("ops"), Role::Admin),
            member("team", g("ops"), Role::Maintainer),
        ]
    );
    assert!(store.memberships_of(&[]).await.unwrap().is_empty());
    assert!(
        store
            .memberships_of(&[u("nobody")])
            .await
            .unwrap()
            .is_empty()
    );
}

/// `delete_project` removes every membership in it, in both directions, and nothing of
/// other projects; a project created again under the name starts without members.
pub async fn delete_project_removes_memberships(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_project(&project("team", false)).await.unwrap();
    store
        .create_project(&project("team2", false))
        .await
        .unwrap();
    store
        .set_member("team", &u("alice"), Role::Admin)
        .await
        .unwrap();
    store
        .set_member("team", &g("ops"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("team", &r("team+ci"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("team2", &u("alice"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team2", &g("ops"), Role::Guest)
        .await
        .unwrap();

    assert!(store.delete_project("team").await.unwrap());
    assert!(store.list_members("team").await.unwrap().is_empty());
    assert_eq!(
        memberships(store, &[u("alice"), g("ops"), r("team+ci")]).await,
        vec![
            member("team2", g("ops"), Role::Guest),
            member("team2", u("alice"), Role::Guest),
        ],
        "memberships_of must no longer return the deleted project's memberships"
    );
    assert_eq!(
        store.list_members("team2").await.unwrap(),
        vec![
            member("team2", g("ops"), Role::Guest),
            member("team2", u("alice"), Role::Guest),
        ]
    );
    store.create_project(&project("team", true)).await.unwrap();
    assert!(store.list_members("team").await.unwrap().is_empty());
}

/// `delete_user` removes the user's memberships and group entries and takes it out of
/// its groups' member sets; groups, other members and same-named principals stay.
pub async fn delete_user_removes_memberships_and_group_entries(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_user(&user("alice")).await.unwrap();
    store.create_user(&user("bob")).await.unwrap();
    store
        .put_group(&group("ops", &["alice", "bob"]))
        .await
        .unwrap();
    store.put_group(&group("dev", &["alice"])).await.unwrap();
    store
        .set_member("team", &u("alice"), Role::Admin)
        .await
        .unwrap();
    store
        .set_member("infra", &u("alice"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team", &g("ops"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("team", &u("bob"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team", &r("alice"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team", &g("alice"), Role::Guest)
        .await
        .unwrap();

    assert!(store.delete_user("alice").await.unwrap());
    assert_eq!(store.get_user("alice").await.unwrap(), None);
    assert!(
        store.groups_of("alice").await.unwrap().is_empty(),
        "groups_of a deleted user must be empty"
    );
    assert_eq!(
        store.get_group("ops").await.unwrap(),
        Some(group("ops", &["bob"])),
        "the group must no longer list the deleted user"
    );
    assert_eq!(
        store.get_group("dev").await.unwrap(),
        Some(group("dev", &[])),
        "a group whose only member was deleted stays, empty"
    );
    assert!(
        store
            .memberships_of(&[u("alice")])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.list_members("infra").await.unwrap().is_empty());
    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![
            member("team", g("alice"), Role::Guest),
            member("team", g("ops"), Role::Developer),
            member("team", r("alice"), Role::Guest),
            member("team", u("bob"), Role::Guest),
        ]
    );
    assert_eq!(store.groups_of("bob").await.unwrap(), names(&["ops"]));

    // Created again, the name starts without groups or memberships.
    store.create_user(&user("alice")).await.unwrap();
    assert!(store.groups_of("alice").await.unwrap().is_empty());
    assert!(
        store
            .memberships_of(&[u("alice")])
            .await
            .unwrap()
            .is_empty()
    );
    // A later re-put of a group keeps groups_of and the member set in step.
    store
        .put_group(&group("ops", &["alice", "bob"]))
        .await
        .unwrap();
    assert_eq!(store.groups_of("alice").await.unwrap(), names(&["ops"]));
}

/// `update_user` changes the user only: its groups and memberships stay.
pub async fn update_user_keeps_groups_and_memberships(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_user(&user("alice")).await.unwrap();
    store.put_group(&group("ops", &["alice"])).await.unwrap();
    store
        .set_member("team", &u("alice"), Role::Developer)
        .await
        .unwrap();
    let mut disabled = user("alice");
    disabled.disabled = true;
    assert!(store.update_user(&disabled).await.unwrap());
    assert_eq!(store.groups_of("alice").await.unwrap(), names(&["ops"]));
    assert_eq!(
        store.get_group("ops").await.unwrap(),
        Some(group("ops", &["alice"]))
    );
    assert_eq!(
        memberships(store, &[u("alice")]).await,
        vec![member("team", u("alice"), Role::Developer)]
    );
}

/// `delete_robot` removes the robot's memberships in every project, and nothing else.
pub async fn delete_robot_removes_memberships(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    store.create_robot(&robot("team+ci")).await.unwrap();
    store.create_robot(&robot("team+cd")).await.unwrap();
    store
        .set_member("team", &r("team+ci"), Role::Developer)
        .await
        .unwrap();
    store
        .set_member("public", &r("team+ci"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team", &r("team+cd"), Role::Guest)
        .await
        .unwrap();
    store
        .set_member("team", &u("team+ci"), Role::Admin)
        .await
        .unwrap();

    assert!(store.delete_robot("team+ci").await.unwrap());
    assert!(
        store
            .memberships_of(&[r("team+ci")])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.list_members("public").await.unwrap().is_empty());
    assert_eq!(
        store.list_members("team").await.unwrap(),
        vec![
            member("team", r("team+cd"), Role::Guest),
            member("team", u("team+ci"), Role::Admin),
        ]
    );
    assert_eq!(
        store.get_robot("team+cd").await.unwrap(),
        Some(robot("team+cd"))
    );
    store.create_robot(&robot("team+ci")).await.unwrap();
    assert!(
        store
            .memberships_of(&[r("team+ci")])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Audit records read back field for field, in id order whatever the append order,
/// strictly after `after`, at most `limit`.
pub async fn audit_order_and_pagination(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    assert!(store.list_audit(None, 10).await.unwrap().is_empty());
    let records: Vec<AuditRecord> = [
        (1_000, "a"),
        (1_000, "b"),
        (2_000, "aa"),
        (30_000, "c"),
        (30_001, "dd"),
        (400_000, "e"),
    ]
    .iter()
    .map(|(at, s)| audit(*at, s, "user.create"))
    .collect();
    for i in [3, 0, 5, 1, 4, 2] {
        store.append_audit(&records[i]).await.unwrap();
    }
    assert_eq!(store.list_audit(None, 100).await.unwrap(), records);
    assert_eq!(store.list_audit(None, 2).await.unwrap(), records[..2]);
    assert_eq!(
        store.list_audit(Some(&records[1].id), 3).await.unwrap(),
        records[2..5]
    );
    assert_eq!(
        store.list_audit(Some(&records[4].id), 3).await.unwrap(),
        records[5..]
    );
    assert!(
        store
            .list_audit(Some(&records[5].id), 3)
            .await
            .unwrap()
            .is_empty()
    );
    // `after` need not be a stored id.
    assert_eq!(
        store.list_audit(Some("0000000002000"), 10).await.unwrap(),
        records[2..]
    );
    assert_eq!(
        store.list_audit(Some("0000000002000-b"), 10).await.unwrap(),
        records[3..]
    );
    // Walking pages of 4 visits every record once, in order.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store.list_audit(after.as_deref(), 4).await.unwrap();
        assert!(batch.len() <= 4);
        let Some(last) = batch.last() else { break };
        after = Some(last.id.clone());
        walked.extend(batch);
    }
    assert_eq!(walked, records);
}

/// Failed logins count up within a window, per account.
pub async fn login_failures_count_within_window(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    const W: u64 = 1_700_000_000_000;
    assert_eq!(store.login_failures("alice", W).await.unwrap(), 0);
    assert_eq!(store.record_login_failure("alice", W).await.unwrap(), 1);
    assert_eq!(store.record_login_failure("alice", W).await.unwrap(), 2);
    assert_eq!(store.record_login_failure("alice", W).await.unwrap(), 3);
    assert_eq!(store.login_failures("alice", W).await.unwrap(), 3);
    assert_eq!(store.record_login_failure("bob", W).await.unwrap(), 1);
    assert_eq!(store.login_failures("bob", W).await.unwrap(), 1);
    assert_eq!(store.login_failures("alice", W).await.unwrap(), 3);
    assert_eq!(store.login_failures("alic", W).await.unwrap(), 0);
    assert_eq!(store.login_failures("robot:team+ci", W).await.unwrap(), 0);
    assert_eq!(
        store
            .record_login_failure("robot:team+ci", W)
            .await
            .unwrap(),
        1
    );
}

/// A later window resets the count; a failure for an earlier window adds to the stored
/// one; `login_failures` of a later window is 0 until one is recorded there.
pub async fn login_failures_new_window_resets(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    const W1: u64 = 1_700_000_000_000;
    const W2: u64 = W1 + 300_000;
    for _ in 0..4 {
        store.record_login_failure("alice", W1).await.unwrap();
    }
    assert_eq!(store.login_failures("alice", W1).await.unwrap(), 4);
    assert_eq!(
        store.login_failures("alice", W2).await.unwrap(),
        0,
        "a later window has no failures yet"
    );
    assert_eq!(
        store.record_login_failure("alice", W2).await.unwrap(),
        1,
        "a new window resets the count"
    );
    assert_eq!(store.login_failures("alice", W2).await.unwrap(), 1);
    assert_eq!(store.record_login_failure("alice", W2).await.unwrap(), 2);
    assert_eq!(
        store.record_login_failure("alice", W1).await.unwrap(),
        3,
        "a failure for an earlier window counts in the stored window"
    );
    assert_eq!(store.login_failures("alice", W2).await.unwrap(), 3);
    assert_eq!(
        store.login_failures("alice", W1).await.unwrap(),
        3,
        "an earlier window reads the stored window's count"
    );
    assert_eq!(store.login_failures("alice", W2 + 1).await.unwrap(), 0);
}

/// `clear_login_failures` forgets the account's count (others stay); counting starts
/// again at 1; clearing an account without failures succeeds.
pub async fn clear_login_failures(store: Arc<dyn IdentityStore>) {
    let store = &*store;
    const W: u64 = 1_700_000_000_000;
    for _ in 0..5 {
        store.record_login_failure("alice", W).await.unwrap();
    }
    store.record_login_failure("bob", W).await.unwrap();
    store.clear_login_failures("alice").await.unwrap();
    assert_eq!(store.login_failures("alice", W).await.unwrap(), 0);
    assert_eq!(store.login_failures("alice", 0).await.unwrap(), 0);
    assert_eq!(store.login_failures("bob", W).await.unwrap(), 1);
    assert_eq!(store.record_login_failure("alice", W).await.unwrap(), 1);
    store.clear_login_failures("alice").await.unwrap();
    store
        .clear_login_failures("never-failed")
        .await
        .expect("clearing an account without failures must succeed");
    assert_eq!(store.login_failures("never-failed", W).await.unwrap(), 0);
}

/// Eight writers setting different principals on one project at once: every
/// membership is present, in both directions.
pub async fn concurrent_set_member(store: Arc<dyn IdentityStore>) {
    const WRITERS: usize = 8;
    store.create_project(&project("team", false)).await.unwrap();
    let principals: Vec<Principal> = (0..WRITERS)
        .map(|i| match i % 3 {
            0 => u(&format!("user{i}")),
            1 => g(&format!("group{i}")),
            _ => r(&format!("team+robot{i}")),
        })
        .collect();
    let role = |i: usize| [Role::Guest, Role::Developer, Role::Maintainer, Role::Admin][i % 4];
    let tasks: Vec<_> = principals
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, p)| {
            let store = store.clone();
            tokio::spawn(async move { store.set_member("team", &p, role(i)).await })
        })
        .collect();
    for t in tasks {
        t.await
            .expect("writer task")
            .expect("racing set_member must succeed");
    }
    let mut want: Vec<Membership> = principals
        .iter()
        .enumerate()
        .map(|(i, p)| member("team", p.clone(), role(i)))
        .collect();
    want.sort_by_key(|a| a.principal.to_string());
    assert_eq!(store.list_members("team").await.unwrap(), want);
    assert_eq!(memberships(&*store, &principals).await, sorted(want));
}

/// Ten failed logins recorded at once in one window count ten, each call returning a
/// different count from 1 to 10.
pub async fn concurrent_login_failures(store: Arc<dyn IdentityStore>) {
    const RACERS: u32 = 10;
    const W: u64 = 1_700_000_000_000;
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.record_login_failure("alice", W).await })
        })
        .collect();
    let mut counts = BTreeSet::new();
    for t in tasks {
        let n = t
            .await
            .expect("racer task")
            .expect("racing record_login_failure must succeed");
        assert!(counts.insert(n), "two racing failures both returned {n}");
    }
    assert_eq!(counts, (1..=RACERS).collect::<BTreeSet<_>>());
    assert_eq!(store.login_failures("alice", W).await.unwrap(), RACERS);
}

/// Racing re-puts of one group with different member sets leave `groups_of` in step
/// with the stored member set: no stale group entry, none missing.
pub async fn concurrent_group_puts_stay_consistent(store: Arc<dyn IdentityStore>) {
    const WRITERS: usize = 8;
    let everyone: Vec<String> = (0..WRITERS + 1).map(|i| format!("user{i}")).collect();
    for round in 0..3 {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let store = store.clone();
                // Writer i puts members {i, i+1}, and on odd rounds also everyone's first.
                let mut members = vec![everyone[i].as_str(), everyone[i + 1].as_str()];
                if round % 2 == 1 {
                    members.push(everyone[0].as_str());
                }
                let ops = group("ops", &members);
                tokio::spawn(async move { store.put_group(&ops).await })
            })
            .collect();
        for t in tasks {
            t.await
                .expect("writer task")
                .expect("racing put_group must succeed");
        }
        let stored = store.get_group("ops").await.unwrap().expect("group exists");
        for name in &everyone {
            let listed = store
                .groups_of(name)
                .await
                .unwrap()
                .contains(&"ops".to_owned());
            assert_eq!(
                listed,
                stored.members.contains(name),
                "round {round}: groups_of({name}) disagrees with the member set {:?}",
                stored.members
            );
        }
    }
}

/// Deleting a user while a group put adds it: afterwards the group lists the user
/// exactly when `groups_of` names the group.
pub async fn delete_user_racing_put_group_stays_consistent(store: Arc<dyn IdentityStore>) {
    for round in 0..10 {
        let name = format!("user{round}");
        store.create_user(&user(&name)).await.unwrap();
        store
            .put_group(&group("ops", &[name.as_str(), "keeper"]))
            .await
            .unwrap();
        let (s1, s2) = (store.clone(), store.clone());
        let n = name.clone();
        let delete = tokio::spawn(async move { s1.delete_user(&n).await });
        let readd = group("ops", &[name.as_str(), "keeper", "other"]);
        let put = tokio::spawn(async move { s2.put_group(&readd).await });
        assert!(delete.await.unwrap().unwrap(), "the user existed");
        put.await.unwrap().unwrap();
        let stored = store.get_group("ops").await.unwrap().expect("group exists");
        let listed = store.groups_of(&name).await.unwrap() == names(&["ops"]);
        assert_eq!(
            listed,
            stored.members.contains(&name),
            "round {round}: groups_of({name}) disagrees with the member set {:?}",
            stored.members
        );
        assert!(stored.members.contains("keeper") && stored.members.contains("other"));
    }
}
