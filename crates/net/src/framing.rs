//! Framing on the wire: how one message is delimited on a TCP stream.
//!
//! [`Framing`] selects one of the four framings of `domain.md` §1; [`FrameCodec`] is the
//! `tokio_util::codec` [`Decoder`]/[`Encoder`] for it, turning a `BytesMut` read buffer into
//! [`Frame`]s whose payload shares that buffer (`split_to(n).freeze()`, no copy).
//!
//! | framing | bytes before the message |
//! |---|---|
//! | [`Framing::Len2`] | 2-byte big-endian length of what follows |
//! | [`Framing::Len4`] | 4-byte big-endian length |
//! | [`Framing::Ascii4`] | 4 ASCII decimal digits (`0123`) |
//! | [`Framing::CupPos`] | `len2`, then a 5-byte [`Tpdu`], then a 6-byte [`AppHeader`] |
//!
//! The announced length is checked against the configured maximum **before** any buffer
//! space is reserved, so a hostile prefix never causes a large allocation. A zero length, an
//! oversized length, a malformed ASCII prefix or a stream that ends inside a frame are typed
//! [`NetError`]s.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::NetError;

/// Which length prefix (and header) delimits messages on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// 2-byte binary big-endian length (most hosts).
    Len2,
    /// 4-byte binary big-endian length.
    Len4,
    /// 4 ASCII decimal digits (China UnionPay switch links, many ATM hosts).
    Ascii4,
    /// China UnionPay POS: 2-byte length, 5-byte TPDU, 6-byte application header. The
    /// length counts the TPDU and the header too.
    CupPos,
}

impl Framing {
    /// Bytes of the length prefix.
    pub const fn prefix_len(self) -> usize {
        match self {
            Framing::Len2 | Framing::CupPos => 2,
            Framing::Len4 | Framing::Ascii4 => 4,
        }
    }

    /// Bytes of header between the length prefix and the message (counted by the length).
    pub const fn header_len(self) -> usize {
        match self {
            Framing::CupPos => CupHeader::LEN,
            Framing::Len2 | Framing::Len4 | Framing::Ascii4 => 0,
        }
    }

    /// The largest length the prefix itself can express.
    pub const fn max_representable(self) -> usize {
        match self {
            Framing::Len2 | Framing::CupPos => u16::MAX as usize,
            Framing::Len4 => u32::MAX as usize,
            Framing::Ascii4 => 9999,
        }
    }

    /// A codec for this framing accepting frames of at most `max_frame_len` bytes after the
    /// prefix (header included).
    pub fn codec(self, max_frame_len: usize) -> FrameCodec {
        FrameCodec::new(self, max_frame_len)
    }
}

/// `cup-pos` transport protocol data unit: `60` + destination (2 bytes) + source (2 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tpdu {
    /// TPDU identifier, `0x60`.
    pub id: u8,
    /// Destination address (e.g. `00 03`, the network access point).
    pub destination: [u8; 2],
    /// Source address.
    pub source: [u8; 2],
}

impl Tpdu {
    /// Encoded length in bytes.
    pub const LEN: usize = 5;

    /// Parses the 5 wire bytes.
    pub fn from_bytes(b: [u8; 5]) -> Self {
        Self {
            id: b[0],
            destination: [b[1], b[2]],
            source: [b[3], b[4]],
        }
    }

    /// The 5 wire bytes.
    pub fn to_bytes(self) -> [u8; 5] {
        [
            self.id,
            self.destination[0],
            self.destination[1],
            self.source[0],
            self.source[1],
        ]
    }

    /// The TPDU of a reply: source and destination swapped (convention).
    pub fn reply(self) -> Self {
        Self {
            id: self.id,
            destination: self.source,
            source: self.destination,
        }
    }
}

impl Default for Tpdu {
    /// `60 00 03 00 00`.
    fn default() -> Self {
        Self::from_bytes([0x60, 0x00, 0x03, 0x00, 0x00])
    }
}

