"""Progress events: increasing, named by the core's phases; callback errors end the call."""

from __future__ import annotations

from pathlib import Path

import pytest

import acikit


def test_events_increase_per_phase(store: acikit.Store, big_aci: Path) -> None:
    events: list[acikit.Progress] = []
    store.import_file(big_aci, progress=events.append)
    phases = [e.phase for e in events]
    assert "import" in phases and set(phases) <= set(acikit.PHASES)
    imports = [e for e in events if e.phase == "import"]
    assert len(imports) >= 2
    dones = [e.done for e in imports]
    assert dones == sorted(dones) and dones[-1] == big_aci.stat().st_size
    assert all(e.total == big_aci.stat().st_size for e in imports)


def test_export_and_build_report_progress(
    tmp_path: Path, store: acikit.Store, small_aci: Path
) -> None:
    store.import_file(small_aci)
    events: list[acikit.Progress] = []
    store.export("example.com/hello", tmp_path / "x.aci", progress=events.append)
    assert events and all(e.phase == "export" for e in events)
    assert events[-1].done == events[-1].total


def test_a_failing_callback_cancels_the_call(store: acikit.Store, big_aci: Path) -> None:
    def fail(event: acikit.Progress) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        store.import_file(big_aci, progress=fail)
    assert store.list() == []
    assert store.fsck().stale_staging == 0


def test_progress_true_draws_a_tqdm_bar(
    store: acikit.Store, small_aci: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.import_file(small_aci, progress=True)
    assert "import" in capsys.readouterr().err


def test_progress_must_be_callable(store: acikit.Store, small_aci: Path) -> None:
    with pytest.raises(TypeError):
        store.import_file(small_aci, progress="yes")  # type: ignore[arg-type]
