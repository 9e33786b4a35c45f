//! [`ThalesClient`]: a pipelining tokio client for the payShield host command subset,
//! implementing [`SecurityModule`].
//!
//! One TCP connection carries any number of requests at once. Each request gets a
//! message header that is its correlation id ([`HeaderMode::Correlation`]: a decimal
//! counter of the configured width, skipping ids still in flight), and the response
//! echoing that header completes it, in whatever order responses come. Against a
//! server that answers with a fixed header instead ([`HeaderMode::Fixed`], e.g.
//! pythales), responses are matched in order. A writer task gathers every frame
//! queued since its last write into one write; a reader task completes requests.
//!
//! Keys are held as keys under the HSM's LMK in a local table; the application sees
//! [`KeyHandle`]s. Which command serves which trait method:
//!
//! | method | command | notes |
//! |---|---|---|
//! | `generate_working_key` | `A0` mode 1; `HC` for a TMK under the current TMK (then `BU` for its KCV) | double-length keys |
//! | `key_check_value`, `check_kcv` | `BU` | |
//! | `translate_pin` | `CA` (TPK → ZPK); `G0` (TDES DUKPT BDK + KSN → ZPK) | formats 0, 1, 3; AES DUKPT (12-byte KSN) needs key-block commands: `Unsupported` |
//! | `verify_pin` | `DC` (TPK) / `EC` (ZPK) | Visa PVV references |
//! | `generate_mac`, `verify_mac` | `M6` / `M8` | ISO 9797-1 algorithms 1 and 3, padding 1 or 2 |
//! | `import_key` | `FA` (a ZPK under a ZMK) | |
//! | `export_key` | — | not in the subset: `Unsupported` |

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use isoswitch_session::crypto::keys::KeyKind;
use isoswitch_session::crypto::mac::{MacAlgorithm, MacValue, Padding};
use isoswitch_session::crypto::pin::{PinBlock, PinBlockFormat};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

use crate::error::{HsmError, Result};
use crate::module::{PinTranslation, PinVerification, SecurityModule};
use crate::thales::codec::{
    account_number, pin_format_code, Command, CommandCode, MacRequest, PvvRequest, Reply, Response,
    ThalesMacAlgorithm,
};
use crate::thales::server::frame_codec;
use crate::types::{
    CheckValue, EncryptedKey, ExportFormat, GeneratedKey, KeyBlob, KeyHandle, KeyUsage, Ksn,
    PinReference, PinSource,
};

/// How requests are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMode {
    /// Each request's header is a fresh decimal id of `len` digits (1 to 9), echoed
    /// by the HSM: responses may come in any order (a payShield echoes the header).
    Correlation {
        /// Header length in characters.
        len: usize,
    },
    /// Every request carries this header and responses are matched in order (for
    /// servers that answer with a constant header, such as pythales).
    Fixed(Vec<u8>),
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Header handling; default 4-digit correlation ids.
    pub header: HeaderMode,
    /// How long a request waits for its response; default 5 s.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            header: HeaderMode::Correlation { len: 4 },
            timeout: Duration::from_secs(5),
        }
    }
}

enum Pending {
    ById {
        len: usize,
        next: u64,
        waiting: HashMap<u64, oneshot::Sender<Bytes>>,
    },
    Fifo {
        header: Vec<u8>,
        waiting: VecDeque<oneshot::Sender<Bytes>>,
    },
}

struct Shared {
    pending: Mutex<Pending>,
    closed: AtomicBool,
}

/// A connection to a payShield-compatible HSM. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct ThalesClient {
    shared: Arc<Shared>,
    /// The writer task's queue. Only clients hold it: when the last clone is dropped
    /// the writer ends, the connection is shut down and the reader ends in turn.
    writer: mpsc::UnboundedSender<BytesMut>,
    keys: Arc<RwLock<HashMap<KeyHandle, (EncryptedKey, KeyUsage)>>>,
    next_handle: Arc<AtomicU64>,
    timeout: Duration,
}

