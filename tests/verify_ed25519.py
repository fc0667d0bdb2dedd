"""Verifies Ed25519 signatures with the `cryptography` package, an implementation
independent of the node's: reads {"public_key", "signatures": [{"request_id",
"payload", "signature"}]} (hex) on stdin, prints how many verified, exits 1 at the
first that does not."""

import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def main() -> int:
    given = json.load(sys.stdin)
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(given["public_key"]))
    for item in given["signatures"]:
        try:
            key.verify(bytes.fromhex(item["signature"]), bytes.fromhex(item["payload"]))
        except InvalidSignature:
            print(f"request {item['request_id']}: the signature does not verify")
            return 1
    print(len(given["signatures"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