/// `cup-pos` application header, 6 bytes of BCD nibbles: application type (`60`),
/// version (`31`), terminal status nibble, processing requirement nibble, software version
/// (6 digits, `000001`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppHeader([u8; 6]);

impl AppHeader {
    /// Encoded length in bytes.
    pub const LEN: usize = 6;
    /// Processing requirement telling the terminal to sign on again.
    pub const SIGN_ON_AGAIN: u8 = 3;

    /// Wraps the 6 wire bytes.
    pub fn from_bytes(b: [u8; 6]) -> Self {
        Self(b)
    }

    /// The 6 wire bytes.
    pub fn to_bytes(self) -> [u8; 6] {
        self.0
    }

    /// Application type byte (`0x60`).
    pub fn application_type(self) -> u8 {
        self.0[0]
    }

    /// Version byte (`0x31`).
    pub fn version(self) -> u8 {
        self.0[1]
    }

    /// Terminal status nibble.
    pub fn terminal_status(self) -> u8 {
        self.0[2] >> 4
    }

    /// Processing requirement nibble (`3` = sign on again).
    pub fn processing_requirement(self) -> u8 {
        self.0[2] & 0x0F
    }

    /// `true` when the processing requirement asks the terminal to sign on again.
    pub fn requires_sign_on(self) -> bool {
        self.processing_requirement() == Self::SIGN_ON_AGAIN
    }

    /// Sets the terminal status nibble.
    ///
    /// # Errors
    /// [`NetError::InvalidNibble`] when `value > 15`.
    pub fn set_terminal_status(&mut self, value: u8) -> Result<(), NetError> {
        let v = nibble(value)?;
        self.0[2] = (v << 4) | (self.0[2] & 0x0F);
        Ok(())
    }

    /// Sets the processing requirement nibble ([`Self::SIGN_ON_AGAIN`] in a response makes
    /// the terminal sign on again).
    ///
    /// # Errors
    /// [`NetError::InvalidNibble`] when `value > 15`.
    pub fn set_processing_requirement(&mut self, value: u8) -> Result<(), NetError> {
        let v = nibble(value)?;
        self.0[2] = (self.0[2] & 0xF0) | v;
        Ok(())
    }

    /// The software version, 3 bytes of BCD (`00 00 01`).
    pub fn software_version(self) -> [u8; 3] {
        [self.0[3], self.0[4], self.0[5]]
    }
}

fn nibble(value: u8) -> Result<u8, NetError> {
    if value > 0x0F {
        Err(NetError::InvalidNibble { value })
    } else {
        Ok(value)
    }
}

impl Default for AppHeader {
    /// `60 31 00 00 00 01`.
    fn default() -> Self {
        Self([0x60, 0x31, 0x00, 0x00, 0x00, 0x01])
    }
}

/// The 11 bytes that precede a `cup-pos` message: [`Tpdu`] + [`AppHeader`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CupHeader {
    /// Transport addressing.
    pub tpdu: Tpdu,
    /// Application header.
    pub app: AppHeader,
}

impl CupHeader {
    /// Encoded length in bytes.
    pub const LEN: usize = Tpdu::LEN + AppHeader::LEN;

    /// Parses the 11 wire bytes.
    pub fn from_bytes(b: [u8; 11]) -> Self {
        let mut tpdu = [0u8; Tpdu::LEN];
        tpdu.copy_from_slice(&b[..Tpdu::LEN]);
        let mut app = [0u8; AppHeader::LEN];
        app.copy_from_slice(&b[Tpdu::LEN..]);
        Self {
            tpdu: Tpdu::from_bytes(tpdu),
            app: AppHeader::from_bytes(app),
        }
    }

    /// The 11 wire bytes.
    pub fn to_bytes(self) -> [u8; 11] {
        let mut b = [0u8; Self::LEN];
        b[..Tpdu::LEN].copy_from_slice(&self.tpdu.to_bytes());
        b[Tpdu::LEN..].copy_from_slice(&self.app.to_bytes());
        b
    }

