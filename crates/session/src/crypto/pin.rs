//! PIN blocks (ISO 9564-1): formats 0, 1, 3 and 4, encipherment and translation.
//!
//! | format | clear block | PAN | key |
//! |---|---|---|---|
//! | [`PinBlockFormat::Iso0`] | `0` L PIN `F…F`, XOR `0000` + 12 rightmost PAN digits excluding the check digit | yes | DES/TDES, ECB |
//! | [`PinBlockFormat::Iso1`] | `1` L PIN + fill `0`–`F` (random or transaction-derived) | no | DES/TDES, ECB |
//! | [`PinBlockFormat::Iso3`] | like format 0 with random fill `A`–`F` | yes | DES/TDES, ECB |
//! | [`PinBlockFormat::Iso4`] | 16-byte PIN field `4` L PIN `A…A` + 8 random bytes; PAN field `M` + PAN + `0…0`; C = E(E(PIN field) XOR PAN field) | yes | AES |
//!
//! Clear PINs live only in [`Pin`] values and in intermediate buffers that are wiped on
//! drop; [`translate`] never hands the clear PIN to its caller. `Debug`/`Display` of
//! [`Pin`], [`PinBlock`] and [`Pan`] are masked, and errors never contain PIN digits.

use std::fmt;

use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::keys::Key;
use crate::error::{PanDefect, PinBlockDefect, Result, SessionError};

/// Shortest PIN (ISO 9564-1).
pub const MIN_PIN_LEN: usize = 4;
/// Longest PIN (ISO 9564-1).
pub const MAX_PIN_LEN: usize = 12;
/// Shortest PAN accepted.
pub const MIN_PAN_LEN: usize = 12;
/// Longest PAN (ISO/IEC 7812).
pub const MAX_PAN_LEN: usize = 19;

/// An ISO 9564-1 PIN block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinBlockFormat {
    /// Format 0 (ANSI X9.8): PIN XOR PAN, fill `F`.
    Iso0,
    /// Format 1: no PAN, random or transaction fill.
    Iso1,
    /// Format 3: PIN XOR PAN, random fill `A`–`F`.
    Iso3,
    /// Format 4: AES, 16 bytes, PAN bound through double encipherment.
    Iso4,
}

impl PinBlockFormat {
    /// The control nibble (the format number).
    pub const fn control(self) -> u8 {
        match self {
            PinBlockFormat::Iso0 => 0,
            PinBlockFormat::Iso1 => 1,
            PinBlockFormat::Iso3 => 3,
            PinBlockFormat::Iso4 => 4,
        }
    }

    /// Block length in bytes: 8, or 16 for format 4.
    pub const fn block_len(self) -> usize {
        match self {
            PinBlockFormat::Iso4 => 16,
            _ => 8,
        }
    }

    /// Whether the format binds the PAN (all but format 1).
    pub const fn needs_pan(self) -> bool {
        !matches!(self, PinBlockFormat::Iso1)
    }

    /// Number of fill nibbles a [`Fill::Nibbles`] must supply for a PIN of `pin_len`
    /// digits: `14 - pin_len` for formats 1 and 3, 16 (the random half of the PIN
    /// field) for format 4, none for format 0.
    pub const fn fill_len(self, pin_len: usize) -> usize {
        match self {
            PinBlockFormat::Iso0 => 0,
            PinBlockFormat::Iso1 | PinBlockFormat::Iso3 => 14usize.saturating_sub(pin_len),
            PinBlockFormat::Iso4 => 16,
        }
    }

    /// The format for a control nibble, if it is one of 0, 1, 3, 4.
    pub const fn from_control(nibble: u8) -> Option<PinBlockFormat> {
        match nibble {
            0 => Some(PinBlockFormat::Iso0),
            1 => Some(PinBlockFormat::Iso1),
            3 => Some(PinBlockFormat::Iso3),
            4 => Some(PinBlockFormat::Iso4),
            _ => None,
        }
    }
}

impl fmt::Display for PinBlockFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ISO-{}", self.control())
    }
}

/// A clear PIN: 4 to 12 decimal digits, wiped on drop. `Debug` is masked and there is
/// no `Display` or accessor for the digits; compare two PINs with `==` (constant time).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin {
    digits: [u8; MAX_PIN_LEN],
    len: u8,
}

impl Pin {
    /// A PIN from its ASCII digits.
    pub fn new(pin: &str) -> Result<Pin> {
        Pin::from_ascii(pin.as_bytes())
    }

    /// A PIN from ASCII digits (`b'0'..=b'9'`).
    pub fn from_ascii(pin: &[u8]) -> Result<Pin> {
        if !(MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
            return Err(SessionError::BadPinLength { found: pin.len() });
        }
        if !pin.iter().all(u8::is_ascii_digit) {
            return Err(SessionError::PinNotNumeric);
        }
        let mut digits = [0u8; MAX_PIN_LEN];
        for (d, c) in digits.iter_mut().zip(pin) {
            *d = c - b'0';
        }
        Ok(Pin {
            digits,
            // 4..=12
            len: pin.len() as u8,
        })
    }

