"""Put an ONNX model into BentoML's model store, where services load models from (never from a path
or URL in a request)::

    python -m models.store NAME FILE.onnx [--reference TRAIN.csv] [--target COLUMN] [--metadata KEY=VALUE ...]

prints the new tag (``NAME:version``). With ``--reference``, the training data (a CSV file with a header
row; ``--target`` names a label column to leave out) is summarised per feature in ``reference.json``
(mean, std, min, max, quantiles) and a sample of up to 2,000 of its rows is kept in
``reference_sample.npy``: services that learn their ranges (``learn_ranges=True``) read them, and
warn at start-up when the learned ranges would refuse some of those rows.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_ROWS = 2_000
QUANTILES = (1, 5, 25, 50, 75, 95, 99)


def reference_stats(x: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Per-feature statistics of training data ``x`` (rows first): validation ranges, drift later."""
    quantiles = np.quantile(x, [q / 100 for q in QUANTILES], axis=0)
    return {
        name: {
            "mean": float(x[:, i].mean()),
            "std": float(x[:, i].std()),
            "min": float(x[:, i].min()),
            "max": float(x[:, i].max()),
            "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, quantiles[:, i], strict=True)},
        }
        for i, name in enumerate(names)
    }


def sample_rows(x: np.ndarray, rows: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """Up to ``rows`` rows of ``x``, drawn without replacement (all of them when there are fewer)."""
    if len(x) <= rows:
        return x.astype(np.float32)
    chosen = np.random.default_rng(seed).choice(len(x), size=rows, replace=False)
    return x[np.sort(chosen)].astype(np.float32)


def read_csv(path: Path, target: str | None = None) -> tuple[list[str], np.ndarray]:
    """Feature names (the header, less ``target``) and the rows as numbers."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [row for row in reader if row]
    if target is not None and target not in header:
        raise SystemExit(f"--target {target!r} is not a column of {path} ({header})")
    keep = [i for i, name in enumerate(header) if name != target]
    try:
        values = np.array([[float(row[i]) for i in keep] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise SystemExit(f"{path}: every feature column must be numeric ({exc})") from None
    return [header[i] for i in keep], values


def store_onnx(
    name: str,
    onnx: bytes | Path,
    *,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    files: Mapping[str, str | bytes] | None = None,
) -> str:
    """Create a new version of model ``name`` holding ``model.onnx`` (and ``files``: name -> content).
    The metadata records the file's SHA-256."""
    import bentoml

    data = onnx if isinstance(onnx, bytes) else Path(onnx).read_bytes()
    described = {**(metadata or {}), "onnx_sha256": hashlib.sha256(data).hexdigest()}  # the file's, always
    with bentoml.models.create(name, labels=dict(labels or {}), metadata=described) as model:
        Path(model.path_of("model.onnx")).write_bytes(data)
        for filename, content in (files or {}).items():
            target = Path(model.path_of(filename))
            target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    return str(model.tag)


def reference_files(x: np.ndarray, names: Sequence[str]) -> dict[str, str | bytes]:
    """``reference.json`` and ``reference_sample.npy`` for training data ``x``."""
    buffer = io.BytesIO()
    np.save(buffer, sample_rows(x), allow_pickle=False)
    stats = json.dumps(reference_stats(x, names), indent=1)
    return {"reference.json": stats, "reference_sample.npy": buffer.getvalue()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the model's name in the store (a service names it in its models=[...])")
    parser.add_argument("onnx", type=Path, help="the .onnx file")
    parser.add_argument("--reference", type=Path, help="training data, CSV with a header row")
    parser.add_argument("--target", help="a label column of the CSV to leave out")
    parser.add_argument("--metadata", nargs="*", default=[], metavar="KEY=VALUE", help="kept with the version")
    args = parser.parse_args(argv)
    if not args.onnx.is_file():
        parser.error(f"{args.onnx} is not a file")
    metadata = dict(item.split("=", 1) for item in args.metadata if "=" in item)
    files: dict[str, str | bytes] = {}
    if args.reference is not None:
        names, x = read_csv(args.reference, args.target)
        files = reference_files(x, names)
        metadata.update({"features": names, "train_rows": len(x)})
    print(store_onnx(args.name, args.onnx, metadata=metadata, files=files))


if __name__ == "__main__":
    main()
