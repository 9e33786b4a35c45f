#!/usr/bin/env python3
"""Generate ISO 8583:1987 conformance vectors with pyiso8583 as an independent oracle.

pyiso8583 (https://github.com/knovichikhin/pyiso8583) is an unrelated Python
implementation of ISO 8583. This script builds random but content-valid messages,
encodes them with pyiso8583, checks that pyiso8583 decodes them back to exactly the
same fields and re-encodes them to exactly the same bytes, and writes the result as
JSON lines that the Rust test-suite of isoswitch replays.

Rerun (from the repository root; output is deterministic, seeded with
``random.Random(8583)``)::

    pip install pyiso8583==4.0.1 && python3 scripts/pyiso8583/gen_vectors.py

Outputs (all under ``tests/vectors/pyiso8583/``):

``iso87-ascii.jsonl``    2,500 messages, spec ``iso8583.specs.default_ascii``
``iso87-binary.jsonl``   2,500 messages, spec ``iso8583.specs.default``
``iso87-ebcdic.jsonl``   2,500 messages, ``default`` with every "ascii" data/length
                         encoding replaced by "cp037" (bitmaps and "b" fields stay binary)
``<dialect>.invalid.jsonl``  40 corrupted messages per dialect that pyiso8583 rejects
``samples.jsonl``        /work/shared/samples/purchase-0200.* decoded by pyiso8583

Valid line format (field keys are data elements 2..128 in numeric order; never
"h", "t", "p" or "1"; values are exactly what ``iso8583.decode`` returns, so
binary fields are UPPERCASE hex)::

    {"mti": "0200", "fields": {"2": "...", "3": "..."}, "hex": "<UPPERCASE hex>"}

Invalid line format::

    {"hex": "...", "kind": "...", "why": "...", "pyiso8583_error": "..."}
"""

import copy
import json
import math
import os
import string
import sys

import random

import iso8583
import iso8583.specs

PYISO8583_VERSION = "4.0.1"
SEED = 8583
N_VALID = 2500
N_INVALID_PER_KIND = 10  # 4 kinds -> 40 lines per dialect

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "vectors", "pyiso8583")
SAMPLES = os.environ.get("ISOSWITCH_SAMPLES", "/work/shared/samples")

MTIS = "0100 0110 0200 0210 0220 0230 0400 0410 0420 0430 0500 0510 0800 0810 0820 0830".split()

# --------------------------------------------------------------------------
# Specs


def ebcdic_spec():
    """`default` with every ascii data_enc / len_enc turned into cp037."""
    spec = copy.deepcopy(iso8583.specs.default)
    for fs in spec.values():
        if fs["data_enc"] == "ascii":
            fs["data_enc"] = "cp037"
        if fs["len_enc"] == "ascii":
            fs["len_enc"] = "cp037"
    return spec


DIALECTS = [
    ("iso87-ascii", iso8583.specs.default_ascii),
    ("iso87-binary", iso8583.specs.default),
    ("iso87-ebcdic", ebcdic_spec()),
]

# --------------------------------------------------------------------------
# ISO 8583:1987 content classes


def _r(a, b):
    return list(range(a, b + 1))


CLASSES = {
    "n": _r(2, 27) + [32, 33, 53] + _r(66, 90) + [99, 100],
    "xn": [28, 29, 30, 31, 97],
    "ns": [34],
    "z2": [35],
    "z3": [36],
    "an": _r(37, 40) + [49, 50, 51] + _r(91, 95),
    "ans": _r(41, 48) + [54] + _r(56, 63) + [98] + _r(101, 127),
    "b": [52, 55, 64, 96, 128],
}
FIELD_CLASS = {f: c for c, fs in CLASSES.items() for f in fs}
DATA_FIELDS = [f for f in range(2, 129) if f != 65]
assert sorted(FIELD_CLASS) == DATA_FIELDS, "content class table must cover 2..128 minus 65"

DIGITS = string.digits
HEX = "0123456789ABCDEF"
AN = string.ascii_uppercase + string.ascii_lowercase + string.digits
ANS_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
# Characters that are safe in EBCDIC (cp037) dialects: the EBCDIC invariant set.
ANS_EBCDIC = AN + " .<(+&*);-/,%_>?:#@'=\""

