//! Identities and grants: users, groups, robot accounts, projects, members and roles,
//! and the audit records of changes to them.
//!
//! The first path component of a repository name is its project. A project is public
//! (anonymous pull) or private; members hold a role in it; system admins manage all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// What a caller may do to a repository or a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and push manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Manage the project: members, policies, webhooks.
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Admin => "admin",
        }
    }
}

impl FromStr for Action {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(Action::Pull),
            "push" => Ok(Action::Push),
            "delete" => Ok(Action::Delete),
            "admin" | "*" => Ok(Action::Admin),
            other => Err(RegistryError::Unsupported(format!(
                "unknown action {other:?}"
            ))),
        }
    }
}

/// A member's role in a project; each role holds the actions of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pull.
    Guest,
    /// Pull and push.
    Developer,
    /// Also delete, and manage tags and scans.
    Maintainer,
    /// Also members and policies.
    Admin,
}

impl Role {
    /// The actions this role grants in its project.
    pub fn actions(self) -> BTreeSet<Action> {
        let all = [Action::Pull, Action::Push, Action::Delete, Action::Admin];
        let n = match self {
            Role::Guest => 1,
            Role::Developer => 2,
            Role::Maintainer => 3,
            Role::Admin => 4,
        };
        all[..n].iter().copied().collect()
    }
}

impl FromStr for Role {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "guest" => Ok(Role::Guest),
            "developer" => Ok(Role::Developer),
            "maintainer" => Ok(Role::Maintainer),
            "admin" => Ok(Role::Admin),
            other => Err(RegistryError::Unsupported(format!(
                "unknown role {other:?}"
            ))),
        }
    }
}

/// Who holds a membership: a user, a group (its users) or a robot account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    User(String),
    Group(String),
    Robot(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(n) => write!(f, "user:{n}"),
            Principal::Group(n) => write!(f, "group:{n}"),
            Principal::Robot(n) => write!(f, "robot:{n}"),
        }
    }
}

impl FromStr for Principal {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("user", n)) if !n.is_empty() => Ok(Principal::User(n.to_owned())),
            Some(("group", n)) if !n.is_empty() => Ok(Principal::Group(n.to_owned())),
            Some(("robot", n)) if !n.is_empty() => Ok(Principal::Robot(n.to_owned())),
            _ => Err(RegistryError::Unsupported(format!(
                "invalid principal {s:?}"
            ))),
        }
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A human account. The password is stored only as an argon2 PHC string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub password_hash: String,
    #[serde(default)]
    pub system_admin: bool,
    #[serde(default)]
    pub disabled: bool,
    pub created_at_ms: u64,
}

/// A named set of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    pub members: BTreeSet<String>,
    pub created_at_ms: u64,
}

/// A robot account: a secret (shown once, stored hashed) with actions on projects, until
/// it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Robot {
    pub name: String,
    pub secret_hash: String,
    /// Project name → the actions the robot may take there.
    pub grants: BTreeMap<String, BTreeSet<Action>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    pub created_by: String,
    pub created_at_ms: u64,
}

/// A project: the first component of its repositories' names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub name: String,
    pub public: bool,
    pub created_at_ms: u64,
    /// Which images of the project may be pulled, by their scan reports.
    #[serde(default)]
    pub vulnerability_policy: crate::scan::VulnerabilityPolicy,
    /// Set for a proxy project: the upstream it caches (read-only to clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::proxy::ProxySettings>,
}

/// A principal's role in a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub project: String,
    pub principal: Principal,
    pub role: Role,
}

/// One grant change or authentication failure, kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Unique and increasing with time (time in ms, zero-padded, then a random suffix).
    pub id: String,
    pub at_ms: u64,
    /// Who acted (`user:alice`, `anonymous`, …).
    pub actor: String,
    /// What happened (`user.create`, `member.set`, `login.failed`, …).
    pub action: String,
    /// On what (`project:team`, `user:bob`, …).
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How long a process trusts a project it has read: a pull costs no project read within
/// it, and a change made elsewhere (policy, proxy settings) applies everywhere within it.
pub const PROJECT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Projects as the pull path reads them (the pull gate's policies, proxy projects'
/// settings): each read from the store at most once per [`PROJECT_CACHE_TTL`], shared
/// by everything in the process that needs it.
pub struct ProjectCache {
    identities: std::sync::Arc<dyn crate::ports::IdentityStore>,
    /// Project → the project (`None`: there is no such project), read at the instant kept.
    cache:
        std::sync::Mutex<std::collections::HashMap<String, (Option<Project>, std::time::Instant)>>,
}

impl ProjectCache {
    pub fn new(identities: std::sync::Arc<dyn crate::ports::IdentityStore>) -> Self {
        ProjectCache {
            identities,
            cache: std::sync::Mutex::default(),
        }
    }

    /// The project `name`, read at most once per [`PROJECT_CACHE_TTL`].
    pub async fn get(&self, name: &str) -> crate::Result<Option<Project>> {
        let now = std::time::Instant::now();
        if let Ok(cache) = self.cache.lock()
            && let Some((project, read)) = cache.get(name)
            && now.duration_since(*read) < PROJECT_CACHE_TTL
        {
            return Ok(project.clone());
        }
        let project = self.identities.get_project(name).await?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(name.to_owned(), (project.clone(), now));
        }
        Ok(project)
    }

    /// Forgets `name` (after a change made in this process).
    pub fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_cumulative() {
        assert_eq!(Role::Guest.actions(), BTreeSet::from([Action::Pull]));
        assert!(Role::Developer.actions().contains(&Action::Push));
        assert!(!Role::Developer.actions().contains(&Action::Delete));
        assert!(Role::Maintainer.actions().contains(&Action::Delete));
        assert!(!Role::Maintainer.actions().contains(&Action::Admin));
        assert_eq!(Role::Admin.actions().len(), 4);
    }

    #[test]
    fn principals_round_trip() {
        for p in ["user:alice", "group:ops", "robot:team+ci"] {
            assert_eq!(p.parse::<Principal>().unwrap().to_string(), p);
        }
        assert!("alice".parse::<Principal>().is_err());
        assert!("user:".parse::<Principal>().is_err());
    }
}
