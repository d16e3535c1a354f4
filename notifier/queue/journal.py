"""A consumer's note of what it is sending, kept on local disk so a killed consumer never causes a second send.

Before the step after which a message may have arrived the consumer writes `B` (begun); after the channel
confirms it writes `S` (sent). Writes go straight to the kernel (no userspace buffer), so they survive a
SIGKILL of the process. When a consumer dies, its pool reads the journal: `S` entries are recorded as
sent, `B` entries without `S` on channels where a repeat would show (email, Telegram) are failed as
`interrupted` instead of being sent again, and everything else it held goes back to the queue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JournalEntries:
    sent: dict[str, str] = field(default_factory=dict)  # delivery id -> claim token
    interrupted: dict[str, str] = field(default_factory=dict)  # begun, not known to be sent, not repeatable


class Journal:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.closed = False

    def _write(self, line: str) -> None:
        # Once closed its descriptor may be another file's: a batch still running past the shutdown drain
        # must not write there, nor send without a journal.
        if self.closed:
            raise RuntimeError("the journal is closed: the consumer is stopping")
        os.write(self._fd, line.encode())

    def begin(self, delivery_id: str, token: str, repeat_safe: bool) -> None:
        self._write(f"B {delivery_id} {token} {int(repeat_safe)}\n")

    def sent(self, delivery_id: str, token: str) -> None:
        self._write(f"S {delivery_id} {token}\n")

    def truncate(self) -> None:
        """Forget everything: call only when every entry's outcome is in the database (a closed journal was
        kept or removed by its close)."""
        if not self.closed:
            os.ftruncate(self._fd, 0)

    def close(self, remove: bool) -> None:
        self.closed = True
        os.close(self._fd)
        if remove:
            self.path.unlink(missing_ok=True)


def read_journal(path: Path) -> JournalEntries:
    entries = JournalEntries()
    begun: dict[str, tuple[str, bool]] = {}
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return entries
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "B":
            begun[parts[1]] = (parts[2], parts[3] == "1")
        elif len(parts) == 3 and parts[0] == "S":
            entries.sent[parts[1]] = parts[2]
    for delivery_id, (token, repeat_safe) in begun.items():
        if delivery_id not in entries.sent and not repeat_safe:
            entries.interrupted[delivery_id] = token
    return entries


def journal_path(directory: str, consumer_id: str) -> Path:
    return Path(directory).resolve() / f"{consumer_id}.journal"