# Variable fields at least this long are "big" (LLLVAR 240/255/510/999). They get a
# size-aware length distribution and a lower selection weight so that the three
# files stay well under 10 MB; every other variable field gets 10% length 1,
# 15% max length, otherwise uniform 1..max.
BIG = 240
BIG_WEIGHT = 0.25


def is_variable(fs):
    return fs["len_type"] != 0


def max_units(fs, cls):
    """Maximum number of *value* units for this field: characters, or bytes for
    binary/hex-string fields (the value is then 2 hex chars per unit)."""
    if cls == "b" and fs["data_enc"] != "b":
        return fs["max_len"] // 2  # ascii hex representation, whole bytes only
    return fs["max_len"]


def pick_len(rng, fs, cls):
    m = max_units(fs, cls)
    if not is_variable(fs):
        return m
    r = rng.random()
    if r < 0.10:
        return 1
    if m < BIG:
        if r < 0.25:
            return m
        return rng.randint(1, m)
    # big field: 10% length 1, 3% max, 4% uniform 1..max, else short (mean ~16)
    if r < 0.13:
        return m
    if r < 0.17:
        return rng.randint(1, m)
    return min(m, 1 + int(rng.expovariate(1 / 16.0)))


def rand_str(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def gen_value(rng, f, fs, ebcdic):
    cls = FIELD_CLASS[f]
    n = pick_len(rng, fs, cls)
    if cls == "n" or cls == "ns":
        return rand_str(rng, DIGITS, n)
    if cls == "xn":
        return rng.choice("CD") + rand_str(rng, DIGITS, n - 1)
    if cls == "z2":
        if n >= 5:
            sep = rng.randint(2, n - 3)  # '=' strictly in the middle
            return rand_str(rng, DIGITS, sep) + "=" + rand_str(rng, DIGITS, n - sep - 1)
        return rand_str(rng, DIGITS, n)
    if cls == "z3":
        return rand_str(rng, DIGITS * 4 + "=", n)
    if cls == "an":
        return rand_str(rng, AN, n)
    if cls == "ans":
        return rand_str(rng, ANS_EBCDIC if ebcdic else ANS_ASCII, n)
    if cls == "b":
        # n bytes; pyiso8583 represents them as uppercase hex both for binary
        # ("b") fields and for the ascii-hex fields of default_ascii.
        return bytes(rng.getrandbits(8) for _ in range(n)).hex().upper()
    raise AssertionError(cls)


def weighted_sample(rng, population, weights, k):
    """k distinct items, weighted (Efraimidis-Spirakis), deterministic."""
    keyed = [(rng.random() ** (1.0 / w), p) for p, w in zip(population, weights)]
    keyed.sort(reverse=True)
    return [p for _, p in keyed[:k]]


def gen_fields(rng, spec):
    weight = {f: (BIG_WEIGHT if is_variable(spec[str(f)]) and spec[str(f)]["max_len"] >= BIG else 1.0)
              for f in DATA_FIELDS}
    r = rng.random()
    if r < 0.02:
        return list(DATA_FIELDS)  # every field 2..128 (65 is the tertiary bitmap)
    k = min(40, int(rng.triangular(1, 41, 10)))  # 1..40, mode ~10, mean ~17
    if r < 0.30:
        # exercise the secondary bitmap: at least one field in 66..128
        forced = rng.choice([f for f in DATA_FIELDS if f >= 66])
        pool = [f for f in DATA_FIELDS if f != forced]
        chosen = [forced] + weighted_sample(rng, pool, [weight[f] for f in pool], k - 1)
    else:
        pool = [f for f in DATA_FIELDS if f <= 64]
        chosen = weighted_sample(rng, pool, [weight[f] for f in pool], k)
    return sorted(chosen)


def gen_mti(rng):
    if rng.random() < 0.10:
        return "%04d" % rng.randint(0, 9999)
    return rng.choice(MTIS)


# --------------------------------------------------------------------------
# Oracle round trip


def data_fields(doc):
    """Data elements 2..128 of a pyiso8583 decoded dict, numerically sorted."""
    keys = sorted((int(k) for k in doc if k.isdigit() and k not in ("1", "65")))
    return {str(k): doc[str(k)] for k in keys}


def roundtrip(mti, fields, spec):
    doc = {"t": mti}
    doc.update(fields)
    raw, doc_enc = iso8583.encode(copy.deepcopy(doc), spec)
    raw = bytes(raw)
    dec, _ = iso8583.decode(raw, spec)
    assert dec["t"] == mti, (dec["t"], mti)
    assert data_fields(dec) == fields, "decode(encode(x)) != x"
    assert not any(k in dec for k in ("h", "65")), dec.keys()
    raw2, _ = iso8583.encode(copy.deepcopy(dec), spec)
    assert bytes(raw2) == raw, "re-encode differs"
    return raw, doc_enc


def layout(raw, doc_enc):
    """[(key, start, len_bytes, data_bytes)] for t, p, 1 and every data field."""
    order = ["t", "p"] + (["1"] if "1" in doc_enc else [])
    order += [str(k) for k in sorted(int(k) for k in doc_enc if k.isdigit() and k != "1")]
    out, pos = [], 0
    for k in order:
        ln, data = doc_enc[k]["len"], doc_enc[k]["data"]
        out.append((k, pos, len(ln), len(data)))
        pos += len(ln) + len(data)
    assert pos == len(raw)
    return out


def gen_valid(rng, spec, ebcdic):
    rows = []
    for _ in range(N_VALID):
        mti = gen_mti(rng)
        fields = {str(f): gen_value(rng, f, spec[str(f)], ebcdic) for f in gen_fields(rng, spec)}
        raw, doc_enc = roundtrip(mti, fields, spec)
        rows.append((mti, fields, raw, doc_enc))
    return rows


# --------------------------------------------------------------------------
# Invalid messages


def try_decode(raw, spec):
    try:
        iso8583.decode(raw, spec)
    except iso8583.DecodeError as e:
        return str(e)
    return None


def corrupt_truncate(rng, spec, raw, lay):
    cand = [x for x in lay if x[0] not in ("t", "p", "1") and x[2] + x[3] >= 2]
    if not cand:
        return None
    k, start, ll, dl = rng.choice(cand)
    cut = rng.randint(1, ll + dl - 1)
    where = "length prefix" if cut < ll else "data"
    return raw[: start + cut], (
        f"truncated inside field {k} ({where}): {cut} of {ll + dl} bytes of the field kept")


def corrupt_nondigit_len(rng, spec, raw, lay):
    cand = [x for x in lay if x[2] > 0]
    if not cand:
        return None
    k, start, ll, dl = rng.choice(cand)
    i = rng.randrange(ll)
    ch = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ:;/*?")
    b = ch.encode(spec[k]["len_enc"])
    out = raw[: start + i] + b + raw[start + i + 1:]
    return out, f"non-digit {ch!r} in byte {i} of field {k}'s {ll}-digit length prefix"


def corrupt_len_over_max(rng, spec, raw, lay):
    cand = [x for x in lay if x[2] > 0 and spec[x[0]]["max_len"] < 10 ** x[2] - 1]
    if not cand:
        return None
    k, start, ll, dl = rng.choice(cand)
    mx = spec[k]["max_len"]
    n = rng.choice([mx + 1, rng.randint(mx + 1, 10 ** ll - 1)])
    pref = ("%0*d" % (ll, n)).encode(spec[k]["len_enc"])
    out = raw[:start] + pref + raw[start + ll:]
    return out, f"field {k} length prefix {n} exceeds max_len {mx}"


def corrupt_bitmap_bit(rng, spec, raw, lay):
    present = {int(x[0]) for x in lay if x[0].isdigit() and x[0] != "1"}
    has_secondary = any(x[0] == "1" for x in lay)
    universe = [f for f in range(2, 129 if has_secondary else 65) if f != 65 and f not in present]
    if not universe:
        return None
    highest = max(present) if present else 0
    after = [f for f in universe if f > highest]
    # mostly a field after the last one (no data left for it), sometimes in between
    f = rng.choice(after) if after and rng.random() < 0.6 else rng.choice(universe)
    bm_key, bit = ("p", f - 1) if f <= 64 else ("1", f - 65)
    _, start, _, dl = next(x for x in lay if x[0] == bm_key)
    bitmap = bytearray(bytes.fromhex(iso8583.decode(raw, spec)[0][bm_key][:16]))
    bitmap[bit // 8] |= 0x80 >> (bit % 8)
    if spec[bm_key]["data_enc"] == "b":
        enc = bytes(bitmap)
    else:
        enc = bitmap.hex().upper().encode(spec[bm_key]["data_enc"])
    assert len(enc) == dl
    out = raw[:start] + enc + raw[start + dl:]
    return out, f"bitmap bit for field {f} set but no data added for it"


KINDS = [
    ("truncated", corrupt_truncate),
    ("nondigit_length", corrupt_nondigit_len),
    ("length_over_max", corrupt_len_over_max),
    ("bitmap_bit_without_data", corrupt_bitmap_bit),
]


def gen_invalid(rng, spec, rows):
    out = []
    for kind, fn in KINDS:
        got, tries = 0, 0
        while got < N_INVALID_PER_KIND:
            tries += 1
            assert tries < 10000, f"cannot build {kind} vectors"
            mti, fields, raw, doc_enc = rng.choice(rows)
            res = fn(rng, spec, raw, layout(raw, doc_enc))
            if res is None:
                continue
            bad, why = res
            err = try_decode(bad, spec)
            if err is None:
                continue  # pyiso8583 accepts it: not an oracle-confirmed invalid vector
            out.append({"hex": bad.hex().upper(), "kind": kind, "why": why, "pyiso8583_error": err})
            got += 1
    return out


# --------------------------------------------------------------------------
# Samples


def gen_samples():
    with open(os.path.join(SAMPLES, "purchase-0200.json")) as fh:
        want = json.load(fh)
    lines = []
    for dialect, spec in DIALECTS[:2]:
        with open(os.path.join(SAMPLES, f"purchase-0200.{dialect}.hex")) as fh:
            hx = "".join(fh.read().split()).upper()
        raw = bytes.fromhex(hx)
        dec, _ = iso8583.decode(raw, spec)
        fields = data_fields(dec)
        assert dec["t"] == want["mti"], (dialect, dec["t"])
        assert fields == want["fields"], (dialect, fields, want["fields"])
        assert bytes(iso8583.encode(copy.deepcopy(dec), spec)[0]) == raw
        lines.append({"dialect": dialect, "mti": dec["t"], "fields": fields, "hex": hx})
    return lines


# --------------------------------------------------------------------------


def write_jsonl(path, objs):
    with open(path, "w", newline="\n") as fh:
        for o in objs:
            fh.write(json.dumps(o) + "\n")
    return os.path.getsize(path)


def stats(rows):
    sec = sum(1 for r in rows if "1" in r[3])
    allf = sum(1 for r in rows if len(r[1]) == len(DATA_FIELDS))
    nf = [len(r[1]) for r in rows]
    sizes = [len(r[2]) for r in rows]
    return sec, allf, min(nf), max(nf), min(sizes), max(sizes), sum(sizes) / len(sizes)


def main():
    if iso8583.__version__ != PYISO8583_VERSION:
        sys.exit(f"need pyiso8583=={PYISO8583_VERSION}, found {iso8583.__version__}")
    for _, spec in DIALECTS:
        assert spec["h"]["max_len"] == 0, "specs are expected to have no header"
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(SEED)
    valid = {}
    for dialect, spec in DIALECTS:
        valid[dialect] = gen_valid(rng, spec, ebcdic=dialect.endswith("ebcdic"))
    summary, total = [], 0
    for dialect, spec in DIALECTS:
        rows = valid[dialect]
        size = write_jsonl(os.path.join(OUT, f"{dialect}.jsonl"),
                           ({"mti": m, "fields": f, "hex": raw.hex().upper()} for m, f, raw, _ in rows))
        total += size
        sec, allf, nmin, nmax, bmin, bmax, bavg = stats(rows)
        summary.append(f"{dialect}.jsonl: {len(rows)} messages ({sec} with secondary bitmap, "
                       f"{allf} with all fields; {nmin}..{nmax} fields; {bmin}..{bmax} bytes, "
                       f"avg {bavg:.0f}), {size / 1e6:.2f} MB")
    for dialect, spec in DIALECTS:
        inv = gen_invalid(rng, spec, valid[dialect])
        size = write_jsonl(os.path.join(OUT, f"{dialect}.invalid.jsonl"), inv)
        total += size
        summary.append(f"{dialect}.invalid.jsonl: {len(inv)} invalid messages, all rejected by pyiso8583")
    samples = gen_samples()
    total += write_jsonl(os.path.join(OUT, "samples.jsonl"), samples)
    summary.append(f"samples.jsonl: {len(samples)} lines, equal to purchase-0200.json")
    print("\n".join(summary))
    print(f"total {total / 1e6:.2f} MB in {OUT}")
    assert total < 10_000_000, "vectors too large"


if __name__ == "__main__":
    main()
