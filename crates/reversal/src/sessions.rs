//! [`FileSessionStore`]: the [`SessionStore`] of the data directory — sealed terminal
//! session snapshots and upstream link snapshots in the one record format
//! ([`crate::record`]).
//!
//! One record per saved snapshot (a sign-on, a sign-off, an invalidation, a key change),
//! appended with one write and one fsync per [`SessionStore::save`] call; on open the
//! latest record per terminal and per link wins. The file is compacted (rewritten
//! atomically with the latest snapshot of each) when it has grown to more than four
//! times the live size and past [`COMPACT_MIN`]. The store never sees a key in clear:
//! snapshots are sealed by the caller ([`isoswitch_session::snapshot`]).
//!
//! The glue between the sans-IO sessions and any [`SessionStore`]: [`restore_host`] and
//! [`save_host_changes`] for a host's terminal sessions, [`restore_link`] and
//! [`save_link_changes`] for a switch's upstream link.

use crate::durable::{check_part_name, SessionStore, UpstreamSave};
use crate::error::{Result, ReversalError};
use crate::record::{self, Reader, RecordFile, Torn, Writer};
use isoswitch_session::counters::Counters;
use isoswitch_session::snapshot::MAX_SEALED_LEN;
use isoswitch_session::{
    HostSession, Kek, KeyStore, SealedSnapshot, SessionError, TerminalId, TerminalSession,
};
use std::collections::HashMap;
use std::path::Path;

/// The file is not compacted below this size.
pub const COMPACT_MIN: u64 = 1 << 20;

const T_TERMINAL: u8 = 1;
const T_UPSTREAM: u8 = 2;

/// One record of a session store file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRecord {
    /// A terminal's latest snapshot (as the host sees it).
    Terminal(SealedSnapshot),
    /// An upstream link's latest snapshot (as the switch's link sees it).
    Upstream {
        /// The link's name.
        link: String,
        /// Its snapshot.
        snapshot: SealedSnapshot,
    },
}

fn write_sealed(w: &mut Writer<'_>, s: &SealedSnapshot) {
    w.str(s.terminal.terminal())
        .str(s.terminal.merchant())
        .u64(s.generation)
        .bytes(&s.bytes);
}

fn read_sealed(r: &mut Reader<'_>) -> Result<SealedSnapshot> {
    let tid = r.str()?;
    let mid = r.str()?;
    let terminal =
        TerminalId::new(tid, mid).map_err(|_| ReversalError::bad("bad terminal identity"))?;
    let generation = r.u64()?;
    let bytes = r.bytes()?;
    if bytes.len() > MAX_SEALED_LEN {
        return Err(ReversalError::bad("sealed snapshot too long"));
    }
    Ok(SealedSnapshot {
        terminal,
        generation,
        bytes: bytes.to_vec(),
    })
}

impl SessionRecord {
    /// Appends the payload encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        match self {
            SessionRecord::Terminal(s) => {
                w.u8(T_TERMINAL);
                write_sealed(&mut w, s);
            }
            SessionRecord::Upstream { link, snapshot } => {
                w.u8(T_UPSTREAM).str(link);
                write_sealed(&mut w, snapshot);
            }
        }
    }

    /// Parses a payload written by [`SessionRecord::encode`] (never panics, allocates
    /// nothing beyond the record).
    ///
    /// # Errors
    /// [`ReversalError::BadRecord`].
    pub fn decode(payload: &[u8]) -> Result<SessionRecord> {
        let mut r = Reader::new(payload);
        let rec = match r.u8()? {
            T_TERMINAL => SessionRecord::Terminal(read_sealed(&mut r)?),
            T_UPSTREAM => {
                let link = r.str()?;
                check_part_name(link).map_err(|_| ReversalError::bad("bad link name"))?;
                let link = link.to_string();
                SessionRecord::Upstream {
                    link,
                    snapshot: read_sealed(&mut r)?,
                }
            }
            _ => return Err(ReversalError::bad("unknown session record type")),
        };
        r.finish()?;
        Ok(rec)
    }
}

/// The durable session store; see the module docs.
#[derive(Debug)]
pub struct FileSessionStore {
    file: RecordFile,
    terminals: HashMap<TerminalId, SealedSnapshot>,
    upstream: HashMap<String, SealedSnapshot>,
    torn: Option<Torn>,
    scratch: Vec<u8>,
}

