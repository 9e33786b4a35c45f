#![no_main]
//! Every framing decoder on an arbitrary byte stream delivered in arbitrary pieces: never
//! panics, never yields a frame larger than the maximum, and a stream that decodes
//! re-encodes to the same bytes.
use bytes::BytesMut;
use isoswitch_net::{Framing, FrameCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

const FRAMINGS: [Framing; 4] = [Framing::Len2, Framing::Len4, Framing::Ascii4, Framing::CupPos];
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let framing = FRAMINGS[ctl as usize % 4];
    let piece = 1 + (ctl as usize >> 2);
    let mut codec = FrameCodec::new(framing, MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut consumed_ok = true;
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
                    consumed_ok = false;
                    break 'feed;
                }
            }
        }
    }
    if consumed_ok {
        let _ = codec.decode_eof(&mut buf);
        // What decoded re-encodes to the bytes it came from.
        let mut out = BytesMut::new();
        let mut enc = FrameCodec::new(framing, MAX);
        for f in frames {
            if enc.encode(f, &mut out).is_err() {
                return;
            }
        }
        assert_eq!(&out[..], &rest[..out.len()]);
    }
});
