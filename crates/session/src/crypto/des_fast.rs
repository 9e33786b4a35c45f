//! Table-driven DES and triple DES (EDE, two and three keys) on 8-byte blocks.
//!
//! # Why this exists
//!
//! Every transaction through the switch costs about a dozen DES blocks per X9.19 MAC
//! (computed four times on the host link: the switch seals, the host verifies, the
//! host seals, the switch verifies), the `cup-pos` MACs on the terminal link and a TDES
//! PIN translation. RustCrypto's `des` crate computes the S-boxes and the P permutation
//! bit by bit (it is written to be constant time), about 2,400 instructions per DES
//! block, which made DES the largest single cost of the end-to-end path (about 19% of
//! the CPU time of `switchd` and 25% of `host_sim` under load, by `perf`).
//!
//! This module is the classic design used by OpenSSL's `DES_encrypt1`, libtomcrypt and
//! Outerbridge's `d3des`:
//!
//! - the 16 round subkeys are computed once, when the key is set up, and stored as two
//!   32-bit words per round holding the eight 6-bit S-box inputs' key bits;
//! - eight "SP" tables of 64 words each combine an S-box with the P permutation (and
//!   the one-bit rotation the round function works in), so a round is two rotations,
//!   two XORs with the subkey and eight table look-ups;
//! - the initial and final permutations are done with five "delta swaps" each rather
//!   than bit by bit;
//! - triple DES applies the initial permutation once and the final permutation once
//!   around its 48 rounds (the FP/IP pairs between the stages cancel).
//!
//! Measured (valgrind `callgrind`, release build, instructions):
//!
//! | | this module | `des` 0.8 |
//! |---|---|---|
//! | one single-DES block | 690 | 2,450 |
//! | one two- or three-key TDES block | 1,870 | 7,320 |
//! | X9.19 MAC of 100 bytes | 10,400 | 37,000 |
//! | key setup, single DES (at key load, not per message) | 12,200 | 1,500 |
//!
//! In time (`cargo bench --bench session -- des_block`, on a shared 2-core AMD EPYC
//! machine) a chained single-DES block takes about 90 ns against 230 ns: a CBC chain
//! is bound by the latency of the round function's dependency chain (about a dozen
//! cycles a round) more than by its instruction count. Under load, DES went from about
//! 19% of `switchd`'s CPU time and 25% of `host_sim`'s (`perf`, cpu-clock samples) to
//! about 7% and 12%.
//!
//! The SP tables are generated at compile time from the S-boxes and P of FIPS 46-3
//! (below), not typed in. RustCrypto's `des` stays in the crate's dev-dependencies as
//! the oracle: `crates/session/tests/des_oracle.rs` compares single, two-key and
//! three-key encryption and decryption with it on thousands of random keys and blocks,
//! next to the published known-answer vectors in this module's tests.
//!
//! # Timing side channel
//!
//! Table look-ups indexed by key-dependent values are **not** constant time: the cache
//! lines touched depend on the key and data. The tables are 2 KiB (eight 256-byte
//! tables, 32 cache lines) and stay resident in L1 in a busy process, which is the
//! same trade-off OpenSSL's non-bitsliced DES makes; a local attacker sharing the core
//! and able to evict and time those lines (Flush+Reload, Prime+Probe) could in
//! principle learn key bits (the key schedule itself has no key-dependent memory
//! access or branch). Where untrusted code can share a core with the process, keep
//! the keys in an HSM, as payment networks require of production keys anyway, or
//! use RustCrypto's constant-time `des` instead.
//!
//! # Key material
//!
//! The key schedules ([`Des`], [`Tdes2`], [`Tdes3`]) are secret: they are wiped on drop
//! ([`zeroize::ZeroizeOnDrop`]) and their `Debug` shows no key bits. Parity bits are
//! ignored, as DES ignores them.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// The eight S-boxes of FIPS 46-3, each as 4 rows of 16 entries.
const S_BOXES: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, //
        0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8, //
        4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, //
        15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, //
        3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5, //
        0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, //
        13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, //
        13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1, //
        13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, //
        1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, //
        13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9, //
        10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, //
        3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, //
        14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6, //
        4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, //
        11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, //
        10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8, //
        9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, //
        4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, //
        13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6, //
        1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, //
        6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, //
        1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2, //
        7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, //
        2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// The P permutation of FIPS 46-3: output bit `i` (1-based, most significant first)
