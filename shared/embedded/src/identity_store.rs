//! `IdentityStore` on the embedded metadata store: users, groups, robots, projects,
//! memberships, the audit log and failed-login counts in the same redb `items` table,
//! laid out by the key schema of [`registry_core::ports::identity_store`]; each port
//! method is one transaction.

use std::collections::BTreeSet;

use async_trait::async_trait;
use redb::ReadableTable;
use registry_core::identity::{
    AuditRecord, Group, Membership, Principal, Project, Robot, Role, User,
};
use registry_core::ports::{IdentityStore, Page, PageRequest};
use registry_core::{RegistryError, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::metadata_store::{
    EMPTY, EmbeddedMetadataStore, Items, decode, encode, get_item, page_of, query,
};

const USER_PREFIX: &str = "USER#";
const USER_SK: &str = "USER";
const USERS: &str = "USERS";
const GROUP_PREFIX: &str = "GROUP#";
const GROUP_SK: &str = "GROUP";
const GROUPS: &str = "GROUPS";
const ROBOT_PREFIX: &str = "ROBOT#";
const ROBOT_SK: &str = "ROBOT";
const ROBOTS: &str = "ROBOTS";
const PROJECT_PREFIX: &str = "PROJECT#";
const PROJECT_SK: &str = "PROJECT";
const PROJECTS: &str = "PROJECTS";
const MEMBER_PREFIX: &str = "MEMBER#";
const PRINCIPAL_PREFIX: &str = "PRINCIPAL#";
const AUDIT: &str = "AUDIT";
const LOGINFAIL_PREFIX: &str = "LOGINFAIL#";
const LOGINFAIL_SK: &str = "LOGINFAIL";

/// The failed-login item: the count in the window starting at `window_start_ms`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginFailures {
    count: u32,
    window_start_ms: u64,
}

/// One kind of named item (user, group, robot, project): its partition `<prefix><name>`
/// with sort key `sk`, and its list entry `<list>` / `<prefix><name>`.
struct Kind {
    what: &'static str,
    prefix: &'static str,
    sk: &'static str,
    list: &'static str,
}

const USER: Kind = Kind {
    what: "user",
    prefix: USER_PREFIX,
    sk: USER_SK,
    list: USERS,
};
const GROUP: Kind = Kind {
    what: "group",
    prefix: GROUP_PREFIX,
    sk: GROUP_SK,
    list: GROUPS,
};
const ROBOT: Kind = Kind {
    what: "robot",
    prefix: ROBOT_PREFIX,
    sk: ROBOT_SK,
    list: ROBOTS,
};
const PROJECT: Kind = Kind {
    what: "project",
    prefix: PROJECT_PREFIX,
    sk: PROJECT_SK,
    list: PROJECTS,
};

impl Kind {
    /// The item's partition key, which is also its list entry's sort key.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn get<T: DeserializeOwned>(&self, t: &Items<'_>, name: &str) -> Result<Option<T>> {
        get_item(t, &self.key(name), self.sk)
    }

    fn exists(&self, t: &Items<'_>, name: &str) -> Result<bool> {
        let key = self.key(name);
        Ok(t.get((key.as_str(), self.sk))
            .map_err(RegistryError::storage)?
            .is_some())
    }

    /// Writes the item and its list entry.
    fn put<T: Serialize>(&self, t: &mut Items<'_>, name: &str, value: &T) -> Result<()> {
        let key = self.key(name);
        t.insert((key.as_str(), self.sk), encode(value)?.as_slice())
            .map_err(RegistryError::storage)?;
        t.insert((self.list, key.as_str()), EMPTY)
            .map_err(RegistryError::storage)?;
        Ok(())
    }

    /// Writes a new item; `Conflict` if the name exists.
    fn create<T: Serialize>(&self, t: &mut Items<'_>, name: &str, value: &T) -> Result<()> {
        if self.exists(t, name)? {
            return Err(RegistryError::Conflict(format!(
                "{} {name:?} already exists",
                self.what
            )));
        }
        self.put(t, name, value)
    }

    /// Replaces an existing item; `false` if there is none.
    fn update<T: Serialize>(&self, t: &mut Items<'_>, name: &str, value: &T) -> Result<bool> {
        if !self.exists(t, name)? {
            return Ok(false);
        }
        self.put(t, name, value)?;
        Ok(true)
    }

    /// Removes the item and its list entry; `false` if there was none.
    fn remove(&self, t: &mut Items<'_>, name: &str) -> Result<bool> {
        let key = self.key(name);
        let existed = t
            .remove((key.as_str(), self.sk))
            .map_err(RegistryError::storage)?
            .is_some();
        t.remove((self.list, key.as_str()))
            .map_err(RegistryError::storage)?;
        Ok(existed)
    }

    fn list(
        &self,
        t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
        page: &PageRequest,
    ) -> Result<Page> {
        let items = query(
            t,
            self.list,
            self.prefix,
            page.after.as_deref(),
            page.limit.saturating_add(1),
        )?;
        Ok(page_of(items, self.prefix, page.limit))
    }
}

