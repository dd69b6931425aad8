"""Why a one-transaction table replace drops trusted packets (docs/firewall.md).

    python3 tests/fw_replace_experiment.py A|B|C1|C2     (root; about 30 s each)

Two namespaces on a veth (documentation addresses), a trusted sender at 1000
pps to UDP 5060, a 100k-prefix interval set, and six changes made with nft -f:
A: delete + re-create the table in one transaction; B: a second table with a new
filled set and a dropping chain, created in one transaction, then deleted;
C1/C2: a new chain beside the old one over the existing set, then the old one
deleted, in one or two transactions. Prints packets sent, received, lost.
"""
import os, sys, subprocess, time, json, random
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from netns import Netns, link
UDP = os.path.join(HERE, "fw_udp.py")
rnd = random.Random(1); nets=set()
while len(nets) < 100000:
    a = rnd.randrange(16 << 24, 220 << 24) & ~0xFF
    nets.add(f"{a>>24}.{(a>>16)&255}.{(a>>8)&255}.0/24")
elems = ", ".join(sorted(nets) + ["192.0.2.0/24"])
def table(name, chain, prio):
    return f"""table inet {name} {{
 set sig {{ type ipv4_addr; flags interval; elements = {{ {elems} }} }}
 chain {chain} {{ type filter hook input priority {prio}; policy accept;
   ip saddr @sig udp dport 5060 counter accept
   udp dport 5060 counter drop
 }}
}}
"""
def chain(table, chain, prio):
    return f"""add chain inet {table} {chain} {{ type filter hook input priority {prio}; policy accept; }}
add rule inet {table} {chain} ip saddr @sig udp dport 5060 counter accept
add rule inet {table} {chain} udp dport 5060 counter drop
"""
TMP = f"/tmp/sipedge-exp-{os.getpid()}.nft"


def nft(ns, text):
    open(TMP, "w").write(text)
    t = time.time(); r = ns.exec("nft", "-f", TMP, check=False)
    assert r.returncode == 0, r.stderr[:500]
    return time.time() - t
exp = sys.argv[1]
with Netns("sbc") as sbc, Netns("tr") as tr:
    link(sbc, tr, "192.0.2.10/24", "192.0.2.20/24")
    nft(sbc, table("sipedge", "input", -10))
    rx = sbc.popen(sys.executable, UDP, "recv", "192.0.2.10", "5060", "40", "1.0", stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    n = 8000
    tx = tr.popen(sys.executable, UDP, "send", "192.0.2.10", "5060", str(n), "1000", "192.0.2.20", stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    cur = "input"
    for i in range(6):
        if exp == "A":   # delete + recreate table, one transaction
            dt = nft(sbc, "delete table inet sipedge\n" + table("sipedge", "input", -10 - i % 2))
        elif exp == "B":  # a second table overlapping, then delete it
            dt = nft(sbc, table("other", "input", -11)); time.sleep(0.2); nft(sbc, "delete table inet other\n")
        elif exp == "C1":  # chain swap, same sets, one transaction
            new = "input_b" if cur == "input" else "input"
            dt = nft(sbc, chain("sipedge", new, -10 - i % 2) + f"delete chain inet sipedge {cur}\n"); cur = new
        elif exp == "C2":  # chain swap in two transactions
            new = "input_b" if cur == "input" else "input"
            dt = nft(sbc, chain("sipedge", new, -10 - i % 2)); time.sleep(0.1)
            nft(sbc, f"delete chain inet sipedge {cur}\n"); cur = new
        print(exp, i, round(dt, 3), flush=True)
        time.sleep(0.3)
    sent = int(tx.communicate()[0]); got = int(rx.communicate()[0])
    print(exp, "sent", sent, "received", got, "lost", sent - got)
    print(sbc.exec("nft", "list", "ruleset").stdout[-600:] if exp != "A" else "")
