//! [`PgSessions`]: sealed terminal session snapshots (`terminal_session`) and upstream
//! link snapshots (`upstream_session`), shared by every node that opens the part.
//!
//! The tables hold identities, generations and AES-256-GCM sealed bytes only
//! ([`isoswitch_session::snapshot`]): no working key in clear. A save of many
//! snapshots is one statement (a sign-on storm is saved in groups); a snapshot never
//! replaces a newer generation of the same terminal. The upstream snapshot is written
//! compare-and-set on its generation ([`SessionStore::save_upstream`]): of the nodes
//! that share one upstream identity, the one that signed on last wins, and the others
//! see [`UpstreamSave::Stale`] with the generation to adopt.

use crate::error::PgError;
use crate::store::{Claim, Inner};
use isoswitch_reversal::durable::check_part_name;
use isoswitch_reversal::{ReversalError, SessionStore, UpstreamSave};
use isoswitch_session::snapshot::MAX_SEALED_LEN;
use isoswitch_session::{SealedSnapshot, TerminalId};
use std::collections::HashMap;
use std::sync::Arc;

/// The shared session store; see the module docs.
#[derive(Debug)]
pub struct PgSessions {
    inner: Arc<Inner>,
    part: String,
    _claim: Claim,
}

fn snapshot(
    terminal: &str,
    merchant: &str,
    generation: i64,
    sealed: Vec<u8>,
) -> Result<SealedSnapshot, PgError> {
    let bad = |what: String| PgError::BadRow {
        table: "terminal_session",
        what,
    };
    if sealed.len() > MAX_SEALED_LEN {
        return Err(bad(format!("sealed snapshot of {} bytes", sealed.len())));
    }
    Ok(SealedSnapshot {
        terminal: TerminalId::new(terminal, merchant)
            .map_err(|e| bad(format!("terminal {terminal:?}/{merchant:?}: {e}")))?,
        generation: u64::try_from(generation)
            .map_err(|_| bad(format!("generation {generation}")))?,
        bytes: sealed,
    })
}

fn too_large(s: &SealedSnapshot) -> Result<(), ReversalError> {
    if s.bytes.len() > MAX_SEALED_LEN {
        return Err(ReversalError::RecordTooLarge {
            len: s.bytes.len(),
            max: MAX_SEALED_LEN,
        });
    }
    Ok(())
}

impl PgSessions {
    pub(crate) fn new(inner: Arc<Inner>, name: &str, claim: Claim) -> PgSessions {
        PgSessions {
            inner,
            part: name.to_string(),
            _claim: claim,
        }
    }

    fn query_terminals(
        &self,
        one: Option<&TerminalId>,
    ) -> Result<Vec<SealedSnapshot>, ReversalError> {
        let part = self.part.clone();
        let one = one.map(|id| (id.terminal().to_string(), id.merchant().to_string()));
        let rows = self
            .inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let rows = match &one {
                    Some((t, m)) => {
                        let stmt = c
                            .prepare_cached(
                                "SELECT terminal, merchant, generation, sealed FROM terminal_session
                                  WHERE part = $1 AND terminal = $2 AND merchant = $3",
                            )
                            .await?;
                        c.query(&stmt, &[&part, t, m]).await?
                    }
                    None => {
                        c.query(
                            "SELECT terminal, merchant, generation, sealed FROM terminal_session
                              WHERE part = $1",
                            &[&part],
                        )
                        .await?
                    }
                };
                rows.into_iter()
                    .map(|r| snapshot(r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.inner.err("read terminal sessions"))?;
        Ok(rows)
    }

    fn current_upstream(&self, link: &str) -> Result<Option<SealedSnapshot>, ReversalError> {
        let (part, link) = (self.part.clone(), link.to_string());
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let row = c
                    .query_opt(
                        "SELECT terminal, merchant, generation, sealed FROM upstream_session
                          WHERE part = $1 AND link = $2",
                        &[&part, &link],
                    )
                    .await?;
                row.map(|r| snapshot(r.get(0), r.get(1), r.get(2), r.get(3)))
                    .transpose()
            })
            .map_err(self.inner.err("read the upstream session"))
    }
}

impl SessionStore for PgSessions {
    fn terminals(&self) -> Result<Vec<SealedSnapshot>, ReversalError> {
        self.query_terminals(None)
    }

    fn terminal(&self, id: &TerminalId) -> Result<Option<SealedSnapshot>, ReversalError> {
        Ok(self.query_terminals(Some(id))?.pop())
    }