impl FileSessionStore {
    /// Opens (or creates) the store at `path` and reads it.
    ///
    /// # Errors
    /// I/O errors, [`ReversalError::BadMagic`], [`ReversalError::Corrupt`].
    pub fn open(path: impl AsRef<Path>) -> Result<FileSessionStore> {
        let mut terminals = HashMap::new();
        let mut upstream = HashMap::new();
        let (file, torn) = RecordFile::open(path, |_, p| {
            match SessionRecord::decode(p)? {
                SessionRecord::Terminal(s) => {
                    terminals.insert(s.terminal, s);
                }
                SessionRecord::Upstream { link, snapshot } => {
                    upstream.insert(link, snapshot);
                }
            }
            Ok(())
        })?;
        if let Some(t) = torn {
            tracing::warn!(path = %file.path().display(), offset = t.offset, reason = ?t.reason, "sessions: torn tail cut");
        }
        Ok(FileSessionStore {
            file,
            terminals,
            upstream,
            torn,
            scratch: Vec::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The torn tail cut on open, if any.
    pub fn torn_tail(&self) -> Option<Torn> {
        self.torn
    }

    /// Bytes in the file.
    pub fn size(&self) -> u64 {
        self.file.len()
    }

    fn live(&self) -> impl Iterator<Item = SessionRecord> + '_ {
        self.terminals
            .values()
            .cloned()
            .map(SessionRecord::Terminal)
            .chain(
                self.upstream
                    .iter()
                    .map(|(link, s)| SessionRecord::Upstream {
                        link: link.clone(),
                        snapshot: s.clone(),
                    }),
            )
    }

    /// Rewrites the file with the latest snapshot of each terminal and link (atomic).
    ///
    /// # Errors
    /// I/O errors (the old file is then still in place).
    pub fn compact(&mut self) -> Result<()> {
        let mut framed = Vec::new();
        let mut p = Vec::with_capacity(256);
        for rec in self.live() {
            p.clear();
            rec.encode(&mut p);
            record::frame(&p, &mut framed)?;
        }
        self.file.rewrite(&framed)
    }

    fn append(&mut self, records: &[SessionRecord]) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.file.append_with(|out| {
            for rec in records {
                scratch.clear();
                rec.encode(&mut scratch);
                record::frame(&scratch, out)?;
            }
            Ok(())
        });
        self.scratch = scratch;
        r
    }

    fn maybe_compact(&mut self) -> Result<()> {
        let live: u64 = self
            .terminals
            .values()
            .chain(self.upstream.values())
            .map(|s| 64 + s.bytes.len() as u64)
            .sum();
        if self.file.len() > COMPACT_MIN && self.file.len() > live.saturating_mul(4) {
            self.compact()?;
        }
        Ok(())
    }
}

impl SessionStore for FileSessionStore {
    fn terminals(&self) -> Result<Vec<SealedSnapshot>> {
        Ok(self.terminals.values().cloned().collect())
    }

    fn terminal(&self, id: &TerminalId) -> Result<Option<SealedSnapshot>> {
        Ok(self.terminals.get(id).cloned())
    }

    fn save(&mut self, snapshots: &[SealedSnapshot]) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        if let Some(s) = snapshots.iter().find(|s| s.bytes.len() > MAX_SEALED_LEN) {
            return Err(ReversalError::RecordTooLarge {
                len: s.bytes.len(),
                max: MAX_SEALED_LEN,
            });
        }
        // Those that replace what is held (in order: a later one of the same terminal
        // in this group is checked against the earlier one).
        let mut newer: HashMap<TerminalId, &SealedSnapshot> = HashMap::new();
        let mut recs = Vec::with_capacity(snapshots.len());
        for s in snapshots {
            let held = newer
                .get(&s.terminal)
                .copied()
                .or_else(|| self.terminals.get(&s.terminal));
            if crate::durable::supersedes(held, s) {
                newer.insert(s.terminal, s);
                recs.push(SessionRecord::Terminal(s.clone()));
            }
        }
        if recs.is_empty() {
            return Ok(());
        }
        self.append(&recs)?;
        for (id, s) in newer {
            self.terminals.insert(id, s.clone());
        }
        self.maybe_compact()
    }

    fn upstream(&self, link: &str) -> Result<Option<SealedSnapshot>> {
        Ok(self.upstream.get(link).cloned())
    }

