"""The VM data's ``network`` section: static addressing in plain words, checked field by field, and turned into
nova's ``network_data.json`` (``links``, ``networks``, ``services``) in the form both readers take.

What the readers take from the file written here (cloud-init's ConfigDrive reader, ``helpers/openstack.py``
``convert_net_json``, in 22.4 and 25.1; cloudbase-init's ``BaseOpenStackService.get_network_details_v2`` and its
network plugin):

- ``links``: ``id``, ``type: phy``, ``ethernet_mac_address`` (both find the guest's NIC by it; cloud-init fails
  on a MAC no NIC has), ``mtu``. No ``name``: cloud-init would rename the guest's NIC to it.
- ``networks``: ``link``, ``type`` ``ipv4``/``ipv6`` with ``ip_address`` and ``netmask``, or ``ipv4_dhcp``,
  ``ipv6_dhcp``, ``ipv6_slaac``; ``routes`` of ``network``/``netmask``/``gateway``. The default gateway is the
  route to 0.0.0.0/0 (::/0), as nova writes it: cloudbase-init takes a network's gateway from that route only.
- ``services``: ``{"type": "dns", "address": …}`` at the top level, the VM's name servers for both readers
  (cloud-init 22.4 ignores per-network services; it reads them from 23.2 on). The search domains ride on the first
  of them as ``search``: cloud-init copies a service's keys into its v1 ``nameserver`` entry, whose ``search``
  every renderer applies to the VM; cloudbase-init has no search domains. (A per-network ``dns_search`` would
  reach cloud-init too, but its netplan renderer then leaves that interface without the global name servers.)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Union

from .errors import ValidationError
from .fields import check_hostname, is_mac, quote

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]

MAX_INTERFACES = 10  # vSphere's limit of network adapters per VM
MIN_MTU, MIN_MTU_IPV6, MAX_MTU = 68, 1280, 65535
SECTION_KEYS = ("interfaces", "dns", "dns_search")
INTERFACE_KEYS = ("id", "mac", "mtu", "addresses", "dhcp4", "dhcp6", "slaac", "gateway4", "gateway6", "routes")
ROUTE_KEYS = ("to", "via")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class Route:
    to: IPNetwork
    via: IPAddress

    def as_dict(self) -> dict[str, str]:
        """The route as the `network` section and netplan's v2 form both write it."""
        return {"to": str(self.to), "via": str(self.via)}


@dataclass(frozen=True)
class Interface:
    id: str
    mac: str | None = None
    mtu: int | None = None
    addresses: tuple[IPInterface, ...] = ()
    dhcp4: bool = False
    dhcp6: bool = False
    slaac: bool = False
    gateway4: ipaddress.IPv4Address | None = None
    gateway6: ipaddress.IPv6Address | None = None
    routes: tuple[Route, ...] = ()

    def static(self, version: int) -> list[IPInterface]:
        return [a for a in self.addresses if a.version == version]

    def on_link(self, ip: IPAddress) -> IPInterface | None:
        """The static address whose subnet holds ``ip`` (for IPv6 a link-local ``ip`` is on every link)."""
        same = self.static(ip.version)
        if ip.version == 6 and ip.is_link_local and same:
            return same[0]
        return next((a for a in same if ip in a.network), None)