/// is input bit `P[i - 1]`.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, //
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1: the 56 key bits (1-based positions in the 64-bit key) that form
/// C (first 28) and D (last 28).
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, //
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36, //
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, //
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2: the 48 bits of C‖D (1-based) that form a round subkey.
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, //
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, //
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, //
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of C and D before each round's subkey.
const SHIFTS: [u8; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// `SP[j][x]`: S-box `j` (0-based) on the 6-bit input `x` (E-expansion order, most
/// significant bit first), its 4 output bits placed at bits `4j+1 ..= 4j+4` of the
/// round function's output, permuted by P, and rotated left by one bit (the halves are
/// kept rotated left by one during the rounds, see [`ip`]).
static SP: [[u32; 64]; 8] = build_sp();

const fn build_sp() -> [[u32; 64]; 8] {
    let mut sp = [[0u32; 64]; 8];
    let mut j = 0;
    while j < 8 {
        let mut x = 0;
        while x < 64 {
            let row = ((x >> 4) & 2) | (x & 1);
            let col = (x >> 1) & 0xF;
            let s = S_BOXES[j][row * 16 + col] as u32;
            // Bit k (1-based, MSB first) of a 32-bit word is at position 32 - k.
            let pre = s << (28 - 4 * j);
            let mut out = 0u32;
            let mut i = 0;
            while i < 32 {
                let from = P[i] as u32;
                if (pre >> (32 - from)) & 1 == 1 {
                    out |= 1 << (31 - i);
                }
                i += 1;
            }
            sp[j][x] = out.rotate_left(1);
            x += 1;
        }
        j += 1;
    }
    sp
}

/// The 16 round subkeys of one DES key. Round `r` uses words `2r` (the key bits of
/// S-boxes 1, 3, 5, 7, in bits 24, 16, 8, 0) and `2r + 1` (S-boxes 2, 4, 6, 8).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Schedule([u32; 32]);

impl Schedule {
    fn new(key: &[u8; 8]) -> Schedule {
        // PC1, then per round the C and D rotations and PC2, each a branch-free gather
        // over its FIPS 46-3 table (`pc1`, `pc2` below): no key-dependent branch or
        // memory access. Key setup runs at key load (sign-on), not per message.
        let cd = pc1(u64::from_be_bytes(*key)) >> 8;
        let mut c = cd >> 28;
        let mut d = cd & 0x0FFF_FFFF;
        let mut words = [0u32; 32];
        for (round, &shift) in SHIFTS.iter().enumerate() {
            c = rotate28(c, shift);
            d = rotate28(d, shift);
            // The 48-bit subkey, bit 1 in position 47.
            let k = pc2(((c << 28) | d) << 8) >> 16;
            words[2 * round] = spread(k, [0, 2, 4, 6]);
            words[2 * round + 1] = spread(k, [1, 3, 5, 7]);
        }
        c.zeroize();
        d.zeroize();
        Schedule(words)
    }

    /// The 16 rounds, encrypting, on halves already through [`ip`].
    #[inline(always)]
    fn encrypt_rounds(&self, l: &mut u32, r: &mut u32) {
        let k = &self.0;
        for i in 0..8 {
            *l ^= f(*r, k[4 * i], k[4 * i + 1]);
            *r ^= f(*l, k[4 * i + 2], k[4 * i + 3]);
        }
    }

    /// The 16 rounds with the subkeys in reverse order (decryption).
    #[inline(always)]
    fn decrypt_rounds(&self, l: &mut u32, r: &mut u32) {
        let k = &self.0;
        for i in 0..8 {
            *l ^= f(*r, k[30 - 4 * i], k[31 - 4 * i]);
            *r ^= f(*l, k[28 - 4 * i], k[29 - 4 * i]);
        }
    }
}

/// The key bits of four S-boxes (`boxes`, 0-based) of a 48-bit subkey `k` (S-box j's
/// six bits in bits `42 - 6j ..= 47 - 6j`), placed in bits 24, 16, 8 and 0 of a word.
#[inline(always)]
fn spread(k: u64, boxes: [u32; 4]) -> u32 {
    let chunk = |j: u32| ((k >> (42 - 6 * j)) & 0x3F) as u32;
    (chunk(boxes[0]) << 24) | (chunk(boxes[1]) << 16) | (chunk(boxes[2]) << 8) | chunk(boxes[3])
}

/// Rotates a 28-bit value left by `shift` (1 or 2).
#[inline(always)]
fn rotate28(v: u64, shift: u8) -> u64 {
    ((v << shift) | (v >> (28 - shift))) & 0x0FFF_FFFF
}

/// Gathers bits of `word` (positions 1-based from the most significant bit, as the
/// FIPS 46-3 tables give them) into the top bits of the result, in table order. The
/// loop visits every table entry whatever the key: no key-dependent branch or memory
/// access.
#[inline(always)]
fn gather(word: u64, table: &[u8]) -> u64 {
    let mut out = 0u64;
    for (i, &from) in table.iter().enumerate() {
        out |= ((word >> (64 - u32::from(from))) & 1) << (63 - i);
    }
    out
}

/// Permuted choice 1 of a key given as a big-endian `u64`: the 56 bits C‖D in the top
/// 56 bits (bit 1 of C in bit 63).
fn pc1(key: u64) -> u64 {
    gather(key, &PC1)
}

/// Permuted choice 2 of C‖D given in the top 56 bits: the 48-bit subkey in the top 48
/// bits (bit 1 in bit 63).
fn pc2(cd: u64) -> u64 {
    gather(cd, &PC2)
}

/// The round function on a (rotated) half `r` with one round's two subkey words.
///
/// The eight table words have disjoint bits (each S-box feeds its own four output bits
/// through P), so OR combines them as XOR would. Two OR groups joined by XOR keep the
/// compiler from folding all eight look-ups into one chain of XORs on the other half:
/// the dependency chain of a round, which bounds CBC-MAC speed, stays short.
#[inline(always)]
fn f(r: u32, k0: u32, k1: u32) -> u32 {
    let w = r.rotate_right(4) ^ k0;
    let v = r ^ k1;
    let a = SP[6][(w & 0x3F) as usize]
        | SP[4][((w >> 8) & 0x3F) as usize]
        | SP[2][((w >> 16) & 0x3F) as usize]
        | SP[0][((w >> 24) & 0x3F) as usize];
    let b = SP[7][(v & 0x3F) as usize]
        | SP[5][((v >> 8) & 0x3F) as usize]
        | SP[3][((v >> 16) & 0x3F) as usize]
        | SP[1][((v >> 24) & 0x3F) as usize];
    a ^ b
}

/// Swaps the bits of `a` selected by `mask << shift` with the bits of `b` selected by
/// `mask` (a "delta swap" across two words).
#[inline(always)]
fn swap(a: &mut u32, b: &mut u32, shift: u32, mask: u32) {
    let t = ((*a >> shift) ^ *b) & mask;
    *b ^= t;
    *a ^= t << shift;
}

/// The initial permutation of a block, returned as (L0, R0), each rotated left by one
/// bit (the form the SP tables expect).
#[inline(always)]
fn ip(block: u64) -> (u32, u32) {
    let mut l = (block >> 32) as u32;
    let mut r = block as u32;
    swap(&mut l, &mut r, 4, 0x0F0F_0F0F);
    swap(&mut l, &mut r, 16, 0x0000_FFFF);
    swap(&mut r, &mut l, 2, 0x3333_3333);
    swap(&mut r, &mut l, 8, 0x00FF_00FF);
    r = r.rotate_left(1);
    let t = (l ^ r) & 0xAAAA_AAAA;
    l ^= t;
    r ^= t;
    l = l.rotate_left(1);
    (l, r)
}

/// The final permutation of (L16, R16) as left by the rounds (rotated): the inverse of
/// [`ip`] applied to R16‖L16.
#[inline(always)]
fn fp(l: u32, r: u32) -> u64 {
    let mut l = l;
    let mut r = r.rotate_right(1);
    let t = (l ^ r) & 0xAAAA_AAAA;
    l ^= t;
    r ^= t;
    l = l.rotate_right(1);
    swap(&mut l, &mut r, 8, 0x00FF_00FF);
    swap(&mut l, &mut r, 2, 0x3333_3333);
    swap(&mut r, &mut l, 16, 0x0000_FFFF);
    swap(&mut r, &mut l, 4, 0x0F0F_0F0F);
    (u64::from(r) << 32) | u64::from(l)
}

/// Applies `f` to `block` as a big-endian 64-bit value, in place.
#[inline(always)]
fn in_place(block: &mut [u8; 8], f: impl FnOnce(u64) -> u64) {
    *block = f(u64::from_be_bytes(*block)).to_be_bytes();
}

/// A single-DES key schedule (8-byte key; parity bits ignored).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Des {
    ks: Schedule,
}

