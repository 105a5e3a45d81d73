"""The user-data pipeline: cloud-init's user-data formats turned into merged cloud-config, scripts and boothooks.

Importing this package is cheap: MIME parsing (``email``), templates (``jinja2``) and archives load only when
the data needs them. See docs/userdata.md.
"""

from tether.userdata.model import Part, Processed, Script
from tether.userdata.pipeline import process

__all__ = ["Part", "Processed", "Script", "process"]
