//! Terminal counters: STAN, batch number and RRN.
//!
//! - [`Stan`] (field 11): 000001–999999; after 999999 comes 000001, never 000000.
//! - [`BatchNumber`] (`cup-pos` field 60.2): 000001–999999, same wrap rule. The terminal
//!   adopts the host's batch from a sign-on response ([`Counters::set_batch`]) and moves
//!   to the next one after settlement or sign-off ([`Counters::next_batch`]).
//! - [`Rrn`] (field 37): 12 characters. Terminals generate a 12-digit sequence
//!   (000000000001–999999999999, wrapping to 1); received RRNs may be any 12 ASCII
//!   alphanumeric or space characters.
//!
//! The [`Counters`] trait lets a terminal keep them where it likes. [`MemoryCounters`]
//! keeps them in memory (tests, hosts that assign nothing). [`FileCounters`] writes the
//! new state to a temporary file, fsyncs it, renames it over the counters file and
//! fsyncs the directory *before* handing out a value, so a value is never handed out
//! twice, even across a crash: after a crash the file holds either the state before
//! or the state after the last call.
//!
//! File behaviour: an **absent** file starts fresh (STAN 1, batch 1, RRN 1) and is
//! created at once; a **corrupt** file (bad header, missing or malformed field, value
//! out of range, checksum mismatch) is [`SessionError::CounterFileCorrupt`] and is left
//! untouched for inspection; [`FileCounters::create`] overwrites it deliberately.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{CorruptReason, Result, SessionError};

/// Largest STAN and batch number.
pub const MAX_SIX_DIGIT: u32 = 999_999;
/// Largest generated RRN sequence value.
pub const MAX_RRN_SEQUENCE: u64 = 999_999_999_999;

/// A system trace audit number (field 11): 1..=999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stan(u32);

impl Stan {
    /// The first STAN, 000001.
    pub const FIRST: Stan = Stan(1);

    /// A STAN from its value; 0 and values above 999999 are refused.
    pub fn new(value: u32) -> Result<Stan> {
        six_digit("STAN", value).map(Stan)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The following STAN: 999999 is followed by 000001.
    pub fn next(self) -> Stan {
        Stan(next_six_digit(self.0))
    }
}

impl fmt::Display for Stan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// A batch number (`cup-pos` field 60.2): 1..=999999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchNumber(u32);

impl BatchNumber {
    /// The first batch, 000001.
    pub const FIRST: BatchNumber = BatchNumber(1);

    /// A batch number from its value; 0 and values above 999999 are refused.
    pub fn new(value: u32) -> Result<BatchNumber> {
        six_digit("batch number", value).map(BatchNumber)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The following batch number: 999999 is followed by 000001.
    pub fn next(self) -> BatchNumber {
        BatchNumber(next_six_digit(self.0))
    }
}

impl Default for BatchNumber {
    /// Batch 000001.
    fn default() -> BatchNumber {
        BatchNumber::FIRST
    }
}

impl fmt::Display for BatchNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// A retrieval reference number (field 37, an12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rrn([u8; 12]);

impl Rrn {
    /// An RRN as received: exactly 12 ASCII letters, digits or spaces.
    pub fn new(text: &str) -> Result<Rrn> {
        let bytes = text.as_bytes();
        if bytes.len() != 12
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b' ')
        {
            return Err(SessionError::BadRrn);
        }
        let mut out = [0u8; 12];
        out.copy_from_slice(bytes);
        Ok(Rrn(out))
    }

    /// The 12-digit, zero-padded RRN for a sequence value 1..=999999999999.
    pub fn from_sequence(value: u64) -> Result<Rrn> {
        if value == 0 || value > MAX_RRN_SEQUENCE {
            return Err(SessionError::CounterOutOfRange {
                counter: "RRN",
                value,
                max: MAX_RRN_SEQUENCE,
            });
        }
        Rrn::new(&format!("{value:012}"))
    }