impl Des {
    /// Sets up the key: the 16 round subkeys are computed here, once.
    pub fn new(key: &[u8; 8]) -> Des {
        Des {
            ks: Schedule::new(key),
        }
    }

    /// Encrypts one block given as a big-endian `u64`.
    #[inline]
    pub fn encrypt_u64(&self, block: u64) -> u64 {
        let (mut l, mut r) = ip(block);
        self.ks.encrypt_rounds(&mut l, &mut r);
        fp(l, r)
    }

    /// Decrypts one block given as a big-endian `u64`.
    #[inline]
    pub fn decrypt_u64(&self, block: u64) -> u64 {
        let (mut l, mut r) = ip(block);
        self.ks.decrypt_rounds(&mut l, &mut r);
        fp(l, r)
    }

    /// Encrypts one block in place.
    #[inline]
    pub fn encrypt_block(&self, block: &mut [u8; 8]) {
        in_place(block, |b| self.encrypt_u64(b));
    }

    /// Decrypts one block in place.
    #[inline]
    pub fn decrypt_block(&self, block: &mut [u8; 8]) {
        in_place(block, |b| self.decrypt_u64(b));
    }
}

/// Two-key triple DES, EDE: E(K1) · D(K2) · E(K1) (16-byte key K1‖K2). The halves are
/// also usable as single DES ([`Tdes2::k1`], [`Tdes2::k2`]), as ANSI X9.19 needs.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Tdes2 {
    k1: Des,
    k2: Des,
}