@dataclass(frozen=True)
class Network:
    interfaces: tuple[Interface, ...]
    dns: tuple[IPAddress, ...] = ()
    dns_search: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The section in its plain form (what the VM data file holds), every value a string, number or list."""
        out: dict[str, Any] = {"interfaces": [_interface_dict(i) for i in self.interfaces]}
        if self.dns:
            out["dns"] = [str(ip) for ip in self.dns]
        if self.dns_search:
            out["dns_search"] = list(self.dns_search)
        return out

    def with_macs(self, macs: Sequence[str]) -> Network:
        return replace(self, interfaces=tuple(replace(i, mac=m.lower()) for i, m in zip(self.interfaces, macs)))


# ---- parsing and checking ---------------------------------------------------------------------------------------


def parse(obj: Any, where: str = "network") -> Network:
    """The section as given (JSON/YAML), checked; each error names its field (``network.interfaces[1].gateway4``)."""
    _mapping(obj, where, SECTION_KEYS)
    raw = obj.get("interfaces")
    if not isinstance(raw, list) or not raw:
        raise ValidationError(
            f"{where}.interfaces",
            "a list of at least one interface (network_data.json without links leaves every NIC down)",
        )
    if len(raw) > MAX_INTERFACES:
        raise ValidationError(f"{where}.interfaces", f"{len(raw)} interfaces; a VM has at most {MAX_INTERFACES}")
    interfaces = tuple(_interface(item, i, f"{where}.interfaces[{i}]") for i, item in enumerate(raw))
    _check_across(interfaces, f"{where}.interfaces")
    dns = tuple(_ips(obj.get("dns", []), f"{where}.dns"))
    search = tuple(_domains(obj.get("dns_search", []), f"{where}.dns_search"))
    if search and not dns:
        # cloud-init's v1 nameserver entry needs an address; the search domains travel with it
        raise ValidationError(f"{where}.dns_search", "needs network.dns: give the name servers too")
    return Network(interfaces, dns, search)


def normalized(obj: Any, where: str = "network") -> dict[str, Any]:
    """The section checked and written back in its plain, canonical form (same input, same drive)."""
    return parse(obj, where).to_dict()


def _mapping(obj: Any, where: str, keys: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise ValidationError(where, "must be an object")
    unknown = sorted(str(k) for k in obj if k not in keys)
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}", f"unknown key (expected one of {', '.join(keys)})")


def _interface(obj: Any, index: int, where: str) -> Interface:
    _mapping(obj, where, INTERFACE_KEYS)
    addresses = tuple(_address(a, f"{where}.addresses[{k}]") for k, a in enumerate(_list(obj, "addresses", where)))
    iface = Interface(
        id=_id(obj.get("id", f"eth{index}"), f"{where}.id"),
        mac=_mac(obj["mac"], f"{where}.mac") if obj.get("mac") is not None else None,
        mtu=_mtu(obj["mtu"], f"{where}.mtu") if obj.get("mtu") is not None else None,
        addresses=addresses,
        dhcp4=_flag(obj, "dhcp4", where),
        dhcp6=_flag(obj, "dhcp6", where),
        slaac=_flag(obj, "slaac", where),
    )
    _check_addressing(iface, where)
    iface = replace(
        iface,
        gateway4=_gateway(iface, obj.get("gateway4"), 4, f"{where}.gateway4"),
        gateway6=_gateway(iface, obj.get("gateway6"), 6, f"{where}.gateway6"),
    )
    routes = tuple(_route(iface, r, f"{where}.routes[{k}]") for k, r in enumerate(_list(obj, "routes", where)))
    _no_repeats([str(r.to) for r in routes], f"{where}.routes", "route to")
    return replace(iface, routes=routes)


def _check_addressing(iface: Interface, where: str) -> None:
    if iface.dhcp4 and iface.static(4):
        raise ValidationError(f"{where}.dhcp4", "the interface has static IPv4 addresses: give one or the other")
    if iface.dhcp6 and iface.slaac:
        raise ValidationError(f"{where}.slaac", "dhcp6 is on too: choose DHCPv6 or SLAAC")
    if (iface.dhcp6 or iface.slaac) and iface.static(6):
        key = "dhcp6" if iface.dhcp6 else "slaac"
        raise ValidationError(f"{where}.{key}", "the interface has static IPv6 addresses: give one or the other")
    uses_ipv6 = bool(iface.static(6)) or iface.dhcp6 or iface.slaac
    if iface.mtu is not None and uses_ipv6 and iface.mtu < MIN_MTU_IPV6:
        raise ValidationError(f"{where}.mtu", f"IPv6 needs an MTU of at least {MIN_MTU_IPV6}")


def _check_across(interfaces: tuple[Interface, ...], where: str) -> None:
    """What must be unique among the interfaces: ids, MACs, addresses, and one default gateway per family."""
    for what, values in (
        ("id", [i.id for i in interfaces]),
        ("mac", [i.mac for i in interfaces]),
    ):
        seen: dict[Any, int] = {}
        for n, value in enumerate(values):
            if value is not None and value in seen:
                raise ValidationError(f"{where}[{n}].{what}", f"{value} is interfaces[{seen[value]}]'s too")
            seen[value] = n
    owner: dict[IPAddress, int] = {}
    for n, iface in enumerate(interfaces):
        for k, address in enumerate(iface.addresses):
            if address.ip in owner:
                raise ValidationError(
                    f"{where}[{n}].addresses[{k}]", f"{address.ip} is given twice (interfaces[{owner[address.ip]}])"
                )
            owner[address.ip] = n
    for key in ("gateway4", "gateway6"):
        having = [n for n, i in enumerate(interfaces) if getattr(i, key) is not None]
        if len(having) > 1:
            raise ValidationError(
                f"{where}[{having[1]}].{key}",
                f"interfaces[{having[0]}] has the default gateway already: keep one, and give this interface routes",
            )


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise ValidationError(f"{where}.{key}", "must be a list")
    return value


def _id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValidationError(where, "must be 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def _mac(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(where, "must be a string (quote a MAC address in YAML)")
    mac = value.lower()
    if not is_mac(mac):
        raise ValidationError(where, f"{quote(value)} is not a MAC address (xx:xx:xx:xx:xx:xx)")
    if int(mac[:2], 16) & 1:
        raise ValidationError(where, f"{value} is a multicast address, which no NIC has")
    return mac


def _mtu(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_MTU <= value <= MAX_MTU:
        raise ValidationError(where, f"must be a whole number from {MIN_MTU} to {MAX_MTU}")
    return value


def _flag(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise ValidationError(f"{where}.{key}", "must be true or false")
    return value


def _ip(value: Any, where: str) -> IPAddress:
    if not isinstance(value, str):
        raise ValidationError(where, "must be an IP address as a string")
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValidationError(where, f"{quote(value)} is not an IP address") from None
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        raise ValidationError(where, f"{ip} is not a unicast address a host can use")
    return ip


def _address(value: Any, where: str) -> IPInterface:
    """An address with its prefix (``10.1.2.3/24``, ``2001:db8::3/64``), one a host may hold."""
    if not isinstance(value, str) or "/" not in value:
        raise ValidationError(where, f"{quote(value)} needs its prefix length, as in 10.1.2.3/24 or 2001:db8::3/64")
    try:
        address = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise ValidationError(where, f"{quote(value)} is not an address with a prefix length or netmask") from None
    ip = address.ip
    unusable = ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local
    if unusable or (ip.version == 4 and ip.is_reserved):
        raise ValidationError(where, f"{ip} is not an address a host can be given")
    net = address.network
    if ip.version == 4 and net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
        what = "network" if ip == net.network_address else "broadcast"
        raise ValidationError(where, f"{ip} is the {what} address of {net}")
    return address


def _gateway(iface: Interface, value: Any, version: int, where: str) -> Any:
    if value is None:
        return None
    ip = _ip(value, where)
    if ip.version != version:
        raise ValidationError(where, f"{ip} is not an IPv{version} address (use gateway{ip.version})")
    _on_link(iface, ip, where, "a gateway")
    return ip


def _on_link(iface: Interface, ip: IPAddress, where: str, what: str) -> None:
    """A next hop must be reachable on the interface: inside one of its static subnets of the same family."""
    same = iface.static(ip.version)
    if not same:
        raise ValidationError(
            where, f"{what} needs a static IPv{ip.version} address on this interface (DHCP brings its own routes)"
        )
    holder = iface.on_link(ip)
    if holder is None:
        subnets = ", ".join(str(a.network) for a in same)
        raise ValidationError(where, f"{ip} is outside this interface's IPv{ip.version} subnets ({subnets})")
    if ip in {a.ip for a in same}:
        raise ValidationError(where, f"{ip} is this interface's own address")
    net = holder.network
    if ip.version == 4 and net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
        raise ValidationError(where, f"{ip} is the network or broadcast address of {net}")


def _route(iface: Interface, obj: Any, where: str) -> Route:
    _mapping(obj, where, ROUTE_KEYS)
    for key in ROUTE_KEYS:
        if obj.get(key) is None:
            raise ValidationError(f"{where}.{key}", "required")
    text = obj["to"]
    if not isinstance(text, str):
        raise ValidationError(f"{where}.to", "must be a network as a string (10.9.0.0/16)")
    try:
        to = ipaddress.ip_network(text.strip())
    except ValueError as e:
        reason = "has host bits set" if "host bits" in str(e) else "is not a network"
        raise ValidationError(f"{where}.to", f"{quote(text)} {reason} (as in 10.9.0.0/16)") from None
    if to.prefixlen == 0:
        raise ValidationError(f"{where}.to", f"{to} is the default route: give it as gateway{to.version}")
    via = _ip(obj["via"], f"{where}.via")
    if via.version != to.version:
        raise ValidationError(f"{where}.via", f"{via} and {to} are of different IP versions")
    _on_link(iface, via, f"{where}.via", "a route")
    return Route(to, via)


def _ips(value: Any, where: str) -> list[IPAddress]:
    if not isinstance(value, list):
        raise ValidationError(where, "must be a list of IP addresses")
    ips = [_ip(v, f"{where}[{k}]") for k, v in enumerate(value)]
    _no_repeats([str(ip) for ip in ips], where, "address")
    return ips


def _domains(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ValidationError(where, "must be a list of domain names")
    for k, name in enumerate(value):
        check_hostname(name, f"{where}[{k}]")
    _no_repeats([n.lower().rstrip(".") for n in value], where, "domain")
    return list(value)


def _no_repeats(values: list[str], where: str, what: str) -> None:
    seen = set()
    for k, value in enumerate(values):
        if value in seen:
            raise ValidationError(f"{where}[{k}]", f"{what} {value} is given twice")
        seen.add(value)


def _interface_dict(iface: Interface) -> dict[str, Any]:
    out: dict[str, Any] = {"id": iface.id}
    if iface.mac:
        out["mac"] = iface.mac
    if iface.mtu:
        out["mtu"] = iface.mtu
    if iface.addresses:
        out["addresses"] = [str(a) for a in iface.addresses]
    for key in ("dhcp4", "dhcp6", "slaac"):
        if getattr(iface, key):
            out[key] = True
    for key in ("gateway4", "gateway6"):
        if getattr(iface, key) is not None:
            out[key] = str(getattr(iface, key))
    if iface.routes:
        out["routes"] = [r.as_dict() for r in iface.routes]
    return out


# ---- on a VM's NICs -------------------------------------------------------------------------------------------


def for_nics(section: dict[str, Any], macs: Sequence[str], vm: str) -> dict[str, Any]:
    """The section with each interface given the MAC of the VM's NIC at its position (device order). More
    interfaces than NICs, or a MAC given that is not that NIC's, is bad input: cloud-init fails on a MAC no NIC
    has, and a wrong one would put the address on another network."""
    net = parse(section)
    if len(net.interfaces) > len(macs):
        raise ValidationError(
            "network.interfaces", f"{len(net.interfaces)} interfaces, but VM {vm} has {len(macs)} network adapter(s)"
        )
    macs = [m.lower() for m in macs]
    for n, iface in enumerate(net.interfaces):
        if iface.mac is not None and iface.mac != macs[n]:
            where = f"it is NIC {macs.index(iface.mac)}'s: list" if iface.mac in macs else "give"
            raise ValidationError(
                f"network.interfaces[{n}].mac",
                f"{iface.mac} is not the MAC of VM {vm}'s NIC {n} ({macs[n]}); {where} the interfaces in the VM's "
                "NIC order, or leave the MAC out",
            )
    return net.with_macs(macs).to_dict()


# ---- nova's network_data.json ---------------------------------------------------------------------------------


def require_macs(section: dict[str, Any]) -> Network:
    """The section, when every interface has its MAC (a drive needs them: cloud-init finds NICs by MAC)."""
    net = parse(section)
    for n, iface in enumerate(net.interfaces):
        if iface.mac is None:
            raise ValidationError(
                f"network.interfaces[{n}].mac",
                "required to build a drive for no VM in particular: cloud-init finds the guest's NIC by it "
                "(the vSphere commands take it from the VM's NIC)",
            )
    return net


def network_data(section: dict[str, Any]) -> dict[str, Any]:
    """nova's ``network_data.json`` for the section; every interface needs its MAC by now."""
    net = require_macs(section)
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    for iface in net.interfaces:
        link: dict[str, Any] = {"id": iface.id, "type": "phy", "ethernet_mac_address": iface.mac}
        if iface.mtu is not None:
            link["mtu"] = iface.mtu
        links.append(link)
        for kind in _networks_of(iface):
            networks.append({"id": f"network{len(networks)}", "link": iface.id, **kind})
    services: list[dict[str, Any]] = [{"type": "dns", "address": str(ip)} for ip in net.dns]
    if net.dns_search:
        services[0]["search"] = list(net.dns_search)
    return {"links": links, "networks": networks, "services": services}