    fn save_upstream(
        &mut self,
        link: &str,
        snapshot: &SealedSnapshot,
        expected: Option<u64>,
    ) -> Result<UpstreamSave> {
        check_part_name(link)?;
        let current = self.upstream.get(link).map(|s| s.generation);
        if current != expected {
            return Ok(UpstreamSave::Stale { current });
        }
        if snapshot.bytes.len() > MAX_SEALED_LEN {
            return Err(ReversalError::RecordTooLarge {
                len: snapshot.bytes.len(),
                max: MAX_SEALED_LEN,
            });
        }
        self.append(&[SessionRecord::Upstream {
            link: link.to_string(),
            snapshot: snapshot.clone(),
        }])?;
        self.upstream.insert(link.to_string(), snapshot.clone());
        self.maybe_compact()?;
        Ok(UpstreamSave::Saved)
    }
}

/// What [`restore_host`] did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Snapshots put back.
    pub restored: usize,
    /// Of those, terminals signed on (with working keys).
    pub signed_on: usize,
    /// Terminals skipped because they are no longer in the key store.
    pub unregistered: Vec<TerminalId>,
}

/// Puts every terminal session of `store` back into `host` (at start, after a restart):
/// opens each sealed snapshot under `kek` and restores it. Terminals that are no
/// longer registered are skipped and listed.
///
/// # Errors
/// The store's errors; [`isoswitch_session::SessionError::SnapshotAuth`] (as
/// [`ReversalError::Session`]) as soon as one snapshot does not authenticate — the wrong
/// KEK is an operator error to report, not a reason to send every terminal to sign on;
/// [`isoswitch_session::SessionError::SessionTableFull`] when the host has no room.
pub fn restore_host<K: KeyStore>(
    host: &mut HostSession<K>,
    store: &impl SessionStore,
    kek: &Kek,
) -> Result<RestoreReport> {
    let mut report = RestoreReport::default();
    for sealed in store.terminals()? {
        let snapshot = sealed.open(kek)?;
        let keys = snapshot.keys.is_some();
        match host.restore(snapshot) {
            Ok(()) => {
                report.restored += 1;
                report.signed_on += usize::from(keys);
            }
            Err(SessionError::UnknownTerminal { .. }) => report.unregistered.push(sealed.terminal),
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(
        restored = report.restored,
        signed_on = report.signed_on,
        unregistered = report.unregistered.len(),
        "terminal sessions restored"
    );
    Ok(report)
}

/// Seals every terminal session of `host` that changed since the last call
/// ([`HostSession::poll_snapshot`]) and saves them as one group (one write, one
/// fsync). Returns how many were saved.
///
/// # Errors
/// Sealing or store errors: then none of them is saved (and they are not queued again:
/// save [`HostSession::snapshots`] in full to recover).
pub fn save_host_changes<K: KeyStore>(
    host: &mut HostSession<K>,
    store: &mut impl SessionStore,
    kek: &Kek,
) -> Result<usize> {
    let mut sealed = Vec::new();
    while let Some(s) = host.poll_snapshot() {
        sealed.push(s.seal(kek)?);
    }
    store.save(&sealed)?;
    Ok(sealed.len())
}

/// Restores upstream link `link`'s session into `link_session` from `store`; returns
/// the generation restored (`None`: nothing stored, the link must sign on).
///
/// # Errors
/// The store's errors, [`isoswitch_session::SessionError::SnapshotAuth`] for the wrong
/// KEK, [`isoswitch_session::SessionError::SnapshotMismatch`] for another identity's
/// snapshot.
pub fn restore_link<C: Counters>(
    link_session: &mut TerminalSession<C>,
    store: &impl SessionStore,
    link: &str,
    kek: &Kek,
) -> Result<Option<u64>> {
    let Some(sealed) = store.upstream(link)? else {
        return Ok(None);
    };
    let generation = sealed.generation;
    link_session.restore(sealed.open(kek)?)?;
    Ok(Some(generation))
}

/// Saves the link's snapshot if it changed ([`TerminalSession::poll_snapshot`]),
/// compare-and-set against `expected` (the generation the link restored or last
/// saved; `None` when nothing was stored). `Ok(None)` when nothing changed.
///
/// # Errors
/// Sealing or store errors.
pub fn save_link_changes<C: Counters>(
    link_session: &mut TerminalSession<C>,
    store: &mut impl SessionStore,
    link: &str,
    kek: &Kek,
    expected: Option<u64>,
) -> Result<Option<UpstreamSave>> {
    let Some(s) = link_session.poll_snapshot() else {
        return Ok(None);
    };
    let sealed = s.seal(kek)?;
    store.save_upstream(link, &sealed, expected).map(Some)
}
