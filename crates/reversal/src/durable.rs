//! The store abstraction: everything a switch or a host keeps across a restart, handed
//! out by name from one [`Store`].
//!
//! | part | trait | what | embedded default ([`crate::datadir::DataDir`]) |
//! |---|---|---|---|
//! | journal | [`Journal`] | the reversal engine's write-ahead records | `<name>.journal` ([`crate::FileJournal`]) |
//! | idempotency | [`IdempotencyStore`] | the host's decisions per transaction key and the ledger | `<name>.store` ([`crate::FileStore`]) |
//! | counters | [`Counters`] | STAN, RRN (leased in blocks), batch | `<name>.counters` ([`crate::counters::FileCounters`]) |
//! | sessions | [`SessionStore`] | terminal session snapshots and the upstream link's zone keys, sealed under a KEK | `<name>.sessions` ([`crate::sessions::FileSessionStore`]) |
//!
//! The engine, the handlers and the sessions see only these traits: they do not know
//! whether they write files or a database. Each part is owned by one handle at a time;
//! the traits are synchronous (a database implementation runs its queries on a thread
//! of its own, as [`crate::GroupCommit`] does for the journal: one transaction per
//! group of appends).
//!
//! Session keys never reach a store in clear: a [`SessionStore`] keeps
//! [`SealedSnapshot`]s, AES-256-GCM under the caller's key-encryption key
//! ([`isoswitch_session::snapshot`]); the store sees identities and generations only.

use crate::error::Result;
use crate::journal::Journal;
use crate::store::IdempotencyStore;
use isoswitch_session::counters::Counters;
use isoswitch_session::{SealedSnapshot, TerminalId};

/// Where a switch or host keeps its durable state; see the module docs.
///
/// Parts are named (`1`–`64` of `A–Z a–z 0–9 _ - .`, not starting with `.`:
/// [`check_part_name`]); opening a part that is already open is
/// [`crate::ReversalError::PartInUse`].
pub trait Store: Send + Sync + 'static {
    /// The engine journal.
    type Journal: Journal;
    /// The host's idempotency store and ledger.
    type Idempotency: IdempotencyStore + Send + 'static;
    /// Counters (STAN, RRN, batch).
    type Counters: Counters + Send + 'static;
    /// Terminal sessions and upstream zone keys.
    type Sessions: SessionStore;

    /// Opens (recovers) journal `name`.
    ///
    /// # Errors
    /// I/O or database errors, a damaged part ([`crate::ReversalError::Corrupt`]), a
    /// bad or busy name.
    fn journal(&self, name: &str) -> Result<Self::Journal>;
    /// Opens idempotency store `name` (its ledger is rebuilt from it).
    ///
    /// # Errors
    /// As [`Store::journal`].
    fn idempotency(&self, name: &str) -> Result<Self::Idempotency>;
    /// Opens counters `name`.
    ///
    /// # Errors
    /// As [`Store::journal`].
    fn counters(&self, name: &str) -> Result<Self::Counters>;
    /// Opens session store `name`.
    ///
    /// # Errors
    /// As [`Store::journal`].
    fn sessions(&self, name: &str) -> Result<Self::Sessions>;
    /// Where the state lives, for logs (`data directory /var/lib/switchd`).
    fn describe(&self) -> String;

    /// How often a node must call [`Store::renew_leases`] and look for orphans
    /// ([`Store::claim_orphans`]); `None` (the default): the store has no leases (its
    /// process owns it alone), nothing to run.
    fn lease_renewal(&self) -> Option<std::time::Duration> {
        None
    }

    /// Keeps this node's leases alive (its journals and the work it claimed); a node
    /// calls it at least every third of its lease time. A store its process owns alone
    /// (the data directory) holds every lease for good: nothing to do.
    ///
    /// # Errors
    /// Database errors (the leases then run out unless a later call succeeds).
    fn renew_leases(&self) -> Result<()> {
        Ok(())
    }

    /// Claims at most `max` reversals left pending in journals named `journal` by nodes
    /// whose lease has run out (they stopped or lost the database), leased to this node
    /// until [`Store::hand_over`] or its lease runs out in turn. A store its process owns
    /// alone has no other node: nothing to claim.
    ///
    /// # Errors
    /// Database errors.
    fn claim_orphans(&self, journal: &str, max: usize) -> Result<Vec<Orphan>> {
        let _ = (journal, max);
        Ok(Vec::new())
    }

    /// Records that this node took `orphan` over (its reversal is journaled here now): it
    /// is not handed out again, and its dead node's journal counts it as acknowledged.
    ///
    /// # Errors
    /// Database errors; [`crate::ReversalError::WrongState`] when the claim had run
    /// out and another node took it.
    fn hand_over(&self, orphan: &Orphan) -> Result<()> {
        let _ = orphan;
        Ok(())
    }

    /// Whether any node's journal named `journal` holds upstream work under `tag` still
    /// pending (a reversal or an advice not yet answered, live node or dead; an original
    /// in doubt at least once its node's lease ran out). `None` (the default): a store its process owns alone, where the
    /// question does not arise (its one process knows its own work).
    ///
    /// # Errors
    /// Database errors.
    fn pending_tag(&self, journal: &str, tag: crate::CallerTag) -> Result<Option<bool>> {
        let _ = (journal, tag);
        Ok(None)
    }

    /// The journals named `journal` of nodes whose lease ran out, each as its part and
    /// its records (at most `max` parts): what they decided is finished by a live node
    /// against the shared book (the switch's `finish_dead_journal`), then the part is
    /// retired ([`Store::retire_journal`]). A store its process owns alone has no other
    /// node: none.
    ///
    /// # Errors
    /// Database errors; a record that does not open or decode.
    fn dead_journals(
        &self,
        journal: &str,
        max: usize,
    ) -> Result<Vec<(String, Vec<crate::JournalRecord>)>> {
        let _ = (journal, max);
        Ok(Vec::new())
    }

    /// Deletes the dead node's journal `part` (from [`Store::dead_journals`]) once none
    /// of its work is pending any more; `false` while some is (or its node came back).
    ///
    /// # Errors
    /// Database errors.
    fn retire_journal(&self, part: &str) -> Result<bool> {
        let _ = part;
        Ok(false)
    }
}

