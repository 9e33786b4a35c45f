#!/usr/bin/env python3
"""Makes the example key files that switchd, hsm_sim and terminal_sim use for DUKPT.

examples/bdk.hex      the clear BDK (ANSI X9.24-1:2009 A.4 test BDK) — terminal_sim's key
                      injection facility derives each simulated terminal's IPEK from it.
examples/bdk.lmk.hex  that BDK under the test LMK (examples/lmk.hex), as an HSM holds it.
examples/zmk.lmk.hex  the zone master key (examples/zmk.hex) under the test LMK.

Keys under the LMK are TDES-ECB of the key's 8-byte blocks under the LMK (what
isoswitch-hsm's SoftHsm and its Thales server expect). Test keys only.
Needs pycryptodome. Run from the repository root.
"""
from Crypto.Cipher import DES3

BDK = "0123456789ABCDEFFEDCBA9876543210"


def read_hex(path):
    return bytes.fromhex("".join(open(path).read().split()))


def under(lmk, key):
    return DES3.new(DES3.adjust_key_parity(lmk), DES3.MODE_ECB).encrypt(key).hex().upper()


lmk = read_hex("examples/lmk.hex")
zmk = read_hex("examples/zmk.hex")
open("examples/bdk.hex", "w").write(BDK + "\n")
open("examples/bdk.lmk.hex", "w").write(under(lmk, bytes.fromhex(BDK)) + "\n")
open("examples/zmk.lmk.hex", "w").write(under(lmk, zmk) + "\n")
