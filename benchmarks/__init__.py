"""Side-by-side performance harnesses. Benchmarks measure; tests check. See benchmarks/README.md."""
