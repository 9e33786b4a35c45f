//! A payShield-compatible host command server on top of [`SoftHsm`] (what the
//! `hsm_sim` example runs): decode a command, carry it out with the module's keys,
//! encode the response.
//!
//! Keys in commands are under the module's local master key, in the simple model
//! pythales uses too: the LMK is one TDES key and every key type is encrypted under
//! it in ECB, without the key-type variants of a real payShield's LMK pairs. Key
//! types are still checked where the command names one (`M6`/`M8` take `003` or
//! `008`). [`handle`] is sans-IO; [`serve`] is the tokio accept loop.
//!
//! Error codes returned: `01` verification failure (PIN, MAC), `04` invalid key
//! type, `10` source key unusable, `11` destination key unusable, `15` invalid input
//! data (a command that does not parse), `20` PIN block not valid, `23` PIN block
//! format not supported, `68` command not in the subset (response code `ZZ`).

use std::sync::Arc;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use isoswitch_session::crypto::keys::{Key, KeyKind};
use isoswitch_session::crypto::mac::{self, MacAlgorithm, Padding};
use isoswitch_session::crypto::pin::{Fill, Pan, PinBlock, PinBlockFormat};
use isoswitch_session::crypto::pvv::{visa_pvv, Pvki};
use isoswitch_session::SessionError;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use crate::soft::{check_value, ecb_under, SoftHsm};
use crate::thales::codec::{
    pin_format_from_code, Command, CommandCode, MacRequest, ProtocolError, PvvRequest, Reply,
    Response, ThalesMacAlgorithm,
};
use crate::types::{CheckValue, EncryptedKey};

/// The firmware version `NC` reports.
pub const FIRMWARE: &[u8] = b"isoswitch-hsm";

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Length of the message header echoed in every response (pythales and the
    /// client default: 4).
    pub header_len: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig { header_len: 4 }
    }
}

/// The length-prefix codec of the protocol (2-byte big-endian length).
pub fn frame_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(super::codec::MAX_MESSAGE)
        .new_codec()
}

/// Answers one message (header and body, without the length prefix) and appends
/// the response frame to `out`. A message shorter than the header plus a command
/// code cannot be answered (there is nothing to echo): [`ProtocolError`], and the
/// caller closes the connection.
pub fn handle_message(
    hsm: &SoftHsm,
    config: &ServerConfig,
    message: &[u8],
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    if message.len() < config.header_len + 2 {
        return Err(ProtocolError {
            field: "message header",
            offset: 0,
            kind: super::codec::ProtocolErrorKind::Truncated {
                needed: config.header_len + 2 - message.len(),
            },
        });
    }
    let (header, body) = message.split_at(config.header_len);
    let reply = match Command::parse(body) {
        Ok(cmd) => handle(hsm, &cmd),
        Err(e) => match CommandCode::from_code([body[0], body[1]]) {
            Some(code) => {
                tracing::debug!(error = %e, "unparsable HSM command");
                Reply::error(code, *b"15")
            }
            None => {
                // Outside the subset: answer `ZZ68` (no `CommandCode` for ZZ).
                out.extend_from_slice(&((header.len() + 4) as u16).to_be_bytes());
                out.extend_from_slice(header);
                out.extend_from_slice(b"ZZ68");
                return Ok(());
            }
        },
    };
    reply.encode(header, out)
}

