//! [`ProxyCacheStore`] for [`DynamoMetadataStore`]: the proxy's tag check times and cache
//! sizes in the metadata table, laid out by the key schema of [`registry_core::keys`].
//!
//! # Items
//!
//! Besides `pk`/`sk`, items carry:
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | proxy tag check | `REPO#<name>` | `CHECKED#<tag>` | `at_ms` (N): when the tag was last found current upstream |
//! | proxy cache size | `PROXY#<project>` | `CACHED` | `bytes` (N): an atomic counter |
//!
//! Both are plain numbers, as the blob link's `size` is, not JSON in `v`: the counter
//! must be a number for `ADD`. Tag checks live in the repository's partition but are
//! never part of its transactions (a check is one item, written on its own).
//!
//! # Calls per method
//!
//! All reads are strongly consistent (`ConsistentRead = true`). Single writes rejected by
//! a concurrent transaction (`TransactionConflictException`) are resent with jittered
//! backoff, up to [`MAX_ATTEMPTS`](crate::dynamo_metadata_store::MAX_ATTEMPTS) times.
//!
//! - `tag_checked`: one GetItem projected to `at_ms`.
//! - `set_tag_checked`: one PutItem (unconditional: the last write wins).
//! - `cached_bytes`: one GetItem projected to `bytes` (no item: 0).
//! - `add_cached_bytes`: one UpdateItem `ADD #bytes :n` with `ReturnValues = UPDATED_NEW`.
//!   `ADD` is applied by DynamoDB to the stored value (creating the item, from 0, on the
//!   first add), so concurrent adds all count and each returns the total it made. Not
//!   idempotent: an add the SDK resends after a lost answer (a timeout, a 5xx) may count
//!   twice, so the total can run over, never under, what was added.
//!
//! # Errors
//!
//! `Storage` (naming the operation) for every DynamoDB failure and for items this adapter
//! cannot decode (also a total beyond `u64`, which `ADD` would store).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use registry_core::keys;
use registry_core::ports::ProxyCacheStore;
use registry_core::{RepoName, Result, Tag};

use crate::dynamo_metadata_store::{
    DynamoMetadataStore, corrupt, key, n, require_n, retry_conflicts, storage,
};

const AT_MS: &str = "at_ms";
const BYTES: &str = "bytes";

#[async_trait]
impl ProxyCacheStore for DynamoMetadataStore {
    async fn tag_checked(&self, repo: &RepoName, tag: &Tag) -> Result<Option<u64>> {
        const OP: &str = "DynamoDB GetItem (tag_checked)";
        let k = key(keys::repo_pk(repo), keys::tag_checked_sk(tag));
        let item = self.get_item(OP, k, Some("#at_ms")).await?;
        item.map(|i| require_n(OP, &i, AT_MS)).transpose()
    }

    async fn set_tag_checked(&self, repo: &RepoName, tag: &Tag, at_ms: u64) -> Result<()> {
        const OP: &str = "DynamoDB PutItem (set_tag_checked)";
        let mut item = key(keys::repo_pk(repo), keys::tag_checked_sk(tag));
        item.insert(AT_MS.to_owned(), n(at_ms));
        self.put_one(OP, item).await
    }

    async fn cached_bytes(&self, project: &str) -> Result<u64> {
        const OP: &str = "DynamoDB GetItem (cached_bytes)";
        let k = key(keys::proxy_pk(project), keys::CACHED);
        let item = self.get_item(OP, k, Some("#bytes")).await?;
        Ok(item
            .map(|i| require_n(OP, &i, BYTES))
            .transpose()?
            .unwrap_or(0))
    }

    async fn add_cached_bytes(&self, project: &str, bytes: u64) -> Result<u64> {
        const OP: &str = "DynamoDB UpdateItem (add_cached_bytes)";
        let k = key(keys::proxy_pk(project), keys::CACHED);
        let resp = retry_conflicts(|| {
            self.ddb
                .update_item()
                .table_name(self.table())
                .set_key(Some(k.clone()))
                .update_expression("ADD #bytes :n")
                .expression_attribute_names("#bytes", BYTES)
                .expression_attribute_values(":n", n(bytes))
                .return_values(ReturnValue::UpdatedNew)
                .send()
        })
        .await
        .map_err(|e| storage(OP, e))?;
        let attributes = resp
            .attributes
            .ok_or_else(|| corrupt(OP, format!("no {BYTES} returned")))?;
        require_n(OP, &attributes, BYTES)
    }
}
