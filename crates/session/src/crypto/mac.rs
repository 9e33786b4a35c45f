//! Message authentication codes over a byte slice.
//!
//! This module MACs exactly the bytes it is given. Which span of a message is MACed
//! (for `cup-pos`: from the MTI to the end of the field before 64) is the dialect's
//! business, decided by the caller.
//!
//! | [`MacAlgorithm`] | standard | key |
//! |---|---|---|
//! | `CbcDes(p)` | ISO/IEC 9797-1 MAC algorithm 1, zero IV, padding `p` | DES |
//! | `CbcTdes(p)` | ISO/IEC 9797-1 MAC algorithm 1, zero IV, padding `p` | 2- or 3-key TDES |
//! | `X919(p)` | ISO/IEC 9797-1 MAC algorithm 3 = ANSI X9.19 retail MAC | 2-key TDES (K1 ‖ K2) |
//! | `AesCmac` | RFC 4493 / NIST SP 800-38B CMAC, 16-byte tag | AES-128/192/256 |
//! | `CupPos` | China UnionPay POS "ECB" MAC, 8 ASCII hex characters | DES or 2-key TDES |
//!
//! [`verify`] compares in constant time.
//!
//! Every algorithm runs on the cipher (key schedule, CMAC subkeys) cached in the
//! [`Key`], and streams the data through one fixed block buffer: a MAC computes no
//! key schedule and allocates nothing.

use std::fmt;

use cipher::consts::U16;
use cipher::BlockEncrypt;
use subtle::ConstantTimeEq;

use crate::crypto::keys::{BlockCipher, CmacSubkeys, Key, KeyKind};
use crate::error::{Result, SessionError};

/// Shortest MAC that [`verify`] accepts and [`MacValue::truncated`] produces (32 bits,
/// the ISO/IEC 9797-1 minimum).
pub const MIN_MAC_LEN: usize = 4;

/// ISO/IEC 9797-1 padding method for the 8-byte-block algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Padding {
    /// Method 1: append zero bytes up to a multiple of 8; a message already a multiple
    /// of 8 is unchanged, and an empty message becomes one zero block.
    Method1,
    /// Method 2: append `0x80`, then zero bytes up to a multiple of 8 (always adds at
    /// least one byte).
    Method2,
}

/// A MAC algorithm; see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    /// ISO/IEC 9797-1 algorithm 1 (CBC-MAC, zero IV) with single DES.
    CbcDes(Padding),
    /// ISO/IEC 9797-1 algorithm 1 (CBC-MAC, zero IV) with two- or three-key TDES.
    CbcTdes(Padding),
    /// ISO/IEC 9797-1 algorithm 3, ANSI X9.19 retail MAC: single-DES CBC under K1, then
    /// the last block decrypted under K2 and encrypted under K1.
    X919(Padding),
    /// AES-CMAC (RFC 4493 for AES-128; NIST SP 800-38B for 192/256), full 16 bytes.
    AesCmac,
    /// The `cup-pos` MAC (domain notes 4.3): XOR of zero-padded 8-byte blocks, hex
    /// expansion, two encryptions; 8 ASCII uppercase hex characters.
    CupPos,
}

/// A computed MAC. Not secret: `Debug` and `Display` show uppercase hex. Equality is
/// constant time.
#[derive(Clone, Copy)]
pub struct MacValue {
    bytes: [u8; 16],
    len: u8,
}

impl MacValue {
    fn new(bytes: &[u8]) -> MacValue {
        let mut b = [0u8; 16];
        let len = bytes.len().min(16);
        b[..len].copy_from_slice(&bytes[..len]);
        MacValue {
            bytes: b,
            // `len` is at most 16.
            len: len as u8,
        }
    }