impl Tdes2 {
    /// Sets up both halves of a 16-byte key.
    pub fn new(key: &[u8; 16]) -> Tdes2 {
        let (a, b) = split8(key);
        Tdes2 {
            k1: Des::new(&a),
            k2: Des::new(&b),
        }
    }

    /// K1 as single DES.
    pub fn k1(&self) -> &Des {
        &self.k1
    }

    /// K2 as single DES.
    pub fn k2(&self) -> &Des {
        &self.k2
    }

    /// Encrypts one block given as a big-endian `u64`.
    #[inline]
    pub fn encrypt_u64(&self, block: u64) -> u64 {
        ede(&self.k1.ks, &self.k2.ks, &self.k1.ks, block)
    }

    /// Decrypts one block given as a big-endian `u64`.
    #[inline]
    pub fn decrypt_u64(&self, block: u64) -> u64 {
        ded(&self.k1.ks, &self.k2.ks, &self.k1.ks, block)
    }

    /// Encrypts one block in place.
    #[inline]
    pub fn encrypt_block(&self, block: &mut [u8; 8]) {
        in_place(block, |b| self.encrypt_u64(b));
    }

    /// Decrypts one block in place.
    #[inline]
    pub fn decrypt_block(&self, block: &mut [u8; 8]) {
        in_place(block, |b| self.decrypt_u64(b));
    }
}

/// Three-key triple DES, EDE: E(K1) · D(K2) · E(K3) (24-byte key K1‖K2‖K3).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Tdes3 {
    k1: Des,
    k2: Des,
    k3: Des,
}

impl Tdes3 {
    /// Sets up the three parts of a 24-byte key.
    pub fn new(key: &[u8; 24]) -> Tdes3 {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        let mut c = [0u8; 8];
        a.copy_from_slice(&key[..8]);
        b.copy_from_slice(&key[8..16]);
        c.copy_from_slice(&key[16..]);
        let t = Tdes3 {
            k1: Des::new(&a),
            k2: Des::new(&b),
            k3: Des::new(&c),
        };
        a.zeroize();
        b.zeroize();
        c.zeroize();
        t
    }

