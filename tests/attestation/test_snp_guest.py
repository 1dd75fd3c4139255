"""SNP_GET_DERIVED_KEY: the request's byte layout (<linux/sev-guest.h>), and clear failures
where no SEV-SNP guest device exists. The ioctl itself needs a real SEV-SNP guest."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from teenet.attestation.snp_guest import (
    FIELD_MEASUREMENT, FIELD_POLICY, GUEST_REQUEST_IOCTL, MSG_VERSION, SNP_GET_DERIVED_KEY, DerivedKeyRequest,
    SnpGuestDevice, derived_key_from_response, guest_request, snp_sealing_key,
)
from teenet.errors import InputError


def test_the_ioctl_number_is_linuxs():
    # _IOWR('S', 0x1, struct snp_guest_request_ioctl): dir 3, size 32, type 0x53, nr 1.
    assert SNP_GET_DERIVED_KEY == 0xC0205301
    assert GUEST_REQUEST_IOCTL.size == 32


def test_the_default_request_selects_vcek_measurement_and_policy():
    raw = DerivedKeyRequest().encode()
    assert len(raw) == 32
    root, reserved, fields, vmpl, svn, tcb = struct.unpack("<IIQIIQ", raw)
    assert (root, reserved, vmpl, svn, tcb) == (0, 0, 0, 0, 0)
    assert fields == FIELD_MEASUREMENT | FIELD_POLICY == 0b1001


def test_request_fields_land_at_the_uapi_offsets():
    raw = DerivedKeyRequest(root_key_select=1, guest_field_select=0x3F, vmpl=2, guest_svn=0x01020304,
                            tcb_version=0x1122334455667788).encode()
    assert raw[0:4] == (1).to_bytes(4, "little")          # root_key_select at 0x00
    assert raw[4:8] == bytes(4)                          # rsvd
    assert raw[8:16] == (0x3F).to_bytes(8, "little")      # guest_field_select at 0x08
    assert raw[16:20] == (2).to_bytes(4, "little")        # vmpl at 0x10
    assert raw[20:24] == (0x01020304).to_bytes(4, "little")
    assert raw[24:32] == (0x1122334455667788).to_bytes(8, "little")


@pytest.mark.parametrize("bad, field", [(dict(vmpl=4), "vmpl"), (dict(root_key_select=2), "root_key_select"),
                                        (dict(guest_field_select=1 << 6), "guest_field_select")])
def test_bad_requests_are_refused_by_field(bad, field):
    with pytest.raises(InputError) as err:
        DerivedKeyRequest(**bad).encode()
    assert err.value.field == field


def test_the_guest_request_carries_version_and_buffer_addresses():
    raw = bytes(guest_request(0x1000, 0x2000))
    assert raw[0] == MSG_VERSION == 1 and raw[1:8] == bytes(7)  # u8 then padding to the u64s
    assert struct.unpack_from("<QQQ", raw, 8) == (0x1000, 0x2000, 0)


def test_the_key_is_taken_from_offset_0x20_of_a_successful_response():
    response = bytes(4) + bytes(28) + bytes(range(32))
    assert derived_key_from_response(response) == bytes(range(32))
    with pytest.raises(InputError, match=r"refused MSG_KEY_REQ \(status 0x16\)"):
        derived_key_from_response((0x16).to_bytes(4, "little") + bytes(60))
    with pytest.raises(InputError, match="is 64 bytes, got 63"):
        derived_key_from_response(bytes(63))


def test_no_sev_guest_device_is_a_clear_error(tmp_path: Path):
    with pytest.raises(InputError) as err:
        snp_sealing_key(SnpGuestDevice(tmp_path / "sev-guest"))
    assert str(err.value).startswith(f"{tmp_path / 'sev-guest'}: no SEV-SNP guest device")
    assert "key_protection.method 'enclave' needs it" in str(err.value)


def test_a_file_that_is_not_the_device_fails_the_ioctl_clearly(tmp_path: Path):
    fake = tmp_path / "sev-guest"
    fake.write_bytes(b"")
    with pytest.raises(InputError, match=r"SNP_GET_DERIVED_KEY failed: .*\(not the SEV-SNP guest device\?\)"):
        SnpGuestDevice(fake).derived_key()
