"""RetrievePropertiesEx with its answer parsed by ElementTree: the facts pages of a batch without pyVmomi's
deserializer.

Why: pyVmomi deserializes an answer with expat calling Python handlers for every element and builds a
DataObject for every nested value, all of it holding the interpreter lock while a batch's workers wait for it.
Measured on a 100-VM facts page of the harness (0.8 MB, 17,800 elements; benchmarks/bench_facts_page.py, CPU
of the whole call): 134 ms through pyVmomi, 30 ms here (ElementTree's C parser ~15 ms, the values the facts
need taken from its elements ~5 ms, the request ~5 ms). The other lever, pyVmomi's transport with a lighter SAX
handler of our own, was measured at its floor: the page through expat with Python handlers that do nothing
takes ~14 ms, as long as ElementTree's whole parse, before the handler does any work.

What stays pyVmomi's, so that behaviour does not change: the request (``SerializeRequest``: the same bytes, so the
recorded cassettes replay), the stub's connection pool, cookie and headers, and every fault (an HTTP 500 answer
is deserialized by pyVmomi and raised as the same fault type, so ``Session.call``'s re-login and retries and the
callers' ``except`` clauses behave as before). A value this module does not read itself (anything but strings,
numbers, booleans, enums and managed object references) is deserialized by pyVmomi from its own element:
``pyvmomi_value``.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, partial
from http.client import HTTPException
from http.cookies import SimpleCookie
from typing import Any
from xml.etree import ElementTree as ET
from xml.parsers.expat import ParserCreate
from xml.sax.saxutils import escape, quoteattr

from pyVmomi import SoapAdapter, VmomiSupport, vmodl

from .connection import Session

XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = "{%s}type" % XSI  # noqa: UP031 (ElementTree's qualified name)
XSD = "http://www.w3.org/2001/XMLSchema"
PC = vmodl.query.PropertyCollector


@dataclass
class Found:
    """One object of an answer: its reference, its properties as the ``val`` elements of the answer, and what
    vSphere could not read (pyVmomi's MissingProperty objects: ``Session.call`` looks for a lost session in
    them)."""

    obj: Any
    props: dict[str, ET.Element]
    missingSet: list[Any] = field(default_factory=list)  # pyVmomi's name: Session.call reads it


@dataclass
class Page:
    """One RetrieveResult: what ``Session.call`` receives, shaped like pyVmomi's (``objects``, ``token``)."""

    objects: list[Found]
    token: str | None
    reader: Reader


def retrieve_pages(session: Session, spec: Any, what: str = "RetrievePropertiesEx") -> Iterator[Page]:
    """RetrievePropertiesEx of ``spec`` on the calling thread's collector, then ContinueRetrievePropertiesEx as
    long as vSphere gives a continuation token: each answer (one call each)."""
    page = session.collect(partial(_invoke, method="RetrievePropertiesEx", args=[[spec], PC.RetrieveOptions()]), what)
    yield page
    while page.token:
        page = session.collect(partial(_invoke, method="ContinueRetrievePropertiesEx", args=[page.token]), what)
        yield page


# ---- the call -----------------------------------------------------------------------------------------------


def _invoke(pc: Any, method: str, args: list[Any]) -> Page:
    """``pc.<method>(*args)`` as pyVmomi's SoapStubAdapter.InvokeMethod sends it, the answer read by
    ElementTree."""
    stub = pc._stub
    info = pc._GetMethodInfo(method)
    status, body = _post(stub, stub.SerializeRequest(pc, info, args))
    if status == 500:
        fault = SoapAdapter.SoapResponseDeserializer(stub).Deserialize(body, info.result)
        if not isinstance(fault, BaseException):
            raise Exception(f"a fault answer that is not a fault: {fault!r}")
        raise fault
    return Reader(stub).page(body)


def _post(stub: Any, request: bytes | str) -> tuple[int, bytes]:
    """One POST over the stub's pooled connections, with its cookie and headers (pyVmomi's InvokeMethod, up to
    the deserializing): the status (200 or 500) and the answer's bytes."""
    for modifier in stub.requestModifierList:
        request = modifier(request)
    conn = stub.GetConnection()
    try:
        conn.request("POST", stub.path, request, _headers(stub))
        resp = conn.getresponse()
    except (OSError, HTTPException):
        conn.close()
        stub.DropConnections()  # the server is probably sick (pyVmomi's rule)
        raise
    cookie = resp.getheader("Set-Cookie") or resp.getheader("set-cookie")
    if cookie:
        stub.cookie = cookie
        morsel = SimpleCookie(cookie).get(SoapAdapter.COOKIE_NAME)
        if morsel:
            SoapAdapter.SoapStubAdapterBase.SetSessionId(stub, morsel.value)  # pyVmomi's super() call
    if resp.status not in (200, 500):
        conn.close()
        raise HTTPException(f"{resp.status} {resp.reason}")
    try:
        body = _decoded(resp.read(), resp.getheader("Content-Encoding", "identity").lower())
    except BaseException:
        conn.close()
        stub.DropConnections()
        raise
    stub.ReturnConnection(conn)
    return resp.status, body