    /// Encrypts one block given as a big-endian `u64`.
    #[inline]
    pub fn encrypt_u64(&self, block: u64) -> u64 {
        ede(&self.k1.ks, &self.k2.ks, &self.k3.ks, block)
    }

    /// Decrypts one block given as a big-endian `u64`.
    #[inline]
    pub fn decrypt_u64(&self, block: u64) -> u64 {
        ded(&self.k1.ks, &self.k2.ks, &self.k3.ks, block)
    }

    /// Encrypts one block in place.
    #[inline]
    pub fn encrypt_block(&self, block: &mut [u8; 8]) {
        in_place(block, |b| self.encrypt_u64(b));
    }

    /// Decrypts one block in place.
    #[inline]
    pub fn decrypt_block(&self, block: &mut [u8; 8]) {
        in_place(block, |b| self.decrypt_u64(b));
    }
}

fn split8(key: &[u8; 16]) -> ([u8; 8], [u8; 8]) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&key[..8]);
    b.copy_from_slice(&key[8..]);
    (a, b)
}

/// E(k3) · D(k2) · E(k1) applied to `block`, with one IP and one FP: a stage ends with
/// (L16, R16) and the next starts from IP(FP(R16‖L16)) = (R16, L16), so the halves are
/// just swapped between stages.
#[inline(always)]
fn ede(k1: &Schedule, k2: &Schedule, k3: &Schedule, block: u64) -> u64 {
    let (mut l, mut r) = ip(block);
    k1.encrypt_rounds(&mut l, &mut r);
    k2.decrypt_rounds(&mut r, &mut l);
    k3.encrypt_rounds(&mut l, &mut r);
    fp(l, r)
}

/// The inverse of [`ede`]: D(k1) · E(k2) · D(k3).
#[inline(always)]
fn ded(k1: &Schedule, k2: &Schedule, k3: &Schedule, block: u64) -> u64 {
    let (mut l, mut r) = ip(block);
    k3.decrypt_rounds(&mut l, &mut r);
    k2.encrypt_rounds(&mut r, &mut l);
    k1.decrypt_rounds(&mut l, &mut r);
    fp(l, r)
}

impl fmt::Debug for Des {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Des { .. }")
    }
}

impl fmt::Debug for Tdes2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tdes2 { .. }")
    }
}

impl fmt::Debug for Tdes3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tdes3 { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h8(s: &str) -> [u8; 8] {
        let v = crate::crypto::test_hex(s);
        let mut a = [0u8; 8];
        a.copy_from_slice(&v);
        a
    }

    /// The key schedule computed bit by bit from the FIPS 46-3 tables (PC1, the shifts,
    /// PC2) on separate 28-bit halves, as the check of `Schedule::new`'s packing.
    fn reference_schedule(key: &[u8; 8]) -> [u32; 32] {
        let key = u64::from_be_bytes(*key);
        let mut c = 0u32;
        let mut d = 0u32;
        for (i, &from) in PC1.iter().enumerate() {
            let bit = ((key >> (64 - u32::from(from))) & 1) as u32;
            if i < 28 {
                c |= bit << (27 - i);
            } else {
                d |= bit << (55 - i);
            }
        }
        let mut words = [0u32; 32];
        for (round, &shift) in SHIFTS.iter().enumerate() {
            let shift = u32::from(shift);
            c = ((c << shift) | (c >> (28 - shift))) & 0x0FFF_FFFF;
            d = ((d << shift) | (d >> (28 - shift))) & 0x0FFF_FFFF;
            let cd = (u64::from(c) << 28) | u64::from(d);
            let mut k = 0u64;
            for (i, &from) in PC2.iter().enumerate() {
                k |= ((cd >> (56 - u32::from(from))) & 1) << (47 - i);
            }
            words[2 * round] = spread(k, [0, 2, 4, 6]);
            words[2 * round + 1] = spread(k, [1, 3, 5, 7]);
        }
        words
    }