    /// A MAC received or computed elsewhere (e.g. by an HSM): 4 to 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<MacValue> {
        if bytes.len() < MIN_MAC_LEN || bytes.len() > 16 {
            return Err(SessionError::BadMacLength {
                min: MIN_MAC_LEN,
                max: 16,
                found: bytes.len(),
            });
        }
        Ok(MacValue::new(bytes))
    }

    /// The MAC bytes: 8 for the DES-based algorithms, 16 for AES-CMAC, 8 ASCII
    /// characters for `CupPos` (what field 64 carries).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: every algorithm produces at least [`MIN_MAC_LEN`] bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The leading `n` bytes as a new MAC (e.g. an AES-CMAC cut to 8 bytes for field
    /// 64). `n` must be between [`MIN_MAC_LEN`] and the current length.
    pub fn truncated(&self, n: usize) -> Result<MacValue> {
        if n < MIN_MAC_LEN || n > self.len() {
            return Err(SessionError::BadMacLength {
                min: MIN_MAC_LEN,
                max: self.len(),
                found: n,
            });
        }
        Ok(MacValue::new(&self.bytes[..n]))
    }

    /// Uppercase hex of the bytes.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Compares a received MAC with the leading bytes of this one in constant time.
    /// `received` may be [`MIN_MAC_LEN`] bytes up to this MAC's length.
    pub fn verify(&self, received: &[u8]) -> Result<()> {
        if received.len() < MIN_MAC_LEN || received.len() > self.len() {
            return Err(SessionError::BadMacLength {
                min: MIN_MAC_LEN,
                max: self.len(),
                found: received.len(),
            });
        }
        if bool::from(self.bytes[..received.len()].ct_eq(received)) {
            Ok(())
        } else {
            Err(SessionError::MacMismatch)
        }
    }
}

impl PartialEq for MacValue {
    fn eq(&self, other: &MacValue) -> bool {
        self.len == other.len && bool::from(self.as_bytes().ct_eq(other.as_bytes()))
    }
}

impl Eq for MacValue {}

impl fmt::Display for MacValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MacValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacValue({self})")
    }
}

/// Computes the MAC of `data` under `key`.
///
/// Errors with [`SessionError::WrongKeyAlgorithm`] when the key does not fit the
/// algorithm (see the module table). Never panics.
///
/// ```
/// use isoswitch_session::crypto::keys::Key;
/// use isoswitch_session::crypto::mac::{compute, MacAlgorithm, Padding};
/// let key = Key::des(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])?;
/// let mac = compute(MacAlgorithm::CbcDes(Padding::Method1), &key, b"Now is the time for all ")?;
/// assert_eq!(mac.to_hex(), "70A30640CC76DD8B");
/// # Ok::<(), isoswitch_session::SessionError>(())
/// ```
pub fn compute(alg: MacAlgorithm, key: &Key, data: &[u8]) -> Result<MacValue> {
    match alg {
        MacAlgorithm::CbcDes(padding) => {
            require(key, KeyKind::Des == key.kind(), "DES key")?;
            Ok(MacValue::new(&cbc_mac(key.cipher(), data, padding)))
        }
        MacAlgorithm::CbcTdes(padding) => {
            let ok = matches!(key.kind(), KeyKind::Tdes2 | KeyKind::Tdes3);
            require(key, ok, "two- or three-key TDES key")?;
            Ok(MacValue::new(&cbc_mac(key.cipher(), data, padding)))
        }
        MacAlgorithm::X919(padding) => {
            require(key, key.kind() == KeyKind::Tdes2, "two-key TDES key")?;
            Ok(MacValue::new(&x919(key, data, padding)?))
        }
        MacAlgorithm::AesCmac => Ok(MacValue::new(&aes_cmac(key, data)?)),
        MacAlgorithm::CupPos => {
            let ok = matches!(key.kind(), KeyKind::Des | KeyKind::Tdes2);
            require(key, ok, "DES or two-key TDES key")?;
            let steps = cup_pos_steps(key.cipher(), data);
            Ok(MacValue::new(&steps.mac))
        }
    }
}

/// Computes the MAC of `data` and compares `received` with it in constant time.
///
/// `received` may be the full MAC or a truncation of at least [`MIN_MAC_LEN`] bytes.
/// Errors with [`SessionError::MacMismatch`] when it differs (answered with response
/// code A0), [`SessionError::BadMacLength`] when its length is unusable.
pub fn verify(alg: MacAlgorithm, key: &Key, data: &[u8], received: &[u8]) -> Result<()> {
    compute(alg, key, data)?.verify(received)
}

fn require(key: &Key, ok: bool, expected: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(SessionError::WrongKeyAlgorithm {
            expected,
            found: key.kind(),
        })
    }
}

/// Calls `f` on each 8-byte block of `data` padded with `padding`.
fn for_each_padded_block(data: &[u8], padding: Padding, mut f: impl FnMut(&[u8; 8])) {
    let mut chunks = data.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut block = [0u8; 8];
        block.copy_from_slice(chunk);
        f(&block);
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    match padding {
        Padding::Method1 => {
            if !rest.is_empty() || data.is_empty() {
                f(&last);
            }
        }
        Padding::Method2 => {
            last[rest.len()] = 0x80;
            f(&last);
        }
    }
}

