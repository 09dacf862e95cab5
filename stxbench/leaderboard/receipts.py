"""Verification receipts: which entries a re-run has reproduced exactly, with which code, where.

``check --rerun*`` writes one receipt per entry whose re-run on a CPU matched everything it
claims, to ``<root>/<protocol>/receipts/<entry file name>``, and the receipts are committed with
the entries. A receipt is *valid* while the entry still claims what was reproduced (the sha256
of its claims is the same) and the code that computes its numbers is the code the re-run used
(the receipt's code identity, for the packages the entry names, equals the installed code's).
The re-run may have run newer code than the entry was made with: a receipt then shows that the
change (a refactor, a new feature on another path) did not move the entry's numbers, and the
entry stays on the board without being made again (`Problem.redeemable`). CI re-runs exactly
the entries without a valid receipt (``--rerun-unverified``) plus one audit, and with
``--require-verified`` fails, naming them, if any entry is left unverified: nothing passes
that no one re-ran.

The CPU kind a receipt names is for the reader: under a portable pin every x86-64 CPU kind
computes the same bits (docs/numerics.md), so a receipt made on one kind is valid on all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from stxbench.leaderboard.store import Board, Entry
from stxbench.record.schema import Record

RECEIPTS = "receipts"
#: what a receipt file may hold at most (a bigger file is not a receipt; it is refused unread)
MAX_BYTES = 64 * 1024


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: 1: ``code`` was always the entry's own; 2: it is the code the re-run ran, which may be newer
    receipt_version: int = 2
    entry: str  # the entry's file name
    claims_sha256: str  # `claims_digest` of the entry when it was reproduced
    code: dict[str, str]  # the code identity the re-run ran, for the packages the entry names
    cpu_kind: str  # the machine that re-ran it (provenance.cpu_kind)
    pin: str | None  # the protocol's CPU pin
    verified: str  # when (UTC, ISO 8601)
    stxbench_commit: str | None  # the checkout that re-ran it


def claims_digest(record: Record) -> str:
    """sha256 of everything a re-run compares (`rerun.claimed`), canonical JSON."""
    from stxbench.leaderboard.rerun import claimed

    text = json.dumps(claimed(record), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def receipt_path(entry: Entry) -> Path:
    return entry.path.parent.parent / RECEIPTS / entry.path.name


def load(entry: Entry) -> Receipt | None:
    """The entry's receipt, or None where there is none or it is not a receipt."""
    path = receipt_path(entry)
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        return Receipt.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def why_unverified(entry: Entry, installed_code: dict[str, str]) -> str | None:
    """Why the entry has no valid receipt, or None when it has one."""
    record = entry.record
    receipt = load(entry)
    if receipt is None:
        return "no receipt" if not receipt_path(entry).exists() else "its receipt is not a valid receipt"
    if receipt.entry != entry.path.name:
        return f"its receipt is for {receipt.entry}"
    if receipt.claims_sha256 != claims_digest(record):
        return "it claims other figures than the ones its receipt's re-run reproduced"
    if record.provenance.code is None or set(receipt.code) != set(record.provenance.code):
        return "its receipt's re-run ran other packages than the entry names"
    changed = sorted(p for p, digest in receipt.code.items() if installed_code.get(p) != digest)
    if changed:
        return f"the code of {', '.join(changed)} changed since its receipt's re-run"
    return None


def write(entry: Entry, cpu_kind: str, verified: str, commit: str | None, installed_code: dict[str, str]) -> Path:
    """The receipt of a re-run of ``entry`` under ``installed_code`` that reproduced it."""
    record = entry.record
    ran = {package: installed_code.get(package, digest) for package, digest in (record.provenance.code or {}).items()}
    receipt = Receipt(entry=entry.path.name, claims_sha256=claims_digest(record), code=ran,
                      cpu_kind=cpu_kind, pin=record.provenance.cpu_numerics.pin if record.provenance.cpu_numerics else None,
                      verified=verified, stxbench_commit=commit)
    path = receipt_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(receipt.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def orphans(board: Board) -> list[Path]:
    """Receipt files whose entry is gone (a removed or renamed entry leaves its receipt behind)."""
    found = []
    for protocol in board.protocols():
        folder = board.root / protocol / RECEIPTS
        if folder.is_dir():
            found += [p for p in sorted(folder.iterdir()) if not (board.entries_dir(protocol) / p.name).is_file()]
    return found
