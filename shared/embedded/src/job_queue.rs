//! `EmbeddedJobQueue`: a durable at-least-once job queue in redb, with visibility
//! timeouts and a dead-letter table, mirroring SQS with a redrive policy. One database
//! holds several named queues (webhook, scan, proxy-fill), each in its own tables.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use registry_core::ports::{Clock, Job, JobQueue, ReceivedJob};
use registry_core::{RegistryError, Result};
use serde::{Deserialize, Serialize};

use crate::db::blocking;

/// The last job id handed out per queue, so ids (and the receipts built from them) are
/// never reused even after the newest job is acknowledged.
const JOB_SEQUENCE: TableDefinition<&str, u64> = TableDefinition::new("job_sequence");

#[derive(Serialize, Deserialize)]
struct QueuedJob {
    job: Job,
    visible_at_ms: u64,
    receive_count: u32,
}

/// A queue in the embedded database; jobs received `max_receives` times without an
/// acknowledgement go to the dead letters.
#[derive(Clone)]
pub struct EmbeddedJobQueue {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    max_receives: u32,
    names: Arc<TableNames>,
    /// Wakes a poller waiting in `wait_for_enqueue` (one permit is kept if none waits).
    enqueued: Arc<tokio::sync::Notify>,
}

/// The tables of one named queue.
struct TableNames {
    jobs: String,
    dead_letters: String,
    /// This queue's key in the sequence table.
    last_job_id: String,
}

impl TableNames {
    fn jobs(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.jobs)
    }
    fn dead_letters(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.dead_letters)
    }
}

impl EmbeddedJobQueue {
    /// The queue `jobs` (tables `jobs` and `dead_letters`).
    pub fn new(db: Arc<Database>, clock: Arc<dyn Clock>, max_receives: u32) -> Result<Self> {
        Self::open(
            db,
            clock,
            max_receives,
            TableNames {
                jobs: "jobs".into(),
                dead_letters: "dead_letters".into(),
                last_job_id: "last_job_id".into(),
            },
        )
    }

    /// The queue `name` (tables `queue:<name>:jobs` and `queue:<name>:dead_letters`).
    pub fn named(
        db: Arc<Database>,
        name: &str,
        clock: Arc<dyn Clock>,
        max_receives: u32,
    ) -> Result<Self> {
        Self::open(
            db,
            clock,
            max_receives,
            TableNames {
                jobs: format!("queue:{name}:jobs"),
                dead_letters: format!("queue:{name}:dead_letters"),
                last_job_id: format!("queue:{name}"),
            },
        )
    }