/// ISO/IEC 9797-1 algorithm 1 with a DES or TDES cipher: the final CBC block.
fn cbc_mac(cipher: &BlockCipher, data: &[u8], padding: Padding) -> [u8; 8] {
    match cipher {
        BlockCipher::Des(c) => cbc_u64(data, padding, |s| c.encrypt_u64(s)).to_be_bytes(),
        BlockCipher::Tdes2(c) => cbc_u64(data, padding, |s| c.encrypt_u64(s)).to_be_bytes(),
        BlockCipher::Tdes3(c) => cbc_u64(data, padding, |s| c.encrypt_u64(s)).to_be_bytes(),
        // Not reached (the callers check for a DES-family key); the generic path.
        _ => {
            let mut state = [0u8; 8];
            for_each_padded_block(data, padding, |block| {
                xor_into(&mut state, block);
                cipher.encrypt_block(&mut state);
            });
            state
        }
    }
}

/// The CBC chain (zero IV) of the padded `data` under a block function on big-endian
/// `u64` blocks: the final chaining value.
#[inline]
fn cbc_u64(data: &[u8], padding: Padding, encrypt: impl Fn(u64) -> u64) -> u64 {
    let mut state = 0u64;
    for_each_padded_block(data, padding, |block| {
        state = encrypt(state ^ u64::from_be_bytes(*block));
    });
    state
}

/// ISO/IEC 9797-1 algorithm 3 (X9.19): CBC under K1, then D(K2), E(K1) on the result.
/// Uses the single-DES halves kept by a two-key TDES [`Key`].
fn x919(key: &Key, data: &[u8], padding: Padding) -> Result<[u8; 8]> {
    let BlockCipher::Tdes2(tdes) = key.cipher() else {
        return Err(SessionError::WrongKeyAlgorithm {
            expected: "two-key TDES key",
            found: key.kind(),
        });
    };
    let (k1, k2) = (tdes.k1(), tdes.k2());
    let state = cbc_u64(data, padding, |s| k1.encrypt_u64(s));
    Ok(k1.encrypt_u64(k2.decrypt_u64(state)).to_be_bytes())
}

/// AES-CMAC of `data` (RFC 4493; NIST SP 800-38B for AES-192/256).
pub(crate) fn aes_cmac(key: &Key, data: &[u8]) -> Result<[u8; 16]> {
    key.require_aes("AES key")?;
    Ok(match key.cipher() {
        BlockCipher::Aes128(c, sk) => cmac(c, sk, data),
        BlockCipher::Aes192(c, sk) => cmac(c, sk, data),
        BlockCipher::Aes256(c, sk) => cmac(c, sk, data),
        _ => {
            return Err(SessionError::WrongKeyAlgorithm {
                expected: "AES key",
                found: key.kind(),
            })
        }
    })
}

/// CMAC (RFC 4493 section 2.4) with a keyed 128-bit block cipher and its subkeys.
///
/// Every block but the last is CBC-chained; the last is XORed with K1 when complete,
/// or padded with `0x80 00..` and XORed with K2 (an empty message is one padded
/// block). The subkey is XORed straight into the chaining state, so no buffer ever
/// holds a message block masked with a subkey.
fn cmac<C: BlockEncrypt<BlockSize = U16>>(
    cipher: &C,
    subkeys: &CmacSubkeys,
    data: &[u8],
) -> [u8; 16] {
    // Split off the last block: 1 to 16 bytes, or none for an empty message.
    let body_len = data.len().saturating_sub(1) / 16 * 16;
    let (body, last) = data.split_at(body_len);
    let mut state = [0u8; 16];
    for chunk in body.chunks_exact(16) {
        xor16(&mut state, chunk);
        cipher.encrypt_block((&mut state).into());
    }
    if last.len() == 16 {
        xor16(&mut state, last);
        xor16(&mut state, &subkeys.k1);
    } else {
        let mut padded = [0u8; 16];
        padded[..last.len()].copy_from_slice(last);
        padded[last.len()] = 0x80;
        xor16(&mut state, &padded);
        xor16(&mut state, &subkeys.k2);
    }
    cipher.encrypt_block((&mut state).into());
    state
}

fn xor16(acc: &mut [u8; 16], block: &[u8]) {
    for (a, b) in acc.iter_mut().zip(block) {
        *a ^= b;
    }
}

