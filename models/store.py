"""Put an ONNX model into BentoML's model store, where services load models from (never from a path
or URL in a request). ``python -m models.store NAME FILE.onnx`` prints the new tag."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def store_onnx(
    name: str,
    onnx: bytes | Path,
    *,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> str:
    """Create a new version of model ``name`` holding ``model.onnx`` (and ``files``: name -> text)."""
    import bentoml

    data = onnx if isinstance(onnx, bytes) else Path(onnx).read_bytes()
    with bentoml.models.create(name, labels=dict(labels or {}), metadata=dict(metadata or {})) as model:
        Path(model.path_of("model.onnx")).write_bytes(data)
        for filename, text in (files or {}).items():
            Path(model.path_of(filename)).write_text(text)
    return str(model.tag)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m models.store NAME FILE.onnx")
    print(store_onnx(sys.argv[1], Path(sys.argv[2])))
