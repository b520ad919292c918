"""Benchmarks for playspeak (not part of the test suite): first sound, and playspeak against the
usual ways of playing streamed TTS. See docs/benchmarks.md (its Method).
"""