fn member_sk(principal: &Principal) -> String {
    format!("{MEMBER_PREFIX}{principal}")
}

fn principal_pk(principal: &Principal) -> String {
    format!("{PRINCIPAL_PREFIX}{principal}")
}

fn loginfail_pk(account: &str) -> String {
    format!("{LOGINFAIL_PREFIX}{account}")
}

/// Writes a membership and its reverse entry.
fn put_membership(t: &mut Items<'_>, m: &Membership) -> Result<()> {
    let value = encode(m)?;
    let (pk, sk) = (PROJECT.key(&m.project), member_sk(&m.principal));
    t.insert((pk.as_str(), sk.as_str()), value.as_slice())
        .map_err(RegistryError::storage)?;
    let (rpk, rsk) = (principal_pk(&m.principal), PROJECT.key(&m.project));
    t.insert((rpk.as_str(), rsk.as_str()), value.as_slice())
        .map_err(RegistryError::storage)?;
    Ok(())
}

/// Removes a membership and its reverse entry; `false` if there was none.
fn remove_membership(t: &mut Items<'_>, project: &str, principal: &Principal) -> Result<bool> {
    let (pk, sk) = (PROJECT.key(project), member_sk(principal));
    let existed = t
        .remove((pk.as_str(), sk.as_str()))
        .map_err(RegistryError::storage)?
        .is_some();
    let (rpk, rsk) = (principal_pk(principal), PROJECT.key(project));
    t.remove((rpk.as_str(), rsk.as_str()))
        .map_err(RegistryError::storage)?;
    Ok(existed)
}

/// Removes every membership `principal` holds, and their reverse entries.
fn remove_memberships_of(t: &mut Items<'_>, principal: &Principal) -> Result<()> {
    let rpk = principal_pk(principal);
    for (rsk, _) in query(t, &rpk, PROJECT_PREFIX, None, usize::MAX)? {
        remove_membership(t, &rsk[PROJECT_PREFIX.len()..], principal)?;
    }
    Ok(())
}

