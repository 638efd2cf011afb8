"""Hashing and encoding: digests (SHA-256, MD5, ...), HMAC, and base64 / base32 / hex / URL encoding."""

import base64
import binascii
import hashlib
import hmac
import urllib.parse
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

mcp = MCPServer("hashing-encoding", instructions="Hash text and convert between text encodings.")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
ALGORITHMS = ["blake2b", "md5", "sha1", "sha224", "sha256", "sha384", "sha3_256", "sha512"]
ENCODINGS = ["base32", "base64", "base64url", "hex", "url"]
MAX_CHARS = 1_000_000


def _algo(name: str) -> str:
    algo = name.lower().replace("-", "")
    algo = "sha3_256" if algo == "sha3256" else algo
    if algo not in ALGORITHMS:
        raise ToolError(f"algorithm {name!r} is not supported; accepted: {ALGORITHMS}")
    return algo


def _size(text: str) -> str:
    if len(text) > MAX_CHARS:
        raise ToolError(f"text has {len(text)} characters; the limit is {MAX_CHARS}")
    return text


@mcp.tool(annotations=READ_ONLY)
def hash_text(
    text: Annotated[str, Field(description="text to hash (UTF-8)")],
    algorithm: Annotated[str, Field(description="one of " + ", ".join(ALGORITHMS))] = "sha256",
) -> str:
    """Hex digest of a text with a hash algorithm (checksums, fingerprints)."""
    return hashlib.new(_algo(algorithm), _size(text).encode()).hexdigest()


@mcp.tool(annotations=READ_ONLY)
def hmac_sign(
    message: Annotated[str, Field(description="message to sign")],
    key: Annotated[str, Field(description="secret key")],
    algorithm: Annotated[str, Field(description="hash algorithm")] = "sha256",
) -> str:
    """Hex HMAC of a message with a key (e.g. to check webhook signatures)."""
    return hmac.new(key.encode(), _size(message).encode(), _algo(algorithm)).hexdigest()


@mcp.tool(annotations=READ_ONLY)
def encode_text(
    text: Annotated[str, Field(description="text to encode (UTF-8)")],
    encoding: Annotated[str, Field(description="one of " + ", ".join(ENCODINGS))] = "base64",
) -> str:
    """Encode text as base64, base64url, base32, hex or URL percent-encoding."""
    data = _size(text).encode()
    match encoding:
        case "base64": return base64.b64encode(data).decode()
        case "base64url": return base64.urlsafe_b64encode(data).decode()
        case "base32": return base64.b32encode(data).decode()
        case "hex": return data.hex()
        case "url": return urllib.parse.quote(text, safe="")
    raise ToolError(f"encoding {encoding!r} is not supported; accepted: {ENCODINGS}")


@mcp.tool(annotations=READ_ONLY)
def decode_text(
    data: Annotated[str, Field(description="encoded text")],
    encoding: Annotated[str, Field(description="one of " + ", ".join(ENCODINGS))] = "base64",
) -> str:
    """Decode base64, base64url, base32, hex or URL-encoded data back to UTF-8 text."""
    try:
        match encoding:
            case "base64": raw = base64.b64decode(data, validate=True)
            case "base64url": raw = base64.urlsafe_b64decode(data)
            case "base32": raw = base64.b32decode(data)
            case "hex": raw = bytes.fromhex(data)
            case "url": return urllib.parse.unquote(data)
            case _: raise ToolError(f"encoding {encoding!r} is not supported; accepted: {ENCODINGS}")
        return raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise ToolError(f"data is not valid {encoding}: {exc}") from None


if __name__ == "__main__":
    mcp.run()