    /// Builds a PIN from digit values 0..=9 already checked by the caller.
    fn from_digit_values(values: &[u8]) -> Pin {
        let mut digits = [0u8; MAX_PIN_LEN];
        let len = values.len().min(MAX_PIN_LEN);
        digits[..len].copy_from_slice(&values[..len]);
        Pin {
            digits,
            len: len as u8,
        }
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a PIN has at least 4 digits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn values(&self) -> &[u8] {
        &self.digits[..self.len()]
    }

    /// The clear digits as text (wiped when the returned string drops). Only for a
    /// tool that must show a PIN to a person (`isoswitch pinblock --decipher`); a
    /// switch or host compares PINs with `==` and never needs it.
    pub fn expose_digits(&self) -> Zeroizing<String> {
        Zeroizing::new(self.values().iter().map(|d| char::from(b'0' + d)).collect())
    }
}

impl PartialEq for Pin {
    fn eq(&self, other: &Pin) -> bool {
        // Length is compared in the clear; the digits in constant time.
        self.len == other.len && bool::from(self.values().ct_eq(other.values()))
    }
}

impl Eq for Pin {}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// A primary account number: 12 to 19 decimal digits. `Debug` and `Display` show the
/// first 6 and last 4 digits only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pan {
    digits: [u8; MAX_PAN_LEN],
    len: u8,
}

impl Pan {
    /// A PAN from its ASCII digits.
    pub fn new(pan: &str) -> Result<Pan> {
        Pan::from_ascii(pan.as_bytes())
    }

    /// A PAN from ASCII digits.
    pub fn from_ascii(pan: &[u8]) -> Result<Pan> {
        if !(MIN_PAN_LEN..=MAX_PAN_LEN).contains(&pan.len()) {
            return Err(SessionError::BadPan {
                defect: PanDefect::Length { found: pan.len() },
            });
        }
        if let Some(position) = pan.iter().position(|c| !c.is_ascii_digit()) {
            return Err(SessionError::BadPan {
                defect: PanDefect::NotDigit { position },
            });
        }
        let mut digits = [0u8; MAX_PAN_LEN];
        digits[..pan.len()].copy_from_slice(pan);
        Ok(Pan {
            digits,
            len: pan.len() as u8,
        })
    }

    /// A PAN from its ASCII digits whose last digit must be the Luhn (ISO/IEC 7812-1
    /// mod 10) check digit; fails with [`PanDefect::CheckDigit`] otherwise. What
    /// anything taking a PAN from a person should use; [`Pan::new`] does not check the
    /// digit (test PANs and some private-label cards do not have one).
    pub fn new_checked(pan: &str) -> Result<Pan> {
        let p = Pan::new(pan)?;
        if p.has_valid_check_digit() {
            Ok(p)
        } else {
            Err(SessionError::BadPan {
                defect: PanDefect::CheckDigit,
            })
        }
    }

    /// Whether the last digit is the Luhn check digit of the others.
    pub fn has_valid_check_digit(&self) -> bool {
        luhn_valid(self.as_ascii())
    }

    /// The ASCII digits.
    pub fn as_ascii(&self) -> &[u8] {
        &self.digits[..usize::from(self.len)]
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a PAN has at least 12 digits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Formats 0 and 3: the 16-nibble PAN block, `0000` followed by the 12 rightmost
    /// digits excluding the check digit (left-padded with zeros when fewer).
    fn iso0_block(&self) -> [u8; 8] {
        let digits = self.as_ascii();
        let body = &digits[..digits.len().saturating_sub(1)];
        let take = body.len().min(12);
        let mut nibbles = [0u8; 16];
        for (n, c) in nibbles[16 - take..]
            .iter_mut()
            .zip(&body[body.len() - take..])
        {
            *n = c - b'0';
        }
        pack8(&nibbles)
    }

    /// Format 4: the 16-byte PAN field, `M` (= length − 12) then the PAN, then zeros.
    fn iso4_field(&self) -> [u8; 16] {
        let digits = self.as_ascii();
        let mut nibbles = [0u8; 32];
        nibbles[0] = (digits.len() - MIN_PAN_LEN) as u8;
        for (n, c) in nibbles[1..].iter_mut().zip(digits) {
            *n = c - b'0';
        }
        pack16(&nibbles)
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.as_ascii();
        for (i, c) in d.iter().enumerate() {
            if i < 6 || i + 4 >= d.len() {
                write!(f, "{}", char::from(*c))?;
            } else {
                f.write_str("*")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({self})")
    }
}

/// The Luhn (mod 10) check over ASCII digits, check digit last: from the right, every
/// second digit is doubled (minus 9 above 9) and the sum must end in 0.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.iter().rev().enumerate() {
        let Some(d) = char::from(*c).to_digit(10) else {
            return false;
        };
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
    }
    !digits.is_empty() && sum % 10 == 0
}

/// Where the fill nibbles of a PIN block come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill<'a> {
    /// Fresh random nibbles from the OS RNG (formats 1, 3, 4). The production choice.
    Random,
    /// Fixed nibble values (each 0x0–0xF; 0xA–0xF for format 3), at least
    /// [`PinBlockFormat::fill_len`] of them; extra ones are ignored. For format 1's
    /// transaction-derived fill, and for reproducible tests.
    Nibbles(&'a [u8]),
}

/// An enciphered PIN block (what field 52 carries), tagged with its format.
/// `Debug` and `Display` are masked.
#[derive(Clone, PartialEq, Eq)]
pub struct PinBlock {
    format: PinBlockFormat,
    bytes: [u8; 16],
}

impl PinBlock {
    /// Builds the clear block for `pin` (and `pan`, required by formats 0, 3, 4) and
    /// enciphers it under `key`: ECB with a DES/TDES key for formats 0, 1, 3; the
    /// two-pass AES procedure for format 4. Format 0 ignores `fill`.
    ///
    /// ```
    /// use isoswitch_session::crypto::keys::Key;
    /// use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
    /// let pik = Key::tdes(&[0x11; 16])?;
    /// let pan = Pan::new("5555555551234567")?;
    /// let block = PinBlock::encipher(PinBlockFormat::Iso3, &Pin::new("1234")?, Some(&pan), &pik, Fill::Random)?;
    /// assert_eq!(block.as_bytes().len(), 8);
    /// assert_eq!(block.decipher(Some(&pan), &pik)?, Pin::new("1234")?);
    /// # Ok::<(), isoswitch_session::SessionError>(())
    /// ```
    pub fn encipher(
        format: PinBlockFormat,
        pin: &Pin,
        pan: Option<&Pan>,
        key: &Key,
        fill: Fill<'_>,
    ) -> Result<PinBlock> {
        require_key(format, key)?;
        let pan = pan_for(format, pan)?;
        let mut fill_nibbles = Zeroizing::new([0u8; 16]);
        let fill_len = format.fill_len(pin.len());
        fill_from(format, fill, &mut fill_nibbles[..fill_len])?;
        let cipher = key.cipher();
        let mut bytes = [0u8; 16];
        match format {
            PinBlockFormat::Iso4 => {
                let mut nibbles = Zeroizing::new([0xAu8; 32]);
                nibbles[0] = format.control();
                nibbles[1] = pin.len() as u8;
                nibbles[2..2 + pin.len()].copy_from_slice(pin.values());
                nibbles[16..].copy_from_slice(&fill_nibbles[..16]);
                let mut block = Zeroizing::new(pack16(&nibbles));
                cipher.encrypt_ecb(&mut block[..])?;
                if let Some(pan) = pan {
                    xor(&mut block[..], &pan.iso4_field());
                }
                cipher.encrypt_ecb(&mut block[..])?;
                bytes.copy_from_slice(&block[..]);
            }
            _ => {
                let mut block = clear8(format, pin, pan, &fill_nibbles[..fill_len]);
                cipher.encrypt_ecb(&mut block[..])?;
                bytes[..8].copy_from_slice(&block[..]);
            }
        }
        Ok(PinBlock { format, bytes })
    }

