use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::overlay::Overlay;
use super::{KvEngine, KvRead, KvWrite};
use crate::error::StoreError;

/// Mutations waiting for the writer; senders wait when it is full (backpressure).
pub const WRITE_QUEUE_DEPTH: usize = 1024;
/// Most mutations committed in one transaction.
pub const MAX_BATCH_JOBS: usize = 512;

type Completion = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;
/// Runs a mutation; returns whether it succeeded and how to report the commit.
type Job = Box<dyn FnOnce(&mut dyn KvWrite) -> (bool, Completion) + Send>;

/// The metadata store as the layers above see it: snapshot reads from any thread, and
/// mutations that are grouped into durable transactions by one writer thread (on a
/// current-thread runtime, committed inline instead; see [`crate::blocking`]).
///
/// A mutation is a closure run inside the batch transaction against its own write set:
/// its writes reach the transaction only if it returns `Ok`, so a failed mutation leaves
/// nothing behind while the other mutations of its batch still commit.
pub struct Meta {
    engine: Arc<dyn KvEngine>,
    queue: mpsc::Sender<Job>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Meta {
    pub fn new(engine: Arc<dyn KvEngine>) -> Self {
        let (queue, rx) = mpsc::channel::<Job>(WRITE_QUEUE_DEPTH);
        let e = engine.clone();
        let writer = std::thread::Builder::new()
            .name("bucketdb-meta-writer".into())
            .spawn(move || run_writer(e, rx))
            .ok();
        Meta {
            engine,
            queue,
            writer: Mutex::new(writer),
        }
    }

    /// A consistent snapshot for reading.
    pub fn read(&self) -> Result<Box<dyn KvRead + '_>, StoreError> {
        self.engine.read()
    }

    /// Run `mutate` in the next group commit and return its result once durable.
    pub async fn write<T, E, F>(&self, mutate: F) -> Result<T, E>
    where
        F: FnOnce(&mut dyn KvWrite) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (job, rx) = make_job(mutate);
        if crate::blocking::runs_inline() {
            // One thread decides every interleaving there (see `blocking`): commit on
            // it rather than on the writer thread, one mutation per transaction.
            commit_batch(self.engine.as_ref(), vec![job]);
        } else {
            self.queue
                .send(job)
                .await
                .map_err(|_| E::from(StoreError::WriterGone))?;
        }
        rx.await
            .unwrap_or_else(|_| Err(E::from(StoreError::Commit("batch aborted".into()))))
    }

    /// [`Meta::write`] for callers outside an async runtime.
    pub fn write_blocking<T, E, F>(&self, mutate: F) -> Result<T, E>
    where
        F: FnOnce(&mut dyn KvWrite) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (job, rx) = make_job(mutate);
        self.queue
            .blocking_send(job)
            .map_err(|_| E::from(StoreError::WriterGone))?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(E::from(StoreError::Commit("batch aborted".into()))))
    }
}

fn make_job<T, E, F>(mutate: F) -> (Job, oneshot::Receiver<Result<T, E>>)
where
    F: FnOnce(&mut dyn KvWrite) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |kv| {
        let result = mutate(kv);
        let ok = result.is_ok();
        let done: Completion = Box::new(move |commit: Result<(), Arc<str>>| {
            let out = match (commit, result) {
                (_, Err(e)) => Err(e),
                (Ok(()), Ok(v)) => Ok(v),
                (Err(msg), Ok(_)) => Err(E::from(StoreError::Commit(msg.to_string()))),
            };
            let _ = tx.send(out);
        });
        (ok, done)
    });
    (job, rx)
}

fn run_writer(engine: Arc<dyn KvEngine>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_JOBS {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        commit_batch(engine.as_ref(), jobs);
    }
}

/// Run `jobs` in one transaction, commit it and report the outcome to each.
fn commit_batch(engine: &dyn KvEngine, jobs: Vec<Job>) {
    let mut pending = Some(jobs);
    let mut completions: Vec<Completion> = Vec::new();
    let result = engine.write(&mut |kv| {
        let Some(jobs) = pending.take() else {
            return Ok(());
        };
        for job in jobs {
            let mut overlay = Overlay::new(&mut *kv);
            match catch_unwind(AssertUnwindSafe(|| job(&mut overlay))) {
                Ok((ok, done)) => {
                    if ok {
                        overlay.apply()?;
                    }
                    completions.push(done);
                }
                Err(_) => {
                    return Err(StoreError::Commit("a metadata mutation panicked".into()));
                }
            }
        }
        Ok(())
    });
    let status: Result<(), Arc<str>> = result.map_err(|e| Arc::from(e.to_string()));
    if let Err(e) = &status {
        tracing::error!(error = %e, "metadata batch failed");
    }
    for done in completions {
        done(status.clone());
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        // Close the queue so the writer drains what is left and exits, then wait for it,
        // so that everything acknowledged is committed before the engine closes.
        let (closed, _) = mpsc::channel::<Job>(1);
        let _ = std::mem::replace(&mut self.queue, closed);
        if let Ok(mut w) = self.writer.lock()
            && let Some(handle) = w.take()
        {
            let _ = handle.join();
        }
    }
}