/// A reversal a node left pending when its lease ran out ([`Store::claim_orphans`]):
/// what another node needs to send it (the original as journaled: no MAC, PIN block or
/// track data).
#[derive(Clone, PartialEq)]
pub struct Orphan {
    /// The journal part it was found in (`<journal>@<node>`).
    pub part: String,
    /// Its transaction id in that journal.
    pub id: u64,
    /// The caller's tag there.
    pub tag: u64,
    /// Why it is reversed.
    pub reason: crate::profile::ReversalReason,
    /// The original, encoded as journaled.
    pub message: bytes::Bytes,
}

impl std::fmt::Debug for Orphan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orphan")
            .field("part", &self.part)
            .field("id", &self.id)
            .field("tag", &self.tag)
            .field("reason", &self.reason)
            .field("message", &self.message.len())
            .finish()
    }
}

/// The result of [`SessionStore::save_upstream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamSave {
    /// Stored.
    Saved,
    /// Not stored: the stored generation is not the one expected (another node
    /// signed on meanwhile); adopt the stored snapshot instead.
    Stale {
        /// The generation stored.
        current: Option<u64>,
    },
}

/// Whether `new` may replace `stored` (the terminal's snapshot a store holds): the
/// same generation or a newer one ([`SessionStore::save`]'s rule, every store's).
pub fn supersedes(stored: Option<&SealedSnapshot>, new: &SealedSnapshot) -> bool {
    stored.is_none_or(|s| s.generation <= new.generation)
}

