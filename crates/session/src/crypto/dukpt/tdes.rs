//! TDES DUKPT, ANSI X9.24-1:2009 Annex A.
//!
//! Host side: [`derive_ipek`] (initial key from a double-length BDK and the KSN),
//! [`derive_current_key`] (the transaction key from the initial key and the KSN),
//! [`derive_transaction_key`] (both at once) and [`TransactionKey::variant`] (the PIN,
//! MAC and data keys of table A-1). Device side: [`TdesDevice`], the 21 future-key
//! registers of a terminal.
//!
//! ```
//! use isoswitch_session::crypto::dukpt::tdes::{derive_transaction_key, TdesKsn, Variant};
//! use isoswitch_session::crypto::keys::Key;
//! # fn hex(s: &str) -> Vec<u8> { (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect() }
//! let bdk = Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210"))?;
//! let ksn = TdesKsn::from_bytes(&hex("FFFF9876543210E00001"))?;
//! let pin_key = derive_transaction_key(&bdk, &ksn)?.variant(Variant::Pin)?;
//! // X9.24-1:2009 A.4.2, first transaction.
//! let expected = Key::tdes(&hex("042666B49184CF5C68DE9628D0397B36"))?;
//! assert_eq!(pin_key.kcv(), expected.kcv());
//! # Ok::<(), isoswitch_session::SessionError>(())
//! ```

use std::fmt;

use zeroize::Zeroizing;

use super::registers::FutureKeys;
use crate::crypto::des_fast::{Des, Tdes2};
use crate::crypto::keys::{Key, KeyKind};
use crate::error::{DukptError, Result};

/// Length of a TDES DUKPT key serial number.
pub const KSN_LEN: usize = 10;
/// Width of the transaction counter (the KSN's rightmost bits).
pub const COUNTER_BITS: u32 = 21;
/// Mask of the transaction counter.
pub const COUNTER_MASK: u32 = (1 << COUNTER_BITS) - 1;
/// Most 1 bits a device's counter may have.
pub const MAX_ONE_BITS: u32 = 10;
/// The last counter a device uses (ten 1 bits at the top).
pub const MAX_COUNTER: u32 = 0x1F_F800;

/// `C0C0 C0C0 0000 0000` applied to each half of a key (A.6, A.2).
const HALF_MASK: u64 = 0xC0C0_C0C0_0000_0000;

/// A 10-byte key serial number: key set ID, device ID and a 21-bit counter. Not
/// secret: `Debug` and `Display` show it in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TdesKsn([u8; KSN_LEN]);

impl TdesKsn {
    /// A KSN from exactly 10 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<TdesKsn> {
        let b: [u8; KSN_LEN] = bytes.try_into().map_err(|_| DukptError::KsnLength {
            expected: KSN_LEN,
            found: bytes.len(),
        })?;
        Ok(TdesKsn(b))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; KSN_LEN] {
        &self.0
    }

    /// The 21-bit transaction counter.
    pub fn counter(&self) -> u32 {
        (u32::from_be_bytes([0, self.0[7], self.0[8], self.0[9]])) & COUNTER_MASK
    }

    /// The same KSN with another counter (only its low 21 bits are used).
    pub fn with_counter(&self, counter: u32) -> TdesKsn {
        let mut b = self.0;
        let tail =
            (u32::from_be_bytes([0, b[7], b[8], b[9]]) & !COUNTER_MASK) | (counter & COUNTER_MASK);
        b[7..].copy_from_slice(&tail.to_be_bytes()[1..]);
        TdesKsn(b)
    }

    /// The rightmost 64 bits with the counter cleared (the KSN register's base).
    fn register_base(&self) -> u64 {
        let mut r = [0u8; 8];
        r.copy_from_slice(&self.0[2..]);
        u64::from_be_bytes(r) & !u64::from(COUNTER_MASK)
    }
}

impl fmt::Display for TdesKsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

impl fmt::Debug for TdesKsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TdesKsn({self})")
    }
}

/// The key variants of table A-1, each XORed into the transaction key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// PIN encryption.
    Pin,
    /// MAC, request messages.
    MacRequest,
    /// MAC, response messages.
    MacResponse,
    /// Data encryption, request messages (the variant is then encrypted under itself).
    DataRequest,
    /// Data encryption, response messages (likewise).
    DataResponse,
}

