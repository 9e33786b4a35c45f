#!/usr/bin/env python3
"""TLS cost benchmark (README, "TLS and metrics cost"): host_sim + switchd + terminal_sim
as release builds, plain TCP against TLS 1.3 on both hops with mutual TLS (P-256
certificates made here with openssl), `--admin` (metrics recorded) on both servers in
both settings; runs alternated in one sitting.

    cargo build --release -p isoswitch-sim --example host_sim --example switchd --example terminal_sim
    python3 scripts/bench/tls_cost.py [SECONDS=15] [ROUNDS=3]

Per run: throughput and balance from terminal_sim's report, CPU (user + system) per
transaction of switchd and host_sim over the terminal run (from /proc), terminal_sim's as
the rest of the children's CPU, and the 1-minute load average at the end.
"""
import os, re, socket, subprocess, sys, time, shutil, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "examples")
PKI = tempfile.mkdtemp(prefix="tls-cost-pki-")
TICK = os.sysconf("SC_CLK_TCK")


def make_pki():
    """A CA, a server certificate for 127.0.0.1 and a client certificate (PKCS#8 keys)."""
    def sh(*a):
        subprocess.run(a, cwd=PKI, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    sh("openssl", "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench CA", "-days", "2",
       "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for n, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                   ("client", "subjectAltName=DNS:client\nextendedKeyUsage=clientAuth")):
        sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{n}.ec.key")
        sh("openssl", "pkcs8", "-topk8", "-nocrypt", "-in", f"{n}.ec.key", "-out", f"{n}.key")
        sh("openssl", "req", "-new", "-key", f"{n}.ec.key", "-subj", f"/CN={n}", "-out", f"{n}.csr")
        with open(os.path.join(PKI, f"{n}.ext"), "w") as f:
            f.write(ext + "\nbasicConstraints=CA:FALSE\n")
        sh("openssl", "x509", "-req", "-in", f"{n}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
           "-CAcreateserial", "-days", "2", "-out", f"{n}.pem", "-extfile", f"{n}.ext")

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait(addr, t=30):
    h, p = addr.split(":"); end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection((h, int(p)), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing on {addr}")

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK

def run(tls, secs):
    d = tempfile.mkdtemp(prefix="bench-")
    ha, sa, hadm, sadm = (f"127.0.0.1:{port()}" for _ in range(4))
    srv = ["--tls-cert", f"{PKI}/server.pem", "--tls-key", f"{PKI}/server.key",
           "--tls-client-ca", f"{PKI}/ca.pem"] if tls else []
    log = open(f"{d}/log", "w")
    host = subprocess.Popen([f"{BIN}/host_sim", "--listen", ha, "--data-dir", f"{d}/host",
                             "--admin", hadm] + srv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    up = ["--host-tls-ca", f"{PKI}/ca.pem", "--host-tls-cert", f"{PKI}/client.pem",
          "--host-tls-key", f"{PKI}/client.key"] if tls else []
    sw = subprocess.Popen([f"{BIN}/switchd", "--listen", sa, "--host", ha, "--data-dir",
                           f"{d}/switch", "--admin", sadm] + srv + up, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=log)
    wait(sa); wait(hadm); wait(sadm)
    time.sleep(1.0)
    c0h, c0s = cpu(host.pid), cpu(sw.pid)
    term = ["--tls-ca", f"{PKI}/ca.pem", "--tls-cert", f"{PKI}/client.pem",
            "--tls-key", f"{PKI}/client.key"] if tls else []
    t = subprocess.Popen([f"{BIN}/terminal_sim", "--switch", sa, "--count", "200", "--window", "1",
                          "--duration", f"{secs}s", "--quiet", "--data-dir", f"{d}/terminals"] + term,
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    out, _ = t.communicate()
    c1h, c1s = cpu(host.pid), cpu(sw.pid)
    load = os.getloadavg()[0]
    for p in (sw, host):
        p.terminate()
        try: p.wait(30)
        except subprocess.TimeoutExpired: p.kill()
    tx = int(re.search(r"transactions (\d+)", out).group(1))
    thr = float(re.search(r"throughput (\d+) tx/s", out).group(1))
    bal = re.search(r"settlement: (\d+/\d+) terminals balanced", out).group(1)
    shutil.rmtree(d, ignore_errors=True)
    return tx, thr, bal, (c1s - c0s) * 1e6 / max(tx, 1), (c1h - c0h) * 1e6 / max(tx, 1), load, out

if __name__ == "__main__":
    make_pki()
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for i in range(rounds):
        for tls in (False, True):
            before = os.times()
            tx, thr, bal, us_s, us_h, load, out = run(tls, secs)
            after = os.times()
            us_t = ((after.children_user - before.children_user) + (after.children_system - before.children_system))
            # children times include host/switch/terminal once reaped: report the terminal's
            # share as total − host − switch.
            total_us = us_t * 1e6 / max(tx, 1)
            print(f"{'TLS  ' if tls else 'plain'} run {i+1}: {thr:.0f} tx/s ({tx} tx), balanced {bal}, "
                  f"CPU µs/tx switchd {us_s:.0f} host_sim {us_h:.0f} terminal_sim {total_us - us_s - us_h:.0f}, "
                  f"load {load:.1f}", flush=True)
