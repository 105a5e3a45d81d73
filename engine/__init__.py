"""The servicing engine: clean install, A/B staging, bootloader switch, commit, rollback."""
