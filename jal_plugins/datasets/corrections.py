"""Label corrections: a reviewed ``decisions.csv`` applied to a user-data source, never written back.

The file has the header ``index,id,given_label,action,label`` (more columns are allowed and ignored);
one row per reviewed example, matched by ``id``, the name ``jal-plugins audit`` writes in
``label_issues.csv`` (``ArrayDataset.example_ids``). ``action`` is ``keep``, ``accept`` or ``relabel``
(the example takes ``label``, a class name as in the source) or ``drop`` (the example leaves the
data). ``given_label`` must be the source's label for that id: a file made for another version of
the data is refused rather than applied to the wrong rows.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = ("index", "id", "given_label", "action", "label")
ACTIONS = ("keep", "accept", "relabel", "drop")
NEW_LABEL = ("accept", "relabel")


@dataclass(frozen=True)
class Decision:
    line: int  # in the file, the header being line 1
    id: str
    given_label: str
    action: str
    label: str


@dataclass(frozen=True)
class Corrections:
    """The decisions of one file (``read``), checked for syntax; ``apply`` checks them against a source."""

    file: str
    decisions: tuple[Decision, ...]

    def apply(self, ids: list[str], labels: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
        """``(labels after the decisions, rows kept, summary)`` for the rows named ``ids`` with class codes
        ``labels`` into ``names``; ``summary`` is ``{"file", "relabelled", "dropped"}``."""
        row = {example: r for r, example in enumerate(ids)}
        code = {name: k for k, name in enumerate(names)}
        given = np.asarray(labels, np.int64)
        labels, keep = given.copy(), np.ones(len(ids), bool)
        for d in self.decisions:
            if d.id not in row:
                raise _error(self.file, d, "no example of the source has this id (ids as in the audit's label_issues.csv)")
            r = row[d.id]
            if d.given_label != names[given[r]]:
                raise _error(self.file, d, f"given_label {d.given_label!r}, but the source labels it "
                                           f"{names[given[r]]!r}: the file belongs to another version of the data")  # fmt: skip
            if d.action in NEW_LABEL:
                if d.label not in code:
                    raise _error(self.file, d, f"unknown class {d.label!r} (classes: {', '.join(names)})")
                labels[r] = code[d.label]
            keep[r] = d.action != "drop"
        summary = {"file": self.file, "relabelled": int((labels != given).sum()), "dropped": int((~keep).sum())}
        return labels, keep, summary


def _error(file: str, decision: Decision, problem: str) -> ValueError:
    return ValueError(f"corrections {file!r} line {decision.line} (id {decision.id!r}): {problem}")


def read(path) -> Corrections:
    """The decisions in the CSV file ``path``; a missing column, an unknown action, a relabel without a
    label or an id given twice is a ValueError naming the first such line."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"corrections file {str(path)!r} does not exist")
    file = file.resolve()
    with open(file, newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's byte-order mark
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"corrections {str(file)!r} lacks the column(s) {', '.join(missing)} "
                             f"(header: {','.join(COLUMNS)})")
        decisions, seen = [], {}
        for decision in (Decision(reader.line_num, r["id"], r["given_label"], r["action"], r["label"]) for r in reader):
            if decision.action not in ACTIONS:
                raise _error(str(file), decision, f"unknown action {decision.action!r} (one of {', '.join(ACTIONS)})")
            if decision.action in NEW_LABEL and not decision.label:
                raise _error(str(file), decision, f"action {decision.action!r} needs a label")
            if decision.id in seen:
                raise _error(str(file), decision, f"the id is already decided on line {seen[decision.id]}")
            seen[decision.id] = decision.line
            decisions.append(decision)
    return Corrections(str(file), tuple(decisions))


def digest(path) -> str:
    """A short hash of the file's bytes: runs with different decisions are different runs."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"corrections file {str(path)!r} does not exist")
    return hashlib.sha256(file.read_bytes()).hexdigest()[:16]
