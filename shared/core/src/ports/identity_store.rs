//! `IdentityStore`: users, groups, robot accounts, projects, memberships, the audit log
//! and failed-login counts, kept in the metadata backend (same table, own partitions).
//!
//! Key schema (single table, like [`crate::keys`]):
//!
//! | item | pk | sk |
//! |---|---|---|
//! | user | `USER#<name>` | `USER` |
//! | user list entry | `USERS` | `USER#<name>` |
//! | group | `GROUP#<name>` | `GROUP` (members inside) |
//! | group list entry | `GROUPS` | `GROUP#<name>` |
//! | user's group | `USER#<name>` | `GROUP#<group>` |
//! | robot | `ROBOT#<name>` | `ROBOT` |
//! | robot list entry | `ROBOTS` | `ROBOT#<name>` |
//! | project | `PROJECT#<name>` | `PROJECT` |
//! | project list entry | `PROJECTS` | `PROJECT#<name>` |
//! | membership | `PROJECT#<name>` | `MEMBER#<principal>` |
//! | principal's membership | `PRINCIPAL#<principal>` | `PROJECT#<name>` |
//! | audit record | `AUDIT` | `<id>` |
//! | failed logins | `LOGINFAIL#<account>` | `LOGINFAIL` (count, window start; TTL) |
//!
//! Consistency: every method is atomic; a group put rewrites its members and their
//! reverse entries in one transaction; a membership and its reverse entry are written
//! and removed together; deleting a project removes its memberships; deleting a user,
//! group or robot removes its memberships and group entries. Deleting a user also takes
//! it out of the member set of every group it was in, in the same transaction, so
//! `get_group` and `groups_of` always agree. Reads are strongly consistent. `create_*`
//! methods fail with `Conflict` when the name exists, and change nothing.
//!
//! Listings (`list_users`, `list_groups`, `list_robots`, `list_projects`) page names like
//! the metadata listings: byte order, strictly after `after`, at most `limit`, `more`
//! exactly when names remain. Each kind has its own names: a user, a group, a robot and a
//! project may share one.
//!
//! References are not checked: `set_member` does not require the project or the
//! principal to exist, nor `put_group` its members to be users; the use-cases check them.
//!
//! Errors: `Storage` for backend failures; `Conflict` as above.

use async_trait::async_trait;

use crate::error::Result;
use crate::identity::{AuditRecord, Group, Membership, Principal, Project, Robot, Role, User};
use crate::ports::metadata_store::{Page, PageRequest};

#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn create_user(&self, user: &User) -> Result<()>;
    /// Replaces an existing user (password, flags); `false` (and nothing created) if there
    /// is none. Its groups and memberships stay.
    async fn update_user(&self, user: &User) -> Result<bool>;
    async fn get_user(&self, name: &str) -> Result<Option<User>>;
    /// Removes the user, its group entries, its name from those groups' member sets, and
    /// its memberships; `false` if there is no such user.
    async fn delete_user(&self, name: &str) -> Result<bool>;
    async fn list_users(&self, page: &PageRequest) -> Result<Page>;

    /// Creates or replaces a group and its members: members added gain the group entry
    /// (`groups_of` names the group), members dropped lose it.
    async fn put_group(&self, group: &Group) -> Result<()>;
    async fn get_group(&self, name: &str) -> Result<Option<Group>>;
    /// Removes the group, its members' group entries and its memberships; `false` if there
    /// is none.
    async fn delete_group(&self, name: &str) -> Result<bool>;
    async fn list_groups(&self, page: &PageRequest) -> Result<Page>;
    /// Names of the groups `user` belongs to, in byte order.
    async fn groups_of(&self, user: &str) -> Result<Vec<String>>;

    async fn create_robot(&self, robot: &Robot) -> Result<()>;
    async fn get_robot(&self, name: &str) -> Result<Option<Robot>>;
    /// Removes the robot and its memberships; `false` if there is none.
    async fn delete_robot(&self, name: &str) -> Result<bool>;
    async fn list_robots(&self, page: &PageRequest) -> Result<Page>;

    async fn create_project(&self, project: &Project) -> Result<()>;
    /// Replaces an existing project (visibility); `false` if there is none.
    async fn update_project(&self, project: &Project) -> Result<bool>;
    async fn get_project(&self, name: &str) -> Result<Option<Project>>;
    /// Removes the project and its memberships (not its repositories); `false` if there is
    /// none.
    async fn delete_project(&self, name: &str) -> Result<bool>;
    async fn list_projects(&self, page: &PageRequest) -> Result<Page>;

    /// Gives `principal` `role` in `project` (replacing a previous role).
    async fn set_member(&self, project: &str, principal: &Principal, role: Role) -> Result<()>;
    /// Removes one membership; `false` if there was none.
    async fn remove_member(&self, project: &str, principal: &Principal) -> Result<bool>;
    /// The memberships in `project`, ordered by principal (its `kind:name` form, in byte
    /// order).
    async fn list_members(&self, project: &str) -> Result<Vec<Membership>>;
    /// Every membership held by any of `principals` (a user and its groups), all projects,
    /// each once, in no particular order.
    async fn memberships_of(&self, principals: &[Principal]) -> Result<Vec<Membership>>;

    async fn append_audit(&self, record: &AuditRecord) -> Result<()>;
    /// Audit records with id strictly after `after`, in id (byte) order, which is oldest
    /// first, at most `limit`.
    async fn list_audit(&self, after: Option<&str>, limit: usize) -> Result<Vec<AuditRecord>>;

    /// Counts a failed login for `account` in the window starting at `window_start_ms`;
    /// returns the count including this one. The stored window only moves forward: a later
    /// window resets the count (to 1); a failure for the stored window or an earlier one
    /// (a caller with a slower clock) adds to the stored window's count.
    async fn record_login_failure(&self, account: &str, window_start_ms: u64) -> Result<u32>;
    /// Failed logins of `account` in the window starting at `window_start_ms`: the stored
    /// count if the stored window starts at or after `window_start_ms`, else 0.
    async fn login_failures(&self, account: &str, window_start_ms: u64) -> Result<u32>;
    /// Forgets `account`'s failed logins (0 in every window until the next failure).
    async fn clear_login_failures(&self, account: &str) -> Result<()>;
}
