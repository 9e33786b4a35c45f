#!/usr/bin/env python3
"""Generate Visa PVV test vectors for crates/hsm (isoswitch_session::crypto::pvv and
SoftHsm's PIN verification) from an independent implementation.

Output: crates/hsm/tests/vectors/psec/pvv.json, read by crates/hsm/tests/psec_pvv.rs.
The Rust tests need only that file, never Python.

Oracle: psec 1.3.0 (pip install psec==1.3.0), psec.pin.generate_visa_pvv(pvk, pvki,
pin, pan), which takes the 4 leftmost PIN digits itself being given exactly 4; the
full PIN (4 to 12 digits) is recorded so that the Rust test can build a PIN block of
it and verify through SoftHsm.

Self-test first: psec's docstring example (PVK 0123456789ABCDEFFEDCBA9876543210,
PVKI 3, PIN 4524, PAN 1122334455667788 -> 4021).

Determinism: everything comes from random.Random(SEED).
"""
import json
import os
import random

import psec

SEED = 20261201
N = 300
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "hsm", "tests",
                   "vectors", "psec", "pvv.json")


def main():
    pvk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert psec.pin.generate_visa_pvv(pvk, "3", "4524", "1122334455667788") == "4021"
    rng = random.Random(SEED)
    cases = []
    for i in range(N):
        key_len = [16, 16, 24][i % 3]
        pvk = bytes(rng.randrange(256) for _ in range(key_len))
        if pvk[:8] == pvk[8:16]:
            continue
        pvki = str(rng.randrange(10))
        pin = "".join(str(rng.randrange(10)) for _ in range(rng.randint(4, 12)))
        pan = "".join(str(rng.randrange(10)) for _ in range(rng.randint(13, 19)))
        pvv = psec.pin.generate_visa_pvv(pvk, pvki, pin[:4], pan)
        cases.append({"pvk": pvk.hex().upper(), "pvki": pvki, "pin": pin, "pan": pan,
                      "pvv": pvv})
    doc = {
        "source": "psec 1.3.0 psec.pin.generate_visa_pvv; scripts/psec/gen_pvv_vectors.py",
        "seed": SEED,
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases -> {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
