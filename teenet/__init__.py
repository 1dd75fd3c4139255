"""teenet: a data-collaboration network of attested TEE nodes.

The core package holds what every role shares: the protocol, attestation, key
negotiation and sealing. Roles live in `teenet.node`, `teenet.coordinator`, the
functions in `teenet.models` and the command line in `teenet.cli`.
"""

__version__ = "0.1.0"
