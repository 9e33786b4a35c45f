//! [`GroupSync`]: many writers of one record file share one `fdatasync` (group commit)
//! without a thread of their own.
//!
//! A writer appends (with sync-on-append off), notes the file length after its append
//! (`upto`), and awaits [`GroupSync::durable`]`(upto, len)`. The first writer to arrive
//! runs one `fdatasync` (on tokio's blocking pool) covering everything written before it
//! started; writers arriving meanwhile wait for it and return at once if it covered them,
//! or run the next one. One sync in flight at a time, so under load each sync covers every
//! append made while the previous one ran.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, ReversalError};
use crate::record::SyncHandle;

/// Group commit over a [`SyncHandle`]; see the module docs.
#[derive(Debug)]
pub struct GroupSync {
    handle: SyncHandle,
    synced: AtomicU64,
    gate: tokio::sync::Mutex<()>,
    syncs: AtomicU64,
}

impl GroupSync {
    /// Over `handle`; `synced` is the length already durable (e.g. the file length at
    /// open, after the recovery sync).
    pub fn new(handle: SyncHandle, synced: u64) -> GroupSync {
        GroupSync {
            handle,
            synced: AtomicU64::new(synced),
            gate: tokio::sync::Mutex::new(()),
            syncs: AtomicU64::new(0),
        }
    }

    /// Returns once the file is durable up to `upto` bytes. `len` reads the file's
    /// current length (called just before a sync starts: the sync covers that much).
    ///
    /// # Errors
    /// The `fdatasync` failed (nothing after the last good sync may be durable: the
    /// caller must not acknowledge what it wrote).
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
        tokio::task::spawn_blocking(move || h.sync())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFile;
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_writers_share_syncs_and_each_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = RecordFile::open(dir.path().join("g.rec"), |_, _| Ok(())).unwrap();
        file.set_sync_on_append(false);
        let gs = Arc::new(GroupSync::new(file.sync_handle().unwrap(), file.len()));
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
}
