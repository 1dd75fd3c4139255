"""An SEV-SNP guest's derived keys: the SNP_GET_DERIVED_KEY ioctl on /dev/sev-guest.

The AMD secure processor derives a key for the guest (SEV-SNP firmware ABI, MSG_KEY_REQ)
from a root key (the chip's VCEK or the VM's VMRK) and the guest fields the request
selects. teenet asks for the VCEK root with the measurement and the guest policy mixed in:
the same code (launch digest) under the same policy on the same chip derives the same key
after a reboot, and nothing else does: not other code, not a debug launch, not the host,
not another chip. That key seals the node's long-term keys at rest
(`key_protection: {method: enclave}`, teenet.keyfiles).

This module decides the request (fields, root key, VMPL) and encodes it exactly as the
Linux uapi header <linux/sev-guest.h> lays it out; it does not decide what the key
protects. The structures (all little-endian, natural alignment):

    struct snp_derived_key_req {           /* 32 bytes */
        __u32 root_key_select;             /* 0: VCEK, 1: VMRK */
        __u32 rsvd;
        __u64 guest_field_select;          /* bit 0 policy, 1 image id, 2 family id,
                                              3 measurement, 4 guest SVN, 5 TCB version */
        __u32 vmpl;                        /* >= the caller's VMPL */
        __u32 guest_svn;
        __u64 tcb_version;
    };
    struct snp_derived_key_resp { __u8 data[64]; };  /* MSG_KEY_RSP: u32 status,
                                              28 reserved bytes, the 32-byte key at 0x20 */
    struct snp_guest_request_ioctl {       /* 32 bytes */
        __u8 msg_version;                  /* 1 */
        __u64 req_data;                    /* user address of the request */
        __u64 resp_data;                   /* user address of the response */
        union { __u64 exitinfo2; struct { __u32 fw_error; __u32 vmm_error; }; };
    };
    #define SNP_GET_DERIVED_KEY _IOWR('S', 0x1, struct snp_guest_request_ioctl)

Caveats, also in docs/real-tee.md: a firmware TCB update can change the VCEK and with it
the derived key, and new code (a new launch digest) derives a new key; move keys across
such a change with a passphrase (`teenet node protect-keys`) first.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from teenet.errors import InputError
from teenet.keyfiles import EnclaveSealingKey

SEV_GUEST_DEVICE = Path("/dev/sev-guest")

ROOT_KEY_VCEK = 0
ROOT_KEY_VMRK = 1
FIELD_POLICY = 1 << 0
FIELD_IMAGE_ID = 1 << 1
FIELD_FAMILY_ID = 1 << 2
FIELD_MEASUREMENT = 1 << 3
FIELD_GUEST_SVN = 1 << 4
FIELD_TCB_VERSION = 1 << 5

DERIVED_KEY_REQUEST = struct.Struct("<IIQIIQ")
GUEST_REQUEST_IOCTL = struct.Struct("<B7xQQQ")  # msg_version, padding to 8, req, resp, exitinfo2
DERIVED_KEY_RESPONSE_SIZE = 64
_RESPONSE_KEY = slice(0x20, 0x40)
MSG_VERSION = 1

_IOC_WRITE, _IOC_READ = 1, 2


def _iowr(kind: str, number: int, size: int) -> int:
    """Linux's _IOWR(type, nr, size) on x86-64 (asm-generic/ioctl.h)."""
    return ((_IOC_READ | _IOC_WRITE) << 30) | (size << 16) | (ord(kind) << 8) | number


SNP_GET_DERIVED_KEY = _iowr("S", 0x1, GUEST_REQUEST_IOCTL.size)