/// Carries out one command with `hsm`'s local master key and keys.
pub fn handle(hsm: &SoftHsm, cmd: &Command<'_>) -> Reply<'static> {
    let code = cmd.code();
    match execute(hsm, cmd) {
        Ok(r) => Reply::ok(code, r),
        Err(e) => Reply::error(code, e),
    }
}

type Outcome = Result<Response<'static>, [u8; 2]>;

fn execute(hsm: &SoftHsm, cmd: &Command<'_>) -> Outcome {
    match cmd {
        Command::GenerateKey { key_type, under } => {
            if !matches!(key_type, b"000" | b"001" | b"002" | b"003" | b"008") {
                return Err(*b"04");
            }
            let key = Key::generate(KeyKind::Tdes2).map_err(|_| *b"15")?;
            let under_lmk = hsm.lmk_encrypt(&key).map_err(|_| *b"15")?;
            let under_zmk = match under {
                None => None,
                Some(zmk) => {
                    let zmk = lmk_key(hsm, zmk, *b"10")?;
                    let k = ecb_under(&zmk, &key).map_err(|_| *b"10")?;
                    Some((k, kcv3(&key)))
                }
            };
            Ok(Response::GenerateKey {
                under_lmk,
                under_zmk,
            })
        }
        Command::KeyCheckValue { key, .. } => {
            let key = lmk_key(hsm, key, *b"10")?;
            Ok(Response::KeyCheckValue(check_value(&key)))
        }
        Command::TranslatePin {
            tpk,
            zpk,
            block,
            from_format,
            to_format,
            account,
            ..
        } => {
            let from = pin_format(*from_format)?;
            let tpk = lmk_key(hsm, tpk, *b"10")?;
            reencipher(from, block, &tpk, account, zpk, *to_format, hsm)
        }
        Command::TranslateDukptPin {
            bdk,
            zpk,
            ksn,
            block,
            from_format,
            to_format,
            account,
            ..
        } => {
            let from = pin_format(*from_format)?;
            let bdk = lmk_key(hsm, bdk, *b"10")?;
            let ksn = crate::types::Ksn::new(ksn).map_err(|_| *b"15")?;
            let key = crate::soft::dukpt_pin_key(&bdk, &ksn, from).map_err(|_| *b"10")?;
            reencipher(from, block, &key, account, zpk, *to_format, hsm)
        }
        Command::VerifyTerminalPin(r) | Command::VerifyInterchangePin(r) => verify_pvv(hsm, r),
        Command::ImportZpk { zmk, zpk_under_zmk } => {
            let zmk = lmk_key(hsm, zmk, *b"10")?;
            let zpk = isoswitch_session::crypto::keys::decrypt_key_under_as(
                &zmk,
                zpk_under_zmk.as_bytes(),
                zpk_under_zmk.kind(),
            )
            .map_err(|_| *b"11")?;
            Ok(Response::ImportZpk {
                under_lmk: hsm.lmk_encrypt(&zpk).map_err(|_| *b"11")?,
                kcv: kcv3(&zpk),
            })
        }
        Command::GenerateTmk { current } => {
            let current = lmk_key(hsm, current, *b"10")?;
            let key = Key::generate(KeyKind::Tdes2).map_err(|_| *b"15")?;
            Ok(Response::GenerateTmk {
                under_current: ecb_under(&current, &key).map_err(|_| *b"10")?,
                under_lmk: hsm.lmk_encrypt(&key).map_err(|_| *b"15")?,
            })
        }
        Command::Diagnostics => Ok(Response::Diagnostics {
            lmk_kcv: hsm.lmk_check_value(),
            firmware: FIRMWARE,
        }),
        Command::GenerateMac(m) => {
            let (key, alg) = mac_setup(hsm, m)?;
            let value = mac::compute(alg, &key, m.data).map_err(|_| *b"10")?;
            let n = if m.full_size { 8 } else { 4 };
            Ok(Response::Mac(CheckValue::truncating(
                &value.as_bytes()[..n],
            )))
        }
        Command::VerifyMac(m, received) => {
            let (key, alg) = mac_setup(hsm, m)?;
            let n = if m.full_size { 8 } else { 4 };
            match mac::verify(alg, &key, m.data, &received[..n]) {
                Ok(()) => Ok(Response::MacVerified),
                Err(SessionError::MacMismatch) => Err(*b"01"),
                Err(_) => Err(*b"10"),
            }
        }
    }
}

/// `CA` and `G0`: the block deciphered under `source` and enciphered under the ZPK
/// (given under the LMK) in the destination format.
fn reencipher(
    from: PinBlockFormat,
    block: &[u8; 8],
    source: &Key,
    account: &[u8; 12],
    zpk: &EncryptedKey,
    to_format: [u8; 2],
    hsm: &SoftHsm,
) -> Result<Response<'static>, [u8; 2]> {
    let to = pin_format(to_format)?;
    let zpk = lmk_key(hsm, zpk, *b"11")?;
    let pan = pan_from_account(account)?;
    let block = PinBlock::from_bytes(from, block).map_err(|_| *b"20")?;
    let pin = block.decipher(Some(&pan), source).map_err(pin_error)?;
    let out = PinBlock::encipher(to, &pin, Some(&pan), &zpk, Fill::Random).map_err(pin_error)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(out.as_bytes());
    Ok(Response::TranslatePin {
        // 4..=12 digits.
        pin_len: pin.len() as u8,
        block: b,
        format: to_format,
    })
}

fn lmk_key(hsm: &SoftHsm, key: &EncryptedKey, code: [u8; 2]) -> Result<Key, [u8; 2]> {
    hsm.lmk_decrypt(key).map_err(|_| code)
}

fn kcv3(key: &Key) -> CheckValue {
    CheckValue::truncating(&key.kcv().full()[..3])
}

fn pin_format(code: [u8; 2]) -> Result<PinBlockFormat, [u8; 2]> {
    match pin_format_from_code(code) {
        // Format 4 needs the whole PAN and an AES key; the account field has 12 digits.
        Some(PinBlockFormat::Iso4) | None => Err(*b"23"),
        Some(f) => Ok(f),
    }
}

