"""Write one data file row by row while recording where each row is, so losses are counted independently.

The generator knows every data row it wrote (its physical lines and how many records it holds), which
rows are planted bad rows that a loader must report, and which rows must load exactly as written
("probes"). `tests.badinputs.checks.account` compares that with what a loader returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# faithful: a valid row that must load exactly as written (reporting it is wrong too);
# faithful_or_reported: either load it exactly as written or report it, never change it silently.
ProbePolicy = Literal["faithful", "faithful_or_reported"]


@dataclass
class FileBuilder:
    """One file's bytes plus the line span of every data row.

    Args:
        name: file name inside the dataset directory.
        encoding: how str rows are encoded.
    """

    name: str
    encoding: str = "utf-8"
    parts: list[bytes] = field(default_factory=list)
    line: int = 1
    rows: list[list[int]] = field(default_factory=list)  # [first line, last line, records]
    must_report: list[list[Any]] = field(default_factory=list)  # [row index, why]
    may_report: list[int] = field(default_factory=list)  # rows a loader may load (as anything) or report
    probes: list[dict[str, Any]] = field(default_factory=list)

    def _bytes(self, text: str | bytes) -> bytes:
        return text if isinstance(text, bytes) else text.encode(self.encoding)

    def raw(self, text: str | bytes) -> FileBuilder:
        """Bytes that are not a data row (a header, blank lines, a BOM); their lines still count."""
        data = self._bytes(text)
        self.parts.append(data)
        self.line += data.count(b"\n")
        return self

    def header(self, text: str | bytes) -> FileBuilder:
        """A header line (not a data row)."""
        return self.raw(self._bytes(text) + b"\n")

    def row(self, text: str | bytes, records: int = 1, bad: str = "", probe: dict[str, Any] | None = None,
            end: bytes = b"\n", odd: bool = False) -> FileBuilder:
        """One data row.

        Args:
            text: the row without its line end (it may contain quoted newlines).
            records: how many records the row holds (a RecBole sequence row holds several events).
            bad: why the row is bad; a bad row must be reported (skip) or stop the load (raise).
            probe: what the row must load as (see `tests.badinputs.checks.probe_holds`), with a "policy".
            end: the line end (b"" leaves the file without a final newline).
            odd: loading the row (as anything) and reporting it are both correct; only losing it is not.
        """
        data = self._bytes(text) + end
        last = self.line + self._bytes(text).count(b"\n")
        index = len(self.rows)
        self.rows.append([self.line, last, records])
        if bad:
            self.must_report.append([index, bad])
        if odd:
            self.may_report.append(index)
        if probe is not None:
            self.probes.append({**probe, "row": index})
        self.parts.append(data)
        self.line += data.count(b"\n")
        return self

    def write(self, directory: Path) -> dict[str, Any]:
        """Write the file into `directory`; returns its accounting record."""
        (directory / self.name).write_bytes(b"".join(self.parts))
        return {"rows": self.rows, "must_report": self.must_report, "may_report": self.may_report,
                "probes": self.probes}


def accounting(files: list[FileBuilder], directory: Path, refusable: bool = False) -> dict[str, Any]:
    """Write `files` into `directory` and return the dataset's accounting record.

    Args:
        files: the builders of every file of the dataset.
        directory: the dataset directory (created).
        refusable: refusing the whole dataset with one clear error is a correct outcome (an empty file,
            an unreadable header), in skip mode too.
    """
    directory.mkdir(parents=True, exist_ok=True)
    return {"dir": str(directory), "refusable": refusable, "files": {f.name: f.write(directory) for f in files}}
