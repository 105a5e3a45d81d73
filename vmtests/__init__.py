"""QEMU-booted end-to-end tests for tether (run with ``pytest vmtests``); see vmtests/README.md."""