/// The intermediate values of the `cup-pos` MAC, kept for testing against the
/// published worked example.
struct CupPosSteps {
    #[cfg_attr(not(test), allow(dead_code))]
    r: [u8; 8],
    #[cfg_attr(not(test), allow(dead_code))]
    e1: [u8; 8],
    #[cfg_attr(not(test), allow(dead_code))]
    t: [u8; 8],
    #[cfg_attr(not(test), allow(dead_code))]
    e2: [u8; 8],
    mac: [u8; 8],
}

/// The `cup-pos` MAC (domain notes 4.3).
fn cup_pos_steps(cipher: &BlockCipher, data: &[u8]) -> CupPosSteps {
    // 1. Zero-pad to a multiple of 8 and XOR all blocks.
    let mut r = [0u8; 8];
    for_each_padded_block(data, Padding::Method1, |block| xor_into(&mut r, block));
    // 2. Uppercase hex: 16 ASCII characters.
    let h = upper_hex8(&r);
    // 3. E1 = encrypt(first 8 characters).
    let mut e1 = [0u8; 8];
    e1.copy_from_slice(&h[..8]);
    cipher.encrypt_block(&mut e1);
    // 4. T = E1 XOR last 8 characters.
    let mut t = e1;
    let mut h2 = [0u8; 8];
    h2.copy_from_slice(&h[8..]);
    xor_into(&mut t, &h2);
    // 5. E2 = encrypt(T).
    let mut e2 = t;
    cipher.encrypt_block(&mut e2);
    // 6. MAC = first 8 characters of uppercase hex of E2.
    let hex = upper_hex8(&e2);
    let mut mac = [0u8; 8];
    mac.copy_from_slice(&hex[..8]);
    CupPosSteps { r, e1, t, e2, mac }
}

fn upper_hex8(bytes: &[u8; 8]) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [0u8; 16];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0F)];
    }
    out
}

