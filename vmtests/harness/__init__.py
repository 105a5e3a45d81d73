"""The VM test harness: image cache, disk builder, seeds, metadata server, QEMU runner, guest verdicts.

Only the standard library is used here, so ``scripts/demo`` and ``benchmarks/`` can import it with Debian's
``/usr/bin/python3`` before any virtual environment exists.
"""