    /// The 12 ASCII characters.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// The RRN as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Rrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of all counters: the values the next calls will hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    /// The STAN [`Counters::next_stan`] returns next.
    pub next_stan: Stan,
    /// The current batch.
    pub batch: BatchNumber,
    /// The sequence value [`Counters::next_rrn`] uses next (1..=999999999999).
    pub next_rrn: u64,
}

impl Default for CounterState {
    fn default() -> CounterState {
        CounterState {
            next_stan: Stan::FIRST,
            batch: BatchNumber::FIRST,
            next_rrn: 1,
        }
    }
}

impl CounterState {
    fn after_stan(self) -> CounterState {
        CounterState {
            next_stan: self.next_stan.next(),
            ..self
        }
    }

    fn after_rrn(self) -> CounterState {
        let next = if self.next_rrn >= MAX_RRN_SEQUENCE {
            1
        } else {
            self.next_rrn + 1
        };
        CounterState {
            next_rrn: next,
            ..self
        }
    }
}

/// Where a terminal keeps its counters. Every method that changes a counter makes the
/// change durable (for a persistent implementation) before returning the value.
pub trait Counters {
    /// The current state.
    fn state(&self) -> CounterState;

    /// Takes the next STAN.
    fn next_stan(&mut self) -> Result<Stan>;

    /// The current batch number.
    fn batch(&self) -> BatchNumber {
        self.state().batch
    }

    /// Adopts a batch number (e.g. the host's, from a sign-on response).
    fn set_batch(&mut self, batch: BatchNumber) -> Result<()>;

    /// Moves to the next batch (after settlement or sign-off) and returns it.
    fn next_batch(&mut self) -> Result<BatchNumber> {
        let next = self.batch().next();
        self.set_batch(next)?;
        Ok(next)
    }

    /// Takes the next generated RRN.
    fn next_rrn(&mut self) -> Result<Rrn>;
}

/// Counters held in memory only.
#[derive(Debug, Clone, Default)]
pub struct MemoryCounters {
    state: CounterState,
}

impl MemoryCounters {
    /// Fresh counters: STAN 1, batch 1, RRN 1.
    pub fn new() -> MemoryCounters {
        MemoryCounters::default()
    }

    /// Counters starting from a given state.
    pub fn with_state(state: CounterState) -> Result<MemoryCounters> {
        check_rrn(state.next_rrn)?;
        Ok(MemoryCounters { state })
    }
}

impl Counters for MemoryCounters {
    fn state(&self) -> CounterState {
        self.state
    }

    fn next_stan(&mut self) -> Result<Stan> {
        let stan = self.state.next_stan;
        self.state = self.state.after_stan();
        Ok(stan)
    }

    fn set_batch(&mut self, batch: BatchNumber) -> Result<()> {
        self.state.batch = batch;
        Ok(())
    }

    fn next_rrn(&mut self) -> Result<Rrn> {
        let rrn = Rrn::from_sequence(self.state.next_rrn)?;
        self.state = self.state.after_rrn();
        Ok(rrn)
    }
}

/// Counters persisted in a small text file, replaced atomically on every change.
#[derive(Debug)]
pub struct FileCounters {
    path: PathBuf,
    state: CounterState,
}

const HEADER: &str = "isoswitch-counters 1";

impl FileCounters {
    /// Opens the counters file at `path`. An absent file starts fresh and is written at
    /// once; a corrupt one is an error ([`SessionError::CounterFileCorrupt`]) and is
    /// not modified.
    pub fn open(path: impl AsRef<Path>) -> Result<FileCounters> {
        let path = path.as_ref().to_path_buf();
        match fs::read(&path) {
            Ok(bytes) => {
                let state = parse(&bytes).map_err(|reason| SessionError::CounterFileCorrupt {
                    path: path.clone(),
                    reason,
                })?;
                Ok(FileCounters { path, state })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                FileCounters::create(path, CounterState::default())
            }
            Err(source) => Err(SessionError::CounterIo { path, source }),
        }
    }

    /// Writes `state` to `path`, replacing any existing file (the deliberate recovery
    /// from a corrupt file), and returns counters on it.
    pub fn create(path: impl AsRef<Path>, state: CounterState) -> Result<FileCounters> {
        check_rrn(state.next_rrn)?;
        let path = path.as_ref().to_path_buf();
        persist(&path, &state)?;
        Ok(FileCounters { path, state })
    }

