//! Contract suites that every adapter of the registry's ports must pass, and the test
//! doubles they need ([`clock::ManualClock`]).
//!
//! Each port has a module of checks, one `pub async fn` per documented behaviour, each
//! taking a fresh adapter as `Arc<dyn Port>`, and a macro that expands to one
//! `#[tokio::test]` per check so failures are reported per check. Invoke each macro in
//! its own module of an integration test (the crate needs `tokio` as a dev-dependency):
//!
//! ```ignore
//! mod blob_store {
//!     registry_testkit::blob_store_contract_tests!(super::new_blob_store);
//! }
//! ```
//!
//! The factory is called once per test and returns a future of `(adapter, guard)`: the
//! adapter must be empty, and the guard (a temp dir, a bucket cleaner, `()`) is kept
//! alive until the check ends. The job queue factory builds the queue with
//! [`job_queue_contract::MAX_RECEIVES`] and returns a third element, the
//! [`clock::TestTime`] the checks let time pass with: the [`clock::ManualClock`] the queue
//! reads, or [`clock::RealTime`] for a backend with its own timers.

pub mod blob_store_contract;
pub mod clock;
pub mod identity_store_contract;
pub mod job_queue_contract;
pub mod metadata_store_contract;
pub mod proxy_store_contract;
pub mod scan_store_contract;
pub mod support;
pub mod webhook_store_contract;

pub use clock::{ManualClock, RealTime, TestTime};

/// Expands to one test per check of `$module`, each built by `$factory`.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    ($module:ident, $factory:expr, [$($check:ident),+ $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (port, _guard) = ($factory)().await;
                $crate::$module::$check(port).await;
            }
        )+
    };
}

/// One `#[tokio::test]` per [`BlobStore`](registry_core::ports::BlobStore) check;
/// `$factory` is `FnMut() -> impl Future<Output = (Arc<dyn BlobStore>, impl Any)>`.
#[macro_export]
macro_rules! blob_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__contract_tests!(
            blob_store_contract,
            $factory,
            [
                upload_round_trip,
                chunked_upload,
                empty_blob,
                sha512_digests,
                range_reads,
                commit_is_idempotent,
                rewrite_discards_stale_bytes,
                failed_write_can_be_resent,
                read_upload_returns_offset_bytes,
                abort_removes_upload,
                unknown_blob,
                delete_removes_blob,
                concurrent_uploads_are_independent,
                large_streamed_upload,
                read_stream_returns_the_bytes,
            ]
        );
    };
}

/// One `#[tokio::test]` per [`MetadataStore`](registry_core::ports::MetadataStore) check;
/// `$factory` is `FnMut() -> impl Future<Output = (Arc<dyn MetadataStore>, impl Any)>`.
#[macro_export]
macro_rules! metadata_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__contract_tests!(
            metadata_store_contract,
            $factory,
            [
                blob_links,
                repositories_linking,
                manifest_round_trip,
                retag_moves_tag,
                delete_manifest_removes_its_tags_and_referrer,
                delete_tag_keeps_manifest,
                list_tags_order_and_pagination,
                list_referrers_by_subject,
                repositories_and_catalog,
                upload_session_lifecycle,
                expired_uploads,
                concurrent_tag_moves,
                concurrent_delete_and_retag,
                concurrent_upload_updates,
                large_manifests_round_trip,
                delete_manifest_with_many_tags,
                outbox_records_events_with_changes,
                outbox_records_nothing_without_a_change,
                concurrent_changes_keep_every_event,
            ]
        );
    };
}