    /// The **clear** 8-byte PIN block of formats 0, 1 and 3 (for format 0 and 3, with
    /// the PAN block already XORed in), as a terminal builds it before encipherment.
    ///
    /// The clear block is as sensitive as the PIN: it exists for test tools such as
    /// `isoswitch pinblock`; it is wiped when dropped. Format 4 has no 8-byte clear
    /// block ([`SessionError::ClearBlockUnavailable`]).
    ///
    /// ```
    /// use isoswitch_session::crypto::pin::{Fill, Pan, Pin, PinBlock, PinBlockFormat};
    /// let pan = Pan::new("5555555551234567")?;
    /// let clear = PinBlock::clear_block(PinBlockFormat::Iso0, &Pin::new("1234")?, Some(&pan), Fill::Random)?;
    /// assert_eq!(*clear, [0x04, 0x12, 0x61, 0xAA, 0xAA, 0xED, 0xCB, 0xA9]);
    /// # Ok::<(), isoswitch_session::SessionError>(())
    /// ```
    pub fn clear_block(
        format: PinBlockFormat,
        pin: &Pin,
        pan: Option<&Pan>,
        fill: Fill<'_>,
    ) -> Result<Zeroizing<[u8; 8]>> {
        if format == PinBlockFormat::Iso4 {
            return Err(SessionError::ClearBlockUnavailable { format });
        }
        let pan = pan_for(format, pan)?;
        let mut fill_nibbles = Zeroizing::new([0u8; 16]);
        let fill_len = format.fill_len(pin.len());
        fill_from(format, fill, &mut fill_nibbles[..fill_len])?;
        Ok(clear8(format, pin, pan, &fill_nibbles[..fill_len]))
    }

    /// A received enciphered block (e.g. field 52) of a known format; checks only the
    /// length (8 bytes, or 16 for format 4).
    pub fn from_bytes(format: PinBlockFormat, bytes: &[u8]) -> Result<PinBlock> {
        if bytes.len() != format.block_len() {
            return Err(SessionError::BadPinBlockLength {
                format,
                expected: format.block_len(),
                found: bytes.len(),
            });
        }
        let mut b = [0u8; 16];
        b[..bytes.len()].copy_from_slice(bytes);
        Ok(PinBlock { format, bytes: b })
    }

    /// The format.
    pub fn format(&self) -> PinBlockFormat {
        self.format
    }

    /// The enciphered bytes (8, or 16 for format 4), for the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.format.block_len()]
    }