fn pin_error(e: SessionError) -> [u8; 2] {
    match e {
        SessionError::BadPinBlock { .. } => *b"20",
        SessionError::TranslationNotAllowed { .. } => *b"23",
        _ => *b"15",
    }
}

/// A PAN whose formats-0/3 PAN block is `account` (its 12 digits followed by the
/// Luhn check digit, which those formats exclude).
fn pan_from_account(account: &[u8; 12]) -> Result<Pan, [u8; 2]> {
    let mut digits = [0u8; 13];
    digits[..12].copy_from_slice(account);
    digits[12] = luhn_digit(account);
    Pan::from_ascii(&digits).map_err(|_| *b"15")
}

fn luhn_digit(body: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, c) in body.iter().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    b'0' + ((10 - sum % 10) % 10) as u8
}

fn verify_pvv(hsm: &SoftHsm, r: &PvvRequest) -> Outcome {
    let format = pin_format(r.format)?;
    let pin_key = lmk_key(hsm, &r.pin_key, *b"10")?;
    let pvk = lmk_key(hsm, &r.pvk, *b"11")?;
    let pan = pan_from_account(&r.account)?;
    let block = PinBlock::from_bytes(format, &r.block).map_err(|_| *b"20")?;
    let pin = block.decipher(Some(&pan), &pin_key).map_err(pin_error)?;
    let pvki = Pvki::new(r.pvki).ok_or(*b"15")?;
    let pvv = visa_pvv(&pvk, &pan, pvki, &pin).map_err(|_| *b"11")?;
    if bool::from(pvv.ct_eq(&r.pvv)) {
        Ok(Response::PinVerified)
    } else {
        Err(*b"01")
    }
}

fn mac_setup(hsm: &SoftHsm, m: &MacRequest<'_>) -> Result<(Key, MacAlgorithm), [u8; 2]> {
    if !matches!(&m.key_type, b"003" | b"008") {
        return Err(*b"04");
    }
    let key = lmk_key(hsm, &m.key, *b"10")?;
    let padding = match m.padding {
        // No padding: method 1 leaves whole blocks unchanged; other lengths refused.
        0 if m.data.len() % 8 == 0 && !m.data.is_empty() => Padding::Method1,
        0 => return Err(*b"15"),
        1 => Padding::Method1,
        _ => Padding::Method2,
    };
    let alg = match (m.algorithm, key.kind()) {
        (ThalesMacAlgorithm::Iso9797Alg1, KeyKind::Des) => MacAlgorithm::CbcDes(padding),
        (ThalesMacAlgorithm::Iso9797Alg1, _) => MacAlgorithm::CbcTdes(padding),
        (ThalesMacAlgorithm::Iso9797Alg3, _) => MacAlgorithm::X919(padding),
    };
    Ok((key, alg))
}

/// Serves connections from `listener` until it fails; each connection gets a task.
pub async fn serve(
    listener: TcpListener,
    hsm: Arc<SoftHsm>,
    config: ServerConfig,
) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let hsm = hsm.clone();
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, &hsm, &config).await {
                tracing::debug!(%peer, error = %e, "HSM connection ended");
            }
        });
    }
}

/// Serves one connection: reads messages, answers each in order, and flushes when
/// no further message is already waiting (pipelined requests share writes).
pub async fn serve_connection(
    stream: TcpStream,
    hsm: &SoftHsm,
    config: &ServerConfig,
) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut messages = FramedRead::new(rd, frame_codec());
    let mut out = BytesMut::with_capacity(4096);
    while let Some(message) = messages.next().await {
        let mut message = Some(message?);
        while let Some(m) = message.take() {
            handle_message(hsm, config, &m, &mut out)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if let Some(Some(next)) = messages.next().now_or_never() {
                message = Some(next?);
            }
        }
        wr.write_all(&out).await?;
        out.clear();
    }
    Ok(())
}

/// What `hsm_sim` runs: a [`SoftHsm`] whose LMK is read from `lmk_file`, serving
/// the command subset on `listen` until `shutdown` completes. Reports the bound
/// address through `on_listening` (the port may have been 0).
pub async fn run(
    listen: &str,
    lmk_file: &std::path::Path,
    config: ServerConfig,
    on_listening: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> crate::Result<()> {
    let hsm = Arc::new(SoftHsm::from_master_key_file(lmk_file)?);
    let listener = TcpListener::bind(listen).await?;
    on_listening(listener.local_addr()?);
    tokio::select! {
        r = serve(listener, hsm, config) => Ok(r?),
        () = shutdown => Ok(()),
    }
}