    /// The counters file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Persists `next` and only then adopts it.
    fn commit(&mut self, next: CounterState) -> Result<()> {
        persist(&self.path, &next)?;
        self.state = next;
        Ok(())
    }
}

impl Counters for FileCounters {
    fn state(&self) -> CounterState {
        self.state
    }

    fn next_stan(&mut self) -> Result<Stan> {
        let stan = self.state.next_stan;
        self.commit(self.state.after_stan())?;
        Ok(stan)
    }

    fn set_batch(&mut self, batch: BatchNumber) -> Result<()> {
        self.commit(CounterState {
            batch,
            ..self.state
        })
    }

    fn next_rrn(&mut self) -> Result<Rrn> {
        let rrn = Rrn::from_sequence(self.state.next_rrn)?;
        self.commit(self.state.after_rrn())?;
        Ok(rrn)
    }
}

fn six_digit(counter: &'static str, value: u32) -> Result<u32> {
    if value == 0 || value > MAX_SIX_DIGIT {
        Err(SessionError::CounterOutOfRange {
            counter,
            value: u64::from(value),
            max: u64::from(MAX_SIX_DIGIT),
        })
    } else {
        Ok(value)
    }
}

fn next_six_digit(value: u32) -> u32 {
    if value >= MAX_SIX_DIGIT {
        1
    } else {
        value + 1
    }
}

fn check_rrn(value: u64) -> Result<()> {
    if value == 0 || value > MAX_RRN_SEQUENCE {
        Err(SessionError::CounterOutOfRange {
            counter: "RRN",
            value,
            max: MAX_RRN_SEQUENCE,
        })
    } else {
        Ok(())
    }
}

fn body(state: &CounterState) -> String {
    format!(
        "{HEADER}\nnext_stan={}\nbatch={}\nnext_rrn={:012}\n",
        state.next_stan, state.batch, state.next_rrn
    )
}

fn render(state: &CounterState) -> String {
    let body = body(state);
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}crc32={crc:08X}\n")
}

