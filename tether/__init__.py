"""tether: first-boot and A/B servicing agent for Linux hosts."""

__version__ = "0.1.0"
