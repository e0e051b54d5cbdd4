"""The gRPC code beside services/oip/inference.proto is what ``make proto`` makes from it now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


def test_the_generated_code_is_current(tmp_path: Path) -> None:
    (tmp_path / "services" / "oip").mkdir(parents=True)
    proto = Path("services/oip/inference.proto")
    (tmp_path / proto).write_bytes((ROOT / proto).read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            str(proto),
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in GENERATED:
        made = (tmp_path / "services" / "oip" / name).read_text()
        assert made == (ROOT / "services" / "oip" / name).read_text(), f"{name} is stale: run make proto"