#[async_trait]
impl IdentityStore for EmbeddedMetadataStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write(move |t| USER.create(t, &user.name, &user)).await
    }

    async fn update_user(&self, user: &User) -> Result<bool> {
        let user = user.clone();
        self.write(move |t| USER.update(t, &user.name, &user)).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        let (pk, sk) = (USER.key(name), USER.sk);
        self.read(move |t| get_item(t, &pk, sk)).await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |t| {
            if !USER.remove(t, &name)? {
                return Ok(false);
            }
            let pk = USER.key(&name);
            for (sk, _) in query(t, &pk, GROUP_PREFIX, None, usize::MAX)? {
                t.remove((pk.as_str(), sk.as_str()))
                    .map_err(RegistryError::storage)?;
                let group_name = &sk[GROUP_PREFIX.len()..];
                if let Some(mut group) = GROUP.get::<Group>(t, group_name)?
                    && group.members.remove(&name)
                {
                    GROUP.put(t, group_name, &group)?;
                }
            }
            remove_memberships_of(t, &Principal::User(name))?;
            Ok(true)
        })
        .await
    }

    async fn list_users(&self, page: &PageRequest) -> Result<Page> {
        let page = page.clone();
        self.read(move |t| USER.list(t, &page)).await
    }

    async fn put_group(&self, group: &Group) -> Result<()> {
        let group = group.clone();
        self.write(move |t| {
            let old: BTreeSet<String> = GROUP
                .get::<Group>(t, &group.name)?
                .map(|g| g.members)
                .unwrap_or_default();
            let sk = GROUP.key(&group.name);
            for gone in old.difference(&group.members) {
                let pk = USER.key(gone);
                t.remove((pk.as_str(), sk.as_str()))
                    .map_err(RegistryError::storage)?;
            }
            for member in &group.members {
                let pk = USER.key(member);
                t.insert((pk.as_str(), sk.as_str()), EMPTY)
                    .map_err(RegistryError::storage)?;
            }
            GROUP.put(t, &group.name, &group)
        })
        .await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>> {
        let (pk, sk) = (GROUP.key(name), GROUP.sk);
        self.read(move |t| get_item(t, &pk, sk)).await
    }

    async fn delete_group(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |t| {
            let Some(group) = GROUP.get::<Group>(t, &name)? else {
                return Ok(false);
            };
            GROUP.remove(t, &name)?;
            let sk = GROUP.key(&name);
            for member in &group.members {
                let pk = USER.key(member);
                t.remove((pk.as_str(), sk.as_str()))
                    .map_err(RegistryError::storage)?;
            }
            remove_memberships_of(t, &Principal::Group(name))?;
            Ok(true)
        })
        .await
    }

    async fn list_groups(&self, page: &PageRequest) -> Result<Page> {
        let page = page.clone();
        self.read(move |t| GROUP.list(t, &page)).await
    }

    async fn groups_of(&self, user: &str) -> Result<Vec<String>> {
        let pk = USER.key(user);
        self.read(move |t| {
            Ok(query(t, &pk, GROUP_PREFIX, None, usize::MAX)?
                .into_iter()
                .map(|(sk, _)| sk[GROUP_PREFIX.len()..].to_owned())
                .collect())
        })
        .await
    }

    async fn create_robot(&self, robot: &Robot) -> Result<()> {
        let robot = robot.clone();
        self.write(move |t| ROBOT.create(t, &robot.name, &robot))
            .await
    }

    async fn get_robot(&self, name: &str) -> Result<Option<Robot>> {
        let (pk, sk) = (ROBOT.key(name), ROBOT.sk);
        self.read(move |t| get_item(t, &pk, sk)).await
    }

    async fn delete_robot(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |t| {
            if !ROBOT.remove(t, &name)? {
                return Ok(false);
            }
            remove_memberships_of(t, &Principal::Robot(name))?;
            Ok(true)
        })
        .await
    }

    async fn list_robots(&self, page: &PageRequest) -> Result<Page> {
        let page = page.clone();
        self.read(move |t| ROBOT.list(t, &page)).await
    }

    async fn create_project(&self, project: &Project) -> Result<()> {
        let project = project.clone();
        self.write(move |t| PROJECT.create(t, &project.name, &project))
            .await
    }

    async fn update_project(&self, project: &Project) -> Result<bool> {
        let project = project.clone();
        self.write(move |t| PROJECT.update(t, &project.name, &project))
            .await
    }

    async fn get_project(&self, name: &str) -> Result<Option<Project>> {
        let (pk, sk) = (PROJECT.key(name), PROJECT.sk);
        self.read(move |t| get_item(t, &pk, sk)).await
    }

    async fn delete_project(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |t| {
            if !PROJECT.remove(t, &name)? {
                return Ok(false);
            }
            let pk = PROJECT.key(&name);
            for (_, value) in query(t, &pk, MEMBER_PREFIX, None, usize::MAX)? {
                let m: Membership = decode(&value)?;
                remove_membership(t, &name, &m.principal)?;
            }
            Ok(true)
        })
        .await
    }

    async fn list_projects(&self, page: &PageRequest) -> Result<Page> {
        let page = page.clone();
        self.read(move |t| PROJECT.list(t, &page)).await
    }

    async fn set_member(&self, project: &str, principal: &Principal, role: Role) -> Result<()> {
        let m = Membership {
            project: project.to_owned(),
            principal: principal.clone(),
            role,
        };
        self.write(move |t| put_membership(t, &m)).await
    }

    async fn remove_member(&self, project: &str, principal: &Principal) -> Result<bool> {
        let (project, principal) = (project.to_owned(), principal.clone());
        self.write(move |t| remove_membership(t, &project, &principal))
            .await
    }

    async fn list_members(&self, project: &str) -> Result<Vec<Membership>> {
        let pk = PROJECT.key(project);
        self.read(move |t| {
            query(t, &pk, MEMBER_PREFIX, None, usize::MAX)?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn memberships_of(&self, principals: &[Principal]) -> Result<Vec<Membership>> {
        let principals: BTreeSet<Principal> = principals.iter().cloned().collect();
        self.read(move |t| {
            let mut out = Vec::new();
            for p in &principals {
                for (_, v) in query(t, &principal_pk(p), PROJECT_PREFIX, None, usize::MAX)? {
                    out.push(decode(&v)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        let record = record.clone();
        self.write(move |t| {
            t.insert((AUDIT, record.id.as_str()), encode(&record)?.as_slice())
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, after: Option<&str>, limit: usize) -> Result<Vec<AuditRecord>> {
        let after = after.map(str::to_owned);
        self.read(move |t| {
            query(t, AUDIT, "", after.as_deref(), limit)?
                .into_iter()
                .map(|(_, v)| decode(&v))
                .collect()
        })
        .await
    }

    async fn record_login_failure(&self, account: &str, window_start_ms: u64) -> Result<u32> {
        let pk = loginfail_pk(account);
        self.write(move |t| {
            let stored: Option<LoginFailures> = get_item(t, &pk, LOGINFAIL_SK)?;
            let next = match stored {
                Some(s) if s.window_start_ms >= window_start_ms => LoginFailures {
                    count: s.count.saturating_add(1),
                    window_start_ms: s.window_start_ms,
                },
                _ => LoginFailures {
                    count: 1,
                    window_start_ms,
                },
            };
            t.insert((pk.as_str(), LOGINFAIL_SK), encode(&next)?.as_slice())
                .map_err(RegistryError::storage)?;
            Ok(next.count)
        })
        .await
    }

    async fn login_failures(&self, account: &str, window_start_ms: u64) -> Result<u32> {
        let pk = loginfail_pk(account);
        self.read(move |t| {
            Ok(match get_item::<LoginFailures>(t, &pk, LOGINFAIL_SK)? {
                Some(s) if s.window_start_ms >= window_start_ms => s.count,
                _ => 0,
            })
        })
        .await
    }

    async fn clear_login_failures(&self, account: &str) -> Result<()> {
        let pk = loginfail_pk(account);
        self.write(move |t| {
            t.remove((pk.as_str(), LOGINFAIL_SK))
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }
}