def _subnet_of(iface: Interface, hop: IPAddress) -> IPInterface:
    """The static address whose subnet holds the next hop (``_on_link`` made sure of one when parsing)."""
    home = iface.on_link(hop)
    if home is None:
        raise ValueError(f"{hop} is on no subnet of interface {iface.id}")
    return home


def _networks_of(iface: Interface) -> list[dict[str, Any]]:
    """One network per static address (with the routes whose next hop is in its subnet, the default one first),
    then one per dynamic method."""
    routes: dict[IPInterface, list[dict[str, str]]] = {a: [] for a in iface.addresses}
    for gateway in (iface.gateway4, iface.gateway6):
        if gateway is not None:
            default = ipaddress.ip_network("0.0.0.0/0" if gateway.version == 4 else "::/0")
            routes[_subnet_of(iface, gateway)].append(_nova_route(default, gateway))
    for route in iface.routes:
        routes[_subnet_of(iface, route.via)].append(_nova_route(route.to, route.via))
    out: list[dict[str, Any]] = [
        {
            "type": f"ipv{a.version}",
            "ip_address": str(a.ip),
            "netmask": str(a.netmask),
            "routes": routes[a],
        }
        for a in iface.addresses
    ]
    for flag, kind in (("dhcp4", "ipv4_dhcp"), ("dhcp6", "ipv6_dhcp"), ("slaac", "ipv6_slaac")):
        if getattr(iface, flag):
            out.append({"type": kind})
    return out


