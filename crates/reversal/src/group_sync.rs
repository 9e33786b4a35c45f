//! [`GroupSync`]: many writers of one store share one flush (group commit) without a
//! thread of their own: one `fdatasync` of a record file, or one database transaction.
//!
//! A writer appends (with sync-on-append off), notes the store's write position after its
//! append (`upto`: bytes of a file, decisions of a database queue), and awaits
//! [`GroupSync::durable`]`(upto, len)`. The first writer to arrive runs one flush
//! ([`Durability::make_durable`], on tokio's blocking pool) covering everything written
//! before it started; writers arriving meanwhile wait for it and return at once if it
//! covered them, or run the next one. One flush in flight at a time, so under load each
//! flush covers every append made while the previous one ran.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Result, ReversalError};
use crate::host::ReversalHandler;
use crate::record::SyncHandle;
use crate::store::IdempotencyStore;

/// What makes a store's deferred writes durable: everything written before the call is
/// durable when it returns Ok ([`crate::IdempotencyStore::defer_sync`]).
pub trait Durability: Send + Sync + std::fmt::Debug {
    /// Makes every write made before this call durable.
    ///
    /// # Errors
    /// The flush failed: nothing written since the last good flush is known durable.
    fn make_durable(&self) -> Result<()>;
}

impl Durability for SyncHandle {
    fn make_durable(&self) -> Result<()> {
        self.sync()
    }
}

/// Group commit over a store's [`Durability`]; see the module docs.
#[derive(Debug)]
pub struct GroupSync {
    handle: Arc<dyn Durability>,
    synced: AtomicU64,
    gate: tokio::sync::Mutex<()>,
    syncs: AtomicU64,
}

impl GroupSync {
    /// Over `handle`; `synced` is the position already durable (e.g. the file length at
    /// open, after the recovery sync).
    pub fn new(handle: Arc<dyn Durability>, synced: u64) -> GroupSync {
        GroupSync {
            handle,
            synced: AtomicU64::new(synced),
            gate: tokio::sync::Mutex::new(()),
            syncs: AtomicU64::new(0),
        }
    }

