//! TR-31 key blocks against psec 1.3.0 (PyPI), an independent ANSI X9.143
//! implementation: 200 blocks per version (A, B, C, D) made by psec's `tr31.wrap` in
//! `scripts/psec/gen_tr31.py`, committed under `tests/vectors/psec/tr31.json` with the
//! padding psec drew. Each block must unwrap to its key, and wrapping that key again
//! under the block's own header with the same padding must give psec's block exactly
//! (so psec unwraps what we wrap). No Python is needed to run these tests.

mod keys_common;
use keys_common::{hex, to_hex, vector_file};

use std::collections::BTreeMap;

use isoswitch_session::crypto::keys::Key;
use isoswitch_session::crypto::tr31::{self, KeyBlock};
use serde::Deserialize;

const MIN_PER_VERSION: usize = 200;

#[derive(Deserialize)]
struct File {
    generator: String,
    oracle: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    version: String,
    kbpk: String,
    key: String,
    pad: String,
    block: String,
}

#[test]
fn psec_blocks_unwrap_and_rewrap_identically() {
    let text = vector_file("psec/tr31.json");
    let f: File = serde_json::from_str(&text).unwrap_or_else(|e| panic!("psec/tr31.json: {e}"));
    assert_eq!(f.generator, "scripts/psec/gen_tr31.py");
    assert!(f.oracle.starts_with("psec 1.3.0"));
    let mut per_version = BTreeMap::new();
    let mut with_blocks = 0;
    let mut extended = 0;
    for c in &f.cases {
        let kbpk_bytes = hex(&c.kbpk);
        let kbpk = if c.version == "D" {
            Key::aes(&kbpk_bytes)
        } else {
            Key::des_or_tdes(&kbpk_bytes)
        }
        .expect("kbpk");
        let u = tr31::unwrap(&kbpk, &c.block).unwrap_or_else(|e| panic!("{}: {e}", c.block));
        let header = u.header().clone();
        let key = u.into_key_unchecked();
        assert_eq!(to_hex(&key.expose_secret()), c.key, "{}", c.block);
        let again = tr31::wrap_with_padding(&kbpk, &header, &key, &hex(&c.pad))
            .unwrap_or_else(|e| panic!("{}: {e}", c.block));
        assert_eq!(again, c.block);
        // The header alone encodes to the block's first characters.
        let parsed = KeyBlock::parse(&c.block).expect("parse");
        assert_eq!(
            parsed.header.encode(c.block.len()).expect("encode"),
            c.block[..parsed.header.encoded_len()]
        );
        if !header.optional_blocks.is_empty() {
            with_blocks += 1;
        }
        if header
            .optional_blocks
            .iter()
            .any(|b| b.data().len() + 4 > 255)
        {
            extended += 1;
        }
        *per_version.entry(c.version.clone()).or_insert(0usize) += 1;
    }
    for v in ["A", "B", "C", "D"] {
        assert!(
            per_version.get(v).copied().unwrap_or(0) >= MIN_PER_VERSION,
            "{v}: {per_version:?}"
        );
    }
    assert!(
        with_blocks > 100 && extended > 0,
        "{with_blocks} {extended}"
    );
}
