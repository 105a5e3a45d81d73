"""systemd units and the generator, shipped as package data of ``tether.units``."""
