//! The device side's future-key registers, shared by TDES and AES DUKPT.
//!
//! Register `b` holds the key for the counter made of the current counter's bits above
//! `b` with bit `b` set. Using the key for counter `c` (register of `c`'s lowest 1 bit)
//! erases it; if `c` has fewer 1 bits than the limit, the keys for `c | b` for every
//! lower bit `b` are generated from it first and the counter moves to `c + 1`,
//! otherwise the counter jumps by `c`'s lowest 1 bit (skipping every counter with too
//! many 1 bits). A counter that overflows its width ends the device (ANSI X9.24-1
//! A.2 "New Key", X9.24-3 6.5).

use zeroize::Zeroize;

use crate::error::DukptError;

/// The registers and the counter. `K` is the raw key type, wiped on drop by its owner
/// (`Zeroizing`).
pub(crate) struct FutureKeys<K: Zeroize> {
    regs: Vec<Option<K>>,
    /// The counter of the next transaction; `None` once exhausted.
    next: Option<u64>,
    bits: u32,
    max_ones: u32,
}

impl<K: Zeroize> FutureKeys<K> {
    /// A device just loaded with its initial key: register `b` gets the key for
    /// counter `1 << b`, and the next counter is 1.
    pub(crate) fn load(bits: u32, max_ones: u32, mut derive: impl FnMut(u64) -> K) -> Self {
        let regs = (0..bits).map(|b| Some(derive(1u64 << b))).collect();
        FutureKeys {
            regs,
            next: Some(1),
            bits,
            max_ones,
        }
    }

    /// A device whose next transaction uses `counter`, in the state it would have
    /// reached by using every earlier counter: register `b` holds the key for
    /// `counter`'s bits above `b` plus bit `b`, for the lowest 1 bit of `counter` and
    /// every 0 bit above it; the others are erased. `derive(c)` is the host-side key
    /// for counter `c`.
    pub(crate) fn resume(
        bits: u32,
        max_ones: u32,
        counter: u64,
        mut derive: impl FnMut(u64) -> K,
    ) -> Result<Self, DukptError> {
        let ones = counter.count_ones();
        if counter == 0 || ones > max_ones || counter >> bits != 0 {
            return Err(DukptError::CounterNotUsable {
                counter: counter as u32,
                ones,
                max: max_ones,
            });
        }
        let low = counter.trailing_zeros();
        let regs = (0..bits)
            .map(|b| {
                let bit = 1u64 << b;
                if b == low || (b > low && counter & bit == 0) {
                    let above = counter & !((bit << 1) - 1);
                    Some(derive(above | bit))
                } else {
                    None
                }
            })
            .collect();
        Ok(FutureKeys {
            regs,
            next: Some(counter),
            bits,
            max_ones,
        })
    }

    /// The counter the next transaction will use, or `None` once exhausted.
    pub(crate) fn next_counter(&self) -> Option<u64> {
        self.next
    }

    /// Takes the key for the next counter out of its register, refills the registers
    /// below it with `derive(key, counter)` and advances the counter. Returns the
    /// counter and its key.
    pub(crate) fn advance(
        &mut self,
        mut derive: impl FnMut(&K, u64) -> K,
    ) -> Result<(u64, K), DukptError> {
        loop {
            let counter = self.next.ok_or(DukptError::Exhausted)?;
            let low = counter & counter.wrapping_neg();
            let index = low.trailing_zeros() as usize;
            let taken = self.regs.get_mut(index).and_then(Option::take);
            let next = match &taken {
                Some(key) if counter.count_ones() < self.max_ones => {
                    let mut bit = low >> 1;
                    while bit != 0 {
                        let i = bit.trailing_zeros() as usize;
                        if let Some(slot) = self.regs.get_mut(i) {
                            if let Some(old) = slot.as_mut() {
                                old.zeroize();
                            }
                            *slot = Some(derive(key, counter | bit));
                        }
                        bit >>= 1;
                    }
                    counter + 1
                }
                // Ten (or sixteen) 1 bits: no keys below this one, skip past them.
                // An erased register (never in normal use) skips the same way.
                _ => counter + low,
            };
            self.next = (next >> self.bits == 0).then_some(next);
            if let Some(key) = taken {
                return Ok((counter, key));
            }
        }
    }
}

impl<K: Zeroize> Drop for FutureKeys<K> {
    fn drop(&mut self) {
        for k in self.regs.iter_mut().flatten() {
            k.zeroize();
        }
    }
}
