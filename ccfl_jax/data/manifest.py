"""The manifest CSV: one row per scan, with its hospital, patient and label.

Columns: ``path`` (a file or DICOM series folder, relative to the CSV's folder or absolute),
``hospital`` or ``site``, ``label`` (``covid``/``non_covid``/``1``/``0``), and optionally
``patient_id`` (empty = unknown) and ``mask_path``. Every other column is kept in ``extra``.
The bundled ``data/labels.csv`` is one such manifest; point the pipeline at the full public
datasets (COVID-CT-MD, CC-19, MosMedData, ...) by writing a CSV with these columns.
"""

import csv
import dataclasses
import os
import pathlib

from ccfl_jax import errors

_LABELS = {
    "covid": 1,
    "covid19": 1,
    "covid-19": 1,
    "1": 1,
    "non_covid": 0,
    "non-covid": 0,
    "noncovid": 0,
    "0": 0,
}
_KNOWN = ("path", "hospital", "site", "patient_id", "label", "mask_path")


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    """One scan of a manifest.

    Attributes:
      path: absolute path of the scan (file or series folder).
      hospital: hospital (site) name.
      patient_id: patient id within the hospital, ``None`` when the source gives none.
      label: 1 = covid, 0 = non-covid.
      mask_path: absolute path of a segmentation mask, or ``None``.
      extra: the row's other columns, as strings.
      line: the CSV line number (header = 1), for error messages.
    """

    path: pathlib.Path
    hospital: str
    patient_id: str | None
    label: int
    mask_path: pathlib.Path | None = None
    extra: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)
    line: int = 0


def parse_label(value: str, where: str) -> int:
    """``'covid'``/``'non_covid'``/``'1'``/``'0'`` (case-insensitive) -> 1 or 0.

    Raises:
      ManifestError: any other value.

    Examples:
      >>> parse_label("COVID", "x"), parse_label("non_covid", "x"), parse_label("0", "x")
      (1, 0, 0)
    """
    label = _LABELS.get(str(value).strip().lower())
    if label is None:
        raise errors.ManifestError(
            f"{where}: label {value!r} is not one of covid/non_covid/1/0. Fix the label column."
        )
    return label


def _resolve(base: pathlib.Path, value: str) -> pathlib.Path:
    path = pathlib.Path(value)
    return (path if path.is_absolute() else base / path).resolve()


def read_manifest(csv_path: str | os.PathLike, *, check_files: bool = True) -> list[ManifestRow]:
    """Reads a manifest CSV.

    Args:
      csv_path: the CSV file.
      check_files: raise when a row's scan (or mask) does not exist.

    Returns:
      The rows in file order.

    Raises:
      ScanNotFoundError: the CSV, or (with ``check_files``) a row's file, is missing.
      ManifestError: a required column is missing, or a value cannot be parsed.

    Examples:
      >>> rows = read_manifest("data/labels.csv")
      >>> len(rows), rows[0].hospital, rows[0].patient_id, rows[0].label
      (280, 'site_A_tehran_iran', 'P001', 1)
    """
    csv_path = pathlib.Path(csv_path)
    if not csv_path.is_file():
        raise errors.ScanNotFoundError(f"{csv_path}: manifest not found. Check the path.")
    base = csv_path.resolve().parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        hospital_col = "hospital" if "hospital" in columns else "site"
        missing = [c for c in ("path", hospital_col, "label") if c not in columns]
        if missing:
            raise errors.ManifestError(
                f"{csv_path}: missing column(s) {missing} (found {columns}). A manifest needs "
                "path, hospital (or site) and label; patient_id and mask_path are optional."
            )
        rows = [
            _parse_row(raw, line, base, hospital_col, csv_path)
            for line, raw in enumerate(reader, 2)
        ]
    if check_files:
        for row in rows:
            for path in (row.path, row.mask_path):
                if path is not None and not path.exists():
                    raise errors.ScanNotFoundError(
                        f"{csv_path} line {row.line}: {path} does not exist. Fix the path "
                        "(relative paths start at the manifest's folder) or remove the row."
                    )
    if not rows:
        raise errors.ManifestError(
            f"{csv_path}: the manifest has a header but no rows; add one row per scan."
        )
    return rows


def _parse_row(
    raw: dict, line: int, base: pathlib.Path, hospital_col: str, csv_path
) -> ManifestRow:
    where = f"{csv_path} line {line}"
    path, hospital = (raw.get("path") or "").strip(), (raw.get(hospital_col) or "").strip()
    if not path or not hospital:
        raise errors.ManifestError(f"{where}: empty path or {hospital_col}. Fill the cell.")
    patient = (raw.get("patient_id") or "").strip() or None
    mask = (raw.get("mask_path") or "").strip()
    return ManifestRow(
        path=_resolve(base, path),
        hospital=hospital,
        patient_id=patient,
        label=parse_label(raw.get("label", ""), where),
        mask_path=_resolve(base, mask) if mask else None,
        extra={k: v for k, v in raw.items() if k not in _KNOWN},
        line=line,
    )
