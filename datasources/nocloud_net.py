"""NoCloud's network half (``seedfrom=http...``), registered on its own so it runs in the network stage."""

from tether.datasources.nocloud import NoCloudNet

DATASOURCE = NoCloudNet
