//! [`MemoryDurable`]: a [`Store`] in memory, for tests (paused time, no files). Clones
//! share the state, so a test can drop everything it opened ("crash") and open the
//! same parts again from a clone to see what a restart would see: journals keep their
//! records, idempotency stores their decisions and ledger, counters their state,
//! session stores their snapshots. Nothing survives the process, and parts are not
//! exclusive (two handles on one name both write); use [`crate::DataDir`] for that.

use crate::durable::{check_part_name, SessionStore, Store, UpstreamSave};
use crate::error::Result;
use crate::journal::MemoryJournal;
use crate::profile::TxnKey;
use crate::settlement::BatchTotals;
use crate::store::{IdempotencyStore, Ledger, MemoryStore, StoreRecord, StoredTxn};
use isoswitch_session::counters::{BatchNumber, CounterState, Counters, MemoryCounters, Rrn, Stan};
use isoswitch_session::{SealedSnapshot, SessionError, TerminalId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Shared {
    journals: HashMap<String, MemoryJournal>,
    decisions: HashMap<String, Arc<Mutex<Vec<StoreRecord>>>>,
    counters: HashMap<String, Arc<Mutex<CounterState>>>,
    sessions: HashMap<String, Arc<Mutex<Sessions>>>,
}

#[derive(Debug, Default)]
struct Sessions {
    terminals: HashMap<TerminalId, SealedSnapshot>,
    upstream: HashMap<String, SealedSnapshot>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock (a failed test) leaves the data usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The in-memory [`Store`]; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct MemoryDurable {
    shared: Arc<Mutex<Shared>>,
}

impl MemoryDurable {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// An idempotency store of a [`MemoryDurable`]: decisions kept in a shared log. Two
/// handles opened on one name behave as two nodes on one shared store: each reads what
/// the other decided when it refreshes ([`IdempotencyStore::refresh`],
/// [`IdempotencyStore::refresh_open`]).
#[derive(Debug)]
pub struct MemoryIdempotency {
    state: MemoryStore,
    log: Arc<Mutex<Vec<StoreRecord>>>,
    /// Log entries applied (or written) by this handle.
    seen: usize,
    /// Indices of this handle's own entries not yet passed by `seen`.
    own: std::collections::HashSet<usize>,
}

impl MemoryIdempotency {
    /// Applies what other handles appended since.
    fn catch_up(&mut self) -> Result<()> {
        let log = Arc::clone(&self.log);
        let log = lock(&log);
        for i in self.seen..log.len() {
            if !self.own.remove(&i) {
                self.state.apply(log[i].clone())?;
            }
        }
        self.seen = log.len();
        Ok(())
    }
}

impl IdempotencyStore for MemoryIdempotency {
    fn get(&self, key: &TxnKey) -> Option<&StoredTxn> {
        self.state.get(key)
    }
    fn commit(&mut self, record: StoreRecord) -> Result<()> {
        self.state.commit(record.clone())?;
        let mut log = lock(&self.log);
        self.own.insert(log.len());
        log.push(record);
        Ok(())
    }
    fn refresh(&mut self, key: &TxnKey) -> Result<()> {
        let _ = key;
        self.catch_up()
    }
    fn refresh_open(&mut self) -> Result<()> {
        self.catch_up()
    }
    fn ledger(&self) -> &Ledger {
        self.state.ledger()
    }
    fn entries(&self) -> Box<dyn Iterator<Item = (&TxnKey, &StoredTxn)> + '_> {
        self.state.entries()
    }
    fn batch_totals(&self, terminal: &str, merchant: &str, batch: u32) -> BatchTotals {
        self.state.batch_totals(terminal, merchant, batch)
    }
}

/// Counters of a [`MemoryDurable`]: every change is written to the shared state.
#[derive(Debug)]
pub struct SharedCounters {
    local: MemoryCounters,
    shared: Arc<Mutex<CounterState>>,
}

impl SharedCounters {
    fn publish(&self) {
        *lock(&self.shared) = self.local.state();
    }
}

impl Counters for SharedCounters {
    fn state(&self) -> CounterState {
        self.local.state()
    }
    fn next_stan(&mut self) -> std::result::Result<Stan, SessionError> {
        let s = self.local.next_stan()?;
        self.publish();
        Ok(s)
    }
    fn set_batch(&mut self, batch: BatchNumber) -> std::result::Result<(), SessionError> {
        self.local.set_batch(batch)?;
        self.publish();
        Ok(())
    }
    fn next_rrn(&mut self) -> std::result::Result<Rrn, SessionError> {
        let r = self.local.next_rrn()?;
        self.publish();
        Ok(r)
    }
}

/// A session store of a [`MemoryDurable`].
#[derive(Debug, Clone)]
pub struct MemorySessions {
    shared: Arc<Mutex<Sessions>>,
}

impl SessionStore for MemorySessions {
    fn terminals(&self) -> Result<Vec<SealedSnapshot>> {
        Ok(lock(&self.shared).terminals.values().cloned().collect())
    }
    fn terminal(&self, id: &TerminalId) -> Result<Option<SealedSnapshot>> {
        Ok(lock(&self.shared).terminals.get(id).cloned())
    }
    fn save(&mut self, snapshots: &[SealedSnapshot]) -> Result<()> {
        let mut s = lock(&self.shared);
        for snap in snapshots {
            if crate::durable::supersedes(s.terminals.get(&snap.terminal), snap) {
                s.terminals.insert(snap.terminal, snap.clone());
            }
        }
        Ok(())
    }
    fn upstream(&self, link: &str) -> Result<Option<SealedSnapshot>> {
        Ok(lock(&self.shared).upstream.get(link).cloned())
    }
    fn save_upstream(
        &mut self,
        link: &str,
        snapshot: &SealedSnapshot,
        expected: Option<u64>,
    ) -> Result<UpstreamSave> {
        check_part_name(link)?;
        let mut s = lock(&self.shared);
        let current = s.upstream.get(link).map(|x| x.generation);
        if current != expected {
            return Ok(UpstreamSave::Stale { current });
        }
        s.upstream.insert(link.to_string(), snapshot.clone());
        Ok(UpstreamSave::Saved)
    }
}

impl Store for MemoryDurable {
    type Journal = MemoryJournal;
    type Idempotency = MemoryIdempotency;
    type Counters = SharedCounters;
    type Sessions = MemorySessions;

    fn journal(&self, name: &str) -> Result<MemoryJournal> {
        check_part_name(name)?;
        Ok(lock(&self.shared)
            .journals
            .entry(name.to_string())
            .or_default()
            .clone())
    }

    fn idempotency(&self, name: &str) -> Result<MemoryIdempotency> {
        check_part_name(name)?;
        let log = lock(&self.shared)
            .decisions
            .entry(name.to_string())
            .or_default()
            .clone();
        let mut state = MemoryStore::new();
        let seen = {
            let l = lock(&log);
            for rec in l.iter() {
                state.commit(rec.clone())?;
            }
            l.len()
        };
        Ok(MemoryIdempotency {
            state,
            log,
            seen,
            own: std::collections::HashSet::new(),
        })
    }

    fn counters(&self, name: &str) -> Result<SharedCounters> {
        check_part_name(name)?;
        let shared = lock(&self.shared)
            .counters
            .entry(name.to_string())
            .or_default()
            .clone();
        let state = *lock(&shared);
        Ok(SharedCounters {
            local: MemoryCounters::with_state(state)?,
            shared,
        })
    }

    fn sessions(&self, name: &str) -> Result<MemorySessions> {
        check_part_name(name)?;
        let shared = lock(&self.shared)
            .sessions
            .entry(name.to_string())
            .or_default()
            .clone();
        Ok(MemorySessions { shared })
    }

    fn describe(&self) -> String {
        "in-memory store".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Journal;

    /// What every `Store` must do, written once against the trait (the PostgreSQL store
    /// can run the same).
    fn survives_a_restart<S: Store + Clone>(store: S) {
        use crate::store::OriginalState;
        let k = TxnKey {
            terminal: "TERM0001".into(),
            merchant: "MERCHANT0000001".into(),
            batch: 1,
            stan: 5,
        };
        {
            let mut j = store.journal("j").expect("j");
            j.append(&[crate::JournalRecord::ReversalAcked {
                id: 1,
                code: *b"00",
            }])
            .expect("append");
            let mut s = store.idempotency("h").expect("s");
            s.commit(StoreRecord::Original {
                key: k.clone(),
                state: OriginalState {
                    txn_type: 0,
                    kind: crate::TxnKind::Debit,
                    foreign: false,
                    pan: "6222020000000001".into(),
                    amount: rust_decimal::Decimal::new(500, 2),
                    code: *b"00",
                    approved: true,
                    cancels: None,
                    upstream: None,
                },
            })
            .expect("commit");
            let mut c = store.counters("c").expect("c");
            c.next_stan().expect("stan");
            c.set_batch(BatchNumber::new(3).expect("b")).expect("batch");
        }
        let again = store.clone();
        assert_eq!(
            again.journal("j").expect("j").load().expect("load").len(),
            1
        );
        let s = again.idempotency("h").expect("s");
        assert!(s.get(&k).is_some());
        assert_eq!(s.ledger().total(), rust_decimal::Decimal::new(500, 2));
        let c = again.counters("c").expect("c");
        assert!(c.state().next_stan.get() > 1);
        assert_eq!(c.state().batch.get(), 3);
        assert!(again
            .sessions("s")
            .expect("s")
            .terminals()
            .expect("t")
            .is_empty());
    }

    #[test]
    fn memory_store_survives_a_simulated_restart() {
        survives_a_restart(MemoryDurable::new());
        assert!(MemoryDurable::new().journal("a/b").is_err());
    }

    #[test]
    fn data_dir_passes_the_same_contract() {
        let dir = tempfile::tempdir().expect("dir");
        survives_a_restart(crate::DataDir::open(dir.path()).expect("open"));
    }
}