    /// The header of a reply to a frame carrying `self`: TPDU source and destination
    /// swapped, application header kept.
    pub fn reply(self) -> Self {
        Self {
            tpdu: self.tpdu.reply(),
            app: self.app,
        }
    }

    /// The reply header with the processing requirement set to "sign on again".
    pub fn reply_sign_on_again(self) -> Self {
        let mut h = self.reply();
        h.app.0[2] = (h.app.0[2] & 0xF0) | AppHeader::SIGN_ON_AGAIN;
        h
    }
}

/// One message as it travels on a link: the `cup-pos` header (if the framing has one) and
/// the message bytes from the MTI on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The `cup-pos` header; `None` for the other framings. On encoding a `cup-pos` frame,
    /// `None` means "use the codec's default header".
    pub header: Option<CupHeader>,
    /// The message, from the MTI on.
    pub payload: Bytes,
}

impl Frame {
    /// A frame without header.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            header: None,
            payload: payload.into(),
        }
    }

    /// A `cup-pos` frame with the given header.
    pub fn with_header(header: CupHeader, payload: impl Into<Bytes>) -> Self {
        Self {
            header: Some(header),
            payload: payload.into(),
        }
    }
}

impl From<Bytes> for Frame {
    fn from(payload: Bytes) -> Self {
        Frame::new(payload)
    }
}

/// The [`Decoder`]/[`Encoder`] for one [`Framing`], with a maximum frame size.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    framing: Framing,
    max_frame_len: usize,
    default_header: CupHeader,
}

impl FrameCodec {
    /// A codec for `framing` accepting at most `max_frame_len` bytes after the length prefix
    /// (header included). The limit is also capped by what the prefix can express.
    pub fn new(framing: Framing, max_frame_len: usize) -> Self {
        Self {
            framing,
            max_frame_len: max_frame_len.min(framing.max_representable()),
            default_header: CupHeader::default(),
        }
    }

    /// Sets the header used when encoding a `cup-pos` frame whose `header` is `None`.
    pub fn with_default_header(mut self, header: CupHeader) -> Self {
        self.default_header = header;
        self
    }

