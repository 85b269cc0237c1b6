//! The writer thread: the one connection that changes the database.
//!
//! Async callers send jobs (closures over a `&Connection`) through a bounded channel and await
//! a one-shot reply. The thread takes the first queued job plus every job already waiting
//! behind it, up to [`MAX_BATCH`], and runs them in one `BEGIN IMMEDIATE` transaction.
//!
//! When a transaction takes several jobs, each runs inside its own savepoint. A job that fails
//! (a lost lease, a duplicate id) is rolled back alone, and the other jobs of the batch still
//! commit; a lone job that fails rolls back the whole transaction. Replies go out after
//! `COMMIT` returns, so every successful write is committed when its caller resumes.
//!
//! Group commit lets many concurrent writers share one connection: one commit, and under
//! `synchronous = FULL` one `fsync`, serves the whole batch.
//!
//! The thread ends when every sender is gone, that is when the store is dropped or closed.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::thread::JoinHandle;

use aegis_core::storage::{RequeueReport, StorageError, StorageErrorKind};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::config::SqliteConfig;
use crate::error::{StoreOpenError, backend};
use crate::runs::{self, Requeue};
use crate::schema;

/// Jobs the channel buffers before `write` waits for room.
const QUEUE_CAPACITY: usize = 1024;

/// Jobs one transaction takes at most, so one commit's replies are not held back for long.
const MAX_BATCH: usize = 256;

/// A write waiting for the writer thread.
trait Job: Send {
    /// Runs the job's statements and returns whether they succeeded. A failed job's
    /// statements are rolled back by the caller.
    fn execute(&mut self, conn: &Connection) -> bool;

    /// Sends the job's result, or `commit_failure` when the batch did not commit.
    fn respond(self: Box<Self>, commit_failure: Option<&str>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, StorageError>>,
    reply: oneshot::Sender<Result<T, StorageError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StorageError> + Send,
{
    fn execute(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };

        // A panicking job is a bug, but it must not end the thread, or every later write of
        // the process would fail. Its savepoint is rolled back like that of a failed job.
        let result = match panic::catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(result) => result,
            Err(_) => {
                tracing::error!("a sqlite write panicked; its changes were rolled back");
                Err(StorageError::new(StorageErrorKind::Backend, "the sqlite write panicked and was rolled back"))
            }
        };
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
    }

    fn respond(self: Box<Self>, commit_failure: Option<&str>) {
        let result = match (commit_failure, self.result) {
            (Some(failure), _) => Err(StorageError::new(StorageErrorKind::Backend, failure)),
            (None, Some(result)) => result,
            (None, None) => Err(StorageError::new(StorageErrorKind::Backend, "the write was never executed")),
        };
        // The caller may have stopped waiting (its future was dropped). The write is committed
        // or rolled back all the same, and nobody is left to tell.
        let _ = self.reply.send(result);
    }
}

