//! Network harnesses: the framing decoders and the admin endpoint's request parser.

use bytes::BytesMut;
use isoswitch_net::admin::parse_request;
use isoswitch_net::{FrameCodec, Framing};
use tokio_util::codec::{Decoder, Encoder};

const FRAMINGS: [Framing; 4] = [
    Framing::Len2,
    Framing::Len4,
    Framing::Ascii4,
    Framing::CupPos,
];
const MAX: usize = 4096;

/// `framing` target: the first byte picks the framing and the piece size; the rest is a
/// byte stream delivered in those pieces. Never panics, never yields a frame larger
/// than the maximum, and what decodes re-encodes to the bytes it came from. Reached:
/// at least one frame decoded and re-encoded.
pub fn framing(data: &[u8]) -> bool {
    let Some((&ctl, rest)) = data.split_first() else {
        return false;
    };
    let framing = FRAMINGS[usize::from(ctl) % 4];
    let piece = 1 + (usize::from(ctl) >> 2);
    let mut codec = FrameCodec::new(framing, MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut clean = true;
    'feed: for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= MAX);
                    frames.push(f);
                }
                Ok(None) => break,
                Err(_) => {
                    clean = false;
                    break 'feed;
                }
            }
        }
    }
    if !clean {
        return false;
    }
    let _ = codec.decode_eof(&mut buf);
    if frames.is_empty() {
        return false;
    }
    // What decoded re-encodes to the bytes it came from.
    let mut out = BytesMut::new();
    let mut enc = FrameCodec::new(framing, MAX);
    for f in frames {
        if enc.encode(f, &mut out).is_err() {
            return false;
        }
    }
    assert_eq!(&out[..], &rest[..out.len()]);
    true
}

/// `admin_request` target: the admin endpoint's HTTP request-head parser never panics,
/// and a complete head lies within the bytes given and the size limit. Reached: a
/// head parsed, complete or valid so far, under some limit.
pub fn admin_request(data: &[u8]) -> bool {
    let mut reached = false;
    for max in [16usize, 256, 8192] {
        match parse_request(data, max) {
            Ok(Some(head)) => {
                assert!(head.head_len <= data.len().min(max));
                assert!(head.path.len() < head.head_len);
                reached = true;
            }
            Ok(None) => reached |= !data.is_empty(),
            Err(_) => {}
        }
    }
    reached
}
