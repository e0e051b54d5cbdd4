"""Peer servers for benchmarks/compare.py, each run by the interpreter of its own virtual
environment (``make peers``): NVIDIA Triton through PyTriton, and Ray Serve. They import nothing of
Ballast's, only their framework, onnxruntime and numpy."""