/// The async side of the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread, which opens the database, migrates it and (if configured)
    /// re-queues the runs an earlier process left `active`. Returns once that is done.
    pub(crate) async fn start(path: &Path, config: &SqliteConfig) -> Result<(Writer, RequeueReport), StoreOpenError> {
        let (jobs, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (ready, opened) = oneshot::channel();
        let thread_path = path.to_owned();
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("aegis-sqlite-writer".to_owned())
            .spawn(move || run(&thread_path, &thread_config, receiver, ready))
            .map_err(StoreOpenError::WriterThread)?;

        let report = match opened.await {
            Ok(result) => result?,
            Err(_) => return Err(StoreOpenError::WriterStopped { path: path.to_owned() }),
        };
        Ok((Writer { jobs, thread }, report))
    }

    /// Runs `work` in the writer's transaction and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending { work: Some(work), result: None, reply });
        if self.jobs.send(job).await.is_err() {
            return Err(stopped());
        }
        result.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Returns whether the writer thread still takes jobs; it stops only by panicking or
    /// when the store closes.
    pub(crate) fn is_running(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// Stops taking jobs and waits until the thread has committed the queued ones and closed
    /// its connection.
    pub(crate) async fn close(self) {
        let Writer { jobs, thread } = self;
        drop(jobs);

        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

fn stopped() -> StorageError {
    StorageError::new(
        StorageErrorKind::Unavailable,
        "the sqlite writer thread has stopped, so writes fail until the store is reopened",
    )
}

type Ready = oneshot::Sender<Result<RequeueReport, StoreOpenError>>;

fn run(path: &Path, config: &SqliteConfig, mut jobs: mpsc::Receiver<Box<dyn Job>>, ready: Ready) {
    let mut conn = match prepare(path, config) {
        Ok((conn, report)) => {
            // The opener may have been cancelled. The thread then ends when `jobs` closes.
            let _ = ready.send(Ok(report));
            conn
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };

    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            let Ok(job) = jobs.try_recv() else { break };
            batch.push(job);
        }
        commit_batch(&mut conn, &mut batch);
    }
    tracing::debug!(path = %path.display(), "sqlite writer thread stopped");
}

/// Opens the writer's connection, migrates the schema and re-queues abandoned runs.
fn prepare(path: &Path, config: &SqliteConfig) -> Result<(Connection, RequeueReport), StoreOpenError> {
    let mut conn = schema::open_writer(path, config)?;

    let found = schema::migrate(&mut conn, path)?;
    tracing::info!(
        path = %path.display(),
        schema_version = schema::SCHEMA_VERSION,
        previous_version = found,
        synchronous = config.synchronous.pragma_value(),
        "opened sqlite store"
    );

    if !config.requeue_on_open {
        return Ok((conn, RequeueReport::default()));
    }
    let report = requeue_on_open(&mut conn, config.max_attempts)
        .map_err(|source| StoreOpenError::Requeue { path: path.to_owned(), source })?;
    for run_id in &report.requeued {
        tracing::warn!(path = %path.display(), %run_id, "re-queued run left active by an earlier process");
    }
    for run_id in &report.exhausted {
        tracing::error!(path = %path.display(), %run_id, "ended run left active by an earlier process as error: it used every attempt");
    }
    Ok((conn, report))
}

fn requeue_on_open(conn: &mut Connection, max_attempts: u32) -> Result<RequeueReport, StorageError> {
    let begin_failed = |error| backend("starting the re-queue transaction", error);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(begin_failed)?;
    let report = runs::requeue(&tx, Requeue::AllActive, max_attempts)?;
    tx.commit().map_err(|error| backend("committing the re-queue", error))?;
    Ok(report)
}

/// Runs `batch` in one transaction and sends every job its reply, leaving `batch` empty.
fn commit_batch(conn: &mut Connection, batch: &mut Vec<Box<dyn Job>>) {
    let failure = match run_batch(conn, batch) {
        Ok(()) => None,
        Err(error) => {
            tracing::error!(%error, writes = batch.len(), "committing a batch of sqlite writes failed");
            Some(format!("committing the write failed: {error}"))
        }
    };
    for job in batch.drain(..) {
        job.respond(failure.as_deref());
    }
}

fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let [job] = batch {
        // A lone job needs no savepoint: rolling back the transaction undoes its statements,
        // and it saves the two extra statements a savepoint costs on every quiet commit.
        return match job.execute(&tx) {
            true => tx.commit(),
            false => tx.rollback(),
        };
    }
    for job in batch.iter_mut() {
        let savepoint = tx.savepoint()?;
        if job.execute(&savepoint) {
            savepoint.commit()?;
        } else {
            // `finish` rolls back to the savepoint and releases it, reporting errors that a
            // plain drop would swallow: committing after a silent failure here could keep
            // part of a failed job.
            savepoint.finish()?;
        }
    }
    tx.commit()
}