    /// The framing.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The effective maximum length after the prefix.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Checks that `frame` can be encoded; returns the length the prefix will carry.
    ///
    /// # Errors
    /// [`NetError::ZeroLength`] for an empty payload, [`NetError::FrameTooLarge`] over the
    /// maximum, [`NetError::UnexpectedHeader`] for a header on a framing without one.
    pub fn check(&self, frame: &Frame) -> Result<usize, NetError> {
        if frame.header.is_some() && self.framing != Framing::CupPos {
            return Err(NetError::UnexpectedHeader {
                framing: self.framing,
            });
        }
        if frame.payload.is_empty() {
            return Err(NetError::ZeroLength);
        }
        let len = frame.payload.len() + self.framing.header_len();
        if len > self.max_frame_len {
            return Err(NetError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        Ok(len)
    }

    /// Reads the length prefix at the start of `src` (which holds at least the prefix).
    fn announced_len(&self, src: &[u8]) -> Result<usize, NetError> {
        let len = match self.framing {
            Framing::Len2 | Framing::CupPos => usize::from(u16::from_be_bytes([src[0], src[1]])),
            Framing::Len4 => {
                let n = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
                usize::try_from(n).unwrap_or(usize::MAX)
            }
            Framing::Ascii4 => {
                let prefix = [src[0], src[1], src[2], src[3]];
                let mut n = 0usize;
                for d in prefix {
                    if !d.is_ascii_digit() {
                        return Err(NetError::InvalidLengthPrefix { prefix });
                    }
                    n = n * 10 + usize::from(d - b'0');
                }
                n
            }
        };
        if len == 0 {
            return Err(NetError::ZeroLength);
        }
        if len > self.max_frame_len {
            return Err(NetError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        let min = self.framing.header_len() + 1;
        if len < min {
            return Err(NetError::FrameTooShort { len, min });
        }
        Ok(len)
    }

    fn write_prefix(&self, len: usize, dst: &mut BytesMut) {
        match self.framing {
            // `check` guarantees `len` fits the prefix.
            Framing::Len2 | Framing::CupPos => dst.put_u16(len as u16),
            Framing::Len4 => dst.put_u32(len as u32),
            Framing::Ascii4 => {
                let digits = [
                    b'0' + (len / 1000 % 10) as u8,
                    b'0' + (len / 100 % 10) as u8,
                    b'0' + (len / 10 % 10) as u8,
                    b'0' + (len % 10) as u8,
                ];
                dst.put_slice(&digits);
            }
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = NetError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, NetError> {
        let prefix = self.framing.prefix_len();
        if src.len() < prefix {
            return Ok(None);
        }
        // Validated against the maximum before any reservation.
        let len = self.announced_len(&src[..prefix])?;
        let total = prefix + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(prefix);
        let mut body = src.split_to(len);
        let header = if self.framing == Framing::CupPos {
            let mut h = [0u8; CupHeader::LEN];
            h.copy_from_slice(&body[..CupHeader::LEN]);
            body.advance(CupHeader::LEN);
            Some(CupHeader::from_bytes(h))
        } else {
            None
        };
        Ok(Some(Frame {
            header,
            payload: body.freeze(),
        }))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, NetError> {
        if buf.is_empty() {
            return Ok(None);
        }
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                let prefix = self.framing.prefix_len();
                let expected = if buf.len() >= prefix {
                    self.announced_len(&buf[..prefix]).ok().map(|l| l + prefix)
                } else {
                    None
                };
                Err(NetError::Truncated {
                    buffered: buf.len(),
                    expected,
                })
            }
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = NetError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), NetError> {
        let len = self.check(&frame)?;
        dst.reserve(self.framing.prefix_len() + len);
        self.write_prefix(len, dst);
        if self.framing == Framing::CupPos {
            let header = frame.header.unwrap_or(self.default_header);
            dst.put_slice(&header.to_bytes());
        }
        dst.put_slice(&frame.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Framing; 4] = [
        Framing::Len2,
        Framing::Len4,
        Framing::Ascii4,
        Framing::CupPos,
    ];

    fn encode(codec: &mut FrameCodec, frame: Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        codec.encode(frame, &mut buf).unwrap();
        buf.to_vec()
    }

    #[test]
    fn len2_exact_bytes() {
        let mut c = Framing::Len2.codec(4096);
        assert_eq!(
            encode(&mut c, Frame::new(&b"0800ABC"[..])),
            b"\x00\x070800ABC"
        );
    }

    #[test]
    fn len4_exact_bytes() {
        let mut c = Framing::Len4.codec(1 << 20);
        let payload = vec![0xAB; 300];
        let out = encode(&mut c, Frame::new(payload.clone()));
        assert_eq!(&out[..4], &[0, 0, 0x01, 0x2C]);
        assert_eq!(&out[4..], &payload[..]);
    }

    #[test]
    fn ascii4_exact_bytes() {
        let mut c = Framing::Ascii4.codec(9999);
        let payload = vec![b'x'; 123];
        let out = encode(&mut c, Frame::new(payload));
        assert_eq!(&out[..4], b"0123");
        assert_eq!(out.len(), 127);
    }

    #[test]
    fn cup_pos_exact_bytes_with_default_and_given_header() {
        let mut c = Framing::CupPos.codec(4096);
        let out = encode(&mut c, Frame::new(&[0x08, 0x00][..]));
        assert_eq!(
            out,
            [
                0x00, 0x0D, 0x60, 0x00, 0x03, 0x00, 0x00, 0x60, 0x31, 0x00, 0x00, 0x00, 0x01, 0x08,
                0x00
            ]
        );
        let h = CupHeader::from_bytes([
            0x60, 0x12, 0x34, 0x56, 0x78, 0x60, 0x31, 0x13, 0x00, 0x00, 0x02,
        ]);
        let out = encode(&mut c, Frame::with_header(h, &[0x02, 0x10][..]));
        assert_eq!(&out[2..13], &h.to_bytes());
        let back = c.decode(&mut BytesMut::from(&out[..])).unwrap().unwrap();
        assert_eq!(back.header, Some(h));
        assert_eq!(&back.payload[..], &[0x02, 0x10]);
        assert_eq!(h.app.terminal_status(), 1);
        assert_eq!(h.app.processing_requirement(), 3);
        assert!(h.app.requires_sign_on());
    }

    #[test]
    fn tpdu_swap_in_reply() {
        let h = CupHeader::from_bytes([
            0x60, 0x00, 0x03, 0x01, 0x02, 0x60, 0x31, 0x00, 0x00, 0x00, 0x01,
        ]);
        let r = h.reply();
        assert_eq!(r.tpdu.to_bytes(), [0x60, 0x01, 0x02, 0x00, 0x03]);
        assert_eq!(r.app, h.app);
        assert_eq!(r.reply(), h);
        let s = h.reply_sign_on_again();
        assert_eq!(s.tpdu, r.tpdu);
        assert_eq!(s.app.processing_requirement(), AppHeader::SIGN_ON_AGAIN);
        assert_eq!(s.app.to_bytes(), [0x60, 0x31, 0x03, 0x00, 0x00, 0x01]);
    }

    #[test]
    fn app_header_nibbles() {
        let mut a = AppHeader::default();
        assert_eq!(a.application_type(), 0x60);
        assert_eq!(a.version(), 0x31);
        assert_eq!(a.software_version(), [0, 0, 1]);
        a.set_processing_requirement(3).unwrap();
        a.set_terminal_status(5).unwrap();
        assert_eq!(a.to_bytes()[2], 0x53);
        assert_eq!(a.processing_requirement(), 3);
        assert_eq!(a.terminal_status(), 5);
        assert!(matches!(
            a.set_processing_requirement(16),
            Err(NetError::InvalidNibble { value: 16 })
        ));
        assert_eq!(a.to_bytes()[2], 0x53);
    }

    #[test]
    fn partial_input_returns_none_at_every_split() {
        for framing in ALL {
            let mut c = framing.codec(4096);
            let frame = Frame::new(&b"0200 some message body"[..]);
            let wire = encode(&mut c, frame.clone());
            for cut in 0..wire.len() {
                let mut buf = BytesMut::from(&wire[..cut]);
                assert!(
                    c.decode(&mut buf).unwrap().is_none(),
                    "{framing:?} cut {cut}"
                );
                assert_eq!(buf.len(), cut, "nothing consumed on partial input");
                buf.extend_from_slice(&wire[cut..]);
                let got = c.decode(&mut buf).unwrap().unwrap();
                assert_eq!(got.payload, frame.payload);
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn two_frames_in_one_buffer_and_zero_copy() {
        let mut c = Framing::Len2.codec(4096);
        let mut buf = BytesMut::new();
        c.encode(Frame::new(&b"first"[..]), &mut buf).unwrap();
        c.encode(Frame::new(&b"second"[..]), &mut buf).unwrap();
        let base = buf.as_ptr() as usize;
        let a = c.decode(&mut buf).unwrap().unwrap();
        // The payload points into the original read buffer: no copy was made.
        assert_eq!(a.payload.as_ptr() as usize, base + 2);
        let b = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&a.payload[..], b"first");
        assert_eq!(&b.payload[..], b"second");
        assert!(c.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_rejected_without_reserving() {
        let mut c = Framing::Len4.codec(4096);
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xF0, 1, 2]);
        let cap = buf.capacity();
        match c.decode(&mut buf) {
            Err(NetError::FrameTooLarge { len, max }) => {
                assert_eq!(len, 0xFFFF_FFF0);
                assert_eq!(max, 4096);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(buf.capacity(), cap, "no reservation for the claimed size");

        let mut c = Framing::Len2.codec(100);
        let mut buf = BytesMut::from(&[0x00, 0x65][..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(NetError::FrameTooLarge { len: 101, max: 100 })
        ));
    }

    #[test]
    fn zero_length_is_rejected() {
        for framing in ALL {
            let mut c = framing.codec(4096);
            let zero: &[u8] = if framing == Framing::Ascii4 {
                b"0000"
            } else {
                &[0, 0, 0, 0]
            };
            let mut buf = BytesMut::from(zero);
            assert!(
                matches!(c.decode(&mut buf), Err(NetError::ZeroLength)),
                "{framing:?}"
            );
            let mut out = BytesMut::new();
            assert!(matches!(
                c.encode(Frame::new(Bytes::new()), &mut out),
                Err(NetError::ZeroLength)
            ));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn cup_pos_frame_shorter_than_header_is_rejected() {
        let mut c = Framing::CupPos.codec(4096);
        let mut buf = BytesMut::from(&[0x00, 0x0B][..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(NetError::FrameTooShort { len: 11, min: 12 })
        ));
    }

    #[test]
    fn ascii4_rejects_non_digits() {
        let mut c = Framing::Ascii4.codec(9999);
        let mut buf = BytesMut::from(&b"01x3abc"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(NetError::InvalidLengthPrefix { prefix }) if &prefix == b"01x3"
        ));
    }

    #[test]
    fn truncated_stream_is_an_error_at_eof() {
        let mut c = Framing::Len2.codec(4096);
        let mut buf = BytesMut::from(&[0x00, 0x0A, 1, 2, 3][..]);
        assert!(matches!(
            c.decode_eof(&mut buf),
            Err(NetError::Truncated {
                buffered: 5,
                expected: Some(12)
            })
        ));
        let mut buf = BytesMut::from(&[0x00][..]);
        assert!(matches!(
            c.decode_eof(&mut buf),
            Err(NetError::Truncated {
                buffered: 1,
                expected: None
            })
        ));
        let mut empty = BytesMut::new();
        assert!(c.decode_eof(&mut empty).unwrap().is_none());
    }

    #[test]
    fn encode_rejects_oversized_and_misplaced_header() {
        let mut c = Framing::Len2.codec(10);
        let mut out = BytesMut::new();
        assert!(matches!(
            c.encode(Frame::new(vec![0u8; 11]), &mut out),
            Err(NetError::FrameTooLarge { len: 11, max: 10 })
        ));
        assert!(matches!(
            c.encode(
                Frame::with_header(CupHeader::default(), &b"x"[..]),
                &mut out
            ),
            Err(NetError::UnexpectedHeader {
                framing: Framing::Len2
            })
        ));
        assert!(out.is_empty());
        // The prefix caps the configured maximum.
        assert_eq!(Framing::Ascii4.codec(1 << 20).max_frame_len(), 9999);
        assert_eq!(Framing::CupPos.codec(1 << 20).max_frame_len(), 65535);
    }

    proptest! {
        #[test]
        fn round_trip(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..300), 1..8),
            which in 0usize..4, split in any::<prop::sample::Index>()) {
            let framing = ALL[which];
            let mut c = framing.codec(4096);
            let mut wire = BytesMut::new();
            for p in &payloads {
                c.encode(Frame::new(p.clone()), &mut wire).unwrap();
            }
            // Feed in two chunks at an arbitrary point.
            let at = split.index(wire.len() + 1);
            let mut buf = BytesMut::from(&wire[..at]);
            let mut got = Vec::new();
            while let Some(f) = c.decode(&mut buf).unwrap() { got.push(f); }
            buf.extend_from_slice(&wire[at..]);
            while let Some(f) = c.decode_eof(&mut buf).unwrap() { got.push(f); }
            prop_assert_eq!(got.len(), payloads.len());
            for (f, p) in got.iter().zip(&payloads) {
                prop_assert_eq!(&f.payload[..], &p[..]);
                prop_assert_eq!(f.header.is_some(), framing == Framing::CupPos);
            }
        }
    }
}