    /// Returns once the store is durable up to `upto`. `len` reads the store's current
    /// write position (called just before a flush starts: the flush covers that much).
    ///
    /// # Errors
    /// The flush failed (nothing after the last good flush may be durable: the caller
    /// must not acknowledge what it wrote).
    pub async fn durable(&self, upto: u64, len: impl FnOnce() -> u64) -> Result<()> {
        if self.synced.load(Ordering::Acquire) >= upto {
            return Ok(());
        }
        let _gate = self.gate.lock().await;
        if self.synced.load(Ordering::Acquire) >= upto {
            return Ok(());
        }
        let target = len().max(upto);
        let h = self.handle.clone();
        tokio::task::spawn_blocking(move || h.make_durable())
            .await
            .map_err(|_| ReversalError::DriverStopped)??;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Syncs run so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

/// Settles the decisions `handler` made at store positions `since..upto` (read from
/// [`IdempotencyStore::written`] before and after them, under the handler's lock): waits
/// until they are durable through `sync` (when the store's writes are deferred to a
/// group), then asks the store whether it kept them ([`IdempotencyStore::kept`]). The
/// store is asked even when the flush failed, so that it forgets what it reports.
///
/// # Errors
/// The flush failed, or the store did not keep a decision (for instance
/// [`ReversalError::DecidedElsewhere`]: decide again on what is stored now). The flush's
/// error comes first.
pub async fn settle<S: IdempotencyStore>(
    sync: Option<&GroupSync>,
    handler: &std::sync::Mutex<ReversalHandler<S>>,
    since: u64,
    upto: u64,
) -> Result<()> {
    let lock = || {
        handler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let durable = match sync {
        Some(gs) => gs.durable(upto, || lock().store().written()).await,
        None => Ok(()),
    };
    let kept = lock().store_mut().kept(since, upto);
    durable.and(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFile;

    #[tokio::test]
    async fn concurrent_writers_share_syncs_and_each_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = RecordFile::open(dir.path().join("g.rec"), |_, _| Ok(())).unwrap();
        file.set_sync_on_append(false);
        let gs = Arc::new(GroupSync::new(
            Arc::new(file.sync_handle().unwrap()),
            file.len(),
        ));
        let file = Arc::new(std::sync::Mutex::new(file));
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let gs = gs.clone();
            let file = file.clone();
            tasks.push(tokio::spawn(async move {
                let upto = {
                    let mut f = file.lock().unwrap();
                    f.append_with(|out| crate::record::frame(&i.to_be_bytes(), out))
                        .unwrap();
                    f.len()
                };
                let f2 = file.clone();
                gs.durable(upto, move || f2.lock().unwrap().len())
                    .await
                    .unwrap();
                upto
            }));
        }
        for t in tasks {
            let upto = t.await.unwrap();
            assert!(gs.synced.load(Ordering::Acquire) >= upto);
        }
        assert!(gs.syncs() >= 1 && gs.syncs() <= 64);
    }
    /// A flush that counts its calls, fails while `fail` is set, and first waits for
    /// `release` when `hold` is set.
    #[derive(Debug, Default)]
    struct Gated {
        calls: AtomicU64,
        fail: std::sync::atomic::AtomicBool,
        hold: std::sync::atomic::AtomicBool,
        release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    impl Durability for Gated {
        fn make_durable(&self) -> Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hold.swap(false, Ordering::SeqCst) {
                if let Some(rx) = self.release.lock().unwrap().take() {
                    let _ = rx.recv();
                }
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(ReversalError::bad("flush failed"));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_flush_releases_every_writer_it_covers() {
        let g = Arc::new(Gated::default());
        let gs = Arc::new(GroupSync::new(g.clone(), 0));
        // 64 appends made before any flush starts: the first flush covers them all.
        let tasks: Vec<_> = (1..=64u64)
            .map(|upto| {
                let gs = gs.clone();
                tokio::spawn(async move { gs.durable(upto, || 64).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(g.calls.load(Ordering::SeqCst), 1);
        assert_eq!(gs.syncs(), 1);
    }

    #[tokio::test]
    async fn a_writer_dropped_while_it_runs_the_flush_does_not_stall_the_others() {
        let (tx, rx) = std::sync::mpsc::channel();
        let g = Arc::new(Gated::default());
        g.hold.store(true, Ordering::SeqCst);
        *g.release.lock().unwrap() = Some(rx);
        let gs = Arc::new(GroupSync::new(g.clone(), 0));
        // The leader: its flush is held.
        let lead = {
            let gs = gs.clone();
            tokio::spawn(async move { gs.durable(1, || 1).await })
        };
        while g.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // A writer after it waits for that flush.
        let follower = {
            let gs = gs.clone();
            tokio::spawn(async move { gs.durable(2, || 2).await })
        };
        tokio::task::yield_now().await;
        // The leader's request is cancelled: the follower runs a flush of its own.
        lead.abort();
        assert!(lead.await.unwrap_err().is_cancelled());
        tokio::time::timeout(std::time::Duration::from_secs(5), follower)
            .await
            .expect("the follower is not left waiting")
            .unwrap()
            .unwrap();
        assert!(gs.synced.load(Ordering::Acquire) >= 2);
        let _ = tx.send(());
    }

    #[tokio::test]
    async fn a_failed_flush_is_its_writers_error_and_the_next_writer_flushes_again() {
        let g = Arc::new(Gated::default());
        g.fail.store(true, Ordering::SeqCst);
        let gs = GroupSync::new(g.clone(), 0);
        assert!(gs.durable(1, || 1).await.is_err());
        assert_eq!(
            gs.synced.load(Ordering::Acquire),
            0,
            "nothing counted durable"
        );
        g.fail.store(false, Ordering::SeqCst);
        gs.durable(1, || 1).await.unwrap();
        assert_eq!(g.calls.load(Ordering::SeqCst), 2);
        // Covered already: no flush.
        gs.durable(1, || 1).await.unwrap();
        assert_eq!(g.calls.load(Ordering::SeqCst), 2);
    }
}
