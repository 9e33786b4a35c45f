//! What the reversal driver and the journal record through the [`metrics`]
//! facade. The library installs no recorder: a program installs one (e.g. a Prometheus
//! exporter) before it spawns its drivers, which register their handles then. Every
//! name carries the `isoswitch_` prefix, and every metric about reversals has
//! `reversal` in its name.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `isoswitch_reversals_pending` | gauge | `link` | reversals journaled and not yet acknowledged |
//! | `isoswitch_reversal_oldest_pending_seconds` | gauge | `link` | age of the oldest of them (0 when none), as this process has seen it |
//! | `isoswitch_advices_pending` | gauge | `link` | advices stored and not yet answered (the store-and-forward depth) |
//! | `isoswitch_advice_oldest_pending_seconds` | gauge | `link` | age of the oldest of them (0 when none) |
//! | `isoswitch_reversal_attempts_total` | counter | `link`, `outcome` | reversal messages sent, by what came of each send: `answered`, `timeout`, `connection_lost`, `not_sent` |
//! | `isoswitch_reversals_acknowledged_total` | counter | `link` | reversals acknowledged by a `0410` |
//! | `isoswitch_reversals_deferred_total` | counter | `link` | reversals left pending after the tries of one connection |
//! | `isoswitch_in_doubt_total` | counter | `link` | originals declared in doubt (they are reversed) |
//! | `isoswitch_late_reversal_responses_total` | counter | `link` | responses that arrived after their request was given up (late; they may still acknowledge a reversal) |
//! | `isoswitch_journal_sync_seconds` | histogram | `journal` | one group commit: write + fsync |
//! | `isoswitch_journal_group_records` | histogram | `journal` | records written by one group commit |
//!
//! Ages are measured from when this process first saw the entry pending (after a
//! restart: from the recovery), sampled once a second.

use std::collections::HashMap;
use std::time::Instant;

use ::metrics::{Counter, Gauge, Histogram};

use crate::engine::{EngineStats, TxnId};

/// Metric names (see the table in the module docs).
pub mod names {
    /// Reversals pending.
    pub const REVERSALS_PENDING: &str = "isoswitch_reversals_pending";
    /// Age of the oldest pending reversal.
    pub const REVERSAL_OLDEST: &str = "isoswitch_reversal_oldest_pending_seconds";
    /// Advices pending.
    pub const ADVICES_PENDING: &str = "isoswitch_advices_pending";
    /// Age of the oldest pending advice.
    pub const ADVICE_OLDEST: &str = "isoswitch_advice_oldest_pending_seconds";
    /// Reversal sends by outcome.
    pub const REVERSAL_ATTEMPTS: &str = "isoswitch_reversal_attempts_total";
    /// Reversals acknowledged.
    pub const REVERSALS_ACKED: &str = "isoswitch_reversals_acknowledged_total";
    /// Reversals deferred.
    pub const REVERSALS_DEFERRED: &str = "isoswitch_reversals_deferred_total";
    /// Originals declared in doubt.
    pub const IN_DOUBT: &str = "isoswitch_in_doubt_total";
    /// Late responses seen by the engine.
    pub const LATE: &str = "isoswitch_late_reversal_responses_total";
    /// Group-commit latency.
    pub const JOURNAL_SYNC: &str = "isoswitch_journal_sync_seconds";
    /// Group-commit size.
    pub const JOURNAL_GROUP: &str = "isoswitch_journal_group_records";
}

/// What came of one reversal send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    Answered,
    Timeout,
    ConnectionLost,
    NotSent,
}

/// The driver's handles, registered once at spawn.
pub(crate) struct DriverMetrics {
    pending_reversals: Gauge,
    pending_advices: Gauge,
    oldest_reversal: Gauge,
    oldest_advice: Gauge,
    attempts: [Counter; 4],
    acked: Counter,
    deferred: Counter,
    in_doubt: Counter,
    late: Counter,
    last: EngineStats,
    seen: HashMap<TxnId, (bool, Instant)>,
}

