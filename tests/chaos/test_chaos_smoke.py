"""The chaos matrix in small: one app (Flask under gunicorn, 3 prefork workers, checkpointing on),
every fault of the matrix once, a few runs each; every invariant must hold (``make chaos`` runs the
full matrix and writes docs/reliability.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from tests.chaos.scenarios import SCENARIOS, Rig, Scenario, run_scenario

pytestmark = [pytest.mark.engine, pytest.mark.chaos]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with Rig(tmp_path_factory.mktemp("chaos"), "flask-gunicorn", checkpointing=True) as rig:
        yield rig


def _often(scenario: Scenario) -> Scenario:
    """The scenario with its proxy fault firing at least every 3rd request (a few runs make few)."""
    faults = {
        side: dataclasses.replace(fault, every=min(fault.every, 3))
        for side in ("to_engine", "to_app")
        if (fault := getattr(scenario, side)) is not None
    }
    return dataclasses.replace(scenario, **faults)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_invariant_holds_under_the_fault(rig: Rig, scenario: Scenario) -> None:
    result = run_scenario(rig, _often(scenario), runs=4, in_flight=4, stuck_after=45)
    assert result.ok, result.summary()
    assert result.completed == result.accepted == 4, result.summary()
    if scenario.name != "none":
        assert result.faults_fired, f"{scenario.name} never fired: {result.summary()}"
