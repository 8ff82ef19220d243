#!/usr/bin/env python3
"""Captures real DNS packets for the parser's fuzz corpus
(receiver/src/family/dns/corpus/): responses of a real resolver (dnsmasq, authoritative
for a test zone, with compression pointers), the queries dnsmasq itself sends upstream when
forwarding (EDNS0 OPT record, its own ids), and TCP-framed copies. Loopback only; needs
root (port 53) and dnsmasq. Usage: sudo scripts/dns-corpus.py OUTDIR
"""
import os
import socket
import struct
import subprocess
import sys
import time

AUTH, FWD, UPSTREAM = "127.77.0.1", "127.77.0.2", "127.77.0.3"
ZONE = "corpus.test"
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}


def query(name, qtype, qid=0x1234):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)


def dnsmasq(listen, *extra):
    return subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--bind-interfaces", "--port=53", "--user=root", "--pid-file=", f"--listen-address={listen}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ask(server, packet):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(packet, (server, 53))
    try:
        return s.recv(4096)
    except socket.timeout:
        return None
    finally:
        s.close()


def main(out):
    os.makedirs(out, exist_ok=True)
    auth = dnsmasq(AUTH, f"--auth-zone={ZONE}", f"--auth-server=ns.{ZONE}",
                   f"--host-record=www.{ZONE},10.0.0.1,fd00::1", f"--cname=alias.{ZONE},www.{ZONE}",
                   f"--mx-host={ZONE},mail.{ZONE},10", f"--txt-record={ZONE},\"v=spf1 -all\",\"second string\"",
                   f"--srv-host=_ldap._tcp.{ZONE},ldap.{ZONE},389,0,100", f"--host-record=mail.{ZONE},10.0.0.2",
                   "--ptr-record=1.0.0.10.in-addr.arpa,www.corpus.test")
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind((UPSTREAM, 53))
    upstream.settimeout(3)
    fwd = dnsmasq(FWD, f"--server={UPSTREAM}#53")
    time.sleep(1)
    n = 0
    try:
        def save(tag, data):
            nonlocal n
            n += 1
            with open(os.path.join(out, f"{n:02d}-udp-{tag}.bin"), "wb") as f:
                f.write(data)
            with open(os.path.join(out, f"{n:02d}-tcp-{tag}.bin"), "wb") as f:
                f.write(struct.pack(">H", len(data)) + data)

        for name, qtype in [(f"www.{ZONE}", "A"), (f"www.{ZONE}", "AAAA"), (f"alias.{ZONE}", "A"),
                            (ZONE, "MX"), (ZONE, "TXT"), (f"_ldap._tcp.{ZONE}", "SRV"), (ZONE, "SOA"),
                            (ZONE, "NS"), ("1.0.0.10.in-addr.arpa", "PTR"), (f"nx.{ZONE}", "A"), (ZONE, "ANY")]:
            resp = ask(AUTH, query(name, TYPES[qtype]))
            if resp:
                save(f"response-{qtype.lower()}-{name.split('.')[0]}", resp)
        for name in [f"www.example.{ZONE}", "Mixed.Case.Example"]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(query(name, 1, 0x4321), (FWD, 53))
            try:
                data, _ = upstream.recvfrom(4096)
                save(f"forwarded-query-{name.split('.')[0].lower()}", data)
            except socket.timeout:
                pass
            s.close()
    finally:
        for p in (auth, fwd):
            p.kill()
            p.wait()
    print(f"{n} packets, two framings each, in {out}")


if __name__ == "__main__":
    main(sys.argv[1])