def _nova_route(to: IPNetwork, via: IPAddress) -> dict[str, str]:
    return {"network": str(to.network_address), "netmask": str(to.netmask), "gateway": str(via)}


# ---- network config version 2 (netplan's form) ------------------------------------------------------------------


def netplan(section: dict[str, Any]) -> dict[str, Any]:
    """cloud-init's network config version 2 for the section, as the VMware datasource takes it from the guestinfo
    metadata's ``network`` (cloud-init's netplan renderer writes it through as it is; the others read it too).
    Every interface needs its MAC by now: the guest's NIC is matched by it, its name left as the guest gives it.
    netplan has no global name servers: they go on each interface, as cloud-init's netplan renderer does with a
    version 1 ``nameserver`` entry (what the ConfigDrive path hands it)."""
    net = require_macs(section)
    nameservers: dict[str, Any] = {}
    if net.dns:
        nameservers["addresses"] = [str(ip) for ip in net.dns]
    if net.dns_search:
        nameservers["search"] = list(net.dns_search)
    return {"version": 2, "ethernets": {i.id: _netplan_ethernet(i, nameservers) for i in net.interfaces}}


def _netplan_ethernet(iface: Interface, nameservers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"match": {"macaddress": iface.mac}}
    if iface.mtu is not None:
        out["mtu"] = iface.mtu
    out["dhcp4"] = iface.dhcp4
    out["dhcp6"] = iface.dhcp6
    if iface.slaac:
        out["accept-ra"] = True
    if iface.addresses:
        out["addresses"] = [str(a) for a in iface.addresses]
    defaults = [Route(ipaddress.ip_network("0.0.0.0/0" if g.version == 4 else "::/0"), g) for g in _gateways(iface)]
    routes = [r.as_dict() for r in (*defaults, *iface.routes)]
    if routes:
        out["routes"] = routes
    if nameservers:
        out["nameservers"] = nameservers
    return out