/// One `#[tokio::test]` per [`IdentityStore`](registry_core::ports::IdentityStore) check;
/// `$factory` is `FnMut() -> impl Future<Output = (Arc<dyn IdentityStore>, impl Any)>`.
#[macro_export]
macro_rules! identity_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__contract_tests!(
            identity_store_contract,
            $factory,
            [
                users_round_trip,
                create_user_conflict,
                list_users_pagination,
                update_user_keeps_groups_and_memberships,
                groups_round_trip,
                list_groups_pagination,
                groups_of_follows_put_group,
                delete_group_removes_group_entries_and_memberships,
                robots_round_trip,
                create_robot_conflict,
                list_robots_pagination,
                projects_round_trip,
                create_project_conflict,
                list_projects_pagination,
                kinds_have_separate_names,
                set_member_replaces_role,
                remove_member,
                list_members,
                memberships_of_user_and_groups,
                delete_project_removes_memberships,
                delete_user_removes_memberships_and_group_entries,
                delete_robot_removes_memberships,
                audit_order_and_pagination,
                login_failures_count_within_window,
                login_failures_new_window_resets,
                clear_login_failures,
                concurrent_set_member,
                concurrent_login_failures,
                concurrent_group_puts_stay_consistent,
                delete_user_racing_put_group_stays_consistent,
            ]
        );
    };
}

/// One `#[tokio::test]` per [`WebhookStore`](registry_core::ports::WebhookStore) check;
/// `$factory` is `FnMut() -> impl Future<Output = (Arc<dyn WebhookStore>, impl Any)>`.
#[macro_export]
macro_rules! webhook_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__contract_tests!(
            webhook_store_contract,
            $factory,
            [
                policies_round_trip,
                attempts_append_to_a_delivery,
                deliveries_list_newest_first,
                concurrent_attempts_all_land,
                delete_policy_keeps_other_deliveries,
            ]
        );
    };
}

/// One `#[tokio::test]` per [`ProxyCacheStore`](registry_core::ports::ProxyCacheStore)
/// check; `$factory` is
/// `FnMut() -> impl Future<Output = (Arc<dyn ProxyCacheStore>, impl Any)>`.
#[macro_export]
macro_rules! proxy_cache_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__contract_tests!(
            proxy_store_contract,
            $factory,
            [
                tag_checks_round_trip,
                tag_checks_are_independent,
                unknown_project_has_no_bytes,
                adds_return_the_running_total,
                concurrent_adds_all_count,
                projects_are_independent,
            ]
        );
    };
}

/// One `#[tokio::test]` per [`ScanStore`](registry_core::ports::ScanStore) check;
/// `$factory` is `FnMut() -> impl Future<Output = (Arc<dyn ScanStore>, impl Any)>`.
#[macro_export]
macro_rules! scan_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__contract_tests!(
            scan_store_contract,
            $factory,
            [
                reports_round_trip,
                large_reports_round_trip,
                scanned_images_list_in_order,
            ]
        );
    };
}

/// One `#[tokio::test]` per
/// [`VulnerabilityStore`](registry_core::ports::VulnerabilityStore) check; `$factory` is
/// `FnMut() -> impl Future<Output = (Arc<dyn VulnerabilityStore>, impl Any)>`.
#[macro_export]
macro_rules! vulnerability_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__contract_tests!(
            scan_store_contract,
            $factory,
            [
                advisories_by_version_and_key,
                current_db_switches_conditionally,
                delete_db_version_in_pages,
            ]
        );
    };
}

/// One `#[tokio::test]` per [`JobQueue`](registry_core::ports::JobQueue) check;
/// `$factory` is
/// `FnMut() -> impl Future<Output = (Arc<dyn JobQueue>, impl Any, Arc<dyn TestTime>)>`:
/// an empty queue built with `max_receives` = [`job_queue_contract::MAX_RECEIVES`], its
/// guard, and the [`clock::TestTime`] that moves the queue's time (a
/// [`clock::ManualClock`] the queue reads, or [`clock::RealTime`]).
#[macro_export]
macro_rules! job_queue_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__job_queue_contract_tests!(
            $factory,
            [
                enqueue_receive_ack,
                invisible_until_visibility_timeout,
                dead_letter_after_max_receives,
                stale_receipt_ack,
                receipts_are_not_reused,
                receive_respects_max,
                concurrent_receivers_do_not_share_a_job,
                retry_later_sets_the_next_delivery,
            ]
        );
    };
}

/// Expands to one test per job queue check, each with a fresh queue and its time.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_queue_contract_tests {
    ($factory:expr, [$($check:ident),+ $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (queue, _guard, time) = ($factory)().await;
                $crate::job_queue_contract::$check(queue, time).await;
            }
        )+
    };
}