    /// Deciphers under `key` and checks the clear block's structure (control nibble,
    /// PIN length 4–12, decimal digits, the format's fill). A wrong key or PAN shows as
    /// [`SessionError::BadPinBlock`] (with overwhelming probability).
    pub fn decipher(&self, pan: Option<&Pan>, key: &Key) -> Result<Pin> {
        let format = self.format;
        require_key(format, key)?;
        let pan = pan_for(format, pan)?;
        let cipher = key.cipher();
        match format {
            PinBlockFormat::Iso4 => {
                let mut block = Zeroizing::new([0u8; 16]);
                block.copy_from_slice(&self.bytes);
                cipher.decrypt_ecb(&mut block[..])?;
                if let Some(pan) = pan {
                    xor(&mut block[..], &pan.iso4_field());
                }
                cipher.decrypt_ecb(&mut block[..])?;
                let nibbles = Zeroizing::new(unpack16(&block));
                parse_clear(format, &nibbles[..])
            }
            _ => {
                let mut block = Zeroizing::new([0u8; 8]);
                block.copy_from_slice(&self.bytes[..8]);
                cipher.decrypt_ecb(&mut block[..])?;
                if let Some(pan) = pan {
                    xor(&mut block[..], &pan.iso0_block());
                }
                let nibbles = Zeroizing::new(unpack8(&block));
                parse_clear(format, &nibbles[..])
            }
        }
    }
}

impl fmt::Debug for PinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinBlock({}, ****)", self.format)
    }
}

impl fmt::Display for PinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} PIN block ****", self.format)
    }
}

/// Translates a PIN block: deciphers under `from_key`, re-enciphers under `to_key` in
/// `to_format` with fresh random fill. The clear PIN exists only inside this call and
/// is wiped before it returns.
///
/// Allowed: any change among formats 0, 1 and 3 (DES/TDES keys), and between format 4
/// (AES key) and formats 0 or 3. Refused with
/// [`SessionError::TranslationNotAllowed`]: format 4 to or from format 1 (format 1 has
/// no PAN binding). `pan` is needed when either format binds it. A block that does not
/// decipher cleanly gives [`SessionError::BadPinBlock`] (host response code 99).
pub fn translate(
    block: &PinBlock,
    pan: Option<&Pan>,
    from_key: &Key,
    to_format: PinBlockFormat,
    to_key: &Key,
) -> Result<PinBlock> {
    translate_with_fill(block, pan, from_key, to_format, to_key, Fill::Random)
}

/// [`translate`] with a chosen fill for the new block (e.g. format 1 transaction fill).
pub fn translate_with_fill(
    block: &PinBlock,
    pan: Option<&Pan>,
    from_key: &Key,
    to_format: PinBlockFormat,
    to_key: &Key,
    fill: Fill<'_>,
) -> Result<PinBlock> {
    use PinBlockFormat::{Iso1, Iso4};
    let from = block.format();
    if matches!((from, to_format), (Iso4, Iso1) | (Iso1, Iso4)) {
        return Err(SessionError::TranslationNotAllowed {
            from,
            to: to_format,
        });
    }
    // Check the target side before touching the PIN.
    require_key(to_format, to_key)?;
    pan_for(to_format, pan)?;
    let pin = block.decipher(pan, from_key)?;
    PinBlock::encipher(to_format, &pin, pan, to_key, fill)
}

/// The clear block of formats 0, 1, 3: control, length, PIN, fill (`F` for format 0,
/// `fill` otherwise), XOR the PAN block when the format binds it.
fn clear8(format: PinBlockFormat, pin: &Pin, pan: Option<&Pan>, fill: &[u8]) -> Zeroizing<[u8; 8]> {
    let mut nibbles = Zeroizing::new([0xFu8; 16]);
    nibbles[0] = format.control();
    nibbles[1] = pin.len() as u8;
    nibbles[2..2 + pin.len()].copy_from_slice(pin.values());
    let end = (2 + pin.len() + fill.len()).min(16);
    nibbles[2 + pin.len()..end].copy_from_slice(&fill[..end - 2 - pin.len()]);
    let mut block = Zeroizing::new(pack8(&nibbles));
    if let Some(pan) = pan {
        xor(&mut block[..], &pan.iso0_block());
    }
    block
}

fn require_key(format: PinBlockFormat, key: &Key) -> Result<()> {
    match format {
        PinBlockFormat::Iso4 => key.require_aes("AES key for ISO format 4"),
        _ => key.require_des_family("DES or TDES key for ISO formats 0, 1, 3"),
    }
}

fn pan_for(format: PinBlockFormat, pan: Option<&Pan>) -> Result<Option<&Pan>> {
    match (format.needs_pan(), pan) {
        (false, _) => Ok(None),
        (true, Some(p)) => Ok(Some(p)),
        (true, None) => Err(SessionError::PanRequired { format }),
    }
}

/// Fills `out` with fill nibbles for `format`.
fn fill_from(format: PinBlockFormat, fill: Fill<'_>, out: &mut [u8]) -> Result<()> {
    let lowest = if format == PinBlockFormat::Iso3 {
        0xA
    } else {
        0x0
    };
    match fill {
        Fill::Nibbles(given) => {
            if given.len() < out.len() {
                return Err(SessionError::FillTooShort {
                    format,
                    needed: out.len(),
                    found: given.len(),
                });
            }
            if let Some(position) = given[..out.len()]
                .iter()
                .position(|&n| n < lowest || n > 0xF)
            {
                return Err(SessionError::BadFillNibble { format, position });
            }
            out.copy_from_slice(&given[..out.len()]);
            Ok(())
        }
        Fill::Random => random_nibbles(out, lowest),
    }
}

