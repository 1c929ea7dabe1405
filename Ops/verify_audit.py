#!/usr/bin/env python3
"""Re-verifies an nnseg audit log from its export, without nnseg (issue #18): an auditor need not trust nnseg to
check nnseg. Python's standard library plus `cryptography` (PyPI) for Ed25519.

    nnseg audit export --database audit.sqlite --format log > log.json
    python3 Ops/verify_audit.py log.json --public-key audit-signing.key.pub [--receipts DIR] [--anchor FILE]

Checks: the hash chain (SHA-256 of previous_hash|id|case_id|kind|recorded_at|payload, ids 1, 2, 3 …), every case
row against its case_summary event, every seal (message rebuilt from its fields, Ed25519 signature, key ID, and
the chain head at its event), every case signed (unless --allow-unsealed), and every receipt / anchor line against
the log. Prints one line per finding; exit status 0 when everything checks out, 3 otherwise.
"""
import argparse, base64, hashlib, json, os, sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def load_public_key(path):
    kind, b64 = open(path).read().split()
    if kind != "nnseg-ed25519-public":
        sys.exit(f"{path}: not an nnseg public key")
    raw = base64.b64decode(b64)
    key_id = hashlib.sha256(b"nnseg signing key id|" + raw).hexdigest()[:16]
    return Ed25519PublicKey.from_public_bytes(raw), key_id


def seal_message(kind, event_id, chain_head, case_id, first_event_id):
    first = "" if first_event_id is None else str(first_event_id)
    return f"nnseg audit seal v1|{kind}|{event_id}|{chain_head}|{case_id or ''}|{first}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export")
    ap.add_argument("--public-key")
    ap.add_argument("--receipts", help="folder: every receipt.json under it")
    ap.add_argument("--anchor", help="the anchor file (one receipt per line)")
    ap.add_argument("--allow-unsealed", action="store_true")
    args = ap.parse_args()
    log = json.load(open(args.export))
    if log.get("format") != "nnseg-audit-log v1":
        sys.exit(f"{args.export}: not an nnseg audit log export (nnseg audit export --format log)")
    findings = []
    events = {}
    previous, expected = "genesis", 1
    chain_ok = True
    for e in log["events"]:
        if chain_ok:
            if e["id"] != expected:
                findings.append(("chain", expected, f"event {expected} is missing (next is {e['id']})")); chain_ok = False
            elif e["previous_hash"] != previous:
                findings.append(("chain", e["id"], "previous_hash does not match the event before")); chain_ok = False
            else:
                text = f"{previous}|{e['id']}|{e['case_id']}|{e['kind']}|{e['recorded_at']}|{e['payload']}"
                if hashlib.sha256(text.encode()).hexdigest() != e["hash"]:
                    findings.append(("chain", e["id"], "content does not match its hash")); chain_ok = False
        previous, expected = e["hash"], expected + 1
        events[e["id"]] = e
    for c in log["cases"]:
        e = events.get(c["summary_event_id"])
        if not e or e["kind"] != "case_summary" or e["case_id"] != c["case_id"]:
            findings.append(("case-row", c["summary_event_id"], f"case {c['case_id']} has no sealing summary event")); continue
        payload = json.loads(e["payload"])
        for key in ("status", "model", "series_uid", "profile", "finished_at", "started_at", "error"):
            if payload.get(key) != c.get(key):
                findings.append(("case-row", c["summary_event_id"], f"case {c['case_id']}: {key} differs from its sealed summary"))
    key = key_id = None
    if args.public_key:
        key, key_id = load_public_key(args.public_key)
        sealed = set()
        for s in log["seals"]:
            where = s["event_id"]
            if s["key_id"] != key_id:
                findings.append(("signature", where, f"{s['kind']} seal made with key {s['key_id']}, not {key_id}")); continue
            message = seal_message(s["kind"], s["event_id"], s["chain_head"], s["case_id"], s["first_event_id"])
            try:
                key.verify(bytes.fromhex(s["signature"]), message.encode())
            except (InvalidSignature, ValueError):
                findings.append(("signature", where, f"{s['kind']} seal's signature does not verify")); continue
            e = events.get(s["event_id"])
            if e is None:
                findings.append(("signature", where, "signed event is missing from the log")); continue
            if e["hash"] != s["chain_head"]:
                findings.append(("signature", where, "the chain head here is not the one signed (the chain was rewritten)")); continue
            if s["kind"] == "case":
                if e["kind"] != "case_summary" or e["case_id"] != s["case_id"]:
                    findings.append(("signature", where, "the signed case summary is not here")); continue
                sealed.add(s["event_id"])
        for e in log["events"]:
            if e["kind"] == "case_summary" and e["id"] not in sealed and not args.allow_unsealed:
                findings.append(("signature", e["id"], f"case {e['case_id']} is not signed"))
    receipts = []
    if args.receipts:
        for root, _, files in sorted(os.walk(args.receipts)):
            if "receipt.json" in files:
                path = os.path.join(root, "receipt.json")
                receipts.append(("receipt", path, json.load(open(path))))
    if args.anchor:
        for n, line in enumerate(open(args.anchor), 1):
            if line.strip():
                receipts.append(("anchor", f"anchor line {n}", json.loads(line)))
    for mechanism, source, r in receipts:
        if key is not None:
            message = seal_message("case", r["event_id"], r["chain_head"], r["case_id"], r["first_event_id"])
            try:
                if r["key_id"] != key_id:
                    raise InvalidSignature()
                key.verify(bytes.fromhex(r["signature"]), message.encode())
            except (InvalidSignature, ValueError):
                findings.append((mechanism, r["event_id"], f"{source}: the receipt's signature does not verify")); continue
        e = events.get(r["event_id"])
        if e is None:
            findings.append((mechanism, r["event_id"], f"{source}: case {r['case_id']} (events {r['first_event_id']}-{r['event_id']}) is missing from the log"))
        elif e["case_id"] != r["case_id"] or e["kind"] != "case_summary":
            findings.append((mechanism, r["event_id"], f"{source}: event {r['event_id']} is not case {r['case_id']}'s summary"))
        elif e["hash"] != r["chain_head"]:
            findings.append((mechanism, r["event_id"], f"{source}: the chain head at case {r['case_id']} is not the one receipted"))
        elif events.get(r["first_event_id"], {}).get("case_id") != r["case_id"]:
            findings.append((mechanism, r["event_id"], f"{source}: case {r['case_id']}'s first event is missing"))
    summary = f"{len(log['events'])} event(s), {len(log['cases'])} case(s), {len(log['seals'])} seal(s), {len(receipts)} receipt(s)/anchor line(s)"
    if not findings:
        print(f"audit log intact (independent check): {summary}")
        return 0
    print(f"audit log BROKEN (independent check): {summary}")
    for mechanism, event, detail in findings:
        print(f"  [{mechanism}] event {event}: {detail}")
    return 3


if __name__ == "__main__":
    sys.exit(main())
