"""Benchmarks for playspeak (not part of the test suite): first sound, and playspeak against the
usual ways of playing streamed TTS. See README.md, "Benchmarks", and /work/shared/BENCH_METHOD.md.
"""