/// Uniform random nibbles in `lowest..=0xF` from the thread's CSPRNG (`rand`'s
/// `ThreadRng`: ChaCha seeded from and periodically reseeded by the OS; no system call per
/// PIN block).
fn random_nibbles(out: &mut [u8], lowest: u8) -> Result<()> {
    let mut pool = Zeroizing::new([0u8; 32]);
    let mut filled = 0;
    while filled < out.len() {
        rand::thread_rng()
            .try_fill_bytes(&mut pool[..])
            .map_err(SessionError::Rng)?;
        for &byte in pool.iter() {
            for candidate in [byte >> 4, byte & 0x0F] {
                if filled == out.len() {
                    return Ok(());
                }
                if lowest == 0 {
                    out[filled] = candidate;
                    filled += 1;
                } else if candidate < 12 {
                    // Six values A..F from 0..12 by halving keeps the draw uniform.
                    out[filled] = 0xA + candidate / 2;
                    filled += 1;
                }
            }
        }
    }
    Ok(())
}

/// Checks a clear block's nibbles and extracts the PIN.
fn parse_clear(format: PinBlockFormat, nibbles: &[u8]) -> Result<Pin> {
    let defect = |defect| SessionError::BadPinBlock { format, defect };
    let control = nibbles.first().copied().unwrap_or(0xFF);
    if control != format.control() {
        return Err(defect(PinBlockDefect::ControlField { found: control }));
    }
    let len_nibble = nibbles.get(1).copied().unwrap_or(0);
    let len = usize::from(len_nibble);
    if !(MIN_PIN_LEN..=MAX_PIN_LEN).contains(&len) {
        return Err(defect(PinBlockDefect::PinLength { found: len_nibble }));
    }
    let digits = &nibbles[2..2 + len];
    if digits.iter().any(|&d| d > 9) {
        return Err(defect(PinBlockDefect::PinDigit));
    }
    // Fill: the rest of the first 16 nibbles.
    let fill = &nibbles[2 + len..16];
    let fill_ok = match format {
        PinBlockFormat::Iso0 => fill.iter().all(|&n| n == 0xF),
        PinBlockFormat::Iso1 => true,
        PinBlockFormat::Iso3 => fill.iter().all(|&n| n >= 0xA),
        PinBlockFormat::Iso4 => fill.iter().all(|&n| n == 0xA),
    };
    if !fill_ok {
        return Err(defect(PinBlockDefect::Fill));
    }
    Ok(Pin::from_digit_values(digits))
}

fn pack8(nibbles: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
        *o = (pair[0] << 4) | (pair[1] & 0x0F);
    }
    out
}

fn pack16(nibbles: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
        *o = (pair[0] << 4) | (pair[1] & 0x0F);
    }
    out
}

fn unpack8(bytes: &[u8; 8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = b >> 4;
        pair[1] = b & 0x0F;
    }
    out
}

fn unpack16(bytes: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = b >> 4;
        pair[1] = b & 0x0F;
    }
    out
}

