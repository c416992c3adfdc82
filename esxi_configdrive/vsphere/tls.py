"""TLS, verified by default. Three ways to trust a server whose certificate no system CA signed: a CA bundle
(``--ca-file``/``GOVC_TLS_CA_CERTS``), a pinned certificate thumbprint (``--thumbprint``/``GOVC_TLS_KNOWN_HOSTS``),
or the explicit ``--insecure``/``GOVC_INSECURE=1``. SOAP and datastore transfers go through the same context."""

from __future__ import annotations

import hashlib
import ssl
from typing import Any

import requests

from .settings import ConnectionSettings


def certificate_thumbprint(der: bytes, length: int) -> str:
    algo = {40: hashlib.sha1, 64: hashlib.sha256, 128: hashlib.sha512}[length]
    return algo(der).hexdigest()


class PinnedContext(ssl.SSLContext):
    """Accepts exactly the certificate whose thumbprint is pinned, whoever signed it, on every connection."""

    pinned: str = ""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        der = sock.getpeercert(binary_form=True) or b""
        if certificate_thumbprint(der, len(self.pinned)) != self.pinned:
            sock.close()
            raise ssl.SSLCertVerificationError("the server's certificate does not match the pinned thumbprint")
        return sock


def ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    if settings.thumbprint:
        pinned = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.pinned = settings.thumbprint
        pinned.check_hostname = False
        pinned.verify_mode = ssl.CERT_NONE
        return pinned
    if settings.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=settings.ca_file)


def requests_verify(settings: ConnectionSettings) -> bool | str:
    if settings.thumbprint or settings.insecure:
        return False  # the thumbprint is checked by the adapter below
    return settings.ca_file or True


class PinnedAdapter(requests.adapters.HTTPAdapter):
    """Datastore transfers through the same pinned context as SOAP, so they accept exactly the thumbprints SOAP
    does (urllib3's own ``assert_fingerprint`` knows no SHA-512)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