impl std::fmt::Debug for ThalesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThalesClient")
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// The diagnostics an `NC` command returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The LMK's check value.
    pub lmk_kcv: CheckValue,
    /// The firmware version.
    pub firmware: String,
}

impl ThalesClient {
    /// Connects to `addr` and starts the reader and writer tasks (on the current
    /// tokio runtime).
    pub async fn connect(addr: impl ToSocketAddrs, config: ClientConfig) -> Result<ThalesClient> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(ThalesClient::from_stream(stream, config))
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream, config: ClientConfig) -> ThalesClient {
        let (rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<BytesMut>();
        let (pending, header_len) = match &config.header {
            HeaderMode::Correlation { len } => {
                let len = (*len).clamp(1, 9);
                (
                    Pending::ById {
                        len,
                        next: 0,
                        waiting: HashMap::new(),
                    },
                    len,
                )
            }
            HeaderMode::Fixed(h) => (
                Pending::Fifo {
                    header: h.clone(),
                    waiting: VecDeque::new(),
                },
                h.len(),
            ),
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(pending),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(4096);
            while let Some(first) = rx.recv().await {
                buf.extend_from_slice(&first);
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(&more);
                }
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
                buf.clear();
            }
        });
        let reader = shared.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(rd, frame_codec());
            while let Some(Ok(frame)) = frames.next().await {
                let frame = frame.freeze();
                if frame.len() < header_len {
                    break;
                }
                let waiter = {
                    let mut p = lock(&reader.pending);
                    match &mut *p {
                        Pending::ById { waiting, .. } => {
                            parse_id(&frame[..header_len]).and_then(|id| waiting.remove(&id))
                        }
                        Pending::Fifo { waiting, .. } => waiting.pop_front(),
                    }
                };
                match waiter {
                    Some(w) => {
                        let _ = w.send(frame);
                    }
                    None => tracing::debug!("HSM response with no request waiting for it"),
                }
            }
            // Under the lock, so that no request registers after the clear below.
            let mut p = lock(&reader.pending);
            reader.closed.store(true, Ordering::Release);
            // Dropping the senders wakes every waiting request with ConnectionClosed.
            match &mut *p {
                Pending::ById { waiting, .. } => waiting.clear(),
                Pending::Fifo { waiting, .. } => waiting.clear(),
            }
        });
        ThalesClient {
            shared,
            writer: tx,
            keys: Arc::new(RwLock::new(HashMap::new())),
            next_handle: Arc::new(AtomicU64::new(1)),
            timeout: config.timeout,
        }
    }

    /// Holds a key given under the HSM's LMK (e.g. from configuration) and returns
    /// its handle.
    pub fn register_key(&self, under_lmk: EncryptedKey, usage: KeyUsage) -> KeyHandle {
        let h = KeyHandle(self.next_handle.fetch_add(1, Ordering::Relaxed));
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(h, (under_lmk, usage));
        h
    }

    /// A held key under the LMK (to store it).
    pub fn key_under_lmk(&self, key: KeyHandle) -> Result<EncryptedKey> {
        Ok(self.key(key)?.0)
    }

    /// `NC`: the HSM's LMK check value and firmware version.
    pub async fn diagnostics(&self) -> Result<Diagnostics> {
        let frame = self.call(&Command::Diagnostics).await?;
        match self.reply(CommandCode::Nc, &frame)? {
            Response::Diagnostics { lmk_kcv, firmware } => Ok(Diagnostics {
                lmk_kcv,
                firmware: String::from_utf8_lossy(firmware).into_owned(),
            }),
            _ => Err(unexpected()),
        }
    }

    /// Sends `cmd` and waits for its response frame (header included).
    async fn call(&self, cmd: &Command<'_>) -> Result<Bytes> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(HsmError::ConnectionClosed);
        }
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut p = lock(&self.shared.pending);
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(HsmError::ConnectionClosed);
            }
            let mut frame = BytesMut::with_capacity(64 + mac_data_len(cmd));
            let id = match &mut *p {
                Pending::ById { len, next, waiting } => {
                    let modulus = 10u64.pow(*len as u32);
                    if waiting.len() as u64 >= modulus {
                        return Err(HsmError::Unsupported(
                            "more requests in flight than the header has ids",
                        ));
                    }
                    while waiting.contains_key(next) {
                        *next = (*next + 1) % modulus;
                    }
                    let id = *next;
                    *next = (*next + 1) % modulus;
                    let mut header = [0u8; 9];
                    let mut v = id;
                    for c in header[..*len].iter_mut().rev() {
                        *c = b'0' + (v % 10) as u8;
                        v /= 10;
                    }
                    cmd.encode(&header[..*len], &mut frame)?;
                    waiting.insert(id, tx);
                    Some(id)
                }
                Pending::Fifo { header, waiting } => {
                    cmd.encode(header, &mut frame)?;
                    waiting.push_back(tx);
                    None
                }
            };
            // Sent under the lock so that FIFO order is the order on the wire.
            if self.writer.send(frame).is_err() {
                return Err(HsmError::ConnectionClosed);
            }
            id
        };
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(_)) => Err(HsmError::ConnectionClosed),
            Err(_) => {
                if let (Some(id), Pending::ById { waiting, .. }) =
                    (id, &mut *lock(&self.shared.pending))
                {
                    waiting.remove(&id);
                }
                Err(HsmError::Timeout)
            }
        }
    }

    fn header_len(&self) -> usize {
        match &*lock(&self.shared.pending) {
            Pending::ById { len, .. } => *len,
            Pending::Fifo { header, .. } => header.len(),
        }
    }

    /// Parses `frame` as the response to `code`; a non-`00` error is `Refused`.
    fn reply<'f>(&self, code: CommandCode, frame: &'f [u8]) -> Result<Response<'f>> {
        let body = frame.get(self.header_len()..).unwrap_or_default();
        let reply = Reply::parse(code, body)?;
        match reply.response {
            Some(r) => Ok(r),
            None => Err(refused(code, reply.error)),
        }
    }

    /// Like [`ThalesClient::reply`], with error `01` (verification failure) as
    /// `Ok(false)`.
    fn verified(&self, code: CommandCode, frame: &[u8]) -> Result<bool> {
        let body = frame.get(self.header_len()..).unwrap_or_default();
        let reply = Reply::parse(code, body)?;
        match (&reply.error, reply.response) {
            (b"00", _) => Ok(true),
            (b"01", _) => Ok(false),
            (e, _) => Err(refused(code, *e)),
        }
    }

    fn key(&self, handle: KeyHandle) -> Result<(EncryptedKey, KeyUsage)> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&handle)
            .cloned()
            .ok_or(HsmError::UnknownKey(handle))
    }

    async fn bu(&self, key: KeyHandle) -> Result<CheckValue> {
        let (k, usage) = self.key(key)?;
        let t = usage.thales_key_type();
        let frame = self
            .call(&Command::KeyCheckValue {
                key_type: [t[1], t[2]],
                key: k,
            })
            .await?;
        match self.reply(CommandCode::Bu, &frame)? {
            Response::KeyCheckValue(kcv) => Ok(kcv),
            _ => Err(unexpected()),
        }
    }

    async fn generate(
        &self,
        master: KeyHandle,
        usage: KeyUsage,
        kind: KeyKind,
    ) -> Result<GeneratedKey> {
        let (m, m_usage) = self.key(master)?;
        m_usage.require(master, m_usage.is_key_encrypting(), "a ZMK or TMK")?;
        if kind != KeyKind::Tdes2 {
            return Err(HsmError::Unsupported("keys other than double-length TDES"));
        }
        if usage == KeyUsage::TerminalMaster && m_usage == KeyUsage::TerminalMaster {
            let frame = self.call(&Command::GenerateTmk { current: m }).await?;
            let (under_current, under_lmk) = match self.reply(CommandCode::Hc, &frame)? {
                Response::GenerateTmk {
                    under_current,
                    under_lmk,
                } => (under_current, under_lmk),
                _ => return Err(unexpected()),
            };
            let handle = self.register_key(under_lmk, usage);
            let kcv = self.bu(handle).await?;
            return Ok(GeneratedKey {
                handle,
                under_master: under_current,
                kcv,
            });
        }
        let frame = self
            .call(&Command::GenerateKey {
                key_type: *usage.thales_key_type(),
                under: Some(m),
            })
            .await?;
        match self.reply(CommandCode::A0, &frame)? {
            Response::GenerateKey {
                under_lmk,
                under_zmk: Some((under_master, kcv)),
            } => Ok(GeneratedKey {
                handle: self.register_key(under_lmk, usage),
                under_master,
                kcv,
            }),
            _ => Err(unexpected()),
        }
    }

    async fn ca(&self, r: PinTranslation<'_>) -> Result<PinBlock> {
        let src = match r.source {
            PinSource::Key(src) => src,
            PinSource::Dukpt { bdk, ksn } => return self.g0(r, bdk, ksn).await,
        };
        let (tpk, tpk_usage) = self.key(src)?;
        tpk_usage.require(
            src,
            tpk_usage == KeyUsage::TerminalPin,
            "a TPK (command CA)",
        )?;
        let (zpk, zpk_usage) = self.key(r.destination)?;
        zpk_usage.require(
            r.destination,
            zpk_usage == KeyUsage::ZonePin,
            "a ZPK (command CA)",
        )?;
        if r.block.format() == PinBlockFormat::Iso4 || r.to_format == PinBlockFormat::Iso4 {
            return Err(HsmError::Unsupported(
                "PIN block format 4 (needs AES key blocks)",
            ));
        }
        let mut block = [0u8; 8];
        block.copy_from_slice(r.block.as_bytes());
        let account = r
            .pan
            .map(|p| account_number(p.as_ascii()))
            .unwrap_or([b'0'; 12]);
        let frame = self
            .call(&Command::TranslatePin {
                tpk,
                zpk,
                max_pin_len: 12,
                block,
                from_format: pin_format_code(r.block.format()),
                to_format: pin_format_code(r.to_format),
                account,
            })
            .await?;
        match self.reply(CommandCode::Ca, &frame)? {
            Response::TranslatePin { block, .. } => Ok(PinBlock::from_bytes(r.to_format, &block)?),
            _ => Err(unexpected()),
        }
    }

    /// `G0`: a TDES DUKPT PIN block (BDK + 10-byte KSN) translated to a ZPK.
    async fn g0(&self, r: PinTranslation<'_>, bdk: KeyHandle, ksn: Ksn) -> Result<PinBlock> {
        let (bdk_key, bdk_usage) = self.key(bdk)?;
        bdk_usage.require(
            bdk,
            bdk_usage == KeyUsage::BaseDerivation,
            "a BDK (command G0)",
        )?;
        let (zpk, zpk_usage) = self.key(r.destination)?;
        zpk_usage.require(
            r.destination,
            zpk_usage == KeyUsage::ZonePin,
            "a ZPK (command G0)",
        )?;
        let ksn: [u8; 10] = ksn.as_bytes().try_into().map_err(|_| {
            HsmError::Unsupported("AES DUKPT (a 12-byte KSN) through the Thales subset")
        })?;
        if r.block.format() == PinBlockFormat::Iso4 || r.to_format == PinBlockFormat::Iso4 {
            return Err(HsmError::Unsupported(
                "PIN block format 4 (needs AES key blocks)",
            ));
        }
        let mut block = [0u8; 8];
        block.copy_from_slice(r.block.as_bytes());
        let account = r
            .pan
            .map(|p| account_number(p.as_ascii()))
            .unwrap_or([b'0'; 12]);
        let frame = self
            .call(&Command::TranslateDukptPin {
                bdk: bdk_key,
                zpk,
                ksn_descriptor: *b"A05",
                ksn,
                block,
                from_format: pin_format_code(r.block.format()),
                to_format: pin_format_code(r.to_format),
                account,
            })
            .await?;
        match self.reply(CommandCode::G0, &frame)? {
            Response::TranslatePin { block, .. } => Ok(PinBlock::from_bytes(r.to_format, &block)?),
            _ => Err(unexpected()),
        }
    }

    async fn mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
        verify: Option<&[u8]>,
    ) -> Result<MacOutcome> {
        let (k, usage) = self.key(key)?;
        usage.require(key, usage.is_mac(), "a MAC key (TAK or ZAK)")?;
        let (alg, padding) = match algorithm {
            MacAlgorithm::CbcDes(p) | MacAlgorithm::CbcTdes(p) => {
                (ThalesMacAlgorithm::Iso9797Alg1, p)
            }
            MacAlgorithm::X919(p) => (ThalesMacAlgorithm::Iso9797Alg3, p),
            MacAlgorithm::AesCmac | MacAlgorithm::CupPos => {
                return Err(HsmError::Unsupported(
                    "AES-CMAC and cup-pos MACs (not in M6/M8)",
                ))
            }
        };
        let mut req = MacRequest {
            full_size: true,
            algorithm: alg,
            padding: match padding {
                Padding::Method1 => 1,
                Padding::Method2 => 2,
            },
            key_type: *usage.thales_key_type(),
            key: k,
            data,
        };
        match verify {
            None => {
                let frame = self.call(&Command::GenerateMac(req)).await?;
                match self.reply(CommandCode::M6, &frame)? {
                    Response::Mac(v) => {
                        let mac =
                            isoswitch_session::crypto::mac::MacValue::from_bytes(v.as_bytes())?;
                        Ok(MacOutcome::Mac(mac))
                    }
                    _ => Err(unexpected()),
                }
            }
            Some(received) => {
                let mut mac = [0u8; 8];
                match received.len() {
                    4 => req.full_size = false,
                    8 => {}
                    _ => {
                        return Err(HsmError::Unsupported(
                            "a MAC of 4 or 8 bytes to verify with M8",
                        ))
                    }
                }
                mac[..received.len()].copy_from_slice(received);
                let frame = self.call(&Command::VerifyMac(req, mac)).await?;
                Ok(MacOutcome::Verified(
                    self.verified(CommandCode::M8, &frame)?,
                ))
            }
        }
    }

    async fn pvv(&self, r: PinVerification<'_>) -> Result<bool> {
        let PinReference::VisaPvv { pvk, pvki, pvv } = r.reference else {
            return Err(HsmError::Unsupported(
                "enrolled reference PINs (a SoftHsm feature)",
            ));
        };
        let (pin_key, usage) = self.key(r.key)?;
        let code = match usage {
            KeyUsage::TerminalPin => CommandCode::Dc,
            KeyUsage::ZonePin => CommandCode::Ec,
            other => {
                return Err(HsmError::WrongUsage {
                    key: r.key,
                    expected: "a TPK (DC) or ZPK (EC)",
                    found: other,
                })
            }
        };
        let (pvk_key, pvk_usage) = self.key(pvk)?;
        pvk_usage.require(pvk, pvk_usage == KeyUsage::PinVerification, "a PVK")?;
        if r.block.format() == PinBlockFormat::Iso4 {
            return Err(HsmError::Unsupported(
                "PIN block format 4 (needs AES key blocks)",
            ));
        }
        let mut block = [0u8; 8];
        block.copy_from_slice(r.block.as_bytes());
        let req = PvvRequest {
            pin_key,
            pvk: pvk_key,
            block,
            format: pin_format_code(r.block.format()),
            account: account_number(r.pan.as_ascii()),
            pvki: pvki.value(),
            pvv,
        };
        let cmd = if code == CommandCode::Dc {
            Command::VerifyTerminalPin(req)
        } else {
            Command::VerifyInterchangePin(req)
        };
        let frame = self.call(&cmd).await?;
        self.verified(code, &frame)
    }

    async fn fa(
        &self,
        kek: KeyHandle,
        blob: &KeyBlob,
        usage: KeyUsage,
        kcv: Option<&[u8]>,
    ) -> Result<KeyHandle> {
        let (zmk, zmk_usage) = self.key(kek)?;
        zmk_usage.require(kek, zmk_usage == KeyUsage::ZoneMaster, "a ZMK (command FA)")?;
        if usage != KeyUsage::ZonePin {
            return Err(HsmError::Unsupported(
                "importing keys other than a ZPK (FA is the subset's only import)",
            ));
        }
        let KeyBlob::Ecb(zpk_under_zmk) = blob else {
            return Err(HsmError::Unsupported(
                "TR-31 key blocks (not in the subset)",
            ));
        };
        let frame = self
            .call(&Command::ImportZpk {
                zmk,
                zpk_under_zmk: *zpk_under_zmk,
            })
            .await?;
        match self.reply(CommandCode::Fa, &frame)? {
            Response::ImportZpk {
                under_lmk,
                kcv: got,
            } => {
                if let Some(expected) = kcv {
                    if !got.matches(expected) && !CheckValue::new(expected)?.matches(got.as_bytes())
                    {
                        return Err(HsmError::Crypto(
                            isoswitch_session::SessionError::KcvMismatch,
                        ));
                    }
                }
                Ok(self.register_key(under_lmk, usage))
            }
            _ => Err(unexpected()),
        }
    }
}

