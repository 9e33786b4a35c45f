#!/usr/bin/env python3
"""Generate independent test vectors for crates/session (isoswitch-session crypto).

Output: crates/session/tests/vectors/psec/*.json, read by
crates/session/tests/psec_vectors.rs. The Rust tests need only those JSON files, never
Python or PyPI.

Oracles (pip install psec==1.3.0; it pulls in `cryptography`):

  psec 1.3.0                       | used for
  ---------------------------------+----------------------------------------------------
  psec.mac.generate_cbc_mac        | ISO 9797-1 alg. 1, DES / 2-key / 3-key TDES, pad 1 & 2
  psec.mac.generate_retail_mac     | ISO 9797-1 alg. 3 (ANSI X9.19), pad 1 & 2
  psec.des.generate_kcv            | DES/TDES KCV (full 8 bytes)
  psec.aes.encrypt_aes_ecb         | AES KCV, legacy ECB-of-zeros method
  psec.des.encrypt_tdes_ecb        | key wrapping under a master key; enciphering
                                   | PIN block formats 0, 1, 3; the cup-pos MAC's DES
  psec.pinblock encode/decode 0, 3 | PIN block formats 0 and 3
  psec.pinblock (en|de)cipher 4    | PIN block format 4 (AES)

  psec lacks these, so other oracles are used, as stated per file:
  - AES-CMAC (128/192/256) and the X9.24 AES-CMAC KCV: `cryptography`
    (cryptography.hazmat.primitives.cmac.CMAC), an implementation independent of psec's
    code and of the Rust `cmac` crate.
  - PIN block format 1: encoded here from ISO 9564-1 (control 1, length, PIN, fill
    0-F), enciphered with psec's TDES ECB, and cross-checked by decoding it here.
  - The cup-pos MAC (domain.md 4.3): the small implementation `cup_pos_mac` below, on
    psec's DES/TDES ECB; checked against the domain.md worked example first.

Determinism: everything comes from random.Random(SEED). psec draws PIN block fill from
`secrets` (format 3) and `os.urandom` (format 4); those two module attributes are
replaced by seeded stand-ins while generating, so psec's own encoders still build the
blocks and a rerun writes identical files. The fill each block got is recorded, so the
Rust tests can (a) decipher the oracle's block and (b) re-encipher with the same fill
and compare bytes, which means the oracle deciphers our blocks too.

Self-test (always run before writing): published vectors (domain.md 4, RFC 4493,
psec docstrings) through the oracles, then every generated case re-checked by the
oracle's decoder where it has one.

`--check-ours`: additionally runs the Rust test `emit_blocks_for_oracle` (ignored by
default) which writes PIN blocks made by the Rust code with *random* fill, and checks
that psec (formats 0, 3, 4) and the format 1 decoder here decipher every one of them.

Usage: python3 scripts/psec/gen_vectors.py [--check-ours]
"""

import binascii
import json
import os
import random
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

# psec 1.3.0 calls cryptography's TripleDES through the deprecated path; the warnings
# are noise here.
warnings.filterwarnings("ignore")

import psec  # noqa: E402
import psec.pinblock as pinblock  # noqa: E402
from cryptography.hazmat.primitives.ciphers import algorithms  # noqa: E402
from cryptography.hazmat.primitives.cmac import CMAC  # noqa: E402

SEED = 0x15058583
CASES = 200
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "session" / "tests" / "vectors" / "psec"

rng = random.Random(SEED)


def h(b: bytes) -> str:
    return b.hex().upper()


