//! `Admin`: the management use-cases (users, groups, projects, members, robot accounts,
//! the audit log) over the identity store, deny by default.
//!
//! Who may do what:
//! - a system admin (or [`Actor::System`], authentication off): everything;
//! - a project admin (the `admin` action in project P: role `admin`, directly or through a
//!   group, or a robot granted `admin` on P): read P, manage P's members and robots;
//! - any authenticated caller: `me`, read its own user and change its own password, and
//!   list the projects it holds any action in plus the public ones;
//! - everything else: `Denied`; an anonymous caller: `Unauthorized`.
//!
//! Every change appends an audit record (actor = the caller's subject, `system` when
//! authentication is off). Permission is checked before existence, so a caller without
//! the permission learns nothing about which names exist.
//!
//! Errors: `NameInvalid` for malformed names, `Unsupported` for other invalid input,
//! `NameUnknown` for a missing user, group, project, robot or member, `AlreadyExists` for a
//! taken name, `Denied` / `Unauthorized` as above.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::policy::{Caller, Grants};
use crate::auth::service::ROBOT_PREFIX;
use crate::auth::{generate_secret, hash_password};
use crate::error::{RegistryError, Result};
use crate::identity::{Action, AuditRecord, Group, Principal, Project, Robot, Role, User};
use crate::names::RepoName;
use crate::ports::metadata_store::{Page, PageRequest};
use crate::ports::{Clock, IdentityStore};

/// Most entries one listing page may hold (and the default page size).
pub const MAX_PAGE_SIZE: usize = 1000;

/// Longest user, group, robot short and project name.
pub const MAX_NAME_LEN: usize = 64;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// Who calls a management use-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Authentication is off: every call acts as a system admin.
    System,
    /// An authenticated (or anonymous) caller.
    Caller(Caller),
}

impl Actor {
    /// The audit actor and `me` subject: `user:alice`, `robot:…`, `anonymous`, `system`.
    pub fn subject(&self) -> String {
        match self {
            Actor::System => "system".to_owned(),
            Actor::Caller(c) => c
                .principal()
                .map_or_else(|| "anonymous".to_owned(), |p| p.to_string()),
        }
    }

    pub fn is_system_admin(&self) -> bool {
        matches!(
            self,
            Actor::System
                | Actor::Caller(Caller::User {
                    system_admin: true,
                    ..
                })
        )
    }

    fn user_name(&self) -> Option<&str> {
        match self {
            Actor::Caller(Caller::User { name, .. }) => Some(name),
            _ => None,
        }
    }
}

// ---- request and response bodies (the JSON of `/api/v1`) ----