enum MacOutcome {
    Mac(MacValue),
    Verified(bool),
}

fn mac_data_len(cmd: &Command<'_>) -> usize {
    match cmd {
        Command::GenerateMac(m) | Command::VerifyMac(m, _) => m.data.len(),
        _ => 0,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section leaves the state consistent; a panic elsewhere does not
    // make it unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_id(header: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in header {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

fn refused(code: CommandCode, error: [u8; 2]) -> HsmError {
    HsmError::Refused {
        command: code.name(),
        code: String::from_utf8_lossy(&error).into_owned(),
    }
}

fn unexpected() -> HsmError {
    HsmError::Unsupported("an HSM response of another shape than the request asked for")
}

impl SecurityModule for ThalesClient {
    fn generate_working_key(
        &self,
        master: KeyHandle,
        usage: KeyUsage,
        kind: KeyKind,
    ) -> impl Future<Output = Result<GeneratedKey>> + Send {
        self.generate(master, usage, kind)
    }

    fn key_check_value(&self, key: KeyHandle) -> impl Future<Output = Result<CheckValue>> + Send {
        self.bu(key)
    }

    async fn check_kcv(&self, key: KeyHandle, received: &[u8]) -> Result<bool> {
        Ok(self.bu(key).await?.matches(received))
    }

    fn translate_pin(
        &self,
        request: PinTranslation<'_>,
    ) -> impl Future<Output = Result<PinBlock>> + Send {
        self.ca(request)
    }

    async fn generate_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<MacValue> {
        match self.mac(key, algorithm, data, None).await? {
            MacOutcome::Mac(m) => Ok(m),
            MacOutcome::Verified(_) => Err(unexpected()),
        }
    }

    async fn verify_mac(
        &self,
        key: KeyHandle,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool> {
        match self.mac(key, algorithm, data, Some(mac)).await? {
            MacOutcome::Verified(v) => Ok(v),
            MacOutcome::Mac(_) => Err(unexpected()),
        }
    }

    fn verify_pin(
        &self,
        request: PinVerification<'_>,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.pvv(request)
    }

    fn import_key(
        &self,
        kek: KeyHandle,
        blob: &KeyBlob,
        usage: KeyUsage,
        kcv: Option<&[u8]>,
    ) -> impl Future<Output = Result<KeyHandle>> + Send {
        self.fa(kek, blob, usage, kcv)
    }

    fn export_key(
        &self,
        _key: KeyHandle,
        _kek: KeyHandle,
        _format: ExportFormat,
    ) -> impl Future<Output = Result<KeyBlob>> + Send {
        std::future::ready(Err(HsmError::Unsupported(
            "key export (payShield A8 is not in the subset)",
        )))
    }

    /// Keys are held here, under the LMK, not in the HSM: forgetting one is local.
    fn forget_key(&self, key: KeyHandle) -> impl Future<Output = Result<()>> + Send {
        let removed = self
            .keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        std::future::ready(removed.map(drop).ok_or(HsmError::UnknownKey(key)))
    }
}
