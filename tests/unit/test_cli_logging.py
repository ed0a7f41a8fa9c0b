"""Logging of the command line: the project's loggers at INFO (DEBUG with -v), everything else at
WARNING unless asked for by name (botocore signs requests in its DEBUG lines)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from exfm.cli import setup_logging
from exfm.errors import ExfmError


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    names = ("exfm", "data_checks", "botocore", "great_expectations", "urllib3")
    levels = {n: logging.getLogger(n).level for n in names}
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)
    root.handlers[:] = handlers
    root.setLevel(root_level)


def test_verbose_raises_only_the_projects_loggers() -> None:
    setup_logging(verbose=True)
    assert logging.getLogger("exfm.das").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("data_checks.gate").getEffectiveLevel() == logging.DEBUG
    for name in ("botocore.auth", "great_expectations.core", "urllib3"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name


def test_quiet_by_default_and_another_logger_by_name() -> None:
    setup_logging(verbose=False, loggers=["botocore=DEBUG"])
    assert logging.getLogger("exfm").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("botocore.auth").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("great_expectations").getEffectiveLevel() >= logging.WARNING
    with pytest.raises(ExfmError, match="--log 'botocore': give LOGGER=LEVEL"):
        setup_logging(verbose=False, loggers=["botocore"])
    with pytest.raises(ExfmError, match="give LOGGER=LEVEL"):
        setup_logging(verbose=False, loggers=["botocore=LOUD"])


def test_a_library_that_sets_its_own_level_still_stays_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(verbose=True)
    noisy = logging.getLogger("great_expectations.data_context")
    noisy.setLevel(logging.INFO)  # as Great Expectations does to its own loggers
    noisy.info("Created temporary directory for ephemeral docs site")
    logging.getLogger("botocore.auth").debug("Credential=AKIAEXAMPLE")
    logging.getLogger("exfm.das").debug("scored")
    logging.getLogger("botocore").warning("retrying")
    err = capsys.readouterr().err
    assert "ephemeral" not in err and "AKIA" not in err
    assert "exfm.das: scored" in err and "botocore: retrying" in err