def rand_bytes(n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def rand_data() -> bytes:
    # Lengths 0..72 with block boundaries well represented.
    n = rng.choice([0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 64] + list(range(0, 73)))
    return rand_bytes(n)


def rand_digits(n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def des_ecb(key: bytes, block: bytes) -> bytes:
    return psec.des.encrypt_tdes_ecb(key, block)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


# ---------------------------------------------------------------------------
# In-script implementations for what psec lacks
# ---------------------------------------------------------------------------


def cup_pos_mac(mak: bytes, data: bytes) -> bytes:
    """domain.md 4.3: returns the 8 ASCII characters carried in field 64."""
    padded = data + b"\x00" * (-len(data) % 8)
    if not padded:
        padded = b"\x00" * 8
    r = bytes(8)
    for i in range(0, len(padded), 8):
        r = xor(r, padded[i : i + 8])
    hexed = h(r).encode("ascii")
    e1 = des_ecb(mak, hexed[:8])
    t = xor(e1, hexed[8:])
    e2 = des_ecb(mak, t)
    return h(e2)[:8].encode("ascii")


def encode_iso1(pin: str, fill: list) -> bytes:
    assert 4 <= len(pin) <= 12 and pin.isdigit()
    nibbles = "1" + "%X" % len(pin) + pin + "".join("%X" % n for n in fill[: 14 - len(pin)])
    return binascii.a2b_hex(nibbles)


def decode_iso1(block: bytes) -> str:
    s = block.hex().upper()
    if s[0] != "1":
        raise ValueError("not format 1")
    n = int(s[1], 16)
    if not 4 <= n <= 12:
        raise ValueError("bad PIN length")
    pin = s[2 : 2 + n]
    if not pin.isdigit():
        raise ValueError("PIN not numeric")
    return pin


def iso0_pan_block(pan: str) -> bytes:
    return b"\x00\x00" + binascii.a2b_hex(pan[-13:-1])


# ---------------------------------------------------------------------------
# Self-test against published vectors
# ---------------------------------------------------------------------------


def self_test_published() -> None:
    k = bytes.fromhex
    # domain.md 4.1
    assert psec.mac.generate_cbc_mac(k("0123456789ABCDEF"), b"Now is the time for all ", 1) == k("70A30640CC76DD8B")
    k919 = k("0123456789ABCDEFFEDCBA9876543210")
    assert psec.mac.generate_retail_mac(k919[:8], k919[8:], b"Now is the time for all ", 1) == k("A1C72E74EA3FA9B6")
    assert psec.mac.generate_retail_mac(k919[:8], k919[8:], b"Now is the time for it", 1) == k("2E2B1428CC78254F")
    kab = k("41414141414141414242424242424242")
    assert psec.mac.generate_retail_mac(kab[:8], kab[8:], b"hello world", 1) == k("3DDE5C5511661CBF")
    assert psec.mac.generate_retail_mac(kab[:8], kab[8:], b"hello world", 2) == k("E16941032C3BC7D4")
    kt = k("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    assert psec.mac.generate_cbc_mac(kt, b"hello world", 1) == k("68D9038F23360DF3")
    assert psec.mac.generate_cbc_mac(kt, b"hello world", 2) == k("32DC341271ACCD00")
    # domain.md 4.2
    assert psec.des.generate_kcv(k919, 8) == k("08D7B4FB629D0885")
    # domain.md 4.3
    assert cup_pos_mac(k("2222222222222222"), k("1234567890ABCDEFABCDEF1234567890")) == b"E267B6E2"
    # domain.md 4.4
    assert pinblock.encode_pinblock_iso_0("1234", "5555555551234567") == k("041261AAAAEDCBA9")
    assert pinblock.encode_pinblock_iso_0("123456789012", "5555555551234567") == k("0C1261032D8226A9")
    # domain.md's format 3 example decodes as PIN 1234 (its fill is F, not A).
    assert pinblock.decode_pinblock_iso_3(k("341261AAAAEDCBA9"), "5555555551234567") == "1234"
    assert (
        pinblock.decipher_pinblock_iso_4(
            k("C1D0F8FB4958670DBA40AB1F3752EF0D"), k("CC17F65586BFD0953010226C4FC5B3CA"), "432198765432109870"
        )
        == "1234"
    )
    # RFC 4493 section 4
    msg = k(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
    )
    key = k("2b7e151628aed2a6abf7158809cf4f3c")
    for n, tag in [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ]:
        assert aes_cmac(key, msg[:n]) == k(tag)
    # psec docstrings
    assert psec.mac.generate_cbc_mac(k919, k("1234567890ABCDEF"), 2) == k("925B1737EF681AD3")
    assert psec.des.encrypt_tdes_ecb(k919, b"12345678") == k("41D2FFBA3CDC15FE")
    # format 1 encoder/decoder agree with each other and with the ISO layout
    assert encode_iso1("98765", [1, 2, 3, 4, 5, 6, 7, 8, 9]) == k("1598765123456789")
    assert decode_iso1(k("1598765123456789")) == "98765"


# ---------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------


def gen_mac() -> dict:
    cases = []

    def add(alg, key, data, mac):
        cases.append({"algorithm": alg, "key": h(key), "data": h(data), "mac": h(mac)})

    for padding in (1, 2):
        for _ in range(CASES):
            key, data = rand_bytes(8), rand_data()
            add(f"cbc_des_p{padding}", key, data, psec.mac.generate_cbc_mac(key, data, padding))
        for klen, name in ((16, "cbc_tdes2"), (24, "cbc_tdes3")):
            for _ in range(CASES):
                key, data = rand_bytes(klen), rand_data()
                add(f"{name}_p{padding}", key, data, psec.mac.generate_cbc_mac(key, data, padding))
        for _ in range(CASES):
            key, data = rand_bytes(16), rand_data()
            add(f"x919_p{padding}", key, data, psec.mac.generate_retail_mac(key[:8], key[8:], data, padding))
    for klen in (16, 24, 32):
        for _ in range(CASES):
            key, data = rand_bytes(klen), rand_data()
            add(f"aes_cmac_{klen * 8}", key, data, aes_cmac(key, data))
    for klen, name in ((8, "cup_pos_des"), (16, "cup_pos_tdes2")):
        for _ in range(CASES):
            key, data = rand_bytes(klen), rand_data()
            add(name, key, data, cup_pos_mac(key, data))
    return {
        "oracle": "psec 1.3.0 generate_cbc_mac / generate_retail_mac; cryptography CMAC for "
        "aes_cmac_*; gen_vectors.cup_pos_mac on psec TDES-ECB for cup_pos_*",
        "seed": SEED,
        "cases": cases,
    }


def gen_kcv() -> dict:
    cases = []
    for klen, name in ((8, "des"), (16, "tdes2"), (24, "tdes3")):
        for _ in range(CASES):
            key = rand_bytes(klen)
            cases.append({"method": "des_zeros", "kind": name, "key": h(key), "kcv": h(psec.des.generate_kcv(key, 8))})
    for klen in (16, 24, 32):
        for _ in range(CASES):
            key = rand_bytes(klen)
            cases.append(
                {"method": "aes_cmac", "kind": f"aes{klen * 8}", "key": h(key), "kcv": h(aes_cmac(key, bytes(16)))}
            )
            cases.append(
                {
                    "method": "aes_ecb_zeros",
                    "kind": f"aes{klen * 8}",
                    "key": h(key),
                    "kcv": h(psec.aes.encrypt_aes_ecb(key, bytes(16))),
                }
            )
    return {
        "oracle": "psec 1.3.0 des.generate_kcv (des_zeros), aes.encrypt_aes_ecb (aes_ecb_zeros); "
        "cryptography CMAC (aes_cmac, X9.24)",
        "seed": SEED,
        "cases": cases,
    }


def gen_keywrap() -> dict:
    cases = []
    for _ in range(CASES):
        master = rand_bytes(rng.choice([8, 16, 24]))
        klen = rng.choice([8, 16, 24])
        key = rand_bytes(klen)
        cases.append({"master": h(master), "key": h(key), "encrypted": h(psec.des.encrypt_tdes_ecb(master, key))})
    return {"oracle": "psec 1.3.0 des.encrypt_tdes_ecb", "seed": SEED, "cases": cases}


class SeededFill:
    """Seeded stand-ins for the randomness psec.pinblock draws from."""

    def __init__(self):
        self.choice = rng.choice

    def urandom(self, n):
        return rand_bytes(n)


def nibbles_of(b: bytes) -> list:
    return [int(c, 16) for c in b.hex()]


def gen_pin() -> dict:
    cases = []
    seeded = SeededFill()
    saved = (pinblock._secrets, pinblock._urandom)
    pinblock._secrets = seeded
    pinblock._urandom = seeded.urandom
    try:
        for fmt in (0, 1, 3):
            for _ in range(CASES):
                key = rand_bytes(rng.choice([8, 16, 24]))
                pin = rand_digits(rng.randint(4, 12))
                pan = rand_digits(rng.randint(13, 19))
                if fmt == 0:
                    clear = pinblock.encode_pinblock_iso_0(pin, pan)
                    fill = []
                    assert pinblock.decode_pinblock_iso_0(clear, pan) == pin
                elif fmt == 3:
                    clear = pinblock.encode_pinblock_iso_3(pin, pan)
                    assert pinblock.decode_pinblock_iso_3(clear, pan) == pin
                    fill = nibbles_of(xor(clear, iso0_pan_block(pan)))[2 + len(pin) :]
                else:
                    fill = [rng.randrange(16) for _ in range(14 - len(pin))]
                    clear = encode_iso1(pin, fill)
                    assert decode_iso1(clear) == pin
                block = psec.des.encrypt_tdes_ecb(key, clear)
                assert psec.des.decrypt_tdes_ecb(key, block) == clear
                cases.append(
                    {
                        "format": fmt,
                        "key": h(key),
                        "pin": pin,
                        "pan": pan if fmt != 1 else None,
                        "fill": fill,
                        "block": h(block),
                    }
                )
        for _ in range(CASES):
            key = rand_bytes(rng.choice([16, 24, 32]))
            pin = rand_digits(rng.randint(4, 12))
            pan = rand_digits(rng.randint(12, 19))
            block = pinblock.encipher_pinblock_iso_4(key, pin, pan)
            assert pinblock.decipher_pinblock_iso_4(key, block, pan) == pin
            # Recover the random half of the PIN field to record the fill.
            b = psec.aes.decrypt_aes_ecb(key, block)
            a = xor(b, pinblock.encode_pan_field_iso_4(pan))
            pin_field = psec.aes.decrypt_aes_ecb(key, a)
            assert pinblock.decode_pin_field_iso_4(pin_field) == pin
            cases.append(
                {"format": 4, "key": h(key), "pin": pin, "pan": pan, "fill": nibbles_of(pin_field[8:]), "block": h(block)}
            )
    finally:
        pinblock._secrets, pinblock._urandom = saved
    return {
        "oracle": "psec 1.3.0 pinblock encode/decode iso 0 and 3, encipher/decipher iso 4, "
        "des.encrypt_tdes_ecb; format 1 encoded by gen_vectors.encode_iso1 (psec has none)",
        "seed": SEED,
        "cases": cases,
    }


def gen_translate() -> dict:
    """Oracle blocks of one PIN under two keys/formats; translating one must give the
    other exactly (only deterministic targets: format 0)."""
    cases = []
    for _ in range(CASES):
        pin = rand_digits(rng.randint(4, 12))
        pan = rand_digits(rng.randint(13, 19))
        key_a = rand_bytes(rng.choice([16, 24]))
        key_b = rand_bytes(rng.choice([16, 24]))
        aes = rand_bytes(16)
        clear0 = pinblock.encode_pinblock_iso_0(pin, pan)
        saved = pinblock._urandom
        pinblock._urandom = SeededFill().urandom
        try:
            block4 = pinblock.encipher_pinblock_iso_4(aes, pin, pan)
        finally:
            pinblock._urandom = saved
        cases.append(
            {
                "pin": pin,
                "pan": pan,
                "tdes_a": h(key_a),
                "tdes_b": h(key_b),
                "aes": h(aes),
                "iso0_under_a": h(psec.des.encrypt_tdes_ecb(key_a, clear0)),
                "iso0_under_b": h(psec.des.encrypt_tdes_ecb(key_b, clear0)),
                "iso4_under_aes": h(block4),
            }
        )
    return {"oracle": "psec 1.3.0 encode_pinblock_iso_0, encipher_pinblock_iso_4, des.encrypt_tdes_ecb", "seed": SEED, "cases": cases}


# ---------------------------------------------------------------------------
# --check-ours: the oracle deciphers blocks produced by the Rust code
# ---------------------------------------------------------------------------


def check_ours() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours.json"
        env = dict(os.environ, ISOSWITCH_PSEC_OURS=str(out))
        subprocess.run(
            ["cargo", "test", "-q", "-p", "isoswitch-session", "--test", "psec_vectors", "--",
             "--ignored", "emit_blocks_for_oracle"],
            cwd=ROOT, env=env, check=True,
        )
        ours = json.loads(out.read_text())
    counts = {}
    for c in ours:
        key, block, pin, pan, fmt = bytes.fromhex(c["key"]), bytes.fromhex(c["block"]), c["pin"], c["pan"], c["format"]
        if fmt == 4:
            got = pinblock.decipher_pinblock_iso_4(key, block, pan)
        else:
            clear = psec.des.decrypt_tdes_ecb(key, block)
            if fmt == 0:
                got = pinblock.decode_pinblock_iso_0(clear, pan)
            elif fmt == 3:
                got = pinblock.decode_pinblock_iso_3(clear, pan)
            else:
                got = decode_iso1(clear)
        assert got == pin, c
        counts[fmt] = counts.get(fmt, 0) + 1
    print("oracle deciphered all Rust-made blocks:", dict(sorted(counts.items())))


def render(content: dict) -> str:
    """JSON with one case per line: small, and diffs stay readable."""
    head = {k: v for k, v in sorted(content.items()) if k != "cases"}
    lines = [json.dumps(c, sort_keys=True, separators=(",", ":")) for c in content["cases"]]
    body = json.dumps(head, indent=1)[:-2]
    return body + ',\n "cases": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"


def main() -> None:
    self_test_published()
    files = {
        "mac.json": gen_mac(),
        "kcv.json": gen_kcv(),
        "keywrap.json": gen_keywrap(),
        "pin.json": gen_pin(),
        "translate.json": gen_translate(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        content["generator"] = "scripts/psec/gen_vectors.py"
        (OUT / name).write_text(render(content))
        print(f"{name}: {len(content['cases'])} cases")
    if "--check-ours" in sys.argv[1:]:
        check_ours()


if __name__ == "__main__":
    main()
