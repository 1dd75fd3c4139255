"""Evidence in an X.509 extension, in the interoperable RA-TLS placement.

The extension has OID 2.23.133.5.4.9 (TCG DICE conceptual-message-wrapper, the OID the
CCC-Attestation interoperable-ra-tls documents name for carrying attestation in a
certificate). Its value here is a CMW in JSON record form, UTF-8:

    ["application/vnd.teenet.evidence+json", "<base64url, no padding, of Evidence.to_bytes()>"]

(docs/deploy-cluster.md says what was and was not confirmed about this encoding.) The
extension is non-critical so ordinary TLS stacks (Dask's) accept the certificate.
"""

from __future__ import annotations

import base64
import json

from cryptography import x509

from teenet.attestation.evidence import Evidence
from teenet.errors import InputError

RATLS_OID = x509.ObjectIdentifier("2.23.133.5.4.9")
MEDIA_TYPE = "application/vnd.teenet.evidence+json"


def evidence_extension(evidence: Evidence) -> x509.UnrecognizedExtension:
    value = base64.urlsafe_b64encode(evidence.to_bytes()).rstrip(b"=").decode()
    return x509.UnrecognizedExtension(RATLS_OID, json.dumps([MEDIA_TYPE, value]).encode())


def evidence_from_certificate(cert: x509.Certificate) -> Evidence:
    """The evidence a cluster certificate carries, or InputError naming what is wrong."""
    try:
        ext = cert.extensions.get_extension_for_oid(RATLS_OID)
    except x509.ExtensionNotFound:
        raise InputError(f"certificate has no evidence extension {RATLS_OID.dotted_string}") from None
    try:
        record = json.loads(ext.value.value)
    except (ValueError, AttributeError):
        raise InputError(f"extension {RATLS_OID.dotted_string}: expected a JSON CMW record") from None
    if not (isinstance(record, list) and len(record) == 2 and record[0] == MEDIA_TYPE
            and isinstance(record[1], str)):
        raise InputError(f"extension {RATLS_OID.dotted_string}: expected [\"{MEDIA_TYPE}\", base64url]")
    raw = record[1] + "=" * (-len(record[1]) % 4)
    try:
        data = base64.urlsafe_b64decode(raw.encode())
    except ValueError:
        raise InputError(f"extension {RATLS_OID.dotted_string}: the evidence is not base64url") from None
    return Evidence.from_bytes(data, source=f"certificate extension {RATLS_OID.dotted_string}")