def _gateways(iface: Interface) -> list[IPAddress]:
    return [g for g in (iface.gateway4, iface.gateway6) if g is not None]


def section_of_netplan(config: dict[str, Any]) -> dict[str, Any] | None:
    """The network section a ``netplan(section)`` came from (a NoCloud seed read back); None for version 2 in a
    form ``netplan`` does not write (the reader keeps that file as it is)."""
    ethernets = config.get("ethernets")
    if config.get("version") != 2 or set(config) - {"version", "ethernets"} or not isinstance(ethernets, dict):
        return None
    interfaces: list[dict[str, Any]] = []
    nameservers: list[Any] = []
    try:
        for name, eth in ethernets.items():
            iface: dict[str, Any] = {"id": name, "mac": eth["match"]["macaddress"]}
            for key in ("mtu", "addresses", "dhcp4", "dhcp6"):
                if key in eth:
                    iface[key] = eth[key]
            if eth.get("accept-ra"):
                iface["slaac"] = True
            for route in eth.get("routes", []):
                default = {"0.0.0.0/0": "gateway4", "::/0": "gateway6"}.get(route["to"])
                if default:
                    iface[default] = route["via"]
                else:
                    iface.setdefault("routes", []).append({"to": route["to"], "via": route["via"]})
            nameservers.append(eth.get("nameservers", {}))
            interfaces.append(iface)
        section: dict[str, Any] = {"interfaces": interfaces}
        first = nameservers[0] if nameservers and all(n == nameservers[0] for n in nameservers) else {}
        if first.get("addresses"):
            section["dns"] = first["addresses"]
        if first.get("search"):
            section["dns_search"] = first["search"]
        net = parse(section)
    except (KeyError, TypeError, AttributeError, ValidationError):
        return None
    section = net.to_dict()
    return section if netplan(section) == config else None