/// `GET /me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub subject: String,
    pub system_admin: bool,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub name: String,
    pub system_admin: bool,
    pub disabled: bool,
    pub created_at: u64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            name: u.name.clone(),
            system_admin: u.system_admin,
            disabled: u.disabled,
            created_at: u.created_at_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub system_admin: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub system_admin: Option<bool>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewGroup {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupMembers {
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub name: String,
    pub members: Vec<String>,
}

impl From<&Group> for GroupView {
    fn from(g: &Group) -> Self {
        GroupView {
            name: g.name.clone(),
            members: g.members.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub vulnerability_policy: Option<crate::scan::VulnerabilityPolicy>,
    /// Makes it a proxy project of this upstream.
    #[serde(default)]
    pub proxy: Option<crate::proxy::ProxyRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectPatch {
    #[serde(default)]
    pub public: Option<bool>,
    /// Replaces the whole policy.
    #[serde(default)]
    pub vulnerability_policy: Option<crate::scan::VulnerabilityPolicy>,
    /// Replaces a proxy project's upstream settings (a password left out keeps the
    /// stored one when the upstream URL and username stay the same).
    #[serde(default)]
    pub proxy: Option<crate::proxy::ProxyRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    pub name: String,
    pub public: bool,
    pub created_at: u64,
    pub vulnerability_policy: crate::scan::VulnerabilityPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::proxy::ProxyView>,
}

impl From<&Project> for ProjectView {
    fn from(p: &Project) -> Self {
        ProjectView {
            name: p.name.clone(),
            public: p.public,
            created_at: p.created_at_ms,
            vulnerability_policy: p.vulnerability_policy.clone(),
            proxy: p.proxy.as_ref().map(crate::proxy::ProxyView::from),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberRole {
    pub role: Role,
}

/// One membership of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub principal: Principal,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewRobot {
    /// The short name (`ci`); the account is `robot$<project>+<name>`.
    pub name: String,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub expires_in_days: Option<u64>,
}

/// A robot just created, with its secret (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedRobot {
    pub name: String,
    pub secret: String,
    pub actions: Vec<Action>,
    pub expires_at: Option<u64>,
}

/// A robot as listings show it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RobotView {
    pub name: String,
    pub actions: Vec<Action>,
    pub expires_at: Option<u64>,
}

/// An audit record as the API shows it (`detail` always present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub id: String,
    pub at_ms: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        AuditView {
            id: r.id,
            at_ms: r.at_ms,
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: r.detail,
        }
    }
}

// ---- names ----

/// User, group and robot short names: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn validate_account_name(kind: &str, name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::NameInvalid(format!(
            "invalid {kind} name {name:?}: use [a-z0-9][a-z0-9._-]{{0,63}}"
        )))
    }
}

/// Project names: one repository-name component, at most 64 characters.
pub fn validate_project_name(name: &str) -> Result<()> {
    let ok = name.len() <= MAX_NAME_LEN
        && !name.contains('/')
        && name.parse::<RepoName>().is_ok_and(|r| r.as_str() == name);
    if ok {
        Ok(())
    } else {
        Err(RegistryError::NameInvalid(format!(
            "invalid project name {name:?}: use [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*, at most 64 characters"
        )))
    }
}

/// The full name of robot `short` of `project`: `robot$<project>+<short>`.
pub fn robot_name(project: &str, short: &str) -> String {
    format!("{ROBOT_PREFIX}{project}+{short}")
}

fn unknown(what: impl std::fmt::Display) -> RegistryError {
    RegistryError::NameUnknown(what.to_string())
}

fn exists(err: RegistryError, what: String) -> RegistryError {
    match err {
        RegistryError::Conflict(_) => RegistryError::AlreadyExists(what),
        other => other,
    }
}

/// A system admin who is not disabled.
fn is_active_admin(user: &User) -> bool {
    user.system_admin && !user.disabled
}

fn page_request(after: Option<String>, limit: Option<usize>) -> PageRequest {
    PageRequest {
        after: after.filter(|a| !a.is_empty()),
        limit: limit.unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
    }
}

fn audit_id(now_ms: u64) -> String {
    use rand::RngCore;
    format!("{now_ms:015}-{:08x}", rand::rng().next_u32())
}

/// The management use-cases.
pub struct Admin {
    store: Arc<dyn IdentityStore>,
    clock: Arc<dyn Clock>,
    /// The proxy machinery: it seals upstream passwords and checks upstream addresses;
    /// `None`: proxy projects are refused.
    proxy: Option<Arc<crate::proxy::ProxyCache>>,
    /// What this process remembers of projects: a project it changes is dropped there, so
    /// its new policy and proxy settings apply here at once (elsewhere within the cache's
    /// lifetime).
    projects: Option<Arc<crate::identity::ProjectCache>>,
}

impl Admin {
    pub fn new(store: Arc<dyn IdentityStore>, clock: Arc<dyn Clock>) -> Self {
        Admin {
            store,
            clock,
            proxy: None,
            projects: None,
        }
    }