fn xor_into(acc: &mut [u8; 8], block: &[u8; 8]) {
    for (a, b) in acc.iter_mut().zip(block) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::crypto::test_hex(s)
    }

    fn mac_hex(alg: MacAlgorithm, key: &str, data: &[u8]) -> String {
        let key = if alg == MacAlgorithm::AesCmac {
            Key::aes(&hex(key))
        } else {
            Key::des_or_tdes(&hex(key))
        }
        .expect("key");
        compute(alg, &key, data).expect("mac").to_hex()
    }

    use MacAlgorithm::*;
    use Padding::*;

    // ---- domain.md 4.1, one test per vector ----

    #[test]
    fn domain_alg1_des_now_is_the_time() {
        assert_eq!(
            mac_hex(
                CbcDes(Method1),
                "0123456789ABCDEF",
                b"Now is the time for all "
            ),
            "70A30640CC76DD8B"
        );
    }

    #[test]
    fn domain_x919_now_is_the_time_for_all() {
        assert_eq!(
            mac_hex(
                X919(Method1),
                "0123456789ABCDEFFEDCBA9876543210",
                b"Now is the time for all "
            ),
            "A1C72E74EA3FA9B6"
        );
    }

    #[test]
    fn domain_x919_now_is_the_time_for_it_padding1() {
        assert_eq!(
            mac_hex(
                X919(Method1),
                "0123456789ABCDEFFEDCBA9876543210",
                b"Now is the time for it"
            ),
            "2E2B1428CC78254F"
        );
    }

    #[test]
    fn domain_x919_hello_world_padding1() {
        assert_eq!(
            mac_hex(
                X919(Method1),
                "41414141414141414242424242424242",
                b"hello world"
            ),
            "3DDE5C5511661CBF"
        );
    }

    #[test]
    fn domain_x919_hello_world_padding2() {
        assert_eq!(
            mac_hex(
                X919(Method2),
                "41414141414141414242424242424242",
                b"hello world"
            ),
            "E16941032C3BC7D4"
        );
    }

    #[test]
    fn domain_alg1_tdes_hello_world_padding1() {
        assert_eq!(
            mac_hex(
                CbcTdes(Method1),
                "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB",
                b"hello world"
            ),
            "68D9038F23360DF3"
        );
    }

    #[test]
    fn domain_alg1_tdes_hello_world_padding2() {
        assert_eq!(
            mac_hex(
                CbcTdes(Method2),
                "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB",
                b"hello world"
            ),
            "32DC341271ACCD00"
        );
    }

    #[test]
    fn domain_cup_pos_worked_example() {
        let key = Key::des(&hex("2222222222222222")).expect("key");
        let data = hex("1234567890ABCDEFABCDEF1234567890");
        let steps = cup_pos_steps(key.cipher(), &data);
        assert_eq!(steps.r.to_vec(), hex("B9F9B96AA4FDB57F"));
        assert_eq!(steps.e1.to_vec(), hex("9FDE90A34CF73B2E"));
        assert_eq!(steps.t.to_vec(), hex("DEEAD6E70EC20C68"));
        assert_eq!(steps.e2.to_vec(), hex("E267B6E21913D339"));
        let mac = compute(CupPos, &key, &data).expect("mac");
        assert_eq!(mac.as_bytes(), b"E267B6E2");
        verify(CupPos, &key, &data, b"E267B6E2").expect("verify");
    }

    // ---- psec docstring examples (psec.mac) ----

    #[test]
    fn psec_docstring_cbc_mac_tdes_padding2() {
        assert_eq!(
            mac_hex(
                CbcTdes(Method2),
                "0123456789ABCDEFFEDCBA9876543210",
                &hex("1234567890ABCDEF")
            ),
            "925B1737EF681AD3"
        );
    }

    // ---- RFC 4493 section 4, AES-128 ----

    const RFC4493_KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const RFC4493_MSG: &str = "6bc1bee22e409f96e93d7e117393172a\
                               ae2d8a571e03ac9c9eb76fac45af8e51\
                               30c81c46a35ce411e5fbc1191a0a52ef\
                               f69f2445df4f9b17ad2b417be66c3710";

    fn rfc4493(len: usize) -> String {
        let msg = hex(RFC4493_MSG);
        mac_hex(AesCmac, RFC4493_KEY, &msg[..len])
    }

    #[test]
    fn rfc4493_example1_empty() {
        assert_eq!(rfc4493(0), "BB1D6929E95937287FA37D129B756746");
    }

    #[test]
    fn rfc4493_example2_16_bytes() {
        assert_eq!(rfc4493(16), "070A16B46B4D4144F79BDD9DD04A287C");
    }

    #[test]
    fn rfc4493_example3_40_bytes() {
        assert_eq!(rfc4493(40), "DFA66747DE9AE63030CA32611497C827");
    }

    #[test]
    fn rfc4493_example4_64_bytes() {
        assert_eq!(rfc4493(64), "51F0BEBF7E3B9D92FC49741779363CFE");
    }

    // ---- NIST SP 800-38B appendix D (AES-192 and AES-256, same messages) ----

    const SP800_38B_192: &str = "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b";
    const SP800_38B_256: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";

    fn sp800_38b(key: &str, len: usize) -> String {
        let msg = hex(RFC4493_MSG);
        mac_hex(AesCmac, key, &msg[..len])
    }

    #[test]
    fn sp800_38b_aes192_examples() {
        assert_eq!(
            sp800_38b(SP800_38B_192, 0),
            "D17DDF46ADAACDE531CAC483DE7A9367"
        );
        assert_eq!(
            sp800_38b(SP800_38B_192, 16),
            "9E99A7BF31E710900662F65E617C5184"
        );
        assert_eq!(
            sp800_38b(SP800_38B_192, 40),
            "8A1DE5BE2EB31AAD089A82E6EE908B0E"
        );
        assert_eq!(
            sp800_38b(SP800_38B_192, 64),
            "A1D5DF0EED790F794D77589659F39A11"
        );
    }

    #[test]
    fn sp800_38b_aes256_examples() {
        assert_eq!(
            sp800_38b(SP800_38B_256, 0),
            "028962F61B7BF89EFC6B551F4667D983"
        );
        assert_eq!(
            sp800_38b(SP800_38B_256, 16),
            "28A7023F452E8F82BD4BF28D8C37C35C"
        );
        assert_eq!(
            sp800_38b(SP800_38B_256, 40),
            "AAF3D8F1DE5640C232F5B169B9C911E6"
        );
        assert_eq!(
            sp800_38b(SP800_38B_256, 64),
            "E1992190549F6ED5696A2C056C315410"
        );
    }

    // ---- padding edge cases ----

    #[test]
    fn padding_method1_empty_is_one_zero_block() {
        let key = Key::des(&hex("0123456789ABCDEF")).expect("key");
        let empty = compute(CbcDes(Method1), &key, b"").expect("mac");
        let zero_block = compute(CbcDes(Method1), &key, &[0u8; 8]).expect("mac");
        assert_eq!(empty, zero_block);
        // Method 1 does not distinguish trailing zeros; method 2 does.
        let a = compute(CbcDes(Method1), &key, b"abc").expect("mac");
        let b = compute(CbcDes(Method1), &key, b"abc\0").expect("mac");
        assert_eq!(a, b);
        let a2 = compute(CbcDes(Method2), &key, b"abc").expect("mac");
        let b2 = compute(CbcDes(Method2), &key, b"abc\0").expect("mac");
        assert_ne!(a2, b2);
    }

    #[test]
    fn padding_method2_full_block_adds_a_block() {
        let key = Key::des(&hex("0123456789ABCDEF")).expect("key");
        let m2 = compute(CbcDes(Method2), &key, b"12345678").expect("mac");
        let m1 = compute(
            CbcDes(Method1),
            &key,
            b"12345678\x80\x00\x00\x00\x00\x00\x00\x00",
        )
        .expect("mac");
        assert_eq!(m2, m1);
    }

    // ---- verify ----

    #[test]
    fn verify_accepts_truncations_and_rejects_changes() {
        let key = Key::aes(&hex(RFC4493_KEY)).expect("key");
        let mac = compute(AesCmac, &key, b"data").expect("mac");
        verify(AesCmac, &key, b"data", mac.as_bytes()).expect("full");
        verify(AesCmac, &key, b"data", &mac.as_bytes()[..8]).expect("8");
        let t = mac.truncated(8).expect("8");
        assert_eq!(t.len(), 8);
        let mut bad = [0u8; 8];
        bad.copy_from_slice(&mac.as_bytes()[..8]);
        bad[7] ^= 1;
        assert!(matches!(
            verify(AesCmac, &key, b"data", &bad),
            Err(SessionError::MacMismatch)
        ));
        assert!(matches!(
            verify(AesCmac, &key, b"datA", &mac.as_bytes()[..8]),
            Err(SessionError::MacMismatch)
        ));
        assert!(matches!(
            verify(AesCmac, &key, b"data", &mac.as_bytes()[..3]),
            Err(SessionError::BadMacLength { found: 3, .. })
        ));
        assert!(matches!(
            mac.truncated(17),
            Err(SessionError::BadMacLength { found: 17, .. })
        ));
    }

    #[test]
    fn wrong_key_algorithm_is_a_typed_error() {
        let des = Key::des(&[1; 8]).expect("des");
        let tdes3 = Key::tdes(&[1; 24]).expect("tdes3");
        let aes = Key::aes(&[1; 16]).expect("aes");
        for (alg, key) in [
            (CbcDes(Method1), &tdes3),
            (CbcTdes(Method1), &des),
            (X919(Method2), &tdes3),
            (X919(Method1), &aes),
            (AesCmac, &des),
            (CupPos, &tdes3),
            (CupPos, &aes),
        ] {
            assert!(
                matches!(
                    compute(alg, key, b"x"),
                    Err(SessionError::WrongKeyAlgorithm { .. })
                ),
                "{alg:?} with {key:?}"
            );
        }
    }

    #[test]
    fn cup_pos_tdes_key_and_empty_input() {
        // A 16-byte MAK whose halves are equal behaves as single DES.
        let des = Key::des(&hex("2222222222222222")).expect("des");
        let tdes = Key::tdes(&hex("22222222222222222222222222222222")).expect("tdes");
        let data = hex("1234567890ABCDEFABCDEF1234567890");
        assert_eq!(
            compute(CupPos, &des, &data).expect("des"),
            compute(CupPos, &tdes, &data).expect("tdes")
        );
        let empty = compute(CupPos, &des, b"").expect("empty");
        assert_eq!(empty.len(), 8);
        assert!(empty
            .as_bytes()
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }

    // ---- cross-check against the RustCrypto `cmac` crate ----

    fn reference_cmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        use aes::{Aes128, Aes192, Aes256};
        use cmac::{Cmac, Mac};
        fn run<M: Mac + cmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as cmac::digest::KeyInit>::new_from_slice(key).expect("key");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match key.len() {
            16 => run::<Cmac<Aes128>>(key, data),
            24 => run::<Cmac<Aes192>>(key, data),
            _ => run::<Cmac<Aes256>>(key, data),
        }
    }

    proptest::proptest! {
        #[test]
        fn aes_cmac_matches_cmac_crate(
            key_len in proptest::sample::select(vec![16usize, 24, 32]),
            key_bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 32),
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let raw = &key_bytes[..key_len];
            let key = Key::aes(raw).expect("key");
            let ours = compute(AesCmac, &key, &data).expect("mac");
            let reference = reference_cmac(raw, &data);
            proptest::prop_assert_eq!(ours.as_bytes(), reference.as_slice());
        }
    }
}
