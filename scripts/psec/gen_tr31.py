#!/usr/bin/env python3
"""Generate independent TR-31 key block test vectors for crates/session (crypto::tr31).

Output: crates/session/tests/vectors/psec/tr31.json, read by
crates/session/tests/tr31_oracle.rs. The Rust tests need only that JSON file.

Oracle: psec 1.3.0 (pip install psec==1.3.0), `psec.tr31.wrap` and `psec.tr31.unwrap`,
an implementation of ANSI X9.143 / TR-31 written independently of this repository.

Cases: 200 per key block version (A, B, C, D), each with a random KBPK of a length the
version allows (A, C: 8, 16 or 24 bytes; B: 16 or 24; D: 16, 24 or 32), a random key of
a length the header's algorithm allows (T: 16 or 24, D: 8, A: 16, 24 or 32), a random
header (key usage, mode of use, key version number, exportability), 0 to 3 random
optional blocks (a few longer than 255 characters, which need the extended length
form), and random key-length masking (psec's default, the exact length, or a length
between). psec pads the header with a PB block where needed.

psec draws the key data padding from `os.urandom`, imported into `psec.tr31` as
`_urandom`; that name is replaced by a seeded stand-in that also records what it
returned, so (a) a rerun writes the same file and (b) each case carries its padding:
the Rust test unwraps psec's block, and wraps the key again with the same header and
padding and must produce psec's block character for character.

Self-test before writing: the TR-31:2018 A.7.2.1 and A.7.4 published blocks through
psec's unwrap, and every generated block back through psec's unwrap.

Usage: python3 scripts/psec/gen_tr31.py
"""

import json
import random
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import psec.tr31 as tr31  # noqa: E402

SEED = 0x7231_2018
PER_VERSION = 200
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "session" / "tests" / "vectors" / "psec"

rng = random.Random(SEED)
recorded = []


def seeded_urandom(n: int) -> bytes:
    b = bytes(rng.getrandbits(8) for _ in range(n))
    recorded.append(b)
    return b


tr31._urandom = seeded_urandom


def h(b: bytes) -> str:
    return b.hex().upper()


def rand_bytes(n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


# (usage, allowed modes) the Rust side gives meaning to, plus a proprietary one.
USAGES = [
    ("P0", "BDEN"),
    ("M0", "CGVN"),
    ("M1", "CGVN"),
    ("M3", "CGVN"),
    ("M6", "CGVN"),
    ("D0", "BDEN"),
    ("K0", "BDEN"),
    ("K1", "BDEN"),
    ("B0", "XN"),
    ("B1", "XN"),
    ("V1", "CGVN"),
    ("C0", "CGVN"),
    ("42", "N"),
]
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def random_blocks():
    blocks = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        bid = rng.choice(["KS", "KC", "KP", "TS", "KV", "HM", "IK"]) if rng.random() < 0.7 else (
            rng.choice("ABCDEFGHIJKLMNOQRSTUVWXYZ") + rng.choice(ALNUM)
        )
        if any(b[0] == bid for b in blocks) or bid == "PB":
            continue
        n = rng.choice([0, 1, 4, 10, 20, 40]) if rng.random() < 0.95 else rng.randint(260, 400)
        data = "".join(rng.choice(PRINTABLE) for _ in range(n))
        blocks.append((bid, data))
    return blocks


def one_case(version: str):
    if version in "AC":
        kbpk = rand_bytes(rng.choice([8, 16, 24]))
    elif version == "B":
        kbpk = rand_bytes(rng.choice([16, 24]))
    else:
        kbpk = rand_bytes(rng.choice([16, 24, 32]))
    algorithm = rng.choice("TTAD")
    key = rand_bytes({"T": rng.choice([16, 24]), "D": 8, "A": rng.choice([16, 24, 32])}[algorithm])
    usage, modes = rng.choice(USAGES)
    header = tr31.Header(
        version,
        usage,
        algorithm,
        rng.choice(modes),
        rng.choice(["00", "01", "12", "A1", "c1"]),
        rng.choice("ENS"),
    )
    for bid, data in random_blocks():
        header.blocks[bid] = data
    masked = rng.choice([None, None, len(key), len(key) + rng.randint(0, 16)])
    recorded.clear()
    block = tr31.wrap(kbpk, header, key, masked)
    assert len(recorded) == 1, recorded
    pad = recorded[0]
    h2, key2 = tr31.unwrap(kbpk, block)
    assert key2 == key
    return {
        "version": version,
        "kbpk": h(kbpk),
        "key": h(key),
        "pad": h(pad),
        "block": block,
    }


def self_test() -> None:
    _, k = tr31.unwrap(
        bytes.fromhex("89E88CF7931444F334BD7547FC3F380C"),
        "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701",
    )
    assert h(k) == "F039121BEC83D26B169BDCD5B22AAF8F", h(k)
    _, k = tr31.unwrap(
        bytes.fromhex("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"),
        "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
    )
    assert h(k) == "3F419E1CB7079442AA37474C2EFBF8B8", h(k)


def main() -> None:
    self_test()
    cases = [one_case(v) for v in "ABCD" for _ in range(PER_VERSION)]
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "scripts/psec/gen_tr31.py",
        "oracle": "psec 1.3.0 tr31.wrap / tr31.unwrap (padding from a seeded os.urandom stand-in)",
        "seed": SEED,
        "cases": cases,
    }
    path = OUT / "tr31.json"
    with open(path, "w") as f:
        f.write("{\n")
        f.write(f' "generator": {json.dumps(doc["generator"])},\n')
        f.write(f' "oracle": {json.dumps(doc["oracle"])},\n')
        f.write(f' "seed": {SEED},\n')
        f.write(' "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, sort_keys=True) for c in cases))
        f.write("\n ]\n}\n")
    print(f"wrote {path} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