/// Durable terminal sessions and upstream link keys, as sealed snapshots (see
/// [`isoswitch_session::snapshot`]): the latest per terminal and per link.
pub trait SessionStore: Send + 'static {
    /// Every terminal's latest snapshot (to restore a host's sessions at start).
    ///
    /// # Errors
    /// I/O or database errors.
    fn terminals(&self) -> Result<Vec<SealedSnapshot>>;
    /// One terminal's latest snapshot.
    ///
    /// # Errors
    /// I/O or database errors.
    fn terminal(&self, id: &TerminalId) -> Result<Option<SealedSnapshot>>;
    /// Stores `snapshots` durably (one write and one sync for all of them: a sign-on
    /// storm is saved in groups), each replacing the terminal's previous one unless
    /// that one has a newer generation ([`supersedes`]): a node's stale copy never
    /// overwrites a later sign-on another node sharing the store saved.
    ///
    /// # Errors
    /// I/O or database errors: then none of them is stored.
    fn save(&mut self, snapshots: &[SealedSnapshot]) -> Result<()>;
    /// The latest snapshot of upstream link `link` (its zone keys and generation).
    ///
    /// # Errors
    /// I/O or database errors.
    fn upstream(&self, link: &str) -> Result<Option<SealedSnapshot>>;
    /// Stores link `link`'s snapshot durably if the stored generation is `expected`
    /// (`None`: nothing stored yet) — compare-and-set, so that nodes sharing one
    /// upstream identity do not sign on in turn against each other.
    ///
    /// # Errors
    /// I/O or database errors.
    fn save_upstream(
        &mut self,
        link: &str,
        snapshot: &SealedSnapshot,
        expected: Option<u64>,
    ) -> Result<UpstreamSave>;
    /// Claims, for at most `lease`, the right to sign link `link` on (send the 0800 and
    /// store the keys of its 0810): `true` if this node holds the claim now (it may
    /// already have held it), `false` if another node sharing the store holds it and
    /// is signing on (adopt its keys when they are stored instead of signing on too).
    /// A claim whose holder stopped without [`SessionStore::release_sign_on`] lapses
    /// after its lease. The default, for stores one node owns: always `true`.
    ///
    /// # Errors
    /// I/O or database errors.
    fn claim_sign_on(&mut self, link: &str, lease: std::time::Duration) -> Result<bool> {
        let _ = (link, lease);
        Ok(true)
    }
    /// Gives up this node's claim on signing link `link` on, if it holds one.
    ///
    /// # Errors
    /// I/O or database errors.
    fn release_sign_on(&mut self, link: &str) -> Result<()> {
        let _ = link;
        Ok(())
    }
}

impl<S: SessionStore + ?Sized> SessionStore for Box<S> {
    fn terminals(&self) -> Result<Vec<SealedSnapshot>> {
        (**self).terminals()
    }
    fn terminal(&self, id: &TerminalId) -> Result<Option<SealedSnapshot>> {
        (**self).terminal(id)
    }
    fn save(&mut self, snapshots: &[SealedSnapshot]) -> Result<()> {
        (**self).save(snapshots)
    }
    fn upstream(&self, link: &str) -> Result<Option<SealedSnapshot>> {
        (**self).upstream(link)
    }
    fn save_upstream(
        &mut self,
        link: &str,
        snapshot: &SealedSnapshot,
        expected: Option<u64>,
    ) -> Result<UpstreamSave> {
        (**self).save_upstream(link, snapshot, expected)
    }
    fn claim_sign_on(&mut self, link: &str, lease: std::time::Duration) -> Result<bool> {
        (**self).claim_sign_on(link, lease)
    }
    fn release_sign_on(&mut self, link: &str) -> Result<()> {
        (**self).release_sign_on(link)
    }
}

/// Longest part (and upstream link) name.
pub const MAX_PART_NAME: usize = 64;

/// Checks a part or link name: 1–[`MAX_PART_NAME`] of `A–Z a–z 0–9 _ - .`, not
/// starting with `.` (so a name is a plain file name: no separators, no `..`).
///
/// # Errors
/// [`crate::ReversalError::BadPartName`].
pub fn check_part_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PART_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(crate::ReversalError::BadPartName {
            name: name.chars().take(MAX_PART_NAME + 1).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names() {
        for ok in ["switch", "host-1", "a.b_c", "T"] {
            assert!(check_part_name(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(MAX_PART_NAME + 1);
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a\\b",
            "é",
            "a b",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    check_part_name(bad),
                    Err(crate::ReversalError::BadPartName { .. })
                ),
                "{bad}"
            );
        }
    }
}
