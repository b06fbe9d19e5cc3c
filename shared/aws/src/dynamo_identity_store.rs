//! [`IdentityStore`] for [`DynamoMetadataStore`]: users, groups, robots, projects,
//! memberships, the audit log and failed-login counts in the metadata table, laid out by
//! the key schema of [`registry_core::ports::identity_store`].
//!
//! # Items
//!
//! Besides `pk`/`sk`, items carry (`v` is always a JSON string):
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | user | `USER#<name>` | `USER` | `v`: the [`User`] |
//! | user list entry | `USERS` | `USER#<name>` | — |
//! | group | `GROUP#<name>` | `GROUP` | `v`: the [`Group`] (its members inside) |
//! | group list entry | `GROUPS` | `GROUP#<name>` | — |
//! | user's group | `USER#<name>` | `GROUP#<group>` | — |
//! | robot | `ROBOT#<name>` | `ROBOT` | `v`: the [`Robot`] |
//! | robot list entry | `ROBOTS` | `ROBOT#<name>` | — |
//! | project | `PROJECT#<name>` | `PROJECT` | `v`: the [`Project`] |
//! | project list entry | `PROJECTS` | `PROJECT#<name>` | — |
//! | membership | `PROJECT#<name>` | `MEMBER#<principal>` | `v`: the [`Membership`] |
//! | principal's membership | `PRINCIPAL#<principal>` | `PROJECT#<name>` | `v`: the [`Membership`] |
//! | audit record | `AUDIT` | `<id>` | `v`: the [`AuditRecord`] |
//! | failed logins | `LOGINFAIL#<account>` | `LOGINFAIL` | `count` (N), `window_start_ms` (N), `expires_at` (N, TTL) |
//!
//! `<principal>` is `user:<name>`, `group:<name>` or `robot:<name>`. `expires_at` of
//! failed logins is the window's start (epoch seconds, rounded up) plus one day
//! ([`LOGIN_FAILURE_TTL_SECS`]): windows are assumed shorter than that (a longer window
//! could lose its count to DynamoDB's TTL on AWS, which never lengthens a lockout).
//! LocalStack never runs TTL; reads compare the stored window, not `expires_at`.
//!
//! # Calls per method
//!
//! All reads are strongly consistent (`ConsistentRead = true`). "Transaction" is one
//! TransactWriteItems; transactions cancelled by concurrent transactions are resent, and
//! single writes rejected by one (`TransactionConflictException`) too, with jittered
//! backoff, up to [`MAX_ATTEMPTS`] times (then `Conflict`).
//!
//! - `create_user`, `create_robot`, `create_project`: one transaction: the item (condition
//!   `attribute_not_exists(pk)`; failing it is `Conflict`) and its list entry.
//! - `update_user`, `update_project`: one PutItem, condition `attribute_exists(pk)`
//!   (failing it is `false`; the list entry was written with the item).
//! - `get_user`, `get_group`, `get_robot`, `get_project`: one GetItem.
//! - `list_users`, `list_groups`, `list_robots`, `list_projects`: Query of the list
//!   partition (`USERS`, …) with `begins_with` on the sort key, projected to `sk`,
//!   paginated until `limit + 1` (to know `more`); `after` is the `ExclusiveStartKey`.
//! - `groups_of`, `list_members`, `memberships_of` (one per distinct principal): Query
//!   of `USER#<name>` for `GROUP#`, of `PROJECT#<name>` for `MEMBER#`, of
//!   `PRINCIPAL#<principal>` for `PROJECT#`, over all pages.
//! - `put_group`: GetItem of the group, then one transaction: the group item (condition
//!   `attribute_not_exists(pk)` if it was absent, else `v = <what was read>`), its list
//!   entry, a user's-group entry for every member (idempotent puts) and the deletion of
//!   the entries of members no longer in it. A failed condition (a concurrent put or
//!   delete of the group) starts over.
//! - `delete_user`: Query of the `USER#<name>` partition (the user and its group
//!   entries), GetItem of each of those groups, Query of `PRINCIPAL#user:<name>`, then one
//!   transaction: each group entry deleted and its group rewritten without the user
//!   (condition `v = <what was read>`), each membership and its reverse entry deleted,
//!   the user (condition `attribute_exists(pk)`) and its list entry deleted. A failed
//!   condition starts over. No user: `false` after the first Query.
//! - `delete_group`: GetItem of the group, Query of `PRINCIPAL#group:<name>`, then one
//!   transaction: the members' group entries, the memberships and their reverse
//!   entries, the group (condition `v = <what was read>`) and its list entry.
//! - `delete_robot`: GetItem of the robot, Query of `PRINCIPAL#robot:<name>`, then one
//!   transaction: the memberships and reverse entries, the robot (condition
//!   `attribute_exists(pk)`) and its list entry.
//! - `delete_project`: Query of the `PROJECT#<name>` partition (the project and its
//!   memberships), then one transaction: each membership and its reverse entry, the
//!   project (condition `attribute_exists(pk)`) and its list entry. Repositories stay.
//! - `set_member`: one transaction putting the membership and its reverse entry.
//! - `remove_member`: one transaction deleting both (condition `attribute_exists(pk)` on
//!   the membership); when that fails (`false`), one DeleteItem of the reverse entry, in
//!   case an interrupted cascade left it behind.
//! - `append_audit`: one PutItem, condition `attribute_not_exists(pk)`; when an item with
//!   that id exists, it returns the old item: the same record is success (a resent
//!   append), another is `Conflict`. Audit ids are unique by construction.
//! - `list_audit`: Query of `AUDIT` (`ExclusiveStartKey` = `after`), `Limit` = what is
//!   still wanted, over pages until `limit` records.
//! - `record_login_failure`: UpdateItem `ADD count :1`, condition `window_start_ms >=
//!   :window` (same window: the new count is returned, `UPDATED_NEW`); when that fails
//!   (no item, or an older window), PutItem of `count = 1`, the window and `expires_at`,
//!   condition `attribute_not_exists(pk) OR window_start_ms < :window`; when that fails
//!   too (a concurrent failure opened the window first), the UpdateItem again. So
//!   concurrent failures are all counted, and a window never moves back (a caller with
//!   a stale window counts into the newer one, as the embedded store does).
//! - `login_failures`: one GetItem (the count when the stored window is at or after the
//!   asked one, else 0).
//! - `clear_login_failures`: one DeleteItem.
//!
//! # Atomicity and its limits
//!
//! A transaction holds at most 100 items. When a `put_group` or a cascading delete needs
//! more (a `put_group` whose members and dropped members number more than 98; a user,
//! group, robot or project with about 50 or more memberships and group entries), it is
//! split into several transactions, in an order that never grants more than before or
//! after: first the removals (group entries of former members, memberships and their
//! reverse entries, rewritten groups), then the transaction with the named item itself
//! and its list entry (the last chunk of a delete), then, for `put_group`, the remaining
//! members' group entries. A membership and its reverse entry, a group entry and its
//! group's rewrite, always share a transaction.
//! Repeating a failed call finishes its work: `put_group` writes every member's entry
//! each time, and a delete removes the named item last, so it is still there to delete
//! again. Between the chunks a reader may see part of the change (e.g. `groups_of` not
//! yet listing a newly added member of a large group).
//!
//! The cascades read, then write: a membership or group entry written concurrently with
//! the delete of its principal (by `set_member` or `put_group` between the reads and the
//! transaction) is not seen and survives it. Group rewrites are conditional, so a
//! concurrent change of the same group starts the delete over instead.
//!
//! The audit log is one partition (`AUDIT`), which on AWS takes about 1,000 writes a
//! second: ample for grant changes and failed logins.
//!
//! # Errors
//!
//! `Storage` (naming the operation) for every DynamoDB failure and for items this adapter
//! cannot decode; `Conflict` when a `create_*` name exists, for an audit id holding
//! another record, or when contention outlasts the retries.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};
use registry_core::identity::{
    AuditRecord, Group, Membership, Principal, Project, Robot, Role, User,
};
use registry_core::ports::{IdentityStore, Page, PageRequest};
use registry_core::{RegistryError, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dynamo_metadata_store::{
    DynamoMetadataStore, EXPIRES_AT, Item, MAX_ATTEMPTS, MAX_TRANSACTION_ITEMS, PK, SK, TxOutcome,
    V, backoff, build, corrupt, decode_json, encode_json, key, n, require_n, require_s,
    retry_conflicts, s, storage,
};

/// How long after a failed-login window's start DynamoDB's TTL may remove its count.
pub const LOGIN_FAILURE_TTL_SECS: u64 = 24 * 3600;

const USER_PREFIX: &str = "USER#";
const GROUP_PREFIX: &str = "GROUP#";
const ROBOT_PREFIX: &str = "ROBOT#";
const PROJECT_PREFIX: &str = "PROJECT#";
const MEMBER_PREFIX: &str = "MEMBER#";
const PRINCIPAL_PREFIX: &str = "PRINCIPAL#";
const AUDIT: &str = "AUDIT";
const LOGINFAIL_PREFIX: &str = "LOGINFAIL#";
const LOGINFAIL_SK: &str = "LOGINFAIL";

const COUNT: &str = "count";
const WINDOW_START_MS: &str = "window_start_ms";

/// One kind of named item (user, group, robot, project): the item at `<prefix><name>` /
/// `sk`, and its list entry at `list` / `<prefix><name>`.
struct Kind {
    what: &'static str,
    prefix: &'static str,
    sk: &'static str,
    list: &'static str,
}

const USER: Kind = Kind {
    what: "user",
    prefix: USER_PREFIX,
    sk: "USER",
    list: "USERS",
};
const GROUP: Kind = Kind {
    what: "group",
    prefix: GROUP_PREFIX,
    sk: "GROUP",
    list: "GROUPS",
};
const ROBOT: Kind = Kind {
    what: "robot",
    prefix: ROBOT_PREFIX,
    sk: "ROBOT",
    list: "ROBOTS",
};
const PROJECT: Kind = Kind {
    what: "project",
    prefix: PROJECT_PREFIX,
    sk: "PROJECT",
    list: "PROJECTS",
};

impl Kind {
    /// The item's partition key, which is also its list entry's sort key.
    fn pk(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn item_key(&self, name: &str) -> Item {
        key(self.pk(name), self.sk)
    }

    fn list_key(&self, name: &str) -> Item {
        key(self.list, self.pk(name))
    }
}

fn member_sk(principal: &Principal) -> String {
    format!("{MEMBER_PREFIX}{principal}")
}

fn principal_pk(principal: &Principal) -> String {
    format!("{PRINCIPAL_PREFIX}{principal}")
}

fn loginfail_key(account: &str) -> Item {
    key(format!("{LOGINFAIL_PREFIX}{account}"), LOGINFAIL_SK)
}

/// Epoch seconds at which TTL may remove the failed logins of a window starting then.
fn login_failure_ttl(window_start_ms: u64) -> u64 {
    window_start_ms
        .div_ceil(1000)
        .saturating_add(LOGIN_FAILURE_TTL_SECS)
}

/// A condition on one item of a transaction.
struct Cond {
    expr: &'static str,
    names: &'static [(&'static str, &'static str)],
    values: Vec<(&'static str, AttributeValue)>,
}

impl Cond {
    fn absent() -> Self {
        Cond {
            expr: "attribute_not_exists(#pk)",
            names: &[("#pk", PK)],
            values: Vec::new(),
        }
    }

    fn present() -> Self {
        Cond {
            expr: "attribute_exists(#pk)",
            names: &[("#pk", PK)],
            values: Vec::new(),
        }
    }

    /// The item holds exactly the `v` that was read.
    fn v_is(old: &str) -> Self {
        Cond {
            expr: "#v = :old",
            names: &[("#v", V)],
            values: vec![(":old", s(old))],
        }
    }
}

/// Items that must share a transaction (a membership and its reverse entry, …).
type Unit = Vec<TransactWriteItem>;

/// Packs `units` into transactions of at most [`MAX_TRANSACTION_ITEMS`] items, in order,
/// never splitting a unit.
fn pack(units: Vec<Unit>) -> Vec<Unit> {
    let mut chunks: Vec<Unit> = Vec::new();
    let mut current: Unit = Vec::new();
    for unit in units {
        if !current.is_empty() && current.len() + unit.len() > MAX_TRANSACTION_ITEMS {
            chunks.push(std::mem::take(&mut current));
        }
        current.extend(unit);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The transactions that write `before`, then `main` (one transaction), then `after`:
/// a single one when everything fits, otherwise `main` shares its transaction with as
/// many of the last units of `before` and the first units of `after` as fit.
fn plan(before: Vec<Unit>, main: Unit, after: Vec<Unit>) -> Vec<Unit> {
    let total = before.iter().chain(&after).map(Vec::len).sum::<usize>() + main.len();
    if total <= MAX_TRANSACTION_ITEMS {
        let mut all: Unit = before.into_iter().flatten().collect();
        all.extend(main);
        all.extend(after.into_iter().flatten());
        return vec![all];
    }
    let mut chunks = pack(before);
    let mut last = main;
    if let Some(prev) = chunks.last()
        && prev.len() + last.len() <= MAX_TRANSACTION_ITEMS
    {
        let mut prev = chunks.pop().unwrap_or_default();
        prev.extend(last);
        last = prev;
    }
    let mut after = after.into_iter().peekable();
    while let Some(unit) = after.peek() {
        if last.len() + unit.len() > MAX_TRANSACTION_ITEMS {
            break;
        }
        last.extend(after.next().unwrap_or_default());
    }
    chunks.push(last);
    chunks.extend(pack(after.collect()));
    chunks
}

/// What a cascade found to remove, or that it has to look again.
enum Attempt<T> {
    Done(T),
    Retry,
}

impl DynamoMetadataStore {
    fn tx_put(&self, op: &str, item: Item, cond: Option<Cond>) -> Result<TransactWriteItem> {
        let mut b = Put::builder().table_name(self.table()).set_item(Some(item));
        if let Some(c) = cond {
            b = b.condition_expression(c.expr);
            for (k, v) in c.names {
                b = b.expression_attribute_names(*k, *v);
            }
            for (k, v) in c.values {
                b = b.expression_attribute_values(k, v);
            }
        }
        let put = build(op, b.build())?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn tx_delete(&self, op: &str, k: Item, cond: Option<Cond>) -> Result<TransactWriteItem> {
        let mut b = Delete::builder().table_name(self.table()).set_key(Some(k));
        if let Some(c) = cond {
            b = b.condition_expression(c.expr);
            for (k, v) in c.names {
                b = b.expression_attribute_names(*k, *v);
            }
            for (k, v) in c.values {
                b = b.expression_attribute_values(k, v);
            }
        }
        let delete = build(op, b.build())?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Runs the transactions of [`plan`] in order; stops at the first failed condition.
    async fn commit_plan(
        &self,
        op: &str,
        before: Vec<Unit>,
        main: Unit,
        after: Vec<Unit>,
    ) -> Result<TxOutcome> {
        for chunk in plan(before, main, after) {
            if let TxOutcome::ConditionFailed(codes) = self.transact(op, chunk).await? {
                return Ok(TxOutcome::ConditionFailed(codes));
            }
        }
        Ok(TxOutcome::Committed)
    }

    /// The `v` of a named item, decoded.
    async fn get_named<T: DeserializeOwned>(
        &self,
        op: &str,
        kind: &Kind,
        name: &str,
    ) -> Result<Option<T>> {
        let item = self.get_item(op, kind.item_key(name), Some("#v")).await?;
        item.map(|i| decode_json(op, &i)).transpose()
    }

    /// Writes a new named item and its list entry; `Conflict` if the name exists.
    async fn create_named<T: Serialize>(
        &self,
        op: &str,
        kind: &Kind,
        name: &str,
        value: &T,
    ) -> Result<()> {
        let mut item = kind.item_key(name);
        item.insert(V.to_owned(), s(encode_json(op, value)?));
        let items = vec![
            self.tx_put(op, item, Some(Cond::absent()))?,
            self.tx_put(op, kind.list_key(name), None)?,
        ];
        match self.transact(op, items).await? {
            TxOutcome::Committed => Ok(()),
            TxOutcome::ConditionFailed(_) => Err(RegistryError::Conflict(format!(
                "{} {name:?} already exists",
                kind.what
            ))),
        }
    }

    /// Replaces an existing named item; `false` if there is none.
    async fn update_named<T: Serialize>(
        &self,
        op: &str,
        kind: &Kind,
        name: &str,
        value: &T,
    ) -> Result<bool> {
        let mut item = kind.item_key(name);
        item.insert(V.to_owned(), s(encode_json(op, value)?));
        let result = retry_conflicts(|| {
            self.ddb
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(storage(op, e)),
        }
    }

    async fn list_named(&self, op: &str, kind: &Kind, page: &PageRequest) -> Result<Page> {
        self.list_page(op, kind.list, kind.prefix, page).await
    }

    /// Items of partition `pk` (every sort key) after sort key `after`, at most `limit`,
    /// in order, with the attributes of `projection` (names, e.g. `["sk", "v"]`).
    async fn query_partition(
        &self,
        op: &str,
        pk: &str,
        after: Option<&str>,
        limit: usize,
        projection: &[&str],
    ) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = after.map(|a| key(pk, a));
        let projection_expr = projection
            .iter()
            .enumerate()
            .map(|(i, _)| format!("#p{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        while out.len() < limit {
            let page_limit = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
            let mut req = self
                .ddb
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(pk))
                .projection_expression(projection_expr.as_str())
                .limit(page_limit)
                .set_exclusive_start_key(start.take());
            for (i, name) in projection.iter().enumerate() {
                req = req.expression_attribute_names(format!("#p{i}"), *name);
            }
            let resp = req.send().await.map_err(|e| storage(op, e))?;
            out.extend(resp.items().iter().cloned());
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The memberships `principal` holds, from its reverse entries, by project.
    async fn memberships_of_one(&self, op: &str, principal: &Principal) -> Result<Vec<Membership>> {
        let values = self
            .query(
                op,
                &principal_pk(principal),
                PROJECT_PREFIX,
                None,
                usize::MAX,
                V,
            )
            .await?;
        values
            .iter()
            .map(|v| serde_json::from_str(v).map_err(|e| corrupt(op, e)))
            .collect()
    }

    /// Deletions of a membership and its reverse entry, in one unit.
    fn membership_removal(&self, op: &str, project: &str, principal: &Principal) -> Result<Unit> {
        Ok(vec![
            self.tx_delete(op, key(PROJECT.pk(project), member_sk(principal)), None)?,
            self.tx_delete(op, key(principal_pk(principal), PROJECT.pk(project)), None)?,
        ])
    }

    /// Deletions of every membership `principal` holds and their reverse entries.
    async fn memberships_removal(&self, op: &str, principal: &Principal) -> Result<Vec<Unit>> {
        let sks = self
            .query(
                op,
                &principal_pk(principal),
                PROJECT_PREFIX,
                None,
                usize::MAX,
                SK,
            )
            .await?;
        sks.iter()
            .map(|sk| self.membership_removal(op, &sk[PROJECT_PREFIX.len()..], principal))
            .collect()
    }

    async fn put_group_once(&self, op: &str, group: &Group) -> Result<Attempt<()>> {
        let old = self
            .get_item(op, GROUP.item_key(&group.name), Some("#v"))
            .await?;
        let (cond, old_members) = match &old {
            Some(item) => {
                let raw = require_s(op, item, V)?;
                let old: Group = serde_json::from_str(raw).map_err(|e| corrupt(op, e))?;
                (Cond::v_is(raw), old.members)
            }
            None => (Cond::absent(), BTreeSet::new()),
        };
        let group_sk = GROUP.pk(&group.name);
        let before = old_members
            .difference(&group.members)
            .map(|gone| {
                Ok(vec![self.tx_delete(
                    op,
                    key(USER.pk(gone), group_sk.as_str()),
                    None,
                )?])
            })
            .collect::<Result<Vec<Unit>>>()?;
        let mut item = GROUP.item_key(&group.name);
        item.insert(V.to_owned(), s(encode_json(op, group)?));
        let main = vec![
            self.tx_put(op, item, Some(cond))?,
            self.tx_put(op, GROUP.list_key(&group.name), None)?,
        ];
        let after = group
            .members
            .iter()
            .map(|m| {
                Ok(vec![self.tx_put(
                    op,
                    key(USER.pk(m), group_sk.as_str()),
                    None,
                )?])
            })
            .collect::<Result<Vec<Unit>>>()?;
        Ok(match self.commit_plan(op, before, main, after).await? {
            TxOutcome::Committed => Attempt::Done(()),
            TxOutcome::ConditionFailed(_) => Attempt::Retry,
        })
    }

    async fn delete_user_once(&self, op: &str, name: &str) -> Result<Attempt<bool>> {
        let user_pk = USER.pk(name);
        let items = self
            .query_partition(op, &user_pk, None, usize::MAX, &[SK])
            .await?;
        let mut exists = false;
        let mut groups = Vec::new();
        for item in &items {
            let sk = require_s(op, item, SK)?;
            if sk == USER.sk {
                exists = true;
            } else if let Some(group) = sk.strip_prefix(GROUP_PREFIX) {
                groups.push(group.to_owned());
            }
        }
        if !exists {
            return Ok(Attempt::Done(false));
        }
        let mut before = Vec::new();
        for group_name in &groups {
            let group_sk = GROUP.pk(group_name);
            let mut unit = vec![self.tx_delete(op, key(user_pk.as_str(), group_sk), None)?];
            if let Some(item) = self
                .get_item(op, GROUP.item_key(group_name), Some("#v"))
                .await?
            {
                let raw = require_s(op, &item, V)?;
                let mut group: Group = serde_json::from_str(raw).map_err(|e| corrupt(op, e))?;
                if group.members.remove(name) {
                    let mut item = GROUP.item_key(group_name);
                    item.insert(V.to_owned(), s(encode_json(op, &group)?));
                    unit.push(self.tx_put(op, item, Some(Cond::v_is(raw)))?);
                }
            }
            before.push(unit);
        }
        before.extend(
            self.memberships_removal(op, &Principal::User(name.to_owned()))
                .await?,
        );
        let main = vec![
            self.tx_delete(op, USER.item_key(name), Some(Cond::present()))?,
            self.tx_delete(op, USER.list_key(name), None)?,
        ];
        Ok(
            match self.commit_plan(op, before, main, Vec::new()).await? {
                TxOutcome::Committed => Attempt::Done(true),
                TxOutcome::ConditionFailed(_) => Attempt::Retry,
            },
        )
    }

    async fn delete_group_once(&self, op: &str, name: &str) -> Result<Attempt<bool>> {
        let Some(item) = self.get_item(op, GROUP.item_key(name), Some("#v")).await? else {
            return Ok(Attempt::Done(false));
        };
        let raw = require_s(op, &item, V)?;
        let group: Group = serde_json::from_str(raw).map_err(|e| corrupt(op, e))?;
        let group_sk = GROUP.pk(name);
        let mut before = group
            .members
            .iter()
            .map(|m| {
                Ok(vec![self.tx_delete(
                    op,
                    key(USER.pk(m), group_sk.as_str()),
                    None,
                )?])
            })
            .collect::<Result<Vec<Unit>>>()?;
        before.extend(
            self.memberships_removal(op, &Principal::Group(name.to_owned()))
                .await?,
        );
        let main = vec![
            self.tx_delete(op, GROUP.item_key(name), Some(Cond::v_is(raw)))?,
            self.tx_delete(op, GROUP.list_key(name), None)?,
        ];
        Ok(
            match self.commit_plan(op, before, main, Vec::new()).await? {
                TxOutcome::Committed => Attempt::Done(true),
                TxOutcome::ConditionFailed(_) => Attempt::Retry,
            },
        )
    }

    async fn delete_robot_once(&self, op: &str, name: &str) -> Result<Attempt<bool>> {
        if self
            .get_item(op, ROBOT.item_key(name), Some("#pk"))
            .await?
            .is_none()
        {
            return Ok(Attempt::Done(false));
        }
        let before = self
            .memberships_removal(op, &Principal::Robot(name.to_owned()))
            .await?;
        let main = vec![
            self.tx_delete(op, ROBOT.item_key(name), Some(Cond::present()))?,
            self.tx_delete(op, ROBOT.list_key(name), None)?,
        ];
        Ok(
            match self.commit_plan(op, before, main, Vec::new()).await? {
                TxOutcome::Committed => Attempt::Done(true),
                TxOutcome::ConditionFailed(_) => Attempt::Retry,
            },
        )
    }

    async fn delete_project_once(&self, op: &str, name: &str) -> Result<Attempt<bool>> {
        let items = self
            .query_partition(op, &PROJECT.pk(name), None, usize::MAX, &[SK])
            .await?;
        let mut exists = false;
        let mut before = Vec::new();
        for item in &items {
            let sk = require_s(op, item, SK)?;
            if sk == PROJECT.sk {
                exists = true;
            } else if let Some(principal) = sk.strip_prefix(MEMBER_PREFIX) {
                let principal: Principal = principal.parse().map_err(|e| corrupt(op, e))?;
                before.push(self.membership_removal(op, name, &principal)?);
            }
        }
        if !exists {
            return Ok(Attempt::Done(false));
        }
        let main = vec![
            self.tx_delete(op, PROJECT.item_key(name), Some(Cond::present()))?,
            self.tx_delete(op, PROJECT.list_key(name), None)?,
        ];
        Ok(
            match self.commit_plan(op, before, main, Vec::new()).await? {
                TxOutcome::Committed => Attempt::Done(true),
                TxOutcome::ConditionFailed(_) => Attempt::Retry,
            },
        )
    }
}

/// Runs `attempt` until it is done, with backoff, at most [`MAX_ATTEMPTS`] times.
async fn until_done<T, F, Fut>(op: &str, what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Attempt<T>>>,
{
    for n in 0..MAX_ATTEMPTS {
        if n > 0 {
            backoff(n).await;
        }
        if let Attempt::Done(v) = attempt().await? {
            return Ok(v);
        }
    }
    Err(RegistryError::Conflict(format!(
        "{op}: {what} kept changing during {MAX_ATTEMPTS} attempts"
    )))
}

#[async_trait]
impl IdentityStore for DynamoMetadataStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        const OP: &str = "DynamoDB TransactWriteItems (create_user)";
        self.create_named(OP, &USER, &user.name, user).await
    }

    async fn update_user(&self, user: &User) -> Result<bool> {
        const OP: &str = "DynamoDB PutItem (update_user)";
        self.update_named(OP, &USER, &user.name, user).await
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        const OP: &str = "DynamoDB GetItem (get_user)";
        self.get_named(OP, &USER, name).await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        const OP: &str = "DynamoDB delete_user";
        until_done(OP, &format!("user {name:?}"), || {
            self.delete_user_once(OP, name)
        })
        .await
    }

    async fn list_users(&self, page: &PageRequest) -> Result<Page> {
        self.list_named("DynamoDB Query (list_users)", &USER, page)
            .await
    }

    async fn put_group(&self, group: &Group) -> Result<()> {
        const OP: &str = "DynamoDB put_group";
        until_done(OP, &format!("group {:?}", group.name), || {
            self.put_group_once(OP, group)
        })
        .await
    }

    async fn get_group(&self, name: &str) -> Result<Option<Group>> {
        const OP: &str = "DynamoDB GetItem (get_group)";
        self.get_named(OP, &GROUP, name).await
    }

    async fn delete_group(&self, name: &str) -> Result<bool> {
        const OP: &str = "DynamoDB delete_group";
        until_done(OP, &format!("group {name:?}"), || {
            self.delete_group_once(OP, name)
        })
        .await
    }

    async fn list_groups(&self, page: &PageRequest) -> Result<Page> {
        self.list_named("DynamoDB Query (list_groups)", &GROUP, page)
            .await
    }

    async fn groups_of(&self, user: &str) -> Result<Vec<String>> {
        const OP: &str = "DynamoDB Query (groups_of)";
        let sks = self
            .query(OP, &USER.pk(user), GROUP_PREFIX, None, usize::MAX, SK)
            .await?;
        Ok(sks
            .into_iter()
            .map(|sk| sk[GROUP_PREFIX.len()..].to_owned())
            .collect())
    }

    async fn create_robot(&self, robot: &Robot) -> Result<()> {
        const OP: &str = "DynamoDB TransactWriteItems (create_robot)";
        self.create_named(OP, &ROBOT, &robot.name, robot).await
    }

    async fn get_robot(&self, name: &str) -> Result<Option<Robot>> {
        const OP: &str = "DynamoDB GetItem (get_robot)";
        self.get_named(OP, &ROBOT, name).await
    }

    async fn delete_robot(&self, name: &str) -> Result<bool> {
        const OP: &str = "DynamoDB delete_robot";
        until_done(OP, &format!("robot {name:?}"), || {
            self.delete_robot_once(OP, name)
        })
        .await
    }

    async fn list_robots(&self, page: &PageRequest) -> Result<Page> {
        self.list_named("DynamoDB Query (list_robots)", &ROBOT, page)
            .await
    }

    async fn create_project(&self, project: &Project) -> Result<()> {
        const OP: &str = "DynamoDB TransactWriteItems (create_project)";
        self.create_named(OP, &PROJECT, &project.name, project)
            .await
    }

    async fn update_project(&self, project: &Project) -> Result<bool> {
        const OP: &str = "DynamoDB PutItem (update_project)";
        self.update_named(OP, &PROJECT, &project.name, project)
            .await
    }

    async fn get_project(&self, name: &str) -> Result<Option<Project>> {
        const OP: &str = "DynamoDB GetItem (get_project)";
        self.get_named(OP, &PROJECT, name).await
    }

    async fn delete_project(&self, name: &str) -> Result<bool> {
        const OP: &str = "DynamoDB delete_project";
        until_done(OP, &format!("project {name:?}"), || {
            self.delete_project_once(OP, name)
        })
        .await
    }

    async fn list_projects(&self, page: &PageRequest) -> Result<Page> {
        self.list_named("DynamoDB Query (list_projects)", &PROJECT, page)
            .await
    }

    async fn set_member(&self, project: &str, principal: &Principal, role: Role) -> Result<()> {
        const OP: &str = "DynamoDB TransactWriteItems (set_member)";
        let membership = Membership {
            project: project.to_owned(),
            principal: principal.clone(),
            role,
        };
        let v = encode_json(OP, &membership)?;
        let mut forward = key(PROJECT.pk(project), member_sk(principal));
        forward.insert(V.to_owned(), s(v.as_str()));
        let mut reverse = key(principal_pk(principal), PROJECT.pk(project));
        reverse.insert(V.to_owned(), s(v));
        let items = vec![
            self.tx_put(OP, forward, None)?,
            self.tx_put(OP, reverse, None)?,
        ];
        match self.transact(OP, items).await? {
            TxOutcome::Committed => Ok(()),
            TxOutcome::ConditionFailed(codes) => Err(corrupt(
                OP,
                format!("unexpected condition failure: {codes:?}"),
            )),
        }
    }

    async fn remove_member(&self, project: &str, principal: &Principal) -> Result<bool> {
        const OP: &str = "DynamoDB TransactWriteItems (remove_member)";
        const REPAIR: &str = "DynamoDB DeleteItem (remove_member)";
        let reverse = key(principal_pk(principal), PROJECT.pk(project));
        let items = vec![
            self.tx_delete(
                OP,
                key(PROJECT.pk(project), member_sk(principal)),
                Some(Cond::present()),
            )?,
            self.tx_delete(OP, reverse.clone(), None)?,
        ];
        match self.transact(OP, items).await? {
            TxOutcome::Committed => Ok(true),
            TxOutcome::ConditionFailed(_) => {
                retry_conflicts(|| {
                    self.ddb
                        .delete_item()
                        .table_name(self.table())
                        .set_key(Some(reverse.clone()))
                        .send()
                })
                .await
                .map_err(|e| storage(REPAIR, e))?;
                Ok(false)
            }
        }
    }

    async fn list_members(&self, project: &str) -> Result<Vec<Membership>> {
        const OP: &str = "DynamoDB Query (list_members)";
        let values = self
            .query(OP, &PROJECT.pk(project), MEMBER_PREFIX, None, usize::MAX, V)
            .await?;
        values
            .iter()
            .map(|v| serde_json::from_str(v).map_err(|e| corrupt(OP, e)))
            .collect()
    }

    async fn memberships_of(&self, principals: &[Principal]) -> Result<Vec<Membership>> {
        const OP: &str = "DynamoDB Query (memberships_of)";
        let principals: BTreeSet<&Principal> = principals.iter().collect();
        let mut out = Vec::new();
        for p in principals {
            out.extend(self.memberships_of_one(OP, p).await?);
        }
        Ok(out)
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        const OP: &str = "DynamoDB PutItem (append_audit)";
        let v = encode_json(OP, record)?;
        let mut item = key(AUDIT, record.id.as_str());
        item.insert(V.to_owned(), s(v.as_str()));
        let Some(stored) = self
            .conditional_put(OP, item, "attribute_not_exists(#pk)", &[], "#v")
            .await?
        else {
            return Ok(());
        };
        match stored {
            Some(item) if decode_json::<AuditRecord>(OP, &item)? == *record => Ok(()),
            Some(_) => Err(RegistryError::Conflict(format!(
                "audit record {} already exists with other content",
                record.id
            ))),
            // Nothing deletes audit records: only a backend misbehaving gets here.
            None => Err(corrupt(
                OP,
                format!("audit record {} neither absent nor present", record.id),
            )),
        }
    }

    async fn list_audit(&self, after: Option<&str>, limit: usize) -> Result<Vec<AuditRecord>> {
        const OP: &str = "DynamoDB Query (list_audit)";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items = self
            .query_partition(OP, AUDIT, after, limit, &[SK, V])
            .await?;
        items.iter().map(|i| decode_json(OP, i)).collect()
    }

    async fn record_login_failure(&self, account: &str, window_start_ms: u64) -> Result<u32> {
        const ADD: &str = "DynamoDB UpdateItem (record_login_failure)";
        const RESET: &str = "DynamoDB PutItem (record_login_failure)";
        let k = loginfail_key(account);
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // The stored window (or a newer one) is open: count into it.
            let added = retry_conflicts(|| {
                self.ddb
                    .update_item()
                    .table_name(self.table())
                    .set_key(Some(k.clone()))
                    .update_expression("ADD #count :one")
                    .condition_expression("#window >= :window")
                    .expression_attribute_names("#count", COUNT)
                    .expression_attribute_names("#window", WINDOW_START_MS)
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":window", n(window_start_ms))
                    .return_values(ReturnValue::UpdatedNew)
                    .send()
            })
            .await;
            match added {
                Ok(out) => {
                    let attrs = out.attributes.unwrap_or_default();
                    let count = require_n(ADD, &attrs, COUNT)?;
                    return Ok(u32::try_from(count).unwrap_or(u32::MAX));
                }
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(UpdateItemError::ConditionalCheckFailedException(_))
                    ) => {}
                Err(e) => return Err(storage(ADD, e)),
            }
            // No count yet, or one of an older window: open this window with 1.
            let mut item = k.clone();
            item.insert(COUNT.to_owned(), n(1));
            item.insert(WINDOW_START_MS.to_owned(), n(window_start_ms));
            item.insert(EXPIRES_AT.to_owned(), n(login_failure_ttl(window_start_ms)));
            let reset = retry_conflicts(|| {
                self.ddb
                    .put_item()
                    .table_name(self.table())
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(#pk) OR #window < :window")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_names("#window", WINDOW_START_MS)
                    .expression_attribute_values(":window", n(window_start_ms))
                    .send()
            })
            .await;
            match reset {
                Ok(_) => return Ok(1),
                // Another failure opened the window first: count into it.
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) => {}
                Err(e) => return Err(storage(RESET, e)),
            }
        }
        Err(RegistryError::Conflict(format!(
            "{ADD}: failed logins of {account:?} kept changing during {MAX_ATTEMPTS} attempts"
        )))
    }

    async fn login_failures(&self, account: &str, window_start_ms: u64) -> Result<u32> {
        const OP: &str = "DynamoDB GetItem (login_failures)";
        let item = self
            .get_item(OP, loginfail_key(account), Some("#count, #window_start_ms"))
            .await?;
        let Some(item) = item else {
            return Ok(0);
        };
        if require_n(OP, &item, WINDOW_START_MS)? < window_start_ms {
            return Ok(0);
        }
        let count = require_n(OP, &item, COUNT)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn clear_login_failures(&self, account: &str) -> Result<()> {
        const OP: &str = "DynamoDB DeleteItem (clear_login_failures)";
        retry_conflicts(|| {
            self.ddb
                .delete_item()
                .table_name(self.table())
                .set_key(Some(loginfail_key(account)))
                .send()
        })
        .await
        .map_err(|e| storage(OP, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(i: usize) -> TransactWriteItem {
        let put = Put::builder()
            .table_name("t")
            .set_item(Some(key(format!("P{i}"), "S")))
            .build()
            .expect("put");
        TransactWriteItem::builder().put(put).build()
    }

    fn units(sizes: &[usize]) -> Vec<Unit> {
        let mut next = 0;
        sizes
            .iter()
            .map(|&size| {
                (0..size)
                    .map(|_| {
                        next += 1;
                        put(next)
                    })
                    .collect()
            })
            .collect()
    }

    fn lens(chunks: &[Unit]) -> Vec<usize> {
        chunks.iter().map(Vec::len).collect()
    }

    #[test]
    fn small_plans_are_one_transaction() {
        let chunks = plan(units(&[2, 2, 1]), units(&[2]).remove(0), units(&[1; 50]));
        assert_eq!(lens(&chunks), vec![57]);
    }

    #[test]
    fn large_plans_keep_units_whole_and_main_in_order() {
        // 60 membership pairs (120 items), then main (2): the pairs fill one transaction
        // of 100, the other 10 pairs share main's.
        let chunks = plan(units(&[2; 60]), units(&[2]).remove(0), Vec::new());
        assert_eq!(lens(&chunks), vec![100, 22]);

        // Removals that fill whole transactions leave main alone; additions follow it.
        let chunks = plan(units(&[1; 200]), units(&[2]).remove(0), units(&[1; 150]));
        assert_eq!(lens(&chunks), vec![100, 100, 100, 52]);

        // A unit never straddles two transactions.
        let chunks = plan(units(&[3; 40]), units(&[2]).remove(0), Vec::new());
        assert_eq!(lens(&chunks), vec![99, 23]);
    }

    #[test]
    fn ttl_is_a_day_after_the_window_starts() {
        assert_eq!(login_failure_ttl(0), LOGIN_FAILURE_TTL_SECS);
        assert_eq!(login_failure_ttl(1_001), 2 + LOGIN_FAILURE_TTL_SECS);
    }
}