fn parse(bytes: &[u8]) -> std::result::Result<CounterState, CorruptReason> {
    let text = std::str::from_utf8(bytes).map_err(|_| CorruptReason::Encoding)?;
    let mut lines = text.split_terminator('\n');
    if lines.next() != Some(HEADER) {
        return Err(CorruptReason::Header);
    }
    let mut field = |name: &'static str, digits: usize| -> Result<u64, CorruptReason> {
        let line = lines.next().ok_or(CorruptReason::Field(name))?;
        let value = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .filter(|v| v.len() == digits && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(CorruptReason::Field(name))?;
        value.parse::<u64>().map_err(|_| CorruptReason::Field(name))
    };
    let stan = field("next_stan", 6)?;
    let batch = field("batch", 6)?;
    let rrn = field("next_rrn", 12)?;
    let crc_line = lines.next().ok_or(CorruptReason::Field("crc32"))?;
    if lines.next().is_some() {
        return Err(CorruptReason::Field("crc32"));
    }
    let crc = crc_line
        .strip_prefix("crc32=")
        .filter(|v| {
            v.len() == 8
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
        .and_then(|v| u32::from_str_radix(v, 16).ok())
        .ok_or(CorruptReason::Field("crc32"))?;

    let next_stan = u32::try_from(stan)
        .ok()
        .and_then(|v| Stan::new(v).ok())
        .ok_or(CorruptReason::Range("next_stan"))?;
    let batch = u32::try_from(batch)
        .ok()
        .and_then(|v| BatchNumber::new(v).ok())
        .ok_or(CorruptReason::Range("batch"))?;
    check_rrn(rrn).map_err(|_| CorruptReason::Range("next_rrn"))?;
    let state = CounterState {
        next_stan,
        batch,
        next_rrn: rrn,
    };
    if crc32fast::hash(body(&state).as_bytes()) != crc {
        return Err(CorruptReason::Checksum);
    }
    Ok(state)
}

/// Writes `state` durably: temporary sibling, fsync, rename over `path`, fsync the
/// directory.
fn persist(path: &Path, state: &CounterState) -> Result<()> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SessionError::CounterIo { path: p, source }
    };
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);

    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(render(state).as_bytes())
        .map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path).map_err(io_err(path))?;
    Ok(())
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing here; the rename is still atomic.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stan_range_and_wrap() {
        assert!(matches!(
            Stan::new(0),
            Err(SessionError::CounterOutOfRange { value: 0, .. })
        ));
        assert!(matches!(
            Stan::new(1_000_000),
            Err(SessionError::CounterOutOfRange {
                value: 1_000_000,
                ..
            })
        ));
        let last = Stan::new(999_999).expect("stan");
        assert_eq!(last.to_string(), "999999");
        assert_eq!(last.next(), Stan::FIRST);
        assert_eq!(Stan::FIRST.to_string(), "000001");
        assert_eq!(
            BatchNumber::new(999_999).expect("b").next(),
            BatchNumber::FIRST
        );
        assert!(BatchNumber::new(0).is_err());
    }

    #[test]
    fn memory_counters_wrap_without_zero() {
        let mut c = MemoryCounters::with_state(CounterState {
            next_stan: Stan::new(999_998).expect("stan"),
            batch: BatchNumber::new(999_999).expect("batch"),
            next_rrn: MAX_RRN_SEQUENCE,
        })
        .expect("state");
        let got: Vec<String> = (0..4)
            .map(|_| c.next_stan().expect("stan").to_string())
            .collect();
        assert_eq!(got, ["999998", "999999", "000001", "000002"]);
        assert_eq!(c.next_batch().expect("batch").to_string(), "000001");
        assert_eq!(c.next_rrn().expect("rrn").as_str(), "999999999999");
        assert_eq!(c.next_rrn().expect("rrn").as_str(), "000000000001");
    }

    #[test]
    fn rrn_validation() {
        assert_eq!(
            Rrn::new("ABC 12345678").expect("rrn").to_string(),
            "ABC 12345678"
        );
        assert!(matches!(Rrn::new("12345"), Err(SessionError::BadRrn)));
        assert!(matches!(
            Rrn::new("12345678901-"),
            Err(SessionError::BadRrn)
        ));
        assert!(Rrn::from_sequence(0).is_err());
        assert_eq!(
            Rrn::from_sequence(42).expect("rrn").as_str(),
            "000000000042"
        );
    }

    #[test]
    fn file_counters_start_fresh_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("counters");
        {
            let mut c = FileCounters::open(&path).expect("open");
            assert!(path.exists(), "created on open");
            assert_eq!(c.state(), CounterState::default());
            assert_eq!(c.next_stan().expect("stan").get(), 1);
            assert_eq!(c.next_stan().expect("stan").get(), 2);
            c.set_batch(BatchNumber::new(17).expect("b")).expect("set");
            assert_eq!(c.next_rrn().expect("rrn").as_str(), "000000000001");
            // Dropped without any "close": every change is already on disk.
        }
        let mut c = FileCounters::open(&path).expect("reopen");
        assert_eq!(c.next_stan().expect("stan").get(), 3);
        assert_eq!(c.batch().get(), 17);
        assert_eq!(c.next_rrn().expect("rrn").as_str(), "000000000002");
        assert!(!dir.path().join("counters.tmp").exists());
    }

    #[test]
    fn file_counters_wrap_and_persist_the_wrap() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c");
        let start = CounterState {
            next_stan: Stan::new(999_999).expect("stan"),
            batch: BatchNumber::new(999_999).expect("b"),
            next_rrn: 5,
        };
        let mut c = FileCounters::create(&path, start).expect("create");
        assert_eq!(c.next_stan().expect("stan").get(), 999_999);
        assert_eq!(c.next_batch().expect("b").get(), 1);
        let c2 = FileCounters::open(&path).expect("reopen");
        assert_eq!(c2.state().next_stan, Stan::FIRST);
        assert_eq!(c2.state().batch, BatchNumber::FIRST);
    }

    #[test]
    fn corrupt_files_are_typed_errors_and_left_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c");
        FileCounters::create(&path, CounterState::default()).expect("create");
        let good = fs::read_to_string(&path).expect("read");

        let cases: Vec<(String, CorruptReason)> = vec![
            (String::new(), CorruptReason::Header),
            ("garbage\n".into(), CorruptReason::Header),
            (
                good.replace("next_stan=000001", "next_stan=000002"),
                CorruptReason::Checksum,
            ),
            (
                good.replace("next_stan=000001", "next_stan=0001"),
                CorruptReason::Field("next_stan"),
            ),
            (
                good.replace("batch=000001\n", ""),
                CorruptReason::Field("batch"),
            ),
            (
                good.replace("crc32=", "crc="),
                CorruptReason::Field("crc32"),
            ),
            (format!("{good}extra\n"), CorruptReason::Field("crc32")),
            (
                good.replace("next_stan=000001", "next_stan=000000"),
                CorruptReason::Range("next_stan"),
            ),
        ];
        for (content, want) in cases {
            fs::write(&path, &content).expect("write");
            match FileCounters::open(&path) {
                Err(SessionError::CounterFileCorrupt { reason, .. }) => {
                    assert_eq!(reason, want, "{content:?}")
                }
                other => panic!("{content:?}: {other:?}"),
            }
            assert_eq!(
                fs::read_to_string(&path).expect("read"),
                content,
                "untouched"
            );
        }
        fs::write(&path, [0xFF, 0xFE]).expect("write");
        assert!(matches!(
            FileCounters::open(&path),
            Err(SessionError::CounterFileCorrupt {
                reason: CorruptReason::Encoding,
                ..
            })
        ));
        // Deliberate recovery.
        let c = FileCounters::create(&path, CounterState::default()).expect("reset");
        assert_eq!(c.state(), CounterState::default());
        assert!(FileCounters::open(&path).is_ok());
    }

    proptest::proptest! {
        /// Any single-byte change to a valid file is detected.
        #[test]
        fn any_single_byte_change_is_rejected(
            stan in 1u32..=999_999,
            batch in 1u32..=999_999,
            rrn in 1u64..=MAX_RRN_SEQUENCE,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let state = CounterState {
                next_stan: Stan::new(stan).expect("stan"),
                batch: BatchNumber::new(batch).expect("batch"),
                next_rrn: rrn,
            };
            let mut bytes = render(&state).into_bytes();
            proptest::prop_assert_eq!(parse(&bytes), Ok(state));
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            proptest::prop_assert!(parse(&bytes).is_err());
        }

        /// Truncation (a torn write without the atomic rename) is detected.
        #[test]
        fn truncated_files_are_rejected(stan in 1u32..=999_999, cut in 0usize..64) {
            let state = CounterState {
                next_stan: Stan::new(stan).expect("stan"),
                ..CounterState::default()
            };
            let bytes = render(&state).into_bytes();
            let cut = cut.min(bytes.len() - 1);
            proptest::prop_assert!(parse(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn leftover_temp_file_from_a_crash_is_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c");
        let mut c = FileCounters::open(&path).expect("open");
        c.next_stan().expect("stan");
        // A crash between writing the temporary file and the rename leaves it behind,
        // possibly half written; the counters file still holds the previous state.
        fs::write(dir.path().join("c.tmp"), "isoswitch-counters 1\nnext_st").expect("tmp");
        let mut c = FileCounters::open(&path).expect("reopen");
        assert_eq!(c.next_stan().expect("stan").get(), 2);
        assert_eq!(
            FileCounters::open(&path)
                .expect("again")
                .state()
                .next_stan
                .get(),
            3
        );
    }

    #[test]
    fn failed_persist_hands_out_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub").join("c");
        assert!(matches!(
            FileCounters::open(&path),
            Err(SessionError::CounterIo { .. })
        ));
        // A counters object whose directory disappears keeps its state on failure.
        let sub = dir.path().join("sub2");
        fs::create_dir(&sub).expect("mkdir");
        let mut c = FileCounters::open(sub.join("c")).expect("open");
        fs::remove_dir_all(&sub).expect("rm");
        assert!(matches!(c.next_stan(), Err(SessionError::CounterIo { .. })));
        assert_eq!(c.state().next_stan, Stan::FIRST);
    }
}
