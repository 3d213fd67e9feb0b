"""The report writers, registered in one place.

A writer turns one run's typed results (:class:`~smart_conformance.results.RunResults`) into files in one folder:
``destination = "reports"`` writes into ``--smart-reports`` (the CLI's ``--reports``), ``"allure"`` into
``--alluredir``. The plugin calls every writer whose folder was given, once per run, on the controller. A new report
format is one module with a writer class plus one line in :data:`WRITERS`.

Not writers here: junit.xml is pytest's own (the plugin keeps its counts in line with the exit status and adds the
``smart_outcome``/``smart_level``/``smart_warning`` properties); Allure's per-test results are allure-pytest's (the
plugin adds labels and attachments while the test runs); the console summary is ``summary.render_console``, printed
in pytest's terminal summary from the same RunResults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from smart_conformance.report.allure_labels import AllureRunFilesWriter
from smart_conformance.report.checklist import ChecklistAllureWriter
from smart_conformance.report.sarif import SarifWriter
from smart_conformance.report.summary import SummaryWriter
from smart_conformance.results import RunResults

Destination = Literal["reports", "allure"]


class ReportWriter(Protocol):
    destination: Destination

    def write(self, run: RunResults, out: Path) -> None:
        """Write this format's file(s) for ``run`` into the folder ``out`` (it may not exist yet)."""


WRITERS: tuple[ReportWriter, ...] = (
    SummaryWriter(),  # summary.json + summary.md
    SarifWriter(),  # results.sarif
    AllureRunFilesWriter(),  # environment.properties, executor.json, categories.json
    ChecklistAllureWriter(),  # the Safety Checklist page (after the run files: it extends environment.properties)
)


def write_reports(run: RunResults, *, reports: Path | None, allure: Path | None) -> None:
    """Every registered writer whose destination folder was given."""
    folders: dict[str, Path | None] = {"reports": reports, "allure": allure}
    for writer in WRITERS:
        out = folders[writer.destination]
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            writer.write(run, out)