    /// Makes and changes proxy projects with `proxy` (their passwords sealed by it, their
    /// upstreams checked by its guard).
    pub fn with_proxy(mut self, proxy: Option<Arc<crate::proxy::ProxyCache>>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Drops changed projects from `projects`, the process's cache of them.
    pub fn with_project_cache(
        mut self,
        projects: Option<Arc<crate::identity::ProjectCache>>,
    ) -> Self {
        self.projects = projects;
        self
    }

    fn forget_project(&self, name: &str) {
        if let Some(projects) = &self.projects {
            projects.forget(name);
        }
    }

    /// Validated proxy settings from a request (`current`: the settings it replaces).
    async fn proxy_settings(
        &self,
        request: crate::proxy::ProxyRequest,
        current: Option<&crate::proxy::ProxySettings>,
    ) -> Result<crate::proxy::ProxySettings> {
        let Some(proxy) = &self.proxy else {
            return Err(RegistryError::Unsupported(
                "proxy projects are not served here".into(),
            ));
        };
        let url = request.upstream_url.trim().trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&url)
            .map_err(|e| RegistryError::Unsupported(format!("upstream URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.query().is_some()
        {
            return Err(RegistryError::Unsupported(format!(
                "upstream URL {url:?}: an http(s) URL of a registry, without credentials or query"
            )));
        }
        if request.password.is_some() && request.username.is_none() {
            return Err(RegistryError::Unsupported(
                "an upstream password needs an upstream username".into(),
            ));
        }
        // An upstream the registry may never reach is refused now, not at the first pull.
        proxy.upstream().check_upstream(&url).await?;
        let sealed_password = match (&request.password, current) {
            (Some(password), _) => Some(
                proxy
                    .credentials()
                    .ok_or_else(|| {
                        RegistryError::Unsupported(
                            "upstream passwords need a credential key (the token signing key)"
                                .into(),
                        )
                    })?
                    .seal(password)?,
            ),
            (None, Some(c)) if c.upstream_url == url && c.username == request.username => {
                c.sealed_password.clone()
            }
            (None, _) => None,
        };
        Ok(crate::proxy::ProxySettings {
            upstream_url: url,
            username: request.username,
            sealed_password,
            freshness_secs: request
                .freshness_secs
                .unwrap_or(crate::proxy::DEFAULT_FRESHNESS_SECS),
            max_cache_bytes: request.max_cache_bytes,
        })
    }

    // ---- permissions ----

    fn authenticated(actor: &Actor) -> Result<()> {
        match actor {
            Actor::Caller(Caller::Anonymous) => Err(RegistryError::Unauthorized(
                "authentication required".into(),
            )),
            _ => Ok(()),
        }
    }

    fn denied(what: &str) -> RegistryError {
        RegistryError::Denied(format!("{what} is not allowed"))
    }

    /// `Ok` for a system admin (or the system itself).
    pub fn require_system_admin_of(&self, actor: &Actor, what: &str) -> Result<()> {
        Self::require_system_admin(actor, what)
    }

    fn require_system_admin(actor: &Actor, what: &str) -> Result<()> {
        Self::authenticated(actor)?;
        if actor.is_system_admin() {
            Ok(())
        } else {
            Err(Self::denied(what))
        }
    }

    /// The caller's grants now (memberships held directly and through its groups).
    async fn grants(&self, caller: &Caller) -> Result<Grants> {
        let mut principals: Vec<Principal> = caller.principal().into_iter().collect();
        if let Caller::User { groups, .. } = caller {
            principals.extend(groups.iter().cloned().map(Principal::Group));
        }
        let memberships = if principals.is_empty() {
            Vec::new()
        } else {
            self.store.memberships_of(&principals).await?
        };
        Ok(Grants::compute(
            caller,
            &memberships,
            self.clock.now_millis(),
        ))
    }

    /// `Ok` for a system admin or an admin of `project`.
    pub async fn require_project_admin(
        &self,
        actor: &Actor,
        project: &str,
        what: &str,
    ) -> Result<()> {
        Self::authenticated(actor)?;
        if actor.is_system_admin() {
            return Ok(());
        }
        let Actor::Caller(caller) = actor else {
            return Ok(());
        };
        let grants = self.grants(caller).await?;
        if grants
            .project_actions(project, false)
            .contains(&Action::Admin)
        {
            Ok(())
        } else {
            Err(Self::denied(what))
        }
    }

    /// Appends to the audit log.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<()> {
        let now = self.clock.now_millis();
        self.store
            .append_audit(&AuditRecord {
                id: audit_id(now),
                at_ms: now,
                actor: actor.subject(),
                action: action.to_owned(),
                target: target.to_owned(),
                detail: detail.to_owned(),
            })
            .await
    }

    // ---- me ----

    pub async fn me(&self, actor: &Actor) -> Result<Me> {
        Self::authenticated(actor)?;
        Ok(Me {
            subject: actor.subject(),
            system_admin: actor.is_system_admin(),
        })
    }

    // ---- users ----

    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<UserView> {
        Self::require_system_admin(actor, "creating users")?;
        validate_account_name("user", &new.name)?;
        if new.password.is_empty() {
            return Err(RegistryError::Unsupported(
                "the password must not be empty".into(),
            ));
        }
        let user = User {
            name: new.name.clone(),
            password_hash: hash_password(&new.password)?,
            system_admin: new.system_admin,
            disabled: false,
            created_at_ms: self.clock.now_millis(),
        };
        self.store
            .create_user(&user)
            .await
            .map_err(|e| exists(e, format!("user {}", new.name)))?;
        let detail = if new.system_admin { "systemAdmin" } else { "" };
        self.audit(actor, "user.create", &format!("user:{}", user.name), detail)
            .await?;
        Ok(UserView::from(&user))
    }

    pub async fn list_users(
        &self,
        actor: &Actor,
        after: Option<String>,
        limit: Option<usize>,
    ) -> Result<Page> {
        Self::require_system_admin(actor, "listing users")?;
        let page = page_request(after, limit);
        if page.limit == 0 {
            return Ok(Page::default());
        }
        self.store.list_users(&page).await
    }

    pub async fn get_user(&self, actor: &Actor, name: &str) -> Result<UserView> {
        Self::authenticated(actor)?;
        if !actor.is_system_admin() && actor.user_name() != Some(name) {
            return Err(Self::denied("reading another user"));
        }
        let user = self
            .store
            .get_user(name)
            .await?
            .ok_or_else(|| unknown(format!("user {name}")))?;
        Ok(UserView::from(&user))
    }

    /// Changes a password (system admins, or the user itself) and the flags (system
    /// admins only).
    pub async fn update_user(
        &self,
        actor: &Actor,
        name: &str,
        patch: UserPatch,
    ) -> Result<UserView> {
        Self::authenticated(actor)?;
        let admin = actor.is_system_admin();
        if !admin && actor.user_name() != Some(name) {
            return Err(Self::denied("changing another user"));
        }
        if !admin && (patch.system_admin.is_some() || patch.disabled.is_some()) {
            return Err(Self::denied("changing systemAdmin or disabled"));
        }
        if patch.password.as_deref() == Some("") {
            return Err(RegistryError::Unsupported(
                "the password must not be empty".into(),
            ));
        }
        let mut user = self
            .store
            .get_user(name)
            .await?
            .ok_or_else(|| unknown(format!("user {name}")))?;
        let was_active_admin = is_active_admin(&user);
        let mut changed = Vec::new();
        if let Some(password) = &patch.password {
            user.password_hash = hash_password(password)?;
            changed.push("password".to_owned());
        }
        if let Some(flag) = patch.system_admin {
            user.system_admin = flag;
            changed.push(format!("systemAdmin={flag}"));
        }
        if let Some(flag) = patch.disabled {
            user.disabled = flag;
            changed.push(format!("disabled={flag}"));
        }
        if changed.is_empty() {
            return Ok(UserView::from(&user));
        }
        if was_active_admin && !is_active_admin(&user) {
            self.keep_an_admin(name).await?;
        }
        if !self.store.update_user(&user).await? {
            return Err(unknown(format!("user {name}")));
        }
        self.audit(
            actor,
            "user.update",
            &format!("user:{name}"),
            &changed.join(","),
        )
        .await?;
        Ok(UserView::from(&user))
    }

    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<()> {
        Self::require_system_admin(actor, "deleting users")?;
        if let Some(user) = self.store.get_user(name).await?
            && is_active_admin(&user)
        {
            self.keep_an_admin(name).await?;
        }
        if !self.store.delete_user(name).await? {
            return Err(unknown(format!("user {name}")));
        }
        self.audit(actor, "user.delete", &format!("user:{name}"), "")
            .await
    }

    /// Refuses a change that would leave no active system admin besides `name`.
    async fn keep_an_admin(&self, name: &str) -> Result<()> {
        let mut page = PageRequest {
            after: None,
            limit: 500,
        };
        loop {
            let listed = self.store.list_users(&page).await?;
            for other in listed.items.iter().filter(|n| n.as_str() != name) {
                if let Some(u) = self.store.get_user(other).await?
                    && is_active_admin(&u)
                {
                    return Ok(());
                }
            }
            if !listed.more {
                return Err(RegistryError::Denied(format!(
                    "{name} is the last active system admin: make another user an admin first"
                )));
            }
            page.after = listed.items.last().cloned();
        }
    }

    // ---- groups ----

    /// Checks every member name is an existing user; returns them as a set.
    async fn existing_users(&self, members: &[String]) -> Result<BTreeSet<String>> {
        let set: BTreeSet<String> = members.iter().cloned().collect();
        for name in &set {
            validate_account_name("user", name)?;
            if self.store.get_user(name).await?.is_none() {
                return Err(unknown(format!("user {name}")));
            }
        }
        Ok(set)
    }

    pub async fn create_group(&self, actor: &Actor, new: NewGroup) -> Result<GroupView> {
        Self::require_system_admin(actor, "creating groups")?;
        validate_account_name("group", &new.name)?;
        let members = self.existing_users(&new.members).await?;
        if self.store.get_group(&new.name).await?.is_some() {
            return Err(RegistryError::AlreadyExists(format!("group {}", new.name)));
        }
        let group = Group {
            name: new.name.clone(),
            members,
            created_at_ms: self.clock.now_millis(),
        };
        self.store.put_group(&group).await?;
        let detail = group.members.iter().cloned().collect::<Vec<_>>().join(",");
        self.audit(
            actor,
            "group.create",
            &format!("group:{}", group.name),
            &detail,
        )
        .await?;
        Ok(GroupView::from(&group))
    }

    pub async fn list_groups(
        &self,
        actor: &Actor,
        after: Option<String>,
        limit: Option<usize>,
    ) -> Result<Page> {
        Self::require_system_admin(actor, "listing groups")?;
        let page = page_request(after, limit);
        if page.limit == 0 {
            return Ok(Page::default());
        }
        self.store.list_groups(&page).await
    }

    pub async fn get_group(&self, actor: &Actor, name: &str) -> Result<GroupView> {
        Self::require_system_admin(actor, "reading groups")?;
        let group = self
            .store
            .get_group(name)
            .await?
            .ok_or_else(|| unknown(format!("group {name}")))?;
        Ok(GroupView::from(&group))
    }

    /// Replaces the members of an existing group.
    pub async fn set_group_members(
        &self,
        actor: &Actor,
        name: &str,
        members: GroupMembers,
    ) -> Result<GroupView> {
        Self::require_system_admin(actor, "changing groups")?;
        let mut group = self
            .store
            .get_group(name)
            .await?
            .ok_or_else(|| unknown(format!("group {name}")))?;
        group.members = self.existing_users(&members.members).await?;
        self.store.put_group(&group).await?;
        let detail = group.members.iter().cloned().collect::<Vec<_>>().join(",");
        self.audit(actor, "group.update", &format!("group:{name}"), &detail)
            .await?;
        Ok(GroupView::from(&group))
    }

    pub async fn delete_group(&self, actor: &Actor, name: &str) -> Result<()> {
        Self::require_system_admin(actor, "deleting groups")?;
        if !self.store.delete_group(name).await? {
            return Err(unknown(format!("group {name}")));
        }
        self.audit(actor, "group.delete", &format!("group:{name}"), "")
            .await
    }

    // ---- projects ----

    async fn project(&self, name: &str) -> Result<Project> {
        self.store
            .get_project(name)
            .await?
            .ok_or_else(|| unknown(format!("project {name}")))
    }

    pub async fn create_project(&self, actor: &Actor, new: NewProject) -> Result<ProjectView> {
        Self::require_system_admin(actor, "creating projects")?;
        validate_project_name(&new.name)?;
        let proxy = match new.proxy {
            Some(request) => Some(self.proxy_settings(request, None).await?),
            None => None,
        };
        let project = Project {
            name: new.name.clone(),
            public: new.public,
            created_at_ms: self.clock.now_millis(),
            vulnerability_policy: new.vulnerability_policy.unwrap_or_default(),
            proxy,
        };
        self.store
            .create_project(&project)
            .await
            .map_err(|e| exists(e, format!("project {}", new.name)))?;
        self.forget_project(&project.name);
        self.audit(
            actor,
            "project.create",
            &format!("project:{}", project.name),
            if project.public { "public" } else { "private" },
        )
        .await?;
        Ok(ProjectView::from(&project))
    }

    /// System admins: every project; others: the projects they hold any action in, and
    /// the public ones.
    pub async fn list_projects(
        &self,
        actor: &Actor,
        after: Option<String>,
        limit: Option<usize>,
    ) -> Result<Page> {
        Self::authenticated(actor)?;
        let request = page_request(after, limit);
        if request.limit == 0 {
            return Ok(Page::default());
        }
        let Actor::Caller(caller) = actor else {
            return self.store.list_projects(&request).await;
        };
        if actor.is_system_admin() {
            return self.store.list_projects(&request).await;
        }
        let grants = self.grants(caller).await?;
        let mut out = Page::default();
        let mut cursor = request.after.clone();
        loop {
            let batch = self
                .store
                .list_projects(&PageRequest {
                    after: cursor.clone(),
                    limit: MAX_PAGE_SIZE,
                })
                .await?;
            for name in &batch.items {
                let visible = !grants.project_actions(name, false).is_empty()
                    || self
                        .store
                        .get_project(name)
                        .await?
                        .is_some_and(|p| p.public);
                if !visible {
                    continue;
                }
                if out.items.len() == request.limit {
                    out.more = true;
                    return Ok(out);
                }
                out.items.push(name.clone());
            }
            if !batch.more {
                return Ok(out);
            }
            cursor = batch.items.last().cloned();
        }
    }

    pub async fn get_project(&self, actor: &Actor, name: &str) -> Result<ProjectView> {
        self.require_project_admin(actor, name, "reading this project")
            .await?;
        Ok(ProjectView::from(&self.project(name).await?))
    }

    pub async fn update_project(
        &self,
        actor: &Actor,
        name: &str,
        patch: ProjectPatch,
    ) -> Result<ProjectView> {
        Self::require_system_admin(actor, "changing projects")?;
        let mut project = self.project(name).await?;
        if patch.public.is_none() && patch.vulnerability_policy.is_none() && patch.proxy.is_none() {
            return Ok(ProjectView::from(&project));
        }
        if let Some(request) = patch.proxy {
            let Some(current) = &project.proxy else {
                return Err(RegistryError::Unsupported(format!(
                    "project {name} is not a proxy project (a project becomes one when it is created)"
                )));
            };
            project.proxy = Some(self.proxy_settings(request, Some(current)).await?);
        }
        if let Some(public) = patch.public {
            project.public = public;
        }
        if let Some(policy) = patch.vulnerability_policy {
            project.vulnerability_policy = policy;
        }
        if !self.store.update_project(&project).await? {
            return Err(unknown(format!("project {name}")));
        }
        self.forget_project(name);
        let detail = format!(
            "public={} vulnerabilityPolicy={} proxy={}",
            project.public,
            serde_json::to_string(&project.vulnerability_policy).unwrap_or_default(),
            project
                .proxy
                .as_ref()
                .map(|p| p.upstream_url.as_str())
                .unwrap_or("-")
        );
        self.audit(actor, "project.update", &format!("project:{name}"), &detail)
            .await?;
        Ok(ProjectView::from(&project))
    }

    pub async fn delete_project(&self, actor: &Actor, name: &str) -> Result<()> {
        Self::require_system_admin(actor, "deleting projects")?;
        if !self.store.delete_project(name).await? {
            return Err(unknown(format!("project {name}")));
        }
        self.forget_project(name);
        self.audit(actor, "project.delete", &format!("project:{name}"), "")
            .await
    }

    // ---- members ----

    pub async fn list_members(&self, actor: &Actor, project: &str) -> Result<Vec<MemberView>> {
        self.require_project_admin(actor, project, "listing this project's members")
            .await?;
        self.project(project).await?;
        Ok(self
            .store
            .list_members(project)
            .await?
            .into_iter()
            .map(|m| MemberView {
                principal: m.principal,
                role: m.role,
            })
            .collect())
    }

    async fn principal_exists(&self, principal: &Principal) -> Result<bool> {
        Ok(match principal {
            Principal::User(n) => self.store.get_user(n).await?.is_some(),
            Principal::Group(n) => self.store.get_group(n).await?.is_some(),
            Principal::Robot(n) => self.store.get_robot(n).await?.is_some(),
        })
    }

    /// Gives an existing principal a role in an existing project.
    pub async fn set_member(
        &self,
        actor: &Actor,
        project: &str,
        principal: &str,
        role: MemberRole,
    ) -> Result<MemberView> {
        self.require_project_admin(actor, project, "managing this project's members")
            .await?;
        let principal: Principal = principal.parse()?;
        self.project(project).await?;
        if !self.principal_exists(&principal).await? {
            return Err(unknown(&principal));
        }
        self.store
            .set_member(project, &principal, role.role)
            .await?;
        let role_name = serde_json::to_value(role.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.audit(
            actor,
            "member.set",
            &format!("project:{project}"),
            &format!("{principal}={role_name}"),
        )
        .await?;
        Ok(MemberView {
            principal,
            role: role.role,
        })
    }

    pub async fn remove_member(&self, actor: &Actor, project: &str, principal: &str) -> Result<()> {
        self.require_project_admin(actor, project, "managing this project's members")
            .await?;
        let principal: Principal = principal.parse()?;
        self.project(project).await?;
        if !self.store.remove_member(project, &principal).await? {
            return Err(unknown(format!("member {principal} of project {project}")));
        }
        self.audit(
            actor,
            "member.remove",
            &format!("project:{project}"),
            &principal.to_string(),
        )
        .await
    }

    // ---- robots ----

    /// Creates robot `robot$<project>+<name>` with a fresh secret, returned this once and
    /// stored only hashed.
    pub async fn create_robot(
        &self,
        actor: &Actor,
        project: &str,
        new: NewRobot,
    ) -> Result<CreatedRobot> {
        self.require_project_admin(actor, project, "creating robots in this project")
            .await?;
        validate_account_name("robot", &new.name)?;
        if new.actions.is_empty() {
            return Err(RegistryError::Unsupported(
                "a robot needs at least one action".into(),
            ));
        }
        if new.expires_in_days == Some(0) {
            return Err(RegistryError::Unsupported(
                "expiresInDays must be at least 1 (or null: never)".into(),
            ));
        }
        self.project(project).await?;
        let now = self.clock.now_millis();
        let expires_at = match new.expires_in_days {
            None => None,
            Some(days) => Some(
                days.checked_mul(DAY_MS)
                    .and_then(|d| now.checked_add(d))
                    .ok_or_else(|| {
                        RegistryError::Unsupported("expiresInDays is too large".into())
                    })?,
            ),
        };
        let actions: BTreeSet<Action> = new.actions.iter().copied().collect();
        let name = robot_name(project, &new.name);
        let secret = generate_secret();
        let robot = Robot {
            name: name.clone(),
            secret_hash: hash_password(&secret)?,
            grants: BTreeMap::from([(project.to_owned(), actions.clone())]),
            expires_at_ms: expires_at,
            created_by: actor.subject(),
            created_at_ms: now,
        };
        self.store
            .create_robot(&robot)
            .await
            .map_err(|e| exists(e, format!("robot {name}")))?;
        let detail = actions
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(",");
        self.audit(actor, "robot.create", &format!("robot:{name}"), &detail)
            .await?;
        Ok(CreatedRobot {
            name,
            secret,
            actions: actions.into_iter().collect(),
            expires_at,
        })
    }

    /// The robots of `project` (`robot$<project>+…`), in name order.
    pub async fn list_robots(&self, actor: &Actor, project: &str) -> Result<Vec<RobotView>> {
        self.require_project_admin(actor, project, "listing this project's robots")
            .await?;
        self.project(project).await?;
        let prefix = robot_name(project, "");
        let mut out = Vec::new();
        let mut cursor = Some(prefix.clone());
        loop {
            let batch = self
                .store
                .list_robots(&PageRequest {
                    after: cursor.clone(),
                    limit: MAX_PAGE_SIZE,
                })
                .await?;
            for name in &batch.items {
                if !name.starts_with(&prefix) {
                    return Ok(out);
                }
                if let Some(robot) = self.store.get_robot(name).await? {
                    out.push(RobotView {
                        name: robot.name.clone(),
                        actions: robot
                            .grants
                            .get(project)
                            .map(|a| a.iter().copied().collect())
                            .unwrap_or_default(),
                        expires_at: robot.expires_at_ms,
                    });
                }
            }
            if !batch.more {
                return Ok(out);
            }
            cursor = batch.items.last().cloned();
        }
    }

    /// Deletes robot `name` (its full name) of `project`.
    pub async fn delete_robot(&self, actor: &Actor, project: &str, name: &str) -> Result<()> {
        self.require_project_admin(actor, project, "deleting robots in this project")
            .await?;
        if !name.starts_with(&robot_name(project, "")) || !self.store.delete_robot(name).await? {
            return Err(unknown(format!("robot {name}")));
        }
        self.audit(actor, "robot.delete", &format!("robot:{name}"), "")
            .await
    }

    // ---- audit ----

    /// Audit records after `after` (an id), oldest first, at most `limit`.
    pub async fn list_audit(
        &self,
        actor: &Actor,
        after: Option<String>,
        limit: Option<usize>,
    ) -> Result<Vec<AuditView>> {
        Self::require_system_admin(actor, "reading the audit log")?;
        let page = page_request(after, limit);
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .list_audit(page.after.as_deref(), page.limit)
            .await?
            .into_iter()
            .map(AuditView::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["a", "alice", "0x", "a.b_c-d", &"a".repeat(64)] {
            assert!(validate_account_name("user", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alice", ".a", "-a", "a b", "a/b", "a$", &"a".repeat(65)] {
            assert!(validate_account_name("user", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_names() {
        for ok in ["team", "a.b", "a__b", "a--b", &"a".repeat(64)] {
            assert!(validate_project_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Team", "a/b", "a.", "-a", "a___b", &"a".repeat(65)] {
            assert!(validate_project_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subjects() {
        assert_eq!(Actor::System.subject(), "system");
        assert!(Actor::System.is_system_admin());
        let alice = Actor::Caller(Caller::User {
            name: "alice".into(),
            system_admin: false,
            groups: BTreeSet::new(),
        });
        assert_eq!(alice.subject(), "user:alice");
        assert!(!alice.is_system_admin());
        assert_eq!(Actor::Caller(Caller::Anonymous).subject(), "anonymous");
        assert_eq!(robot_name("team", "ci"), "robot$team+ci");
    }
}
