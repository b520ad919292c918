"""Support for playspeak's tests and benchmarks (and for testing a set-up by hand)."""