def _headers(stub: Any) -> dict[str, str]:
    sa = SoapAdapter
    headers = {
        "Cookie": stub.cookie,
        "SOAPAction": stub.versionId,
        "Content-Type": f"text/xml; charset={sa.XML_ENCODING}",
        "User-Agent": f"pyvmomi {sa.version_info_str} {sa.kind} Python/{sa.PYTHON_VERSION} "
        f"({sa.OS_NAME}; {sa.OS_VERSION}; {sa.OS_ARCH})",
    }
    headers.update(stub._customHeaders or {})
    if stub._acceptCompressedResponses:
        headers["Accept-Encoding"] = "gzip, deflate"
    return headers


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


# ---- reading the answer --------------------------------------------------------------------------------------


class Reader:
    """Values of one answer's elements, as pyVmomi would have given them, for the stub that made the call."""

    def __init__(self, stub: Any) -> None:
        self.stub = stub
        self.ns = VmomiSupport.GetWsdlNamespace(stub.version)
        self.q = "{%s}" % self.ns  # noqa: UP031 (ElementTree's qualified-name prefix)

    def page(self, body: bytes) -> Page:
        root = ET.fromstring(body)
        result = root.find(f"*/*/{self.q}returnval")  # Envelope/Body/<Method>Response/returnval
        if result is None:
            return Page([], None, self)  # nothing matched (pyVmomi's None)
        q = self.q
        objects = []
        for element in result.iterfind(f"{q}objects"):
            props = {p.findtext(f"{q}name", ""): p.find(f"{q}val") for p in element.iterfind(f"{q}propSet")}
            missing = [self.pyvmomi_value(m, PC.MissingProperty) for m in element.iterfind(f"{q}missingSet")]
            objects.append(Found(self.ref(element.find(f"{q}obj")), props, missing))  # type: ignore[arg-type]
        return Page(objects, result.findtext(f"{q}token"), self)

    def ref(self, element: ET.Element) -> Any:
        """A managed object reference (``<x type="VirtualMachine">vm-42</x>``) as pyVmomi's object."""
        guid = element.get("serverGuid")
        if guid is not None and self.stub.SupportServerGUIDs():
            guid = None  # pyVmomi keeps the GUID only for a stub that does not track it itself
        return self.type_of(element.get("type", ""))(element.text or "", self.stub, guid)

    def type_of(self, wsdl_name: str) -> Any:
        return _type(self.ns, wsdl_name, self.stub.version)

    def value(self, element: ET.Element | None, default: Any = None) -> Any:
        """A property's value: strings, numbers, booleans, enums and references read here, anything else by
        pyVmomi from the element."""
        if element is None:
            return default
        kind = element.get(XSI_TYPE, "")
        read = _SIMPLE.get(kind)
        if read is not None:
            return read(element.text or "")
        if kind == "ManagedObjectReference":
            return self.ref(element)
        if kind == "ArrayOfManagedObjectReference":
            return [self.ref(e) for e in element]
        if kind.startswith("xsd:") or ":" in kind:
            return self.pyvmomi_value(element, object)
        cls = self.type_of(kind) if kind else None
        if cls is not None and issubclass(cls, VmomiSupport.Enum):
            return getattr(cls, element.text or "")
        return self.pyvmomi_value(element, object)

    def pyvmomi_value(self, element: ET.Element, result_type: Any) -> Any:
        """What pyVmomi's deserializer makes of ``element`` (an object exactly as vSphere gave it)."""
        parser = ParserCreate(namespace_separator=SoapAdapter.NS_SEP)
        parser.buffer_text = True
        deserializer = SoapAdapter.SoapDeserializer(self.stub)
        deserializer.Deserialize(parser, result_type)
        parser.Parse(_xml(element, f' xmlns="{self.ns}" xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"'), True)
        return deserializer.GetResult()


def _xml(element: ET.Element, declarations: str = "") -> str:
    """``element`` as XML text again, in the answer's namespaces (declared on the outer element: ElementTree's
    own writer cannot put the answer's unqualified attributes beside a default namespace)."""
    tag = _local(element.tag)
    attrs = "".join(f" {_attribute(k)}={quoteattr(v)}" for k, v in element.attrib.items())
    inner = escape(element.text or "") + "".join(_xml(child) + escape(child.tail or "") for child in element)
    return f"<{tag}{declarations}{attrs}>{inner}</{tag}>"


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _attribute(name: str) -> str:
    return "xsi:type" if name == XSI_TYPE else _local(name)


def as_bool(text: str) -> bool:
    """xsd:boolean as pyVmomi reads it."""
    lowered = text.lower()
    if text == "1" or lowered == "true":
        return True
    if text == "0" or lowered == "false":
        return False
    raise TypeError(text)


# xsd types read here, into pyVmomi's own classes (its ``long`` is an int subclass of its own)
_SIMPLE: dict[str, Callable[[str], Any]] = {
    f"xsd:{name}": VmomiSupport.GetWsdlType(XSD, name) for name in ("string", "int", "long", "short", "byte")
}
_SIMPLE["xsd:boolean"] = as_bool


@cache
def _type(ns: str, wsdl_name: str, version: str) -> Any:
    """pyVmomi's class for a WSDL type name, as its deserializer picks it (None for a name it does not know)."""
    try:
        return VmomiSupport.GetCompatibleType(VmomiSupport.GetWsdlType(ns, wsdl_name), version)
    except KeyError:
        return None


__all__ = ["XSI_TYPE", "Found", "Page", "Reader", "as_bool", "retrieve_pages"]
