"""The command line's network options (build, attach, update): ``--ip``, ``--gateway``, ``--route``, ``--mtu``,
``--mac``, ``--dhcp``/``--dhcp6``/``--slaac``, ``--dns``, ``--dns-search``, turned into the VM data's ``network``
section (network.py checks it), and that section's errors worded after the options."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from .errors import ValidationError
from .fields import quote
from .network import normalized

# The options (as argparse stores them); errors name them as the other options, the flag without its dashes.
NETWORK_OPTIONS = ("ip", "gateway", "route", "mtu", "mac", "dhcp", "dhcp6", "slaac", "dns", "dns_search")
# A field of an interface -> the option that sets it.
_FLAG_OF_KEY = {
    "addresses": "ip",
    "gateway4": "gateway",
    "gateway6": "gateway",
    "routes": "route",
    "mtu": "mtu",
    "mac": "mac",
    "dhcp4": "dhcp",
    "dhcp6": "dhcp6",
    "slaac": "slaac",
}
_NIC_RE = re.compile(r"^eth(\d)$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_FIELD_RE = re.compile(r"^network\.interfaces\[(\d+)\]\.(\w+)")


def from_options(options: dict[str, Sequence[str]]) -> dict[str, Any] | None:
    """The section the network options describe (None when none is given): ``--ip [ethN=]ADDR/PREFIX``,
    ``--gateway [ethN=]IP``, ``--route [ethN=]NET/PREFIX,via=IP``, ``--mtu [ethN=]N``, ``--mac [ethN=]MAC``,
    ``--dhcp/--dhcp6/--slaac [ethN]``, ``--dns IP``, ``--dns-search DOMAIN``. ``ethN`` is the VM's N-th NIC
    (eth0 the first, whatever the guest calls it); without it a gateway or route goes to the interface whose
    subnet holds its next hop, everything else to eth0. Errors name the option."""
    given = {k: list(v) for k, v in options.items() if v}
    if not given:
        return None
    interfaces = _interfaces_of(given)
    count = max(interfaces, default=-1) + 1  # a NIC between two named ones: listed, with nothing to configure
    section: dict[str, Any] = {"interfaces": [interfaces.get(n, {"id": f"eth{n}"}) for n in range(count)]}
    for key in ("dns", "dns_search"):
        if given.get(key):
            section[key] = given[key]
    try:
        return normalized(section)
    except ValidationError as e:
        raise as_option_error(e, section) from None


def _interfaces_of(given: dict[str, list[str]]) -> dict[int, dict[str, Any]]:
    """Each NIC the options name (by position), as a section's interface; a single-valued setting given twice for
    one NIC is an error, not "the last one wins"."""
    interfaces: dict[int, dict[str, Any]] = {}

    def iface(n: int) -> dict[str, Any]:
        return interfaces.setdefault(n, {"id": f"eth{n}"})

    def put(n: int, key: str, value: Any, option: str) -> None:
        if key in iface(n):
            raise ValidationError(option, f"eth{n}: given twice")
        iface(n)[key] = value

    for value in given.get("ip", []):
        n, text = _nic_and_value(value, "ip")
        iface(n).setdefault("addresses", []).append(text)
    for option, key in (("dhcp", "dhcp4"), ("dhcp6", "dhcp6"), ("slaac", "slaac")):
        for value in given.get(option, []):
            put(_nic(value, option), key, True, option)
    for value in given.get("mtu", []):
        n, text = _nic_and_value(value, "mtu")
        put(n, "mtu", int(text) if text.strip().isdigit() else text, "mtu")
    for value in given.get("mac", []):
        n, text = _nic_and_value(value, "mac")
        put(n, "mac", text, "mac")
    for value in given.get("gateway", []):
        n, text = _nic_and_value(value, "gateway", interfaces)
        put(n, "gateway6" if ":" in text else "gateway4", text, "gateway")
    for value in given.get("route", []):
        n, text = _nic_and_value(value, "route", interfaces)
        to, _, via = text.partition(",via=")
        if not via or "," in via:
            raise ValidationError("route", f"{quote(value)}: expected [ethN=]NETWORK/PREFIX,via=GATEWAY")
        iface(n).setdefault("routes", []).append({"to": to, "via": via})
    return interfaces


def _nic_and_value(value: str, option: str, by_next_hop: dict[int, dict[str, Any]] | None = None) -> tuple[int, str]:
    """``ethN=VALUE`` or ``VALUE``: the NIC's position and the value."""
    head, sep, rest = value.partition("=")
    if sep and _NAME_RE.fullmatch(head) and head != "via":
        return _nic(head, option), rest
    if by_next_hop is not None:
        return _nic_of_next_hop(value, by_next_hop), value
    return 0, value


def _nic(name: str, option: str) -> int:
    m = _NIC_RE.fullmatch(name)
    if not m:
        raise ValidationError(
            option,
            f"{quote(name)}: name a NIC by its place on the VM, eth0 for the first, eth1 for the second … "
            "(not the guest's own name for it)",
        )
    return int(m.group(1))


def _nic_of_next_hop(value: str, interfaces: dict[int, dict[str, Any]]) -> int:
    """The interface whose --ip subnet holds the gateway (a route's ``via``); eth0 when none does (the check that
    follows then says so)."""
    text = value.partition(",via=")[2] or value
    try:
        hop = ipaddress.ip_address(text.strip())
    except ValueError:
        return 0
    holders = []
    for n, spec in sorted(interfaces.items()):
        for address in spec.get("addresses", []):
            try:
                net = ipaddress.ip_interface(address).network
            except ValueError:
                continue
            if hop.version == net.version and (hop in net or (hop.version == 6 and hop.is_link_local)):
                holders.append(n)
                break
    return holders[0] if len(holders) == 1 else 0


def as_option_error(e: ValidationError, section: dict[str, Any]) -> ValidationError:
    """An error about a section the options made, naming the option (and the NIC) instead of the field."""
    m = _FIELD_RE.match(e.field)
    if m:
        n, key = int(m.group(1)), m.group(2)
        return ValidationError(_FLAG_OF_KEY.get(key, "ip"), f"eth{n}: {e.message}")
    if e.field.startswith("network.dns_search"):
        return ValidationError("dns-search", e.message)
    if e.field.startswith("network.dns"):
        return ValidationError("dns", e.message)
    return ValidationError("ip", e.message if section["interfaces"] else "give an interface (--ip or --dhcp)")