@dataclass(frozen=True)
class DerivedKeyRequest:
    """MSG_KEY_REQ: which root key and which guest fields the derived key depends on."""

    root_key_select: int = ROOT_KEY_VCEK
    guest_field_select: int = FIELD_MEASUREMENT | FIELD_POLICY
    vmpl: int = 0
    guest_svn: int = 0
    tcb_version: int = 0

    def encode(self) -> bytes:
        """The 32 bytes of struct snp_derived_key_req."""
        if self.root_key_select not in (ROOT_KEY_VCEK, ROOT_KEY_VMRK):
            raise InputError("expected 0 (VCEK) or 1 (VMRK)", field="root_key_select")
        if not 0 <= self.vmpl <= 3:
            raise InputError("expected an SNP VMPL 0..3", field="vmpl")
        if self.guest_field_select >> 6:
            raise InputError("only bits 0..5 are defined", field="guest_field_select")
        return DERIVED_KEY_REQUEST.pack(self.root_key_select, 0, self.guest_field_select, self.vmpl,
                                        self.guest_svn, self.tcb_version)


def guest_request(request_address: int, response_address: int) -> bytearray:
    """struct snp_guest_request_ioctl for the given user-space buffers (exitinfo2 zeroed)."""
    return bytearray(GUEST_REQUEST_IOCTL.pack(MSG_VERSION, request_address, response_address, 0))


def derived_key_from_response(response: bytes) -> bytes:
    """The 32-byte key from MSG_KEY_RSP, or a clear error for a non-zero status."""
    if len(response) != DERIVED_KEY_RESPONSE_SIZE:
        raise InputError(f"a derived-key response is {DERIVED_KEY_RESPONSE_SIZE} bytes, got {len(response)}")
    (status,) = struct.unpack_from("<I", response)
    if status != 0:
        # 0x16 is INVALID_PARAM: e.g. a VMPL below the guest's own, or an unknown field.
        raise InputError(f"the AMD secure processor refused MSG_KEY_REQ (status 0x{status:x})",
                         source=str(SEV_GUEST_DEVICE))
    return bytes(response[_RESPONSE_KEY])


class SnpGuestDevice:
    """/dev/sev-guest: asks the AMD secure processor for derived keys."""

    def __init__(self, path: Path = SEV_GUEST_DEVICE) -> None:
        self.path = Path(path)

    def derived_key(self, request: DerivedKeyRequest = DerivedKeyRequest()) -> bytes:
        """Send SNP_GET_DERIVED_KEY; the raw 32-byte key (wrap it at once, see snp_sealing_key)."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InputError("no SEV-SNP guest device (not an SEV-SNP guest, or the sev-guest driver is not "
                             "loaded: modprobe sev-guest); key_protection.method 'enclave' needs it",
                             source=str(self.path)) from None
        except OSError as exc:
            raise InputError(f"cannot open the SEV-SNP guest device: {exc.strerror} (run the node as a user "
                             "that may open it)", source=str(self.path)) from None
        request_buffer = ctypes.create_string_buffer(request.encode(), DERIVED_KEY_REQUEST.size)
        response_buffer = ctypes.create_string_buffer(DERIVED_KEY_RESPONSE_SIZE)
        argument = guest_request(ctypes.addressof(request_buffer), ctypes.addressof(response_buffer))
        try:
            fcntl.ioctl(fd, SNP_GET_DERIVED_KEY, argument, True)
        except OSError as exc:
            exitinfo2 = GUEST_REQUEST_IOCTL.unpack(bytes(argument))[3]
            hint = " (not the SEV-SNP guest device?)" if exc.errno == errno.ENOTTY else ""
            raise InputError(f"SNP_GET_DERIVED_KEY failed: {exc.strerror}{hint} (firmware error "
                             f"0x{exitinfo2 & 0xFFFFFFFF:x}, VMM error 0x{exitinfo2 >> 32:x})",
                             source=str(self.path)) from None
        finally:
            os.close(fd)
        try:
            return derived_key_from_response(response_buffer.raw)
        finally:
            ctypes.memset(response_buffer, 0, DERIVED_KEY_RESPONSE_SIZE)


def snp_sealing_key(device: SnpGuestDevice | None = None, *, vmpl: int = 0) -> EnclaveSealingKey:
    """This guest's key for sealing long-term keys: VCEK root, measurement and policy mixed in."""
    raw = (device or SnpGuestDevice()).derived_key(DerivedKeyRequest(vmpl=vmpl))
    return EnclaveSealingKey.from_tee_secret("snp", raw)