    #[test]
    fn fast_key_schedule_matches_the_fips_tables() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(46);
        let mut keys = vec![[0u8; 8], [0xFF; 8]];
        for bit in 0..64 {
            keys.push((1u64 << bit).to_be_bytes());
        }
        for _ in 0..2_000 {
            let mut k = [0u8; 8];
            rng.fill_bytes(&mut k);
            keys.push(k);
        }
        for k in keys {
            assert_eq!(Schedule::new(&k).0, reference_schedule(&k), "key {k:02X?}");
        }
    }

    fn des_kat(key: &str, plain: &str, cipher: &str) {
        let k = Des::new(&h8(key));
        let mut b = h8(plain);
        k.encrypt_block(&mut b);
        assert_eq!(b, h8(cipher), "E({key}, {plain})");
        k.decrypt_block(&mut b);
        assert_eq!(b, h8(plain), "D({key}, {cipher})");
    }

    #[test]
    fn published_single_des_vectors() {
        // The worked example of J. Orlin Grabbe, "The DES Algorithm Illustrated".
        des_kat("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405");
        // FIPS 81 appendix B / "Now is the time for all " first block, key 0123456789ABCDEF.
        des_kat("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815");
        // NIST SP 800-17 table A.1 (variable plaintext), key 0101010101010101.
        des_kat("0101010101010101", "8000000000000000", "95F8A5E5DD31D900");
        des_kat("0101010101010101", "4000000000000000", "DD7F121CA5015619");
        des_kat("0101010101010101", "0000000000000001", "166B40B44ABA4BD6");
        // NIST SP 800-17 table A.2 (inverse permutation), ciphertext 0 ↔ plaintext.
        des_kat("0101010101010101", "95F8A5E5DD31D900", "8000000000000000");
        // NIST SP 800-17 table A.3 (variable key), plaintext 0.
        des_kat("8001010101010101", "0000000000000000", "95A8D72813DAA94D");
        des_kat("4001010101010101", "0000000000000000", "0EEC1487DD8C26D5");
        // NIST SP 800-17 table A.4 (permutation operation), plaintext 0.
        des_kat("1046913489980131", "0000000000000000", "88D55E54F54C97B4");
        // NIST SP 800-17 table A.5 (substitution table test).
        des_kat("7CA110454A1A6E57", "01A1D6D039776742", "690F5B0D9A26939B");
    }

    #[test]
    fn published_tdes_vectors() {
        // psec / ANSI X9.52 style: two-key TDES of "12345678" under
        // 0123456789ABCDEF FEDCBA9876543210 is 41D2FFBA3CDC15FE (psec docstring).
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&h8("0123456789ABCDEF"));
        key[8..].copy_from_slice(&h8("FEDCBA9876543210"));
        let t = Tdes2::new(&key);
        let mut b = *b"12345678";
        t.encrypt_block(&mut b);
        assert_eq!(b, h8("41D2FFBA3CDC15FE"));
        t.decrypt_block(&mut b);
        assert_eq!(&b, b"12345678");
        // K1 = K2 = K3 degenerates to single DES.
        let k = h8("0123456789ABCDEF");
        let mut k3 = [0u8; 24];
        for part in k3.chunks_exact_mut(8) {
            part.copy_from_slice(&k);
        }
        let mut b = h8("4E6F772069732074");
        Tdes3::new(&k3).encrypt_block(&mut b);
        assert_eq!(b, h8("3FA40E8A984D4815"));
    }

    #[test]
    fn debug_shows_no_key_bits() {
        let d = Des::new(&h8("0123456789ABCDEF"));
        assert_eq!(format!("{d:?}"), "Des { .. }");
        let mut k = [0x5Au8; 16];
        k[0] = 1;
        assert_eq!(format!("{:?}", Tdes2::new(&k)), "Tdes2 { .. }");
        assert_eq!(format!("{:?}", Tdes3::new(&[7u8; 24])), "Tdes3 { .. }");
    }

    #[test]
    fn schedules_are_zeroize_on_drop_and_zeroize_clears() {
        fn wiped<T: ZeroizeOnDrop>() {}
        wiped::<Des>();
        wiped::<Tdes2>();
        wiped::<Tdes3>();
        let mut d = Des::new(&h8("133457799BBCDFF1"));
        assert!(d.ks.0.iter().any(|&w| w != 0));
        d.zeroize();
        assert!(d.ks.0.iter().all(|&w| w == 0));
    }
}