    fn save(&mut self, snapshots: &[SealedSnapshot]) -> Result<(), ReversalError> {
        if snapshots.is_empty() {
            return Ok(());
        }
        // One row per terminal in one statement: the latest of each.
        let mut latest: HashMap<&TerminalId, &SealedSnapshot> = HashMap::new();
        for s in snapshots {
            too_large(s)?;
            latest.insert(&s.terminal, s);
        }
        let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in latest.values() {
            cols.0.push(s.terminal.terminal().to_string());
            cols.1.push(s.terminal.merchant().to_string());
            cols.2.push(i64::try_from(s.generation).unwrap_or(i64::MAX));
            cols.3.push(s.bytes.clone());
        }
        let part = self.part.clone();
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let stmt = c
                    .prepare_cached(
                        "INSERT INTO terminal_session (part, terminal, merchant, generation, sealed)
                         SELECT $1, t, m, g, s FROM unnest($2::text[], $3::text[], $4::int8[], $5::bytea[]) AS u(t, m, g, s)
                         ON CONFLICT (part, terminal, merchant) DO UPDATE
                            SET generation = EXCLUDED.generation, sealed = EXCLUDED.sealed
                          WHERE terminal_session.generation <= EXCLUDED.generation",
                    )
                    .await?;
                c.execute(&stmt, &[&part, &cols.0, &cols.1, &cols.2, &cols.3])
                    .await?;
                Ok(())
            })
            .map_err(self.inner.err("save terminal sessions"))
    }

    fn upstream(&self, link: &str) -> Result<Option<SealedSnapshot>, ReversalError> {
        self.current_upstream(link)
    }

    fn save_upstream(
        &mut self,
        link: &str,
        snapshot: &SealedSnapshot,
        expected: Option<u64>,
    ) -> Result<UpstreamSave, ReversalError> {
        check_part_name(link)?;
        too_large(snapshot)?;
        let (part, l) = (self.part.clone(), link.to_string());
        let (t, m) = (
            snapshot.terminal.terminal().to_string(),
            snapshot.terminal.merchant().to_string(),
        );
        let g = i64::try_from(snapshot.generation).unwrap_or(i64::MAX);
        let sealed = snapshot.bytes.clone();
        let expected = expected.map(|e| i64::try_from(e).unwrap_or(i64::MAX));
        let current = self
            .inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                let n = match expected {
                    None => {
                        c.execute(
                            "INSERT INTO upstream_session (part, link, terminal, merchant, generation, sealed)
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                            &[&part, &l, &t, &m, &g, &sealed],
                        )
                        .await?
                    }
                    Some(e) => {
                        c.execute(
                            "UPDATE upstream_session SET terminal = $3, merchant = $4, generation = $5, sealed = $6
                              WHERE part = $1 AND link = $2 AND generation = $7",
                            &[&part, &l, &t, &m, &g, &sealed, &e],
                        )
                        .await?
                    }
                };
                if n == 1 {
                    return Ok(None);
                }
                let row = c
                    .query_opt(
                        "SELECT generation FROM upstream_session WHERE part = $1 AND link = $2",
                        &[&part, &l],
                    )
                    .await?;
                Ok(Some(row.map(|r| r.get::<_, i64>(0))))
            })
            .map_err(self.inner.err("save the upstream session"))?;
        Ok(match current {
            None => UpstreamSave::Saved,
            Some(current) => UpstreamSave::Stale {
                current: current.and_then(|c| u64::try_from(c).ok()),
            },
        })
    }

    fn claim_sign_on(
        &mut self,
        link: &str,
        lease: std::time::Duration,
    ) -> Result<bool, ReversalError> {
        check_part_name(link)?;
        let (part, l, node) = (self.part.clone(), link.to_string(), self.inner.node.clone());
        let secs = lease.as_secs_f64();
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                // Taken when free, lapsed, or already this node's; kept otherwise.
                let rows = c
                    .query(
                        "INSERT INTO upstream_sign_on (part, link, owner, until)
                         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                         ON CONFLICT (part, link) DO UPDATE
                            SET owner = EXCLUDED.owner, until = EXCLUDED.until
                          WHERE upstream_sign_on.owner = EXCLUDED.owner
                             OR upstream_sign_on.until < now()
                         RETURNING 1",
                        &[&part, &l, &node, &secs],
                    )
                    .await?;
                Ok(!rows.is_empty())
            })
            .map_err(self.inner.err("claim the upstream sign-on"))
    }

    fn release_sign_on(&mut self, link: &str) -> Result<(), ReversalError> {
        check_part_name(link)?;
        let (part, l, node) = (self.part.clone(), link.to_string(), self.inner.node.clone());
        self.inner
            .db
            .call(|pool| async move {
                let c = pool.get().await?;
                c.execute(
                    "DELETE FROM upstream_sign_on WHERE part = $1 AND link = $2 AND owner = $3",
                    &[&part, &l, &node],
                )
                .await?;
                Ok(())
            })
            .map_err(self.inner.err("release the upstream sign-on"))
    }
}
