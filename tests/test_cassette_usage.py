"""The suite-wide usage report (llmock_proxy/cassette/usage.py): noting, merging,
JSON, and pruning unused interactions through the project's own cassette save."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette, Interaction, Payload, Request, Response
from llmock_proxy.cassette.usage import (
    REPORT_VERSION,
    CassetteSnapshot,
    UsageReport,
    UsageReportError,
    digest_bytes,
    prune,
)
from llmock_proxy.cassette.writer import CassetteWriter


def chat(question: str, answer: str) -> Interaction:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
    reply = {
        "id": f"chatcmpl-{abs(hash(question)) % 10_000}",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
    }
    return Interaction(
        request=Request(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            {"content-type": "application/json", "authorization": "Bearer sk-test-usage"},
            Payload.json(body),
        ),
        response=Response(200, {"content-type": "application/json"}, Payload.json(reply)),
        match={"family": "openai.chat", "model": "gpt-4o-mini"},
        recorded_at="2025-01-01T00:00:00Z",
    )


def recorded(path: Path, *questions: str) -> Path:
    """A cassette written the way the recorder writes one (append by append)."""
    writer = CassetteWriter()
    for q in questions:
        writer.append(path, [chat(q, f"answer to {q}")])
    return path


def questions_in(path: Path) -> list[str]:
    return [i.request.json["messages"][0]["content"] for i in cassette_store.load(path, cache=None).interactions]


# -- noting and reading the result ----------------------------------------------------------


def test_unused_lists_indices_per_file_and_says_when_a_whole_file_is_unused(tmp_path: Path) -> None:
    a = recorded(tmp_path / "cassettes" / "test_a" / "one.yaml", "q0", "q1", "q2")
    b = recorded(tmp_path / "cassettes" / "shared.yaml", "s0", "s1")
    c = recorded(tmp_path / "cassettes" / "test_a" / "all_used.yaml", "c0")
    report = UsageReport(root=str(tmp_path))
    report.note(a, [1])
    report.note(a, [2])  # another test used another interaction of the same file
    report.note(b, [])
    report.note(c, [0])

    unused = {u.path: u for u in report.unused()}
    assert sorted(unused) == ["cassettes/shared.yaml", "cassettes/test_a/one.yaml"]
    assert unused["cassettes/test_a/one.yaml"].indices == [0]
    assert not unused["cassettes/test_a/one.yaml"].whole_file
    assert unused["cassettes/shared.yaml"].indices == [0, 1]
    assert unused["cassettes/shared.yaml"].whole_file
    lines = report.describe_unused()
    assert any("cassettes/shared.yaml" in line and "no interaction used" in line for line in lines)
    assert any("cassettes/test_a/one.yaml" in line and "interactions[0]" in line for line in lines)


def test_note_refuses_an_index_the_file_does_not_have(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0")
    with pytest.raises(ValueError, match="a.yaml"):
        UsageReport(root=str(tmp_path)).note(a, [3])


def test_a_snapshot_taken_at_load_time_is_what_the_report_keeps(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    snapshot = CassetteSnapshot.of_file(a)
    recorded(a, "q2")  # the file grows after the test loaded it
    entry = UsageReport(root=str(tmp_path)).note(a, [0], snapshot)
    assert entry.interactions == 2
    assert entry.digest == snapshot.digest != digest_bytes(a.read_bytes())


def test_paths_are_relative_to_the_root_in_slash_form(tmp_path: Path) -> None:
    report = UsageReport(root=str(tmp_path / "project"))
    assert report.key_for(tmp_path / "project" / "cassettes" / "x.yaml") == "cassettes/x.yaml"
    assert report.key_for(tmp_path / "shared" / "x.yaml") == "../shared/x.yaml"


# -- merging ---------------------------------------------------------------------------------


def test_merge_unions_what_each_worker_used(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1", "q2", "q3")
    b = recorded(tmp_path / "b.yaml", "b0")
    gw0 = UsageReport(root=str(tmp_path))
    gw0.note(a, [0])
    gw1 = UsageReport(root=str(tmp_path))
    gw1.note(a, [2])
    gw1.note(b, [0])
    merged = UsageReport.merged([gw0, gw1])
    assert merged.cassettes["a.yaml"].used == {0, 2}
    assert [(u.path, u.indices) for u in merged.unused()] == [("a.yaml", [1, 3])]
    # Merging is order-independent.
    assert gw1.merge(gw0).to_dict() == merged.to_dict()


def test_a_file_used_in_two_versions_is_left_out_of_unused_and_of_pruning(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    gw0 = UsageReport(root=str(tmp_path))
    gw0.note(a, [0])
    recorded(a, "q2")  # re-recorded while the other worker ran
    gw1 = UsageReport(root=str(tmp_path))
    gw1.note(a, [2])
    merged = gw0.merge(gw1)
    assert merged.unused() == []
    assert merged.changed_during_run() == ["a.yaml"]
    before = a.read_bytes()
    result = prune(merged, tmp_path)
    assert [o.action for o in result.outcomes] == ["skipped"]
    assert "a.yaml" in result.outcomes[0].message
    assert a.read_bytes() == before


def test_reports_from_different_roots_do_not_merge(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="different roots"):
        UsageReport(root=str(tmp_path / "x")).merge(UsageReport(root=str(tmp_path / "y")))


# -- JSON ------------------------------------------------------------------------------------


def test_json_round_trip_is_versioned_stable_and_readable(tmp_path: Path) -> None:
    a = recorded(tmp_path / "cassettes" / "a.yaml", "q0", "q1")
    b = recorded(tmp_path / "cassettes" / "b.yaml", "b0")
    report = UsageReport(root=str(tmp_path))
    report.note(b, [0])
    report.note(a, [1])
    target = report.write(tmp_path / "out" / "usage.json")

    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["version"] == REPORT_VERSION
    assert list(data["cassettes"]) == ["cassettes/a.yaml", "cassettes/b.yaml"]
    assert data["cassettes"]["cassettes/a.yaml"] == {
        "digest": digest_bytes(a.read_bytes()),
        "interactions": 2,
        "used": [1],
    }
    again = UsageReport.read(target)
    assert again == report
    assert again.dumps() == target.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a usage report"),
        ('{"version": 2, "cassettes": {}}', "version"),
        ('{"version": 1}', "cassettes"),
        ('{"version": 1, "cassettes": {"a.yaml": {"interactions": 1, "digest": null, "used": [4]}}}', "out of range"),
        ('{"version": 1, "cassettes": {"a.yaml": {"interactions": 1, "digest": "md5:x", "used": []}}}', "digest"),
    ],
)
def test_a_corrupt_report_names_the_file_and_the_problem(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "usage.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageReportError) as info:
        UsageReport.read(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_a_missing_report_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UsageReportError, match="nope.json"):
        UsageReport.read(tmp_path / "nope.json")


def test_a_failed_report_write_leaves_the_previous_report_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = recorded(tmp_path / "a.yaml", "q0")
    first = UsageReport(root=str(tmp_path))
    target = first.write(tmp_path / "usage.json")
    before = target.read_bytes()
    second = UsageReport(root=str(tmp_path))
    second.note(a, [0])
    _fail_renames(monkeypatch)
    with pytest.raises(OSError):
        second.write(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


# -- pruning ---------------------------------------------------------------------------------


def report_for(root: Path, used: dict[Path, list[int]]) -> UsageReport:
    report = UsageReport(root=str(root))
    for path, indices in used.items():
        report.note(path, indices)
    return report


def test_prune_drops_the_unused_interactions_and_keeps_the_rest_as_they_were(tmp_path: Path) -> None:
    a = recorded(tmp_path / "cassettes" / "a.yaml", "q0", "q1", "q2", "q3")
    original = cassette_store.load(a, cache=None)
    report = report_for(tmp_path, {a: [1, 3]})

    result = prune(report, tmp_path)

    assert [(o.path, o.action, o.dropped, o.kept) for o in result.outcomes] == [("cassettes/a.yaml", "pruned", [0, 2], 2)]
    assert result.interactions_dropped == 2 and result.files_changed == 1
    assert not result.outcomes[0].reformatted
    after = cassette_store.load(a, cache=None)
    assert [i.to_dict() for i in after.interactions] == [original.interactions[1].to_dict(), original.interactions[3].to_dict()]
    # The recorder's file was already in the canonical form: only the dropped interactions' text goes.
    assert a.read_text(encoding="utf-8") == cassette_store.dumps(Cassette([original.interactions[1], original.interactions[3]]))


def test_prune_keeps_the_meta_block(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    cassette_store.save(Cassette([chat("q0", "a0"), chat("q1", "a1")], meta={"recorded_with": "a note", "ticket": 12}), a)
    prune(report_for(tmp_path, {a: [0]}), tmp_path)
    after = cassette_store.load(a, cache=None)
    assert after.meta == {"recorded_with": "a note", "ticket": 12}
    assert questions_in(a) == ["q0"]


def test_prune_says_when_a_hand_edited_file_is_rewritten_in_the_canonical_form(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    a.write_text("# recorded for the weather tests\n" + a.read_text(encoding="utf-8"), encoding="utf-8")
    result = prune(report_for(tmp_path, {a: [1]}), tmp_path)
    (outcome,) = result.outcomes
    assert outcome.action == "pruned" and outcome.reformatted
    assert "canonical form" in outcome.message
    assert questions_in(a) == ["q1"]


def test_dry_run_writes_nothing_and_reports_the_same(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    b = recorded(tmp_path / "b.yaml", "b0")
    report = report_for(tmp_path, {a: [0], b: []})
    before = {p: p.read_bytes() for p in (a, b)}
    dry = prune(report, tmp_path, dry_run=True, delete_empty=True)
    assert {p: p.read_bytes() for p in (a, b)} == before
    real = prune(report, tmp_path, delete_empty=True)
    assert [(o.path, o.action, o.dropped) for o in dry.outcomes] == [(o.path, o.action, o.dropped) for o in real.outcomes]
    assert not b.exists() and questions_in(a) == ["q0"]


def test_a_file_changed_since_the_report_is_skipped_and_named(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    b = recorded(tmp_path / "b.yaml", "b0", "b1")
    report = report_for(tmp_path, {a: [0], b: [1]})
    recorded(a, "q2")  # re-recorded since the run
    changed = a.read_bytes()

    result = prune(report, tmp_path)

    by_path = {o.path: o for o in result.outcomes}
    assert by_path["a.yaml"].action == "skipped"
    assert str(a) in by_path["a.yaml"].message and "changed since the report" in by_path["a.yaml"].message
    assert a.read_bytes() == changed
    assert by_path["b.yaml"].action == "pruned" and questions_in(b) == ["b1"]
    assert result.skipped == [by_path["a.yaml"]]


def test_a_file_gone_since_the_report_is_skipped(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    report = report_for(tmp_path, {a: [0]})
    a.unlink()
    (outcome,) = prune(report, tmp_path).outcomes
    assert outcome.action == "skipped" and "no such file" in outcome.message


def test_a_file_nobody_used_is_kept_unless_deleting_empty_files_is_asked_for(tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    report = report_for(tmp_path, {a: []})
    before = a.read_bytes()
    (kept,) = prune(report, tmp_path).outcomes
    assert kept.action == "kept-empty" and "--delete-empty" in kept.message
    assert a.read_bytes() == before
    (deleted,) = prune(report, tmp_path, delete_empty=True).outcomes
    assert deleted.action == "deleted" and deleted.dropped == [0, 1]
    assert not a.exists()


def test_the_report_root_is_the_callers_choice(tmp_path: Path) -> None:
    """A report names files relative to its root, so it applies to another checkout."""
    here = recorded(tmp_path / "here" / "cassettes" / "a.yaml", "q0", "q1")
    report = report_for(tmp_path / "here", {here: [1]})
    there = tmp_path / "there" / "cassettes" / "a.yaml"
    there.parent.mkdir(parents=True)
    there.write_bytes(here.read_bytes())
    prune(report, tmp_path / "there")
    assert questions_in(there) == ["q1"]
    assert questions_in(here) == ["q0", "q1"]


def test_a_failed_rewrite_leaves_the_cassette_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    report = report_for(tmp_path, {a: [1]})
    before = a.read_bytes()
    _fail_renames(monkeypatch)
    (outcome,) = prune(report, tmp_path).outcomes
    monkeypatch.undo()
    assert outcome.action == "skipped" and "cannot write" in outcome.message
    assert a.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_a_rewrite_the_redaction_scan_refuses_writes_nothing(tmp_path: Path) -> None:
    """A key pasted in by hand where redaction cannot rewrite it (a mapping key)."""
    a = recorded(tmp_path / "a.yaml", "q0", "q1")
    text = a.read_text(encoding="utf-8").replace("content: q1", "content: q1\n        sk-test-pastedbyhand0001: 1", 1)
    a.write_text(text, encoding="utf-8")
    assert questions_in(a) == ["q0", "q1"]  # still a cassette replay loads
    report = report_for(tmp_path, {a: [1]})
    (outcome,) = prune(report, tmp_path).outcomes
    assert outcome.action == "skipped" and str(a) in outcome.message
    assert a.read_text(encoding="utf-8") == text


# -- helpers ---------------------------------------------------------------------------------


def _fail_renames(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk refuses the final rename (full disk, read-only mount...)."""

    def refuse(src: Any, dst: Any, **_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)


def _leftovers(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.tmp"))