def section_of_network_data(data: dict[str, Any]) -> dict[str, Any] | None:
    """The network section a ``network_data(section)`` came from (a config drive read back, moved to a transport
    that carries the section's other forms); None for nova network data in a form ``network_data`` does not write."""
    try:
        interfaces: dict[str, dict[str, Any]] = {}
        for link in data.get("links", []):
            iface: dict[str, Any] = {"id": link["id"], "mac": link["ethernet_mac_address"]}
            if "mtu" in link:
                iface["mtu"] = link["mtu"]
            interfaces[link["id"]] = iface
        for network in data.get("networks", []):
            iface = interfaces[network["link"]]
            kind = network["type"]
            if kind in ("ipv4_dhcp", "ipv6_dhcp", "ipv6_slaac"):
                iface[{"ipv4_dhcp": "dhcp4", "ipv6_dhcp": "dhcp6", "ipv6_slaac": "slaac"}[kind]] = True
                continue
            address = ipaddress.ip_interface(f"{network['ip_address']}/{network['netmask']}")
            iface.setdefault("addresses", []).append(str(address))
            for route in network.get("routes", []):
                to = ipaddress.ip_network(f"{route['network']}/{route['netmask']}")
                if to.prefixlen == 0:
                    iface[f"gateway{to.version}"] = route["gateway"]
                else:
                    iface.setdefault("routes", []).append({"to": str(to), "via": route["gateway"]})
        section: dict[str, Any] = {"interfaces": list(interfaces.values())}
        services = data.get("services", [])
        if services:
            section["dns"] = [s["address"] for s in services]
            if services[0].get("search"):
                section["dns_search"] = services[0]["search"]
        net = parse(section)
    except (KeyError, TypeError, AttributeError, ValueError, ValidationError):
        return None
    section = net.to_dict()
    return section if network_data(section) == {"services": [], **data} else None
