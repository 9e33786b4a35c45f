//! An append-only record log with group commit.
//!
//! Records are JSON lines. [`Wal::append`] hands the line to one writer thread, which
//! takes everything queued, writes it with one `write` and one `fdatasync`, and only then
//! acknowledges every record of the batch: many concurrent appenders share one disk sync
//! (3 ms here) instead of paying one each. On open, the file is read back in order; a torn
//! last line (a crash in the middle of a write) is cut off, any other bad line is an error.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{Result, SimError};

/// Most records written per sync.
const MAX_BATCH: usize = 8192;

/// When the writer makes a batch durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// `fdatasync` after each batch: survives a power loss.
    Data,
    /// `write` only: survives the death of the process (page cache), not of the machine.
    Os,
}

struct Cmd {
    line: Vec<u8>,
    ack: Option<oneshot::Sender<std::result::Result<(), std::io::ErrorKind>>>,
}

/// A handle on a record log; cheap to clone. The writer thread ends when the last handle
/// is dropped. With [`Sync::Os`] there is no thread: each append is one `write` in the
/// caller.
#[derive(Clone)]
pub struct Wal {
    tx: Option<mpsc::Sender<Cmd>>,
    inline: Option<std::sync::Arc<std::sync::Mutex<File>>>,
    path: PathBuf,
}

/// Resolves when a record handed to [`Wal::append_then`] is durable.
#[derive(Debug)]
pub struct Durable {
    rx: Option<oneshot::Receiver<std::result::Result<(), std::io::ErrorKind>>>,
    path: PathBuf,
}

impl Durable {
    /// Waits for the sync.
    pub async fn wait(self) -> Result<()> {
        let Some(rx) = self.rx else { return Ok(()) };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(kind)) => Err(SimError::io(self.path.display(), kind.into())),
            Err(_) => Err(SimError::Journal {
                path: self.path.display().to_string(),
                what: "writer stopped".into(),
            }),
        }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("path", &self.path).finish()
    }
}

impl Wal {
    /// Opens (or creates) the log at `path` and returns it with the records it holds.
    pub fn open<R: DeserializeOwned>(path: &Path, sync: Sync) -> Result<(Wal, Vec<R>)> {
        let bad = |what: String| SimError::Journal {
            path: path.display().to_string(),
            what,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| SimError::io(path.display(), e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| SimError::io(path.display(), e))?;
        let mut records = Vec::new();
        let mut pos = 0usize;
        let mut good_end = 0usize;
        while pos < bytes.len() {
            let end = bytes[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| pos + i);
            let line = &bytes[pos..end.unwrap_or(bytes.len())];
            match (serde_json::from_slice::<R>(line), end) {
                (Ok(r), Some(e)) => {
                    records.push(r);
                    pos = e + 1;
                    good_end = pos;
                }
                // The last line is torn (no newline, or unparsable at the very end).
                (_, None) => break,
                (Err(_), Some(e)) if e + 1 == bytes.len() => break,
                (Err(err), Some(_)) => {
                    return Err(bad(format!("bad record at byte {pos}: {err}")));
                }
            }
        }
        if good_end < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - good_end, "torn record at the end of the log cut off");
            file.set_len(good_end as u64)
                .map_err(|e| SimError::io(path.display(), e))?;
        }
        if sync == Sync::Os {
            return Ok((
                Wal {
                    tx: None,
                    inline: Some(std::sync::Arc::new(std::sync::Mutex::new(file))),
                    path: path.to_path_buf(),
                },
                records,
            ));
        }
        let (tx, rx) = mpsc::channel::<Cmd>();
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer(file, rx, sync, &thread_path))
            .map_err(|e| SimError::io("wal writer thread", e))?;
        Ok((
            Wal {
                tx: Some(tx),
                inline: None,
                path: path.to_path_buf(),
            },
            records,
        ))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn encode<R: Serialize>(&self, rec: &R) -> Result<Vec<u8>> {
        let mut line = serde_json::to_vec(rec).map_err(|e| SimError::Journal {
            path: self.path.display().to_string(),
            what: e.to_string(),
        })?;
        line.push(b'\n');
        Ok(line)
    }

    fn closed(&self) -> SimError {
        SimError::Journal {
            path: self.path.display().to_string(),
            what: "writer stopped".into(),
        }
    }

    /// Hands `rec` to the log now (records keep the order of these calls) and returns what
    /// resolves once it is durable: call it under the lock that orders the records, wait
    /// outside.
    pub fn append_then<R: Serialize>(&self, rec: &R) -> Result<Durable> {
        let line = self.encode(rec)?;
        self.submit(line)
    }

    fn submit(&self, line: Vec<u8>) -> Result<Durable> {
        if let Some(f) = &self.inline {
            if !line.is_empty() {
                let mut f = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                f.write_all(&line)
                    .map_err(|e| SimError::io(self.path.display(), e))?;
            }
            return Ok(Durable {
                rx: None,
                path: self.path.clone(),
            });
        }
        let tx = self.tx.as_ref().ok_or_else(|| self.closed())?;
        let (ack, done) = oneshot::channel();
        tx.send(Cmd {
            line,
            ack: Some(ack),
        })
        .map_err(|_| self.closed())?;
        Ok(Durable {
            rx: Some(done),
            path: self.path.clone(),
        })
    }

    /// Appends `rec` and returns once it is durable (see [`Sync`]).
    pub async fn append<R: Serialize>(&self, rec: &R) -> Result<()> {
        self.append_then(rec)?.wait().await
    }

    /// Returns once everything appended before the call is durable.
    pub async fn barrier(&self) -> Result<()> {
        self.submit(Vec::new())?.wait().await
    }

    /// Appends `rec` without waiting (it is ordered before any later append).
    pub fn append_nowait<R: Serialize>(&self, rec: &R) -> Result<()> {
        let line = self.encode(rec)?;
        if self.inline.is_some() {
            self.submit(line)?;
            return Ok(());
        }
        let tx = self.tx.as_ref().ok_or_else(|| self.closed())?;
        tx.send(Cmd { line, ack: None }).map_err(|_| self.closed())
    }
}

fn writer(mut file: File, rx: mpsc::Receiver<Cmd>, sync: Sync, path: &Path) {
    let mut batch: Vec<Cmd> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        buf.clear();
        for c in &batch {
            buf.extend_from_slice(&c.line);
        }
        let res = file.write_all(&buf).and_then(|()| match sync {
            Sync::Data => file.sync_data(),
            Sync::Os => Ok(()),
        });
        if let Err(e) = &res {
            tracing::error!(path = %path.display(), error = %e, "journal write failed");
        }
        for c in batch.drain(..) {
            if let Some(ack) = c.ack {
                let _ = ack.send(res.as_ref().map(|_| ()).map_err(|e| e.kind()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("log");
        {
            let (w, recs) = Wal::open::<u32>(&p, Sync::Data).expect("open");
            assert!(recs.is_empty());
            for i in 0..100u32 {
                w.append(&i).await.expect("append");
            }
        }
        let mut f = OpenOptions::new().append(true).open(&p).expect("f");
        f.write_all(b"12").expect("torn");
        drop(f);
        let (_w, recs) = Wal::open::<u32>(&p, Sync::Os).expect("reopen");
        assert_eq!(recs, (0..100).collect::<Vec<_>>());
        assert_eq!(std::fs::read(&p).expect("read").last(), Some(&b'\n'));
    }
}