impl Variant {
    /// The XOR mask for each 8-byte half.
    const fn mask(self) -> u64 {
        match self {
            Variant::Pin => 0x0000_0000_0000_00FF,
            Variant::MacRequest => 0x0000_0000_0000_FF00,
            Variant::MacResponse => 0x0000_0000_FF00_0000,
            Variant::DataRequest => 0x0000_0000_00FF_0000,
            Variant::DataResponse => 0x0000_00FF_0000_0000,
        }
    }

    /// Every variant.
    pub const ALL: [Variant; 5] = [
        Variant::Pin,
        Variant::MacRequest,
        Variant::MacResponse,
        Variant::DataRequest,
        Variant::DataResponse,
    ];
}

/// A 16-byte key as two big-endian halves; wiped by its `Zeroizing` owner.
type Halves = [u64; 2];

fn halves(key: &Key) -> Result<Zeroizing<Halves>> {
    if key.kind() != KeyKind::Tdes2 {
        return Err(DukptError::BaseKeyKind {
            scheme: "TDES DUKPT",
            expected: "a double-length (16-byte) TDES key",
            found: key.kind(),
        }
        .into());
    }
    let m = key.material();
    let mut l = [0u8; 8];
    let mut r = [0u8; 8];
    l.copy_from_slice(&m[..8]);
    r.copy_from_slice(&m[8..16]);
    let h = Zeroizing::new([u64::from_be_bytes(l), u64::from_be_bytes(r)]);
    zeroize::Zeroize::zeroize(&mut l);
    zeroize::Zeroize::zeroize(&mut r);
    Ok(h)
}

fn to_key(h: &Halves) -> Result<Key> {
    let mut b = Zeroizing::new([0u8; 16]);
    b[..8].copy_from_slice(&h[0].to_be_bytes());
    b[8..].copy_from_slice(&h[1].to_be_bytes());
    Key::new(KeyKind::Tdes2, &b[..])
}

fn tdes(h: &Halves) -> Tdes2 {
    let mut b = Zeroizing::new([0u8; 16]);
    b[..8].copy_from_slice(&h[0].to_be_bytes());
    b[8..].copy_from_slice(&h[1].to_be_bytes());
    Tdes2::new(&b)
}

/// The non-reversible key generation process (A.2): each half is
/// `right XOR DES(left, right XOR register)` of the key (right half) or of the key
/// XOR the `C0C0..` mask (left half).
fn non_reversible(key: &Halves, register: u64) -> Zeroizing<Halves> {
    let half = |l: u64, r: u64| r ^ Des::new(&l.to_be_bytes()).encrypt_u64(r ^ register);
    Zeroizing::new([
        half(key[0] ^ HALF_MASK, key[1] ^ HALF_MASK),
        half(key[0], key[1]),
    ])
}

/// The initial key (IPEK) of the device whose KSN is `ksn` (its counter is ignored),
/// from a double-length BDK (A.6).
pub fn derive_ipek(bdk: &Key, ksn: &TdesKsn) -> Result<Key> {
    to_key(&*ipek_halves(bdk, ksn)?)
}

fn ipek_halves(bdk: &Key, ksn: &TdesKsn) -> Result<Zeroizing<Halves>> {
    let b = halves(bdk)?;
    let initial = ksn.with_counter(0);
    let mut l = [0u8; 8];
    l.copy_from_slice(&initial.0[..8]);
    let data = u64::from_be_bytes(l);
    let left = tdes(&b).encrypt_u64(data);
    let masked = Zeroizing::new([b[0] ^ HALF_MASK, b[1] ^ HALF_MASK]);
    let right = tdes(&masked).encrypt_u64(data);
    Ok(Zeroizing::new([left, right]))
}

fn current_halves(ipek: &Halves, ksn: &TdesKsn) -> Zeroizing<Halves> {
    let counter = ksn.counter();
    let mut register = ksn.register_base();
    let mut key = Zeroizing::new(*ipek);
    for b in (0..COUNTER_BITS).rev() {
        let bit = 1u32 << b;
        if counter & bit != 0 {
            register |= u64::from(bit);
            key = non_reversible(&key, register);
        }
    }
    key
}

/// The current transaction key for `ksn` from the device's initial key (A.3,
/// host side): one non-reversible step per 1 bit of the counter, most significant
/// first. Counter 0 gives the initial key itself. Counters a device never uses (more
/// than ten 1 bits) are derived all the same.
pub fn derive_current_key(ipek: &Key, ksn: &TdesKsn) -> Result<TransactionKey> {
    let ipek = halves(ipek)?;
    Ok(TransactionKey {
        ksn: *ksn,
        current: current_halves(&ipek, ksn),
    })
}

