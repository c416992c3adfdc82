"""Where and how to connect: settings from arguments, the GOVC_* variables (govc's) and VMWARE_* (Ansible's).

The password comes from the environment, a file or a prompt; it is never accepted in a URL given on the command
line (argv is visible to every user), and never logged. No vSphere library is needed to build settings.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import ValidationError
from ..inputs import read_password_file


@dataclass
class ConnectionSettings:
    """Where and how to connect. Build it with :meth:`from_sources`."""

    host: str
    port: int = 443
    username: str = ""
    password: str = field(default="", repr=False)
    scheme: str = "https"
    ca_file: str | None = None
    thumbprint: str | None = None
    insecure: bool = False
    datacenter: str | None = None
    datastore: str | None = None
    timeout: float = 60.0

    @property
    def url(self) -> str:
        """The SDK URL, without credentials (safe to print)."""
        default_port = 443 if self.scheme == "https" else 80
        port = "" if self.port == default_port else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}/sdk"

    @classmethod
    def from_sources(
        cls,
        url: str | None = None,
        username: str | None = None,
        password_file: str | None = None,
        ca_file: str | None = None,
        thumbprint: str | None = None,
        insecure: bool | None = None,
        datacenter: str | None = None,
        datastore: str | None = None,
        env: Mapping[str, str] | None = None,
        prompt: bool = True,
    ) -> ConnectionSettings:
        """Command-line values first, then GOVC_* (and Ansible's VMWARE_*) variables. ``url`` comes from argv,
        so it may not carry a password."""
        env = os.environ if env is None else env
        if url and _url_password(url) is not None:
            raise ValidationError(
                "url", "must not contain a password (argv is visible to every user); use GOVC_PASSWORD or a file"
            )
        raw_url = url or env.get("GOVC_URL") or env.get("VMWARE_HOST")
        if not raw_url:
            raise ValidationError("url", "no vCenter given: pass --url or set GOVC_URL")
        scheme, host, port, url_user, url_password = parse_url(raw_url)
        settings = cls(host=host, port=port, scheme=scheme)
        settings.username = username or url_user or env.get("GOVC_USERNAME") or env.get("VMWARE_USER") or ""
        if password_file:
            settings.password = read_password_file(password_file)
        else:
            settings.password = url_password or env.get("GOVC_PASSWORD") or env.get("VMWARE_PASSWORD") or ""
        if not settings.username:
            raise ValidationError("username", "no user name: pass --username, or set GOVC_USERNAME or GOVC_URL")
        if not settings.password:
            if not (prompt and _stdin_is_tty()):
                raise ValidationError("password", "no password: set GOVC_PASSWORD or pass --vc-password-file")
            settings.password = getpass.getpass(f"Password for {settings.username}@{host}: ")
        settings.ca_file = ca_file or _first_path(env.get("GOVC_TLS_CA_CERTS"))
        settings.thumbprint = thumbprint or _known_host_thumbprint(env.get("GOVC_TLS_KNOWN_HOSTS"), host)
        if insecure is None:
            insecure = _truthy(env.get("GOVC_INSECURE")) or env.get("VMWARE_VALIDATE_CERTS", "").lower() in (
                "0",
                "false",
                "no",
            )
        settings.insecure = bool(insecure)
        settings.datacenter = datacenter or env.get("GOVC_DATACENTER") or None
        settings.datastore = datastore or env.get("GOVC_DATASTORE") or None
        if settings.thumbprint:
            settings.thumbprint = normalize_thumbprint(settings.thumbprint)
        if settings.ca_file and not os.path.isfile(settings.ca_file):
            raise ValidationError("ca-file", f"{settings.ca_file} does not exist")
        return settings


def parse_url(raw: str) -> tuple[str, str, int, str | None, str | None]:
    """govc's URL forms: ``host``, ``host:port``, ``user:pass@host``, ``https://host/sdk`` … → parts."""
    text = raw.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError("url", "expected [https://][user[:password]@]host[:port][/sdk]")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationError("url", "the port is not a number") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.scheme, parts.hostname, port, user, password


def _url_password(raw: str) -> str | None:
    try:
        return parse_url(raw)[4]
    except ValidationError:
        return None


def normalize_thumbprint(value: str) -> str:
    """``AA:BB:…`` or ``aabb…`` → lower-case hex; SHA-1, SHA-256 or SHA-512 lengths."""
    hexed = re.sub(r"[\s:]", "", value).lower()
    if not re.fullmatch(r"[0-9a-f]+", hexed) or len(hexed) not in (40, 64, 128):
        raise ValidationError("thumbprint", "expected a SHA-1, SHA-256 or SHA-512 certificate thumbprint in hex")
    return hexed


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _first_path(paths: str | None) -> str | None:
    for p in (paths or "").split(os.pathsep):
        if p.strip():
            return p.strip()
    return None


def _known_host_thumbprint(path: str | None, host: str) -> str | None:
    """govc's known_hosts file: ``host thumbprint`` per line."""
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2 and fields[0].split(":")[0] == host:
                return fields[1]
    return None


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False
