//! Key material the simulators load: terminal master keys and the zone master key.
//!
//! `terminals.toml`:
//!
//! ```toml
//! [[terminal]]
//! tid = "TERM0001"            # DE 41, 8 characters
//! mid = "MERCHANT0000001"     # DE 42, 15 characters
//! tmk = "0123456789ABCDEFFEDCBA9876543210"   # terminal master key, hex (DES or TDES)
//! ```
//!
//! The zone master key file holds one DES/TDES key in hex (whitespace ignored); the
//! switch and the host share it and derive nothing else from it: the zone working keys
//! arrive in the network sign-on response, encrypted under it.
//!
//! The key-encryption key file (`host_sim --kek`, `examples/kek.hex`) holds one AES-256
//! key in hex, the same format: the key the host's stored session snapshots are sealed
//! under (AES-256-GCM).

use std::path::Path;

use serde::Deserialize;

use super::{unhex, Result, SimError};
use crate::session::crypto::Key;
use crate::session::{Kek, MemoryKeyStore, TerminalId};
use zeroize::Zeroizing;

/// One terminal of `terminals.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct TerminalEntry {
    pub tid: String,
    pub mid: String,
    pub tmk: String,
}

impl TerminalEntry {
    pub fn id(&self) -> Result<TerminalId> {
        Ok(TerminalId::new(&self.tid, &self.mid)?)
    }

    pub fn key(&self) -> Result<Key> {
        let bytes = unhex(&self.tmk)
            .ok_or_else(|| SimError::Config(format!("{}: tmk is not hex", self.tid)))?;
        Ok(Key::des_or_tdes(&bytes)?)
    }
}

#[derive(Debug, Deserialize)]
struct TerminalsFile {
    #[serde(default)]
    terminal: Vec<TerminalEntry>,
}

/// Parses the text of a terminals file; every entry is checked (ID lengths, key).
pub fn parse_terminals(text: &str) -> Result<Vec<TerminalEntry>> {
    let f: TerminalsFile =
        toml::from_str(text).map_err(|e| SimError::Config(format!("terminals file: {e}")))?;
    for t in &f.terminal {
        t.id()?;
        t.key()?;
    }
    if f.terminal.is_empty() {
        return Err(SimError::Config(
            "terminals file lists no [[terminal]]".into(),
        ));
    }
    Ok(f.terminal)
}

/// Reads a terminals file.
pub fn load_terminals(path: &Path) -> Result<Vec<TerminalEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path.display(), e))?;
    parse_terminals(&text)
}

/// The key store of the terminals.
pub fn key_store(terminals: &[TerminalEntry]) -> Result<MemoryKeyStore> {
    let mut store = MemoryKeyStore::new();
    for t in terminals {
        store.insert(t.id()?, t.key()?)?;
    }
    Ok(store)
}

/// Reads a zone master key file (hex).
pub fn load_zone_key(path: &Path) -> Result<Key> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path.display(), e))?;
    zone_key_from_hex(&text)
}

/// A clear TDES key from a hex file (`what` names it in errors), e.g. the BDK of
/// `terminal_sim --dukpt`'s key injection.
pub fn load_tdes_key(path: &Path, what: &str) -> Result<Key> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path.display(), e))?;
    let bytes = unhex(&text)
        .ok_or_else(|| SimError::Config(format!("{}: {what} is not hex", path.display())))?;
    Ok(Key::des_or_tdes(&bytes)?)
}

/// A double-length TDES key stored under a security module's LMK (hex file), as the
/// module loads it.
pub fn load_key_under_lmk(path: &Path, what: &str) -> Result<isoswitch::hsm::EncryptedKey> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path.display(), e))?;
    let bytes = unhex(&text)
        .ok_or_else(|| SimError::Config(format!("{}: {what} is not hex", path.display())))?;
    isoswitch::hsm::EncryptedKey::new(crate::session::crypto::KeyKind::Tdes2, &bytes)
        .map_err(|e| SimError::Config(format!("{}: {what}: {e}", path.display())))
}

/// A zone master key from hex.
pub fn zone_key_from_hex(text: &str) -> Result<Key> {
    let bytes = unhex(text).ok_or_else(|| SimError::Config("zone key is not hex".into()))?;
    Ok(Key::des_or_tdes(&bytes)?)
}

/// Reads a key-encryption key file (hex, AES-256: 64 hex digits; whitespace ignored),
/// the key the sealed session snapshots are encrypted under.
pub fn load_kek(path: &Path) -> Result<Kek> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path.display(), e))?;
    kek_from_hex(&text).map_err(|e| match e {
        SimError::Config(m) => SimError::Config(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// A key-encryption key from hex (32 bytes).
pub fn kek_from_hex(text: &str) -> Result<Kek> {
    let bytes = Zeroizing::new(
        unhex(text).ok_or_else(|| SimError::Config("key-encryption key is not hex".into()))?,
    );
    if bytes.len() != 32 {
        return Err(SimError::Config(format!(
            "key-encryption key: {} bytes, expected 32 (AES-256, 64 hex digits)",
            bytes.len()
        )));
    }
    Ok(Kek::new(&Key::aes(&bytes)?)?)
}

/// The shipped sample terminals (`examples/terminals.toml`), for the demo and tests.
pub const SAMPLE_TERMINALS: &str = include_str!("../../examples/terminals.toml");

/// The shipped sample zone master key (`examples/zmk.hex`).
pub const SAMPLE_ZONE_KEY: &str = include_str!("../../examples/zmk.hex");

/// The shipped sample key-encryption key (`examples/kek.hex`): a test key, for the demo
/// and tests only.
pub const SAMPLE_KEK: &str = include_str!("../../examples/kek.hex");

/// The switch's identity on the upstream link (DE 41/42 of its network sign-on).
pub const SWITCH_TID: &str = "ISWITCH1";
pub const SWITCH_MID: &str = "ISOSWITCHACQ001";
/// The switch's acquiring institution (DE 32 upstream).
pub const ACQUIRER_ID: &str = "00000000001";

/// Opens the shared PostgreSQL store `url` (`postgres://USER@HOST:PORT/DB`) as node
/// `node` (default: host name + pid) with leases of `lease` (`--store`, `--node`,
/// `--lease` of switchd and host_sim), its rows sealed under the data key derived from
/// `kek` (`--kek`), as [`crate::open_data_dir`] seals the files of a data directory.
///
/// # Errors
/// A bad URL, an unreachable server, a failed migration.
pub fn pg_store(
    url: &str,
    node: Option<&str>,
    lease: std::time::Duration,
    kek: &Kek,
) -> Result<isoswitch_pg::PgStore> {
    let mut c = isoswitch_pg::PgConfig::new(url);
    if let Some(n) = node {
        c.node = n.to_string();
    }
    c.lease = lease;
    let keys = crate::reversal::seal::DataKeys::from_kek(kek)?;
    isoswitch_pg::PgStore::open(c, std::sync::Arc::new(keys))
        .map_err(|e| SimError::Config(format!("--store {url}: {e}")))
}
