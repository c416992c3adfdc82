"""Reading what the admin hands over: VM data files (JSON or YAML), password, SSH key and user-data files. Each
failure is a ValidationError naming what was read; a password is never quoted."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .defaults import DEFAULT_MAX_USERDATA_BYTES
from .errors import ValidationError
from .fields import MAX_METADATA_VALUE_BYTES, MAX_PASSWORD_CHARS, check_password, check_public_key

MAX_VMDATA_FILE_BYTES = 16 * 1024 * 1024  # base64 of the largest user data, plus room


def read_password_file(path: str) -> str:
    """A password from a file (``-`` for standard input); one trailing newline is dropped."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_PASSWORD_CHARS * 4 + 2)
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError("password-file", f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    check_password(text, "password-file")
    return text


def read_ssh_key_file(path: str) -> list[str]:
    """SSH public keys from a file: one per line, like authorized_keys; blank lines and # comments skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_METADATA_VALUE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError("ssh-key-file", f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValidationError("ssh-key-file", f"{path} holds no key")
    for i, key in enumerate(keys):
        check_public_key(key, f"ssh-key-file {path} line {i + 1}")
    return keys


def read_userdata_file(path: str, max_bytes: int = DEFAULT_MAX_USERDATA_BYTES) -> bytes:
    """User data from a file, as bytes (``-`` for standard input)."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
    except OSError as e:
        raise ValidationError("userdata-file", f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise ValidationError("userdata-file", f"larger than {max_bytes} bytes")
    return data


def load_json_or_yaml(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValidationError("vmdata", "nested too deeply") from None
    except json.JSONDecodeError as json_error:
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            raise ValidationError(
                "vmdata", f"invalid JSON at line {json_error.lineno} column {json_error.colno}: {json_error.msg}"
            ) from None
        return load_yaml(text)
    except ValueError as e:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise ValidationError("vmdata", f"invalid JSON: {e}") from None


def load_yaml(text: str) -> Any:
    import yaml  # imported here: JSON files, the common case, don't pay for it

    class _NoAliasLoader(yaml.SafeLoader):
        # Aliases let a small file expand into a huge object ("billion laughs"); a VM data file needs none.
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise ValidationError("vmdata", f"YAML aliases are not accepted (line {mark.line + 1})")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except ValidationError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ValidationError("vmdata", f"neither valid JSON nor YAML{where}: {problem}") from None
    except RecursionError:
        raise ValidationError("vmdata", "nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:  # constructors: 2001-13-01, 5000-digit integers …
        raise ValidationError("vmdata", f"YAML value not accepted: {e}") from None


def read_document(path: str | os.PathLike[str]) -> Any:
    """A VM data file, parsed: JSON, or YAML (tried first for .yaml/.yml names)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_VMDATA_FILE_BYTES + 1)
    except OSError as e:
        raise ValidationError("vmdata", f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > MAX_VMDATA_FILE_BYTES:
        raise ValidationError("vmdata", f"file larger than {MAX_VMDATA_FILE_BYTES} bytes")
    return parse_document(raw, yaml_first=path.suffix.lower() in (".yaml", ".yml"))


def parse_document(raw: bytes | str, yaml_first: bool = False) -> Any:
    """The content of a VM data file (JSON, or YAML when it is not JSON), parsed."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValidationError("vmdata", f"not UTF-8 text (byte {e.start})") from None
    return load_yaml(raw) if yaml_first else load_json_or_yaml(raw)