/// The current transaction key for `ksn` straight from the BDK (what a host does).
pub fn derive_transaction_key(bdk: &Key, ksn: &TdesKsn) -> Result<TransactionKey> {
    let ipek = ipek_halves(bdk, ksn)?;
    Ok(TransactionKey {
        ksn: *ksn,
        current: current_halves(&ipek, ksn),
    })
}

/// The working key of one variant for `ksn`, from the BDK.
pub fn derive_working_key(bdk: &Key, ksn: &TdesKsn, variant: Variant) -> Result<Key> {
    derive_transaction_key(bdk, ksn)?.variant(variant)
}

/// One transaction's key: the KSN and the current key, from which the variant keys
/// come. Wiped on drop; `Debug` shows only the KSN.
pub struct TransactionKey {
    ksn: TdesKsn,
    current: Zeroizing<Halves>,
}

impl TransactionKey {
    /// The KSN this key belongs to (what the terminal sends, e.g. in DE 53).
    pub fn ksn(&self) -> &TdesKsn {
        &self.ksn
    }

    /// The current key itself (no variant).
    pub fn current(&self) -> Result<Key> {
        to_key(&self.current)
    }

    /// The key of `variant` (table A-1). The data variants are then encrypted under
    /// themselves, each half TDES-ECB (A.4.1, X9.24-1:2009).
    pub fn variant(&self, variant: Variant) -> Result<Key> {
        let m = variant.mask();
        let v = Zeroizing::new([self.current[0] ^ m, self.current[1] ^ m]);
        match variant {
            Variant::DataRequest | Variant::DataResponse => {
                let c = tdes(&v);
                to_key(&[c.encrypt_u64(v[0]), c.encrypt_u64(v[1])])
            }
            _ => to_key(&v),
        }
    }
}

impl fmt::Debug for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionKey {{ ksn: {}, key: **** }}", self.ksn)
    }
}

/// A TDES DUKPT terminal: the KSN register and the 21 future-key registers
/// (A.2). Each [`TdesDevice::next_transaction`] hands out the key of the next usable
/// counter and erases it; counters with more than ten 1 bits are skipped, and after
/// [`MAX_COUNTER`] the device is exhausted. Keys are wiped on drop.
pub struct TdesDevice {
    ksn: TdesKsn,
    keys: FutureKeys<Zeroizing<Halves>>,
}

impl TdesDevice {
    /// A device just loaded with its initial key and initial KSN (counter ignored);
    /// its first transaction uses counter 1.
    pub fn load_initial_key(ipek: &Key, ksn: &TdesKsn) -> Result<TdesDevice> {
        let ipek = halves(ipek)?;
        let base = ksn.with_counter(0);
        let keys = FutureKeys::load(COUNTER_BITS, MAX_ONE_BITS, |c| {
            current_halves(&ipek, &base.with_counter(c as u32))
        });
        Ok(TdesDevice { ksn: base, keys })
    }

    /// A device whose next transaction uses `ksn`'s counter, with the registers it
    /// would hold after all earlier counters (for simulators that persist only the
    /// KSN). Errors if the counter is 0 or has more than ten 1 bits.
    pub fn resume(ipek: &Key, ksn: &TdesKsn) -> Result<TdesDevice> {
        let ipek = halves(ipek)?;
        let base = ksn.with_counter(0);
        let keys = FutureKeys::resume(COUNTER_BITS, MAX_ONE_BITS, u64::from(ksn.counter()), |c| {
            current_halves(&ipek, &base.with_counter(c as u32))
        })?;
        Ok(TdesDevice { ksn: base, keys })
    }

    /// The KSN the next transaction will carry, or `None` once exhausted.
    pub fn next_ksn(&self) -> Option<TdesKsn> {
        self.keys
            .next_counter()
            .map(|c| self.ksn.with_counter(c as u32))
    }

    /// The key for the next transaction; the device moves on to the next usable
    /// counter. Fails with [`DukptError::Exhausted`] after the last one.
    pub fn next_transaction(&mut self) -> Result<TransactionKey> {
        let base = self.ksn;
        let (counter, key) = self
            .keys
            .advance(|key, c| non_reversible(key, base.register_base() | c))?;
        Ok(TransactionKey {
            ksn: base.with_counter(counter as u32),
            current: key,
        })
    }
}

impl fmt::Debug for TdesDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TdesDevice")
            .field("next_ksn", &self.next_ksn())
            .finish_non_exhaustive()
    }
}
