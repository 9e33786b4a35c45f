//! Upper-case hex, as the Thales protocol and key files use it.

/// Upper-case hex of `bytes`.
pub fn encode_upper(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

const DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Appends the upper-case hex of `bytes` to `out`.
pub(crate) fn push_upper(out: &mut impl bytes::BufMut, bytes: &[u8]) {
    for b in bytes {
        out.put_u8(DIGITS[usize::from(b >> 4)]);
        out.put_u8(DIGITS[usize::from(b & 0xF)]);
    }
}

/// The value of one hex digit (either case).
pub(crate) fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes `text` (even length, hex digits only) into `out`, which must be exactly
/// half its length. On failure, the index of the first bad character.
pub(crate) fn decode_into(text: &[u8], out: &mut [u8]) -> Result<(), usize> {
    if text.len() != out.len() * 2 {
        return Err(text.len().min(out.len() * 2));
    }
    for (i, o) in out.iter_mut().enumerate() {
        let hi = nibble(text[2 * i]).ok_or(2 * i)?;
        let lo = nibble(text[2 * i + 1]).ok_or(2 * i + 1)?;
        *o = (hi << 4) | lo;
    }
    Ok(())
}
