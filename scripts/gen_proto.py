"""Regenerate the gRPC stubs in teenet/proto/ from teenet/proto/teenet.proto.

Run with the dev tools installed: .venv/bin/python scripts/gen_proto.py
The stubs are committed so that installing teenet needs no code generator.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "teenet" / "proto"


def main() -> int:
    rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={PROTO_DIR}",
                      f"--pyi_out={PROTO_DIR}", f"--grpc_python_out={PROTO_DIR}",
                      str(PROTO_DIR / "teenet.proto")])
    if rc != 0:
        return rc
    # protoc emits `import teenet_pb2`; make it package-relative so it resolves under teenet.proto.
    grpc_file = PROTO_DIR / "teenet_pb2_grpc.py"
    text = grpc_file.read_text()
    grpc_file.write_text(re.sub(r"^import teenet_pb2 as", "from teenet.proto import teenet_pb2 as", text, flags=re.M))
    return 0


if __name__ == "__main__":
    sys.exit(main())
