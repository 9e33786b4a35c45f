//! [`PgCounters`]: STAN, RRN and batch of a link shared by several nodes, in one
//! `counters` row per part.
//!
//! STANs and RRNs are leased in blocks of [`crate::PgConfig::block`] values: the row
//! says the first value no node has leased yet, and taking a block moves it on under
//! the row's lock (`SELECT … FOR UPDATE`, then `UPDATE`, one transaction). Blocks of
//! different nodes never overlap until the counter wraps (999999 STANs), so no STAN is
//! used twice on the link within the matching window; a node that stops leaves the
//! rest of its block unused (skipped, never reused). The batch is written through on
//! every change and read back with each block.

use crate::error::PgError;
use crate::store::{Claim, Inner};
use isoswitch_session::counters::{
    BatchNumber, CounterState, Counters, Rrn, Stan, MAX_RRN_SEQUENCE, MAX_SIX_DIGIT,
};
use isoswitch_session::SessionError;
use std::sync::Arc;

/// Shared counters; see the module docs.
#[derive(Debug)]
pub struct PgCounters {
    inner: Arc<Inner>,
    part: String,
    state: CounterState,
    /// STANs left in the current block (from `state.next_stan`).
    stans_left: u32,
    /// RRNs left in the current block (from `state.next_rrn`).
    rrns_left: u64,
    _claim: Claim,
}

#[derive(Clone, Copy)]
enum Which {
    Stan,
    Rrn,
    None,
}

struct Row {
    first: i64,
    batch: i32,
}

impl PgCounters {
    pub(crate) fn open(
        inner: Arc<Inner>,
        name: &str,
        claim: Claim,
    ) -> Result<PgCounters, crate::ReversalError> {
        let mut c = PgCounters {
            inner,
            part: name.to_string(),
            state: CounterState::default(),
            stans_left: 0,
            rrns_left: 0,
            _claim: claim,
        };
        let row = c
            .lease(Which::None, 0)
            .map_err(c.inner.err("open counters"))?;
        c.state.batch = batch_of(row.batch).map_err(|e| {
            PgError::BadRow {
                table: "counters",
                what: e.to_string(),
            }
            .into_reversal(&c.inner.db.describe, "open counters")
        })?;
        Ok(c)
    }

    fn session_error(&self, e: PgError) -> SessionError {
        SessionError::CounterIo {
            path: format!("{}/counters/{}", self.inner.db.describe, self.part).into(),
            source: std::io::Error::other(e.to_string()),
        }
    }

    /// Takes a block of `n` values of `which` (or none: reads the row); returns its
    /// first value and the batch.
    fn lease(&self, which: Which, n: u32) -> Result<Row, PgError> {
        let part = self.part.clone();
        self.inner.db.call(|pool| async move {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO counters (part, next_stan, batch, next_rrn) VALUES ($1, 1, 1, 1)
                 ON CONFLICT DO NOTHING",
                &[&part],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT next_stan, batch, next_rrn FROM counters WHERE part = $1 FOR UPDATE",
                    &[&part],
                )
                .await?;
            let (stan, batch, rrn): (i32, i32, i64) = (row.get(0), row.get(1), row.get(2));
            let first = match which {
                Which::Stan => {
                    let end = i64::from(stan) + i64::from(n);
                    let next = if end > i64::from(MAX_SIX_DIGIT) {
                        1
                    } else {
                        end as i32
                    };
                    tx.execute(
                        "UPDATE counters SET next_stan = $2 WHERE part = $1",
                        &[&part, &next],
                    )
                    .await?;
                    i64::from(stan)
                }
                Which::Rrn => {
                    let end = rrn.saturating_add(i64::from(n));
                    let next = if end > MAX_RRN_SEQUENCE as i64 {
                        1
                    } else {
                        end
                    };
                    tx.execute(
                        "UPDATE counters SET next_rrn = $2 WHERE part = $1",
                        &[&part, &next],
                    )
                    .await?;
                    rrn
                }
                Which::None => 0,
            };
            tx.commit().await?;
            Ok(Row { first, batch })
        })
    }
}

fn batch_of(v: i32) -> Result<BatchNumber, SessionError> {
    BatchNumber::new(u32::try_from(v).unwrap_or(0))
}

impl Counters for PgCounters {
    fn state(&self) -> CounterState {
        self.state
    }

    fn next_stan(&mut self) -> Result<Stan, SessionError> {
        if self.stans_left == 0 {
            let n = self.inner.block;
            let row = self
                .lease(Which::Stan, n)
                .map_err(|e| self.session_error(e))?;
            let first = Stan::new(u32::try_from(row.first).unwrap_or(0))?;
            // The block ends at 999999 when it would wrap.
            let room = MAX_SIX_DIGIT - first.get() + 1;
            self.state.next_stan = first;
            self.stans_left = n.min(room);
            self.state.batch = batch_of(row.batch)?;
        }
        let s = self.state.next_stan;
        self.stans_left -= 1;
        self.state.next_stan = s.next();
        Ok(s)
    }

    fn set_batch(&mut self, batch: BatchNumber) -> Result<(), SessionError> {
        let part = self.part.clone();
        let b = batch.get() as i32;
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                c.execute(
                    "INSERT INTO counters (part, next_stan, batch, next_rrn) VALUES ($1, 1, $2, 1)
                     ON CONFLICT (part) DO UPDATE SET batch = EXCLUDED.batch",
                    &[&part, &b],
                )
                .await?;
                Ok(())
            })
            .map_err(|e| self.session_error(e))?;
        self.state.batch = batch;
        Ok(())
    }

    fn next_rrn(&mut self) -> Result<Rrn, SessionError> {
        if self.rrns_left == 0 {
            let n = self.inner.block;
            let row = self
                .lease(Which::Rrn, n)
                .map_err(|e| self.session_error(e))?;
            let first = u64::try_from(row.first).unwrap_or(0);
            if first == 0 || first > MAX_RRN_SEQUENCE {
                return Err(SessionError::CounterOutOfRange {
                    counter: "RRN",
                    value: first,
                    max: MAX_RRN_SEQUENCE,
                });
            }
            self.state.next_rrn = first;
            self.rrns_left = u64::from(n).min(MAX_RRN_SEQUENCE - first + 1);
        }
        let r = Rrn::from_sequence(self.state.next_rrn)?;
        self.rrns_left -= 1;
        self.state.next_rrn = if self.state.next_rrn >= MAX_RRN_SEQUENCE {
            1
        } else {
            self.state.next_rrn + 1
        };
        Ok(r)
    }
}
