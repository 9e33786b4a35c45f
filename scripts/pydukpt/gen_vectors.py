#!/usr/bin/env python3
"""Generate independent TDES DUKPT test vectors for crates/session (crypto::dukpt::tdes).

Output: crates/session/tests/vectors/pydukpt/tdes_dukpt.json, read by
crates/session/tests/dukpt_oracle.rs. The Rust tests need only that JSON file.

Oracle: pydukpt 0.1.0 (pip install pydukpt==0.1.0; it pulls in pycryptodome), an
ANSI X9.24-1:2009 implementation written independently of this repository.

  pydukpt 0.1.0                        | used for
  -------------------------------------+-------------------------------------------
  derive_ipek                          | the initial key from BDK + KSN
  derive_key                           | the current transaction key
  pin_key, mac_request_key,            | the five variants of table A-1
  mac_response_key, data_request_key,  |
  data_response_key                    |
  encrypt_pin                          | format 0 PIN block under the PIN variant
  next_ksn (KSNExhaustedError)         | the device's next counter (skipping counters
                                       | with more than ten 1 bits, exhaustion)

Cases ("keys"): 250 random BDKs and KSNs; the counter is drawn so that counters with
few, ten, more than ten 1 bits, 0 and the top values all appear. Cases ("next"): 250
random counters a device uses (at most ten 1 bits), with the counter pydukpt says
comes next, or "exhausted".

Self-test before writing: the X9.24-1 A.4 published IPEK and first keys through
pydukpt.

Determinism: everything comes from random.Random(SEED); a rerun writes the same file.

Usage: python3 scripts/pydukpt/gen_vectors.py
"""

import json
import random
from pathlib import Path

import pydukpt

SEED = 0x24_1_2009
CASES = 250
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "session" / "tests" / "vectors" / "pydukpt"

rng = random.Random(SEED)


def h(b: bytes) -> str:
    return b.hex().upper()


def rand_bytes(n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def counter_with_ones(ones: int) -> int:
    bits = rng.sample(range(21), ones)
    return sum(1 << b for b in bits)


def random_counter() -> int:
    kind = rng.randrange(10)
    if kind == 0:
        return 0
    if kind == 1:
        return rng.choice([0x1FFFFF, 0x1FF800, 0x100000, 0x000001, 0x0FFC00])
    if kind == 2:
        return rng.getrandbits(21)  # often more than ten 1 bits
    if kind == 3:
        return counter_with_ones(10)
    return counter_with_ones(rng.randint(1, 9))


def self_test() -> None:
    bdk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    ksn = bytes.fromhex("FFFF9876543210E00001")
    ipek = pydukpt.derive_ipek(bdk, ksn)
    assert h(ipek) == "6AC292FAA1315B4D858AB3A3D7D5933A", h(ipek)
    key = pydukpt.derive_key(ipek, ksn)
    assert h(key) == "042666B49184CFA368DE9628D0397BC9", h(key)
    block = pydukpt.encrypt_pin(key, "1234", "4012345678909")
    assert h(block) == "1B9C1845EB993A7A", h(block)


def key_cases():
    out = []
    for _ in range(CASES):
        bdk = rand_bytes(16)
        ksn = pydukpt.ksn_with_counter(rand_bytes(10), random_counter())
        ipek = pydukpt.derive_ipek(bdk, ksn)
        cur = pydukpt.derive_key(ipek, ksn)
        pin = "".join(str(rng.randrange(10)) for _ in range(rng.randint(4, 12)))
        pan = "".join(str(rng.randrange(10)) for _ in range(rng.randint(13, 19)))
        out.append(
            {
                "bdk": h(bdk),
                "ksn": h(ksn),
                "ipek": h(ipek),
                "current": h(cur),
                "pin": h(pydukpt.pin_key(cur)),
                "mac_request": h(pydukpt.mac_request_key(cur)),
                "mac_response": h(pydukpt.mac_response_key(cur)),
                "data_request": h(pydukpt.data_request_key(cur)),
                "data_response": h(pydukpt.data_response_key(cur)),
                "pin_digits": pin,
                "pan": pan,
                "pin_block": h(pydukpt.encrypt_pin(cur, pin, pan)),
            }
        )
        # The oracle's own decoder reads its block back.
        assert pydukpt.decrypt_pin(cur, bytes.fromhex(out[-1]["pin_block"]), pan) == pin
    return out


def next_cases():
    out = []
    fixed = [0x1FF800, 0x1FF400, 0x0FFC00, 0x0003FF, 0x1FF000, 1]
    for i in range(CASES):
        c = fixed[i] if i < len(fixed) else counter_with_ones(rng.randint(1, 10))
        ksn = pydukpt.ksn_with_counter(rand_bytes(10), c)
        try:
            nxt = h(pydukpt.next_ksn(ksn))
        except pydukpt.KSNExhaustedError:
            nxt = "exhausted"
        out.append({"bdk": h(rand_bytes(16)), "ksn": h(ksn), "next": nxt})
    return out


def main() -> None:
    self_test()
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "scripts/pydukpt/gen_vectors.py",
        "oracle": "pydukpt 0.1.0 (derive_ipek, derive_key, variant keys, encrypt_pin, next_ksn)",
        "seed": SEED,
        "keys": key_cases(),
        "next": next_cases(),
    }
    path = OUT / "tdes_dukpt.json"
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {path} ({len(doc['keys'])} key cases, {len(doc['next'])} next-KSN cases)")


if __name__ == "__main__":
    main()
