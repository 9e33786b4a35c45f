//! [`ReplayWindow`]: bounded memory of the requests a host has accepted from one
//! terminal in the current session, to answer a replayed STAN with `94`.
//!
//! A request is identified by its MTI class and function digits plus its STAN, so that
//! a sale (0200) and its reversal (0400, which carries the original STAN) are distinct,
//! while a second 0200 with the same STAN is a duplicate. A repeat (0201, 0401, 0421:
//! odd origin digit) is by definition a retransmission of a request the host may have
//! seen and is never refused as a duplicate; the reversal rules make repeats idempotent.
//! Nor is a second copy of an advice (0120, 0220) or a reversal (0400, 0420): those are
//! delivered at least once (stored and repeated until answered), any answer ends them at
//! the sender, and the host's reversal rules answer a second copy with the first one's
//! answer. A `94` to one would end an advice the host may have applied as declined, or
//! a reversal as acknowledged that was never carried out. The same for a settlement
//! (0500) or batch upload (0320) sent again after no answer: its answer is computed
//! from the batch again. Only originals that move money on their own (0100, 0200) are
//! refused as duplicates.
//!
//! The window holds the last `capacity` accepted requests in a ring (4 bytes each).
//! A STAN reused after `capacity` newer requests is not detected — with STANs counting
//! up to 999999, a genuine reuse comes much later.

use isoswitch_codec::Mti;

use crate::counters::Stan;

/// The last `capacity` (MTI kind, STAN) pairs accepted from one terminal.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    ring: Box<[u32]>,
    next: usize,
    len: usize,
}

impl ReplayWindow {
    /// An empty window remembering `capacity` requests (at least 1).
    pub fn new(capacity: usize) -> ReplayWindow {
        ReplayWindow {
            ring: vec![0; capacity.max(1)].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    /// How many requests it remembers at most.
    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// How many requests it remembers now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it remembers nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything (a new sign-on starts a new session).
    pub fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
    }

    fn key(mti: Mti, stan: Stan) -> u32 {
        // class and function digits (0..=99) and the STAN (1..=999999): below 10^8.
        (u32::from(mti.class_digit()) * 10 + u32::from(mti.function_digit())) * 1_000_000
            + stan.get()
    }

    /// Whether a non-repeat request `mti`/`stan` was already accepted.
    pub fn contains(&self, mti: Mti, stan: Stan) -> bool {
        let k = ReplayWindow::key(mti, stan);
        self.ring[..self.len].contains(&k)
    }

    /// Whether a second copy of a request `mti` (its STAN already accepted) is a
    /// duplicate: authorization and financial requests that are not repeats (0100,
    /// 0200), which move money on their own. Repeats, advices, reversals, settlement and
    /// upload are delivered at least once and answered idempotently (module docs).
    pub fn refuses_second_copy(mti: Mti) -> bool {
        use isoswitch_codec::{MessageClass as C, MessageFunction as F};
        !mti.is_repeat()
            && matches!(mti.class(), C::Authorization | C::Financial)
            && mti.function() == F::Request
    }

    /// Records a request and returns `true` if it is fresh; returns `false` (and
    /// records nothing) for a duplicate. Repeats are always fresh and recorded only if
    /// their original is not already there.
    pub fn check_and_record(&mut self, mti: Mti, stan: Stan) -> bool {
        let seen = self.contains(mti, stan);
        if seen {
            return !ReplayWindow::refuses_second_copy(mti);
        }
        self.ring[self.next] = ReplayWindow::key(mti, stan);
        self.next = (self.next + 1) % self.ring.len();
        self.len = (self.len + 1).min(self.ring.len());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mti(s: &str) -> Mti {
        s.parse().expect("mti")
    }

    fn stan(n: u32) -> Stan {
        Stan::new(n).expect("stan")
    }

    #[test]
    fn duplicates_repeats_and_distinct_kinds() {
        let mut w = ReplayWindow::new(4);
        assert!(w.check_and_record(mti("0200"), stan(1)));
        assert!(!w.check_and_record(mti("0200"), stan(1)));
        // The reversal of STAN 1 is another kind of request.
        assert!(w.check_and_record(mti("0400"), stan(1)));
        // Its repeats are fine, as is a repeat whose original was never seen.
        assert!(w.check_and_record(mti("0401"), stan(1)));
        assert!(w.check_and_record(mti("0401"), stan(1)));
        assert!(w.check_and_record(mti("0201"), stan(9)));
        assert_eq!(w.len(), 3);
        // A second copy of an advice or a reversal is no duplicate (answered with the
        // first one's answer by the reversal rules); a second sale or authorization is.
        assert!(w.check_and_record(mti("0400"), stan(1)));
        assert!(w.check_and_record(mti("0220"), stan(2)));
        assert!(w.check_and_record(mti("0220"), stan(2)));
        assert!(w.check_and_record(mti("0120"), stan(3)));
        assert!(w.check_and_record(mti("0120"), stan(3)));
        assert!(w.check_and_record(mti("0100"), stan(4)));
        assert!(!w.check_and_record(mti("0100"), stan(4)));
        // A settlement or an upload sent again after no answer is answered again.
        assert!(w.check_and_record(mti("0500"), stan(5)));
        assert!(w.check_and_record(mti("0500"), stan(5)));
        assert!(w.check_and_record(mti("0320"), stan(6)));
        assert!(w.check_and_record(mti("0320"), stan(6)));
    }

    #[test]
    fn memory_is_bounded_and_oldest_entries_fall_out() {
        let mut w = ReplayWindow::new(3);
        for n in 1..=5 {
            assert!(w.check_and_record(mti("0200"), stan(n)));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.capacity(), 3);
        assert!(!w.contains(mti("0200"), stan(2)));
        assert!(w.contains(mti("0200"), stan(3)));
        assert!(!w.check_and_record(mti("0200"), stan(5)));
        w.clear();
        assert!(w.is_empty());
        assert!(w.check_and_record(mti("0200"), stan(5)));
    }
}