impl DriverMetrics {
    pub(crate) fn new(link: &str) -> Self {
        let l = link.to_owned();
        let attempt = |outcome: &'static str| ::metrics::counter!(names::REVERSAL_ATTEMPTS, "link" => l.clone(), "outcome" => outcome);
        DriverMetrics {
            pending_reversals: ::metrics::gauge!(names::REVERSALS_PENDING, "link" => l.clone()),
            pending_advices: ::metrics::gauge!(names::ADVICES_PENDING, "link" => l.clone()),
            oldest_reversal: ::metrics::gauge!(names::REVERSAL_OLDEST, "link" => l.clone()),
            oldest_advice: ::metrics::gauge!(names::ADVICE_OLDEST, "link" => l.clone()),
            attempts: [
                attempt("answered"),
                attempt("timeout"),
                attempt("connection_lost"),
                attempt("not_sent"),
            ],
            acked: ::metrics::counter!(names::REVERSALS_ACKED, "link" => l.clone()),
            deferred: ::metrics::counter!(names::REVERSALS_DEFERRED, "link" => l.clone()),
            in_doubt: ::metrics::counter!(names::IN_DOUBT, "link" => l.clone()),
            late: ::metrics::counter!(names::LATE, "link" => l),
            last: EngineStats::default(),
            seen: HashMap::new(),
        }
    }

    pub(crate) fn attempt(&self, a: Attempt) {
        let i = match a {
            Attempt::Answered => 0,
            Attempt::Timeout => 1,
            Attempt::ConnectionLost => 2,
            Attempt::NotSent => 3,
        };
        self.attempts[i].increment(1);
    }

    pub(crate) fn deferred(&self) {
        self.deferred.increment(1);
    }

    /// Depths and counters after a turn of the driver loop (cheap: atomic stores).
    pub(crate) fn turn(&mut self, reversals: usize, advices: usize, stats: EngineStats) {
        self.pending_reversals.set(reversals as f64);
        self.pending_advices.set(advices as f64);
        let d = |now: u64, before: u64| now.saturating_sub(before);
        self.acked
            .increment(d(stats.reversals_acked, self.last.reversals_acked));
        self.in_doubt
            .increment(d(stats.in_doubt, self.last.in_doubt));
        self.late
            .increment(d(stats.late_responses, self.last.late_responses));
        self.last = stats;
    }

    /// Ages of the oldest pending entries (once a second).
    pub(crate) fn ages(&mut self, now: Instant, pending: impl Iterator<Item = (TxnId, bool)>) {
        let mut live: HashMap<TxnId, (bool, Instant)> = HashMap::with_capacity(self.seen.len());
        for (id, advice) in pending {
            let since = self
                .seen
                .get(&id)
                .filter(|(a, _)| *a == advice)
                .map_or(now, |(_, t)| *t);
            live.insert(id, (advice, since));
        }
        self.seen = live;
        let oldest = |advice: bool| {
            self.seen
                .values()
                .filter(|(a, _)| *a == advice)
                .map(|(_, t)| now.saturating_duration_since(*t).as_secs_f64())
                .fold(0.0, f64::max)
        };
        self.oldest_reversal.set(oldest(false));
        self.oldest_advice.set(oldest(true));
    }
}

/// The journal thread's handles.
pub(crate) struct JournalMetrics {
    pub(crate) sync: Histogram,
    pub(crate) group: Histogram,
}

impl JournalMetrics {
    pub(crate) fn new(journal: &str) -> Self {
        JournalMetrics {
            sync: ::metrics::histogram!(names::JOURNAL_SYNC, "journal" => journal.to_owned()),
            group: ::metrics::histogram!(names::JOURNAL_GROUP, "journal" => journal.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn ages_follow_the_oldest_entry_and_reset_when_it_goes() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        ::metrics::with_local_recorder(&rec, || {
            let mut m = DriverMetrics::new("host");
            let t0 = Instant::now();
            m.ages(t0, [(1, false), (2, true)].into_iter());
            m.ages(
                t0 + std::time::Duration::from_secs(5),
                [(1, false), (2, true), (3, false)].into_iter(),
            );
            let gauges = |name: &str| {
                snap.snapshot()
                    .into_vec()
                    .into_iter()
                    .find(|(k, ..)| k.key().name() == name)
                    .map(|(.., v)| v)
            };
            assert_eq!(
                gauges(names::REVERSAL_OLDEST),
                Some(DebugValue::Gauge(5.0.into()))
            );
            m.ages(t0 + std::time::Duration::from_secs(6), std::iter::empty());
            assert_eq!(
                gauges(names::REVERSAL_OLDEST),
                Some(DebugValue::Gauge(0.0.into()))
            );
            m.turn(
                2,
                0,
                EngineStats {
                    reversals_acked: 3,
                    ..EngineStats::default()
                },
            );
            assert_eq!(gauges(names::REVERSALS_ACKED), Some(DebugValue::Counter(3)));
            assert_eq!(
                gauges(names::REVERSALS_PENDING),
                Some(DebugValue::Gauge(2.0.into()))
            );
        });
    }
}