fn xor(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PinBlockFormat::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::crypto::test_hex(s)
    }

    /// The clear block under a DES/TDES key (undoing only the ECB step; the PAN stays XORed in).
    fn clear_of(block: &PinBlock, key: &Key) -> Vec<u8> {
        let mut b = block.as_bytes().to_vec();
        key.cipher().decrypt_ecb(&mut b).expect("decrypt");
        b
    }

    fn tdes() -> Key {
        Key::tdes(&hex("0123456789ABCDEFFEDCBA9876543210")).expect("key")
    }

    fn pan() -> Pan {
        Pan::new("5555555551234567").expect("pan")
    }

    // ---- domain.md 4.4, one test per vector ----

    #[test]
    fn domain_format0_pin_1234() {
        let key = tdes();
        let b = PinBlock::encipher(
            Iso0,
            &Pin::new("1234").expect("pin"),
            Some(&pan()),
            &key,
            Fill::Random,
        )
        .expect("block");
        assert_eq!(clear_of(&b, &key), hex("041261AAAAEDCBA9"));
        assert_eq!(
            b.decipher(Some(&pan()), &key).expect("pin"),
            Pin::new("1234").expect("pin")
        );
    }

    #[test]
    fn domain_format0_pin_12_digits() {
        let key = tdes();
        let pin = Pin::new("123456789012").expect("pin");
        let b = PinBlock::encipher(Iso0, &pin, Some(&pan()), &key, Fill::Random).expect("block");
        assert_eq!(clear_of(&b, &key), hex("0C1261032D8226A9"));
        assert_eq!(b.decipher(Some(&pan()), &key).expect("pin"), pin);
    }

    /// domain.md 4.4 says format 3 "with fill `AAAA…` gives `341261AAAAEDCBA9`". That
    /// block is the format 0 block with control nibble 3: once the PAN block is XORed
    /// off it reads `341234FFFFFFFFFF`, i.e. fill `F` (valid for format 3, and psec's
    /// `decode_pinblock_iso_3` accepts it as PIN 1234). Fill `A` gives
    /// `341261FFFFB89EFC`. Both facts are checked here.
    #[test]
    fn domain_format3_vector() {
        let key = tdes();
        let pin = Pin::new("1234").expect("pin");
        // The published block, as a clear block enciphered under the test key, decodes.
        let mut enc = hex("341261AAAAEDCBA9");
        key.cipher().encrypt_ecb(&mut enc).expect("e");
        let published = PinBlock::from_bytes(Iso3, &enc).expect("block");
        assert_eq!(published.decipher(Some(&pan()), &key).expect("pin"), pin);
        // It is what fill F produces.
        let f = PinBlock::encipher(Iso3, &pin, Some(&pan()), &key, Fill::Nibbles(&[0xF; 10]))
            .expect("block");
        assert_eq!(clear_of(&f, &key), hex("341261AAAAEDCBA9"));
        // Fill A.
        let a = PinBlock::encipher(Iso3, &pin, Some(&pan()), &key, Fill::Nibbles(&[0xA; 10]))
            .expect("block");
        assert_eq!(clear_of(&a, &key), hex("341261FFFFB89EFC"));
        assert_eq!(a.decipher(Some(&pan()), &key).expect("pin"), pin);
    }

    #[test]
    fn clear_blocks_match_the_enciphered_ones() {
        let key = tdes();
        let pin = Pin::new("1234").expect("pin");
        let c0 = PinBlock::clear_block(Iso0, &pin, Some(&pan()), Fill::Random).expect("0");
        assert_eq!(c0.to_vec(), hex("041261AAAAEDCBA9"));
        let c3 =
            PinBlock::clear_block(Iso3, &pin, Some(&pan()), Fill::Nibbles(&[0xF; 10])).expect("3");
        assert_eq!(c3.to_vec(), hex("341261AAAAEDCBA9"));
        let fill = [0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0x0];
        let c1 = PinBlock::clear_block(Iso1, &pin, None, Fill::Nibbles(&fill)).expect("1");
        assert_eq!(c1.to_vec(), hex("1412341234567890"));
        let e1 = PinBlock::encipher(Iso1, &pin, None, &key, Fill::Nibbles(&fill)).expect("e1");
        assert_eq!(clear_of(&e1, &key), c1.to_vec());
        assert!(matches!(
            PinBlock::clear_block(Iso4, &pin, Some(&pan()), Fill::Random),
            Err(SessionError::ClearBlockUnavailable { format: Iso4 })
        ));
        assert!(matches!(
            PinBlock::clear_block(Iso0, &pin, None, Fill::Random),
            Err(SessionError::PanRequired { format: Iso0 })
        ));
    }

    #[test]
    fn domain_format4_aes_decipher() {
        let key = Key::aes(&hex("C1D0F8FB4958670DBA40AB1F3752EF0D")).expect("key");
        let pan = Pan::new("432198765432109870").expect("pan");
        let block =
            PinBlock::from_bytes(Iso4, &hex("CC17F65586BFD0953010226C4FC5B3CA")).expect("block");
        assert_eq!(
            block.decipher(Some(&pan), &key).expect("pin"),
            Pin::new("1234").expect("pin")
        );
        // And a fresh encipherment (random fill) deciphers to the same PIN.
        let again = PinBlock::encipher(
            Iso4,
            &Pin::new("1234").expect("pin"),
            Some(&pan),
            &key,
            Fill::Random,
        )
        .expect("block");
        assert_ne!(again.as_bytes(), block.as_bytes());
        assert_eq!(
            again.decipher(Some(&pan), &key).expect("pin"),
            Pin::new("1234").expect("pin")
        );
    }

    // ---- psec docstring examples ----

    #[test]
    fn psec_docstring_format0_and_format3() {
        let key = tdes();
        let pan = Pan::new("5544332211009966").expect("pan");
        let b = PinBlock::encipher(
            Iso0,
            &Pin::new("1234").expect("pin"),
            Some(&pan),
            &key,
            Fill::Random,
        )
        .expect("block");
        assert_eq!(clear_of(&b, &key), hex("041277CDDEEFF669"));
        // decode_pinblock_iso_3("341277EEEFCCB43C", "5544332211009966") == "1234"
        let mut enc = hex("341277EEEFCCB43C");
        key.cipher().encrypt_ecb(&mut enc).expect("e");
        let b3 = PinBlock::from_bytes(Iso3, &enc).expect("block");
        assert_eq!(
            b3.decipher(Some(&pan), &key).expect("pin"),
            Pin::new("1234").expect("pin")
        );
    }

    #[test]
    fn psec_docstring_format4() {
        let key = Key::aes(&hex("00112233445566778899AABBCCDDEEFF")).expect("key");
        let pan = Pan::new("1234567890123456").expect("pan");
        let block =
            PinBlock::from_bytes(Iso4, &hex("E4BE5B623AF7E006AC319E5B93544564")).expect("block");
        assert_eq!(
            block.decipher(Some(&pan), &key).expect("pin"),
            Pin::new("1234").expect("pin")
        );
    }

    // ---- fields and fills ----

    #[test]
    fn iso4_pan_field_matches_psec_docstring() {
        let pan = Pan::new("112233445566778899").expect("pan");
        assert_eq!(
            pan.iso4_field().to_vec(),
            hex("61122334455667788990000000000000")
        );
        let pan12 = Pan::new("123456789012").expect("pan");
        assert_eq!(
            pan12.iso4_field().to_vec(),
            hex("01234567890120000000000000000000")
        );
    }

    #[test]
    fn twelve_digit_pan_left_pads_the_pan_block() {
        // 11 digits remain once the check digit goes: one leading zero nibble.
        let pan = Pan::new("123456789012").expect("pan");
        assert_eq!(pan.iso0_block().to_vec(), hex("0000012345678901"));
    }

    #[test]
    fn format1_fixed_fill_and_no_pan() {
        let key = tdes();
        let pin = Pin::new("98765").expect("pin");
        let fill = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let b = PinBlock::encipher(Iso1, &pin, None, &key, Fill::Nibbles(&fill)).expect("block");
        assert_eq!(clear_of(&b, &key), hex("1598765123456789"));
        assert_eq!(b.decipher(None, &key).expect("pin"), pin);
        // A PAN given to format 1 is ignored.
        assert_eq!(b.decipher(Some(&pan()), &key).expect("pin"), pin);
    }

    #[test]
    fn random_fill_respects_format_ranges() {
        let key = tdes();
        let pin = Pin::new("1234").expect("pin");
        for _ in 0..64 {
            let b3 = PinBlock::encipher(Iso3, &pin, Some(&pan()), &key, Fill::Random).expect("b");
            let mut clear = clear_of(&b3, &key);
            xor(&mut clear, &pan().iso0_block());
            let nib = unpack8(&clear.try_into().expect("8"));
            assert!(nib[6..].iter().all(|&n| n >= 0xA), "{nib:X?}");
            assert_eq!(b3.decipher(Some(&pan()), &key).expect("pin"), pin);
        }
        let mut seen = [false; 6];
        let mut out = [0u8; 600];
        random_nibbles(&mut out, 0xA).expect("rng");
        for n in out {
            assert!((0xA..=0xF).contains(&n));
            seen[usize::from(n - 0xA)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn bad_fill_is_rejected() {
        let key = tdes();
        let pin = Pin::new("1234").expect("pin");
        assert!(matches!(
            PinBlock::encipher(Iso3, &pin, Some(&pan()), &key, Fill::Nibbles(&[0xA; 9])),
            Err(SessionError::FillTooShort {
                needed: 10,
                found: 9,
                ..
            })
        ));
        let mut fill = [0xB; 10];
        fill[4] = 0x9;
        assert!(matches!(
            PinBlock::encipher(Iso3, &pin, Some(&pan()), &key, Fill::Nibbles(&fill)),
            Err(SessionError::BadFillNibble { position: 4, .. })
        ));
        assert!(matches!(
            PinBlock::encipher(Iso1, &pin, None, &key, Fill::Nibbles(&[0x10; 10])),
            Err(SessionError::BadFillNibble { position: 0, .. })
        ));
    }

    // ---- validation ----

    #[test]
    fn pin_and_pan_validation() {
        assert!(matches!(
            Pin::new("123"),
            Err(SessionError::BadPinLength { found: 3 })
        ));
        assert!(matches!(
            Pin::new("1234567890123"),
            Err(SessionError::BadPinLength { found: 13 })
        ));
        assert!(matches!(Pin::new("12a4"), Err(SessionError::PinNotNumeric)));
        assert!(matches!(
            Pin::new(""),
            Err(SessionError::BadPinLength { found: 0 })
        ));
        assert!(matches!(
            Pan::new("12345678901"),
            Err(SessionError::BadPan {
                defect: PanDefect::Length { found: 11 }
            })
        ));
        assert!(matches!(
            Pan::new("12345678901234567890"),
            Err(SessionError::BadPan {
                defect: PanDefect::Length { found: 20 }
            })
        ));
        assert!(matches!(
            Pan::new("1234567890X2"),
            Err(SessionError::BadPan {
                defect: PanDefect::NotDigit { position: 10 }
            })
        ));
        assert!(Pan::new("123456789012").is_ok());
        assert!(Pan::new("1234567890123456789").is_ok());
    }

    #[test]
    fn masked_formatting() {
        let pin = Pin::new("1234").expect("pin");
        assert_eq!(format!("{pin:?}"), "Pin(****)");
        let pan = pan();
        assert_eq!(pan.to_string(), "555555******4567");
        assert_eq!(format!("{pan:?}"), "Pan(555555******4567)");
        let b = PinBlock::encipher(Iso0, &pin, Some(&pan), &tdes(), Fill::Random).expect("b");
        let shown = format!("{b:?} {b}");
        assert_eq!(shown, "PinBlock(ISO-0, ****) ISO-0 PIN block ****");
    }

    #[test]
    fn wrong_key_pan_or_format_gives_typed_errors() {
        let key = tdes();
        let other = Key::tdes(&[0x5B; 16]).expect("key");
        let aes = Key::aes(&[0x33; 16]).expect("aes");
        let pin = Pin::new("4321").expect("pin");
        let b = PinBlock::encipher(Iso0, &pin, Some(&pan()), &key, Fill::Random).expect("b");
        assert!(matches!(
            b.decipher(Some(&pan()), &other),
            Err(SessionError::BadPinBlock { .. })
        ));
        assert!(matches!(
            b.decipher(Some(&Pan::new("4111111111111111").expect("pan")), &key),
            Err(SessionError::BadPinBlock { .. })
        ));
        assert!(matches!(
            b.decipher(None, &key),
            Err(SessionError::PanRequired { format: Iso0 })
        ));
        assert!(matches!(
            b.decipher(Some(&pan()), &aes),
            Err(SessionError::WrongKeyAlgorithm { .. })
        ));
        assert!(matches!(
            PinBlock::encipher(Iso4, &pin, Some(&pan()), &key, Fill::Random),
            Err(SessionError::WrongKeyAlgorithm { .. })
        ));
        assert!(matches!(
            PinBlock::from_bytes(Iso4, &[0u8; 8]),
            Err(SessionError::BadPinBlockLength {
                expected: 16,
                found: 8,
                ..
            })
        ));
        // Read as the wrong format: the control nibble tells.
        let as3 = PinBlock::from_bytes(Iso3, b.as_bytes()).expect("b");
        assert!(matches!(
            as3.decipher(Some(&pan()), &key),
            Err(SessionError::BadPinBlock {
                format: Iso3,
                defect: PinBlockDefect::ControlField { found: 0 }
            })
        ));
    }

    #[test]
    fn translation_between_formats_and_keys() {
        let zpk_a = tdes();
        let zpk_b = Key::tdes(&hex("89ABCDEF0123456776543210FEDCBA98")).expect("key");
        let aes = Key::aes(&hex("C1D0F8FB4958670DBA40AB1F3752EF0D")).expect("aes");
        let pin = Pin::new("8642").expect("pin");
        let pan = pan();
        let b0 = PinBlock::encipher(Iso0, &pin, Some(&pan), &zpk_a, Fill::Random).expect("b0");

        let cases = [(Iso0, &zpk_b), (Iso1, &zpk_b), (Iso3, &zpk_b), (Iso4, &aes)];
        for (to, key) in cases {
            let t = translate(&b0, Some(&pan), &zpk_a, to, key).expect("translate");
            assert_eq!(t.format(), to);
            assert_eq!(t.decipher(Some(&pan), key).expect("pin"), pin, "{to}");
            // And back to format 0 under the first key: the same bytes, as format 0
            // has no random fill.
            let back = translate(&t, Some(&pan), key, Iso0, &zpk_a).expect("back");
            assert_eq!(back.as_bytes(), b0.as_bytes(), "{to}");
        }
        // 1 -> 3 and 3 -> 1.
        let b1 = PinBlock::encipher(Iso1, &pin, None, &zpk_a, Fill::Random).expect("b1");
        let b3 = translate(&b1, Some(&pan), &zpk_a, Iso3, &zpk_b).expect("1->3");
        assert_eq!(b3.decipher(Some(&pan), &zpk_b).expect("pin"), pin);
        assert!(matches!(
            translate(&b1, None, &zpk_a, Iso3, &zpk_b),
            Err(SessionError::PanRequired { format: Iso3 })
        ));
        // 4 <-> 1 refused.
        let b4 = translate(&b0, Some(&pan), &zpk_a, Iso4, &aes).expect("0->4");
        assert!(matches!(
            translate(&b4, Some(&pan), &aes, Iso1, &zpk_b),
            Err(SessionError::TranslationNotAllowed {
                from: Iso4,
                to: Iso1
            })
        ));
        assert!(matches!(
            translate(&b1, Some(&pan), &zpk_a, Iso4, &aes),
            Err(SessionError::TranslationNotAllowed {
                from: Iso1,
                to: Iso4
            })
        ));
        // Wrong source key: typed failure, no PIN.
        assert!(matches!(
            translate(&b0, Some(&pan), &zpk_b, Iso3, &zpk_a),
            Err(SessionError::BadPinBlock { .. })
        ));
        // Target key of the wrong family is refused before deciphering.
        assert!(matches!(
            translate(&b0, Some(&pan), &zpk_a, Iso4, &zpk_b),
            Err(SessionError::WrongKeyAlgorithm { .. })
        ));
    }

    #[test]
    fn luhn_check_digit() {
        // ISO/IEC 7812-1 examples and well-known test PANs.
        for good in [
            "4012345678909",
            "4111111111111111",
            "79927398713",
            "5500000000000004",
        ] {
            assert!(luhn_valid(good.as_bytes()), "{good}");
        }
        for bad in [
            "4012345678908",
            "4111111111111112",
            "79927398710",
            "5555555551234567",
            "",
        ] {
            assert!(!luhn_valid(bad.as_bytes()), "{bad}");
        }
        assert!(Pan::new_checked("4111111111111111").is_ok());
        assert!(matches!(
            Pan::new_checked("4111111111111112"),
            Err(SessionError::BadPan {
                defect: PanDefect::CheckDigit
            })
        ));
        // The unchecked constructor keeps accepting such PANs; length and digits are
        // still checked first by both.
        assert!(Pan::new("4111111111111112").is_ok());
        assert!(matches!(
            Pan::new_checked("41111111111X"),
            Err(SessionError::BadPan {
                defect: PanDefect::NotDigit { position: 11 }
            })
        ));
        // Every single-digit change of a valid PAN is caught.
        let pan = b"4012345678909";
        for i in 0..pan.len() {
            for d in b'0'..=b'9' {
                if d != pan[i] {
                    let mut p = *pan;
                    p[i] = d;
                    assert!(!luhn_valid(&p), "{i} {d}");
                }
            }
        }
    }

    #[test]
    fn expose_digits_gives_the_pin() {
        let pin = Pin::new("0123456789").expect("pin");
        assert_eq!(pin.expose_digits().as_str(), "0123456789");
    }
}
