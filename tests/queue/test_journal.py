"""The consumer's journal (queue/journal.py): what it records survives the process, and once closed it refuses
to record (its descriptor may already be another file's)."""

from __future__ import annotations

import os

import pytest

from notifier.queue.journal import Journal, read_journal


def test_a_closed_journal_refuses_to_record_and_truncating_it_is_a_no_op(tmp_path):
    journal = Journal(tmp_path / "c.journal")
    journal.begin("d1", "t1", repeat_safe=False)
    journal.close(remove=False)
    other = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT, 0o600)  # may reuse the journal's descriptor
    try:
        with pytest.raises(RuntimeError):
            journal.begin("d2", "t2", repeat_safe=False)
        with pytest.raises(RuntimeError):
            journal.sent("d1", "t1")
        journal.truncate()
    finally:
        os.close(other)
    assert (tmp_path / "other").read_bytes() == b""
    assert read_journal(tmp_path / "c.journal").interrupted == {"d1": "t1"}