    fn open(
        db: Arc<Database>,
        clock: Arc<dyn Clock>,
        max_receives: u32,
        names: TableNames,
    ) -> Result<Self> {
        let txn = db.begin_write().map_err(RegistryError::storage)?;
        txn.open_table(names.jobs())
            .map_err(RegistryError::storage)?;
        txn.open_table(names.dead_letters())
            .map_err(RegistryError::storage)?;
        txn.open_table(JOB_SEQUENCE)
            .map_err(RegistryError::storage)?;
        txn.commit().map_err(RegistryError::storage)?;
        Ok(EmbeddedJobQueue {
            db,
            clock,
            max_receives,
            names: Arc::new(names),
            enqueued: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The `max_receives` this queue dead-letters after.
    pub fn max_receives(&self) -> u32 {
        self.max_receives
    }
}

/// The job key and receive count a receipt names.
fn parse_receipt(receipt: &str) -> Result<(u64, u32)> {
    receipt
        .split_once(':')
        .and_then(|(k, c)| Some((k.parse::<u64>().ok()?, c.parse::<u32>().ok()?)))
        .ok_or_else(|| RegistryError::Storage(format!("invalid receipt {receipt:?}")))
}

fn next_key(t: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64> {
    Ok(t.last()
        .map_err(RegistryError::storage)?
        .map_or(1, |(k, _)| k.value() + 1))
}

/// A new job id: above every id ever handed out (the sequence) and every id still queued
/// (databases written before the sequence existed).
fn next_job_id(
    jobs: &impl ReadableTable<u64, &'static [u8]>,
    sequence: &mut Table<'_, &'static str, u64>,
    last_job_id: &str,
) -> Result<u64> {
    let last = sequence
        .get(last_job_id)
        .map_err(RegistryError::storage)?
        .map_or(0, |v| v.value());
    let id = next_key(jobs)?.max(last + 1);
    sequence
        .insert(last_job_id, id)
        .map_err(RegistryError::storage)?;
    Ok(id)
}

#[async_trait]
impl JobQueue for EmbeddedJobQueue {
    async fn enqueue(&self, job: &Job) -> Result<()> {
        let item = serde_json::to_vec(&QueuedJob {
            job: job.clone(),
            visible_at_ms: 0,
            receive_count: 0,
        })
        .map_err(RegistryError::storage)?;
        let names = self.names.clone();
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(RegistryError::storage)?;
            {
                let mut t = txn
                    .open_table(names.jobs())
                    .map_err(RegistryError::storage)?;
                let mut sequence = txn
                    .open_table(JOB_SEQUENCE)
                    .map_err(RegistryError::storage)?;
                let key = next_job_id(&t, &mut sequence, &names.last_job_id)?;
                t.insert(key, item.as_slice())
                    .map_err(RegistryError::storage)?;
            }
            txn.commit().map_err(RegistryError::storage)
        })
        .await?;
        self.enqueued.notify_one();
        Ok(())
    }

    async fn wait_for_enqueue(&self, max: std::time::Duration) {
        let _ = tokio::time::timeout(max, self.enqueued.notified()).await;
    }

    async fn receive(&self, max: usize, visibility_secs: u64) -> Result<Vec<ReceivedJob>> {
        let now = self.clock.now_millis();
        let max_receives = self.max_receives;
        let names = self.names.clone();
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(RegistryError::storage)?;
            let mut out = Vec::new();
            {
                let mut jobs = txn
                    .open_table(names.jobs())
                    .map_err(RegistryError::storage)?;
                let mut dead = txn
                    .open_table(names.dead_letters())
                    .map_err(RegistryError::storage)?;
                let mut due = Vec::new();
                for entry in jobs.iter().map_err(RegistryError::storage)? {
                    let (k, v) = entry.map_err(RegistryError::storage)?;
                    let q: QueuedJob =
                        serde_json::from_slice(v.value()).map_err(RegistryError::storage)?;
                    if q.visible_at_ms <= now {
                        due.push((k.value(), q));
                    }
                }
                for (key, mut q) in due {
                    if out.len() == max {
                        break;
                    }
                    if q.receive_count >= max_receives {
                        jobs.remove(key).map_err(RegistryError::storage)?;
                        let dkey = next_key(&dead)?;
                        let bytes = serde_json::to_vec(&q.job).map_err(RegistryError::storage)?;
                        dead.insert(dkey, bytes.as_slice())
                            .map_err(RegistryError::storage)?;
                        continue;
                    }
                    q.receive_count += 1;
                    q.visible_at_ms = now + visibility_secs * 1000;
                    let bytes = serde_json::to_vec(&q).map_err(RegistryError::storage)?;
                    jobs.insert(key, bytes.as_slice())
                        .map_err(RegistryError::storage)?;
                    out.push(ReceivedJob {
                        job: q.job,
                        receipt: format!("{key}:{}", q.receive_count),
                        receive_count: q.receive_count,
                    });
                }
            }
            txn.commit().map_err(RegistryError::storage)?;
            Ok(out)
        })
        .await
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        self.with_current(receipt, |jobs, key, _| {
            jobs.remove(key).map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn retry_later(&self, receipt: &str, delay_secs: u64) -> Result<()> {
        let visible_at_ms = self.clock.now_millis() + delay_secs.min(12 * 3600) * 1000;
        self.with_current(receipt, move |jobs, key, mut q| {
            q.visible_at_ms = visible_at_ms;
            let bytes = serde_json::to_vec(&q).map_err(RegistryError::storage)?;
            jobs.insert(key, bytes.as_slice())
                .map_err(RegistryError::storage)?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Job>> {
        let names = self.names.clone();
        blocking(&self.db, move |db| {
            let txn = db.begin_read().map_err(RegistryError::storage)?;
            let t = txn
                .open_table(names.dead_letters())
                .map_err(RegistryError::storage)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(RegistryError::storage)?.take(max) {
                let (_, v) = entry.map_err(RegistryError::storage)?;
                out.push(serde_json::from_slice(v.value()).map_err(RegistryError::storage)?);
            }
            Ok(out)
        })
        .await
    }
}

impl EmbeddedJobQueue {
    /// Runs `f` on the job `receipt` names when the receipt is its latest; a stale
    /// receipt (the job was received again since) or a job that is gone changes nothing.
    async fn with_current<F>(&self, receipt: &str, f: F) -> Result<()>
    where
        F: FnOnce(&mut Table<'_, u64, &'static [u8]>, u64, QueuedJob) -> Result<()>
            + Send
            + 'static,
    {
        let (key, count) = parse_receipt(receipt)?;
        let names = self.names.clone();
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(RegistryError::storage)?;
            {
                let mut jobs = txn
                    .open_table(names.jobs())
                    .map_err(RegistryError::storage)?;
                let current = match jobs.get(key).map_err(RegistryError::storage)? {
                    Some(v) => Some(
                        serde_json::from_slice::<QueuedJob>(v.value())
                            .map_err(RegistryError::storage)?,
                    ),
                    None => None,
                };
                if let Some(q) = current
                    && q.receive_count == count
                {
                    f(&mut jobs, key, q)?;
                }
            }
            txn.commit().map_err(RegistryError::storage)
        })
        .await
    }
}
