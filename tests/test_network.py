"""The `network` section (esxi_configdrive/network.py): its conversion into nova's network_data.json, every check
(each error naming its field), the command line's options, the MACs from a VM's NICs, and how it sits in VmData.
What cloud-init and cloudbase-init make of the result is in test_readers.py."""

from __future__ import annotations

import json

import pytest
import yaml

from esxi_configdrive import VmData, build_iso, read_iso
from esxi_configdrive.batch import read_batch
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.layout import build_tree
from esxi_configdrive.network import for_nics, network_data, normalized
from esxi_configdrive.network_options import from_options
from esxi_configdrive.vmdata import check_network_choice

MAC0, MAC1 = "00:50:56:aa:bb:01", "00:50:56:aa:bb:02"
FULL = {
    "interfaces": [
        {
            "id": "eth0",
            "mac": MAC0.upper(),
            "mtu": 9000,
            "addresses": ["10.1.2.3/24", "2001:db8::3/64"],
            "gateway4": "10.1.2.1",
            "gateway6": "2001:db8::1",
            "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.254"}, {"to": "2001:db8:9::/48", "via": "2001:db8::fe"}],
        },
        {"mac": MAC1, "dhcp4": True, "slaac": True},
    ],
    "dns": ["10.1.0.2", "2001:db8::53"],
    "dns_search": ["example.com", "corp.example"],
}


def error_of(fn, *args, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    return info.value


def section(*interfaces: dict, **top) -> dict:
    return {"interfaces": list(interfaces), **top}


# ---- the conversion -------------------------------------------------------------------------------------------


def test_the_full_example_becomes_novas_form():
    assert network_data(normalized(FULL)) == {
        "links": [
            {"id": "eth0", "type": "phy", "ethernet_mac_address": MAC0, "mtu": 9000},
            {"id": "eth1", "type": "phy", "ethernet_mac_address": MAC1},
        ],
        "networks": [
            {
                "id": "network0",
                "link": "eth0",
                "type": "ipv4",
                "ip_address": "10.1.2.3",
                "netmask": "255.255.255.0",
                "routes": [
                    {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.2.1"},
                    {"network": "10.9.0.0", "netmask": "255.255.0.0", "gateway": "10.1.2.254"},
                ],
            },
            {
                "id": "network1",
                "link": "eth0",
                "type": "ipv6",
                "ip_address": "2001:db8::3",
                "netmask": "ffff:ffff:ffff:ffff::",
                "routes": [
                    {"network": "::", "netmask": "::", "gateway": "2001:db8::1"},
                    {"network": "2001:db8:9::", "netmask": "ffff:ffff:ffff::", "gateway": "2001:db8::fe"},
                ],
            },
            {"id": "network2", "link": "eth1", "type": "ipv4_dhcp"},
            {"id": "network3", "link": "eth1", "type": "ipv6_slaac"},
        ],
        "services": [
            {"type": "dns", "address": "10.1.0.2", "search": ["example.com", "corp.example"]},
            {"type": "dns", "address": "2001:db8::53"},
        ],
    }


def test_routes_go_to_the_address_whose_subnet_holds_their_next_hop():
    net = network_data(
        normalized(
            section(
                {
                    "mac": MAC0,
                    "addresses": ["10.1.2.3/24", "192.168.7.3/24"],
                    "gateway4": "192.168.7.1",
                    "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.254"}],
                },
                # a link-local gateway is on the link of the interface's first IPv6 address
                {"mac": MAC1, "addresses": ["2001:db8:1::5/64", "2001:db8:2::5/64"], "gateway6": "fe80::1"},
            )
        )
    )
    by_ip = {n["ip_address"]: [r["gateway"] for r in n["routes"]] for n in net["networks"]}
    assert by_ip == {
        "10.1.2.3": ["10.1.2.254"],
        "192.168.7.3": ["192.168.7.1"],
        "2001:db8:1::5": ["fe80::1"],
        "2001:db8:2::5": [],
    }
    assert net["services"] == []


def test_normalized_form_is_canonical_and_reads_back():
    once = normalized(FULL)
    assert normalized(once) == once
    assert once["interfaces"][0]["mac"] == MAC0  # lower case
    assert once["interfaces"][1]["id"] == "eth1"  # the default id
    assert json.loads(json.dumps(once)) == once  # plain JSON


def test_an_interface_with_nothing_to_configure_is_a_link_without_networks():
    net = network_data(normalized(section({"mac": MAC0}, {"mac": MAC1, "dhcp4": True})))
    assert [n["link"] for n in net["networks"]] == ["eth1"]
    assert len(net["links"]) == 2


# ---- every check, naming its field ----------------------------------------------------------------------------

IFACE = {"mac": MAC0, "addresses": ["10.1.2.3/24"]}
BAD = [
    ([], "network", "object"),
    ({"interface": []}, "network.interface", "unknown key"),
    ({"interfaces": []}, "network.interfaces", "at least one"),
    (section(*[{"dhcp4": True}] * 11), "network.interfaces", "at most 10"),
    (section("eth0"), "network.interfaces[0]", "object"),
    (section({**IFACE, "gateway": "10.1.2.1"}), "network.interfaces[0].gateway", "unknown key"),
    (section({**IFACE, "id": "eth 0"}), "network.interfaces[0].id", "letters"),
    (section(IFACE, {**IFACE, "mac": MAC1, "addresses": [], "id": "eth0"}), "network.interfaces[1].id", "eth0"),
    (section({**IFACE, "mac": "00:50:56:aa:bb"}), "network.interfaces[0].mac", "not a MAC"),
    (section({**IFACE, "mac": 123456}), "network.interfaces[0].mac", "quote"),
    (section({**IFACE, "mac": "01:00:5e:00:00:01"}), "network.interfaces[0].mac", "multicast"),
    (section(IFACE, {"mac": MAC0.upper(), "dhcp4": True}), "network.interfaces[1].mac", "interfaces[0]"),
    (section({**IFACE, "mtu": 40}), "network.interfaces[0].mtu", "68"),
    (section({**IFACE, "mtu": "9000"}), "network.interfaces[0].mtu", "whole number"),
    (section({**IFACE, "mtu": True}), "network.interfaces[0].mtu", "whole number"),
    (section({**IFACE, "mtu": 1000, "addresses": ["2001:db8::3/64"]}), "network.interfaces[0].mtu", "IPv6"),
    (section({**IFACE, "addresses": "10.1.2.3/24"}), "network.interfaces[0].addresses", "list"),
    (section({**IFACE, "addresses": ["10.1.2.3"]}), "network.interfaces[0].addresses[0]", "prefix length"),
    (section({**IFACE, "addresses": ["10.1.2.300/24"]}), "network.interfaces[0].addresses[0]", "not an address"),
    (section({**IFACE, "addresses": ["10.1.2.3/33"]}), "network.interfaces[0].addresses[0]", "not an address"),
    (section({**IFACE, "addresses": ["10.1.2.0/24"]}), "network.interfaces[0].addresses[0]", "network address"),
    (section({**IFACE, "addresses": ["10.1.2.255/24"]}), "network.interfaces[0].addresses[0]", "broadcast"),
    (section({**IFACE, "addresses": ["127.0.0.2/8"]}), "network.interfaces[0].addresses[0]", "host can be given"),
    (section({**IFACE, "addresses": ["224.0.0.5/24"]}), "network.interfaces[0].addresses[0]", "host can be given"),
    (section({**IFACE, "addresses": ["fe80::5/64"]}), "network.interfaces[0].addresses[0]", "host can be given"),
    (section({**IFACE, "addresses": ["10.1.2.3/24", "10.1.2.3/16"]}), "network.interfaces[0].addresses[1]", "twice"),
    (section(IFACE, {"mac": MAC1, "addresses": ["10.1.2.3/24"]}), "network.interfaces[1].addresses[0]", "twice"),
    (section({**IFACE, "dhcp4": True}), "network.interfaces[0].dhcp4", "static IPv4"),
    (section({**IFACE, "dhcp4": "yes"}), "network.interfaces[0].dhcp4", "true or false"),
    (section({"mac": MAC0, "dhcp6": True, "slaac": True}), "network.interfaces[0].slaac", "DHCPv6"),
    (section({"mac": MAC0, "addresses": ["2001:db8::3/64"], "slaac": True}), "network.interfaces[0].slaac", "static"),
    (section({**IFACE, "gateway4": "10.2.0.1"}), "network.interfaces[0].gateway4", "outside"),
    (section({**IFACE, "gateway4": "10.1.2.3"}), "network.interfaces[0].gateway4", "own address"),
    (section({**IFACE, "gateway4": "10.1.2.255"}), "network.interfaces[0].gateway4", "broadcast"),
    (section({**IFACE, "gateway4": "2001:db8::1"}), "network.interfaces[0].gateway4", "gateway6"),
    (section({**IFACE, "gateway4": "10.1.2"}), "network.interfaces[0].gateway4", "not an IP address"),
    (section({"mac": MAC0, "dhcp4": True, "gateway4": "10.1.2.1"}), "network.interfaces[0].gateway4", "static"),
    (section({**IFACE, "gateway6": "fe80::1"}), "network.interfaces[0].gateway6", "static IPv6"),
    (
        section({**IFACE, "gateway4": "10.1.2.1"}, {"mac": MAC1, "addresses": ["10.5.0.2/24"], "gateway4": "10.5.0.1"}),
        "network.interfaces[1].gateway4",
        "interfaces[0] has the default gateway",
    ),
    (section({**IFACE, "routes": {"to": "10.9.0.0/16"}}), "network.interfaces[0].routes", "list"),
    (section({**IFACE, "routes": [{"to": "10.9.0.0/16"}]}), "network.interfaces[0].routes[0].via", "required"),
    (
        section({**IFACE, "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.9", "metric": 1}]}),
        "network.interfaces[0].routes[0].metric",
        "unknown key",
    ),
    (
        section({**IFACE, "routes": [{"to": "10.9.0.1/16", "via": "10.1.2.9"}]}),
        "network.interfaces[0].routes[0].to",
        "host bits",
    ),
    (
        section({**IFACE, "routes": [{"to": "0.0.0.0/0", "via": "10.1.2.9"}]}),
        "network.interfaces[0].routes[0].to",
        "gateway4",
    ),
    (
        section({**IFACE, "routes": [{"to": "10.9.0.0/16", "via": "10.3.0.1"}]}),
        "network.interfaces[0].routes[0].via",
        "outside",
    ),
    (
        section({**IFACE, "routes": [{"to": "2001:db8:9::/48", "via": "10.1.2.9"}]}),
        "network.interfaces[0].routes[0].via",
        "different IP versions",
    ),
    (
        section(
            {**IFACE, "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.9"}, {"to": "10.9.0.0/16", "via": "10.1.2.8"}]}
        ),
        "network.interfaces[0].routes[1]",
        "twice",
    ),
    (section(IFACE, dns="10.1.0.2"), "network.dns", "list"),
    (section(IFACE, dns=["10.1.0"]), "network.dns[0]", "not an IP address"),
    (section(IFACE, dns=["0.0.0.0"]), "network.dns[0]", "unicast"),
    (section(IFACE, dns=["10.1.0.2", "10.1.0.2"]), "network.dns[1]", "twice"),
    (section(IFACE, dns_search=["example.com"]), "network.dns_search", "network.dns"),
    (section(IFACE, dns=["10.1.0.2"], dns_search=["bad_domain"]), "network.dns_search[0]", "host name"),
    (section(IFACE, dns=["10.1.0.2"], dns_search=["a.example", "A.example."]), "network.dns_search[1]", "twice"),
]


@pytest.mark.parametrize("obj, field, words", BAD, ids=[f"{f}:{w}" for _, f, w in BAD])
def test_every_bad_section_names_its_field(obj, field, words):
    e = error_of(normalized, obj)
    assert e.field == field
    assert words in e.message, e.message


def test_a_drive_needs_every_interfaces_mac_but_the_data_may_leave_them_out():
    data = VmData.from_dict({"metadata": {"vm-id": "x"}, "network": section({"addresses": ["10.1.2.3/24"]})})
    e = error_of(build_iso, data)
    assert e.field == "network.interfaces[0].mac" and "vSphere commands take it" in e.message


# ---- on a VM's NICs -------------------------------------------------------------------------------------------


def test_interfaces_take_the_vms_nics_in_device_order():
    given = normalized(section({"addresses": ["10.1.2.3/24"]}, {"mac": MAC1.upper(), "dhcp4": True}))
    out = for_nics(given, [MAC0.upper(), MAC1, "00:50:56:aa:bb:03"], "web-1")
    assert [i["mac"] for i in out["interfaces"]] == [MAC0, MAC1]  # a third NIC stays unconfigured


def test_more_interfaces_than_nics_is_bad_input():
    e = error_of(for_nics, normalized(section({"dhcp4": True}, {"dhcp4": True})), [MAC0], "web-1")
    assert e.field == "network.interfaces" and "2 interfaces, but VM web-1 has 1" in e.message


def test_a_mac_that_is_not_that_nics_is_bad_input():
    e = error_of(for_nics, normalized(section({"mac": "00:50:56:ff:ff:ff", "dhcp4": True})), [MAC0], "web-1")
    assert e.field == "network.interfaces[0].mac" and f"NIC 0 ({MAC0})" in e.message
    e = error_of(for_nics, normalized(section({"mac": MAC1, "dhcp4": True})), [MAC0, MAC1], "web-1")
    assert "it is NIC 1's: list the interfaces in the VM's NIC order" in e.message


# ---- the command line's options -------------------------------------------------------------------------------


def test_options_describe_a_section():
    got = from_options(
        {
            "ip": ["10.1.2.3/24", "eth0=2001:db8::3/64", "eth1=192.168.5.5/24"],
            "gateway": ["192.168.5.1", "eth0=2001:db8::1"],
            "route": ["10.9.0.0/16,via=10.1.2.254"],
            "mtu": ["eth1=9000"],
            "mac": ["eth1=00:50:56:AA:BB:02"],
            "dhcp6": ["eth2"],
            "dns": ["10.1.0.2"],
            "dns_search": ["example.com"],
        }
    )
    assert got == {
        "interfaces": [
            {
                "id": "eth0",
                "addresses": ["10.1.2.3/24", "2001:db8::3/64"],
                "gateway6": "2001:db8::1",
                "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.254"}],
            },
            {"id": "eth1", "mac": MAC1, "mtu": 9000, "addresses": ["192.168.5.5/24"], "gateway4": "192.168.5.1"},
            {"id": "eth2", "dhcp6": True},
        ],
        "dns": ["10.1.0.2"],
        "dns_search": ["example.com"],
    }


def test_no_network_option_is_no_section():
    assert from_options({"ip": [], "dns": []}) is None


def test_a_nic_skipped_in_the_options_is_brought_up_without_an_address():
    got = from_options({"ip": ["eth1=10.1.2.3/24"]})
    assert got["interfaces"] == [{"id": "eth0"}, {"id": "eth1", "addresses": ["10.1.2.3/24"]}]


BAD_OPTIONS = [
    ({"ip": ["ens192=10.1.2.3/24"]}, "ip", "place on the VM"),
    ({"ip": ["eth10=10.1.2.3/24"]}, "ip", "place on the VM"),
    ({"ip": ["10.1.2.3"]}, "ip", "eth0: '10.1.2.3' needs its prefix length"),
    ({"ip": ["10.1.2.3/24"], "gateway": ["10.7.0.1"]}, "gateway", "eth0: 10.7.0.1 is outside"),
    ({"ip": ["10.1.2.3/24", "eth1=10.5.0.3/24"], "gateway": ["eth1=10.1.2.1"]}, "gateway", "eth1:"),
    ({"ip": ["10.1.2.3/24"], "route": ["10.9.0.0/16"]}, "route", "via=GATEWAY"),
    ({"ip": ["10.1.2.3/24"], "route": ["10.9.0.0/16,via=10.1.2.1,metric=5"]}, "route", "via=GATEWAY"),
    ({"ip": ["10.1.2.3/24"], "route": ["10.9.0.1/16,via=10.1.2.1"]}, "route", "host bits"),
    ({"ip": ["10.1.2.3/24"], "mtu": ["jumbo"]}, "mtu", "whole number"),
    ({"ip": ["10.1.2.3/24"], "mac": ["eth0=nope"]}, "mac", "not a MAC"),
    ({"dhcp": ["wlan0"]}, "dhcp", "place on the VM"),
    ({"ip": ["10.1.2.3/24"], "dhcp": ["eth0"]}, "dhcp", "static IPv4"),
    ({"dhcp6": ["eth0"], "slaac": ["eth0"]}, "slaac", "DHCPv6"),
    ({"dns": ["10.1.0.2"]}, "ip", "give an interface"),
    ({"dhcp": ["eth0"], "dns": ["dns.example"]}, "dns", "not an IP address"),
    ({"dhcp": ["eth0"], "dns_search": ["example.com"]}, "dns-search", "network.dns"),
    ({"ip": ["10.1.2.3/24"], "mtu": ["9000", "eth0=1500"]}, "mtu", "eth0: given twice"),
    ({"ip": ["10.1.2.3/24"], "gateway": ["10.1.2.1", "10.1.2.2"]}, "gateway", "eth0: given twice"),
    ({"dhcp": ["eth0"], "mac": ["00:50:56:aa:bb:01", "eth0=00:50:56:aa:bb:02"]}, "mac", "eth0: given twice"),
]


@pytest.mark.parametrize("options, flag, words", BAD_OPTIONS, ids=[f"{f}:{w}" for _, f, w in BAD_OPTIONS])
def test_bad_options_name_the_option(options, flag, words):
    e = error_of(from_options, options)
    assert e.field == flag
    assert words in e.message, e.message


# ---- in VmData ------------------------------------------------------------------------------------------------


def test_the_section_in_a_yaml_file_builds_its_network_data(tmp_path):
    path = tmp_path / "vm.yaml"
    path.write_text(
        "metadata: {vm-id: x, local-hostname: db-1}\n"
        "network:\n"
        "  interfaces:\n"
        '    - mac: "00:50:56:aa:bb:01"\n'
        "      addresses: [10.1.2.3/24]\n"
        "      gateway4: 10.1.2.1\n"
        "  dns: [10.1.0.2]\n"
    )
    data = VmData.from_file(path)
    assert data.network == normalized(yaml.safe_load(path.read_text())["network"])
    written = json.loads(build_tree(data).read("openstack/latest/network_data.json"))
    assert written == network_data(data.network)
    back = read_iso(build_iso(data))
    assert back.network is None and back.network_data == written  # a drive carries network_data.json only


def test_section_and_novas_form_together_are_refused():
    e = error_of(
        VmData.from_dict,
        {"metadata": {"vm-id": "x"}, "network": section(IFACE), "network_data": {"links": []}},
    )
    assert e.field == "network" and "not both" in e.message


def test_section_errors_in_a_file_name_the_field():
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "network": section({**IFACE, "gateway4": "9.9.9.9"})})
    assert e.field == "network.interfaces[0].gateway4"


def test_a_network_override_replaces_all_network_data():
    data = VmData.from_dict({"metadata": {"vm-id": "x"}, "network_data": {"links": []}})
    data.empty_network_data = True
    new = data.with_overrides(network=normalized(section(IFACE)))
    assert (new.network_data, new.empty_network_data) == ({}, False)
    assert new.to_dict()["network"] == normalized(section(IFACE))


@pytest.mark.parametrize(
    "choice, network, network_data, refused",
    [
        ("auto", section(IFACE), {}, True),
        ("auto", None, {"links": [{"id": "a"}]}, False),  # given links keep their settings, get the VM's MACs
        ("empty", section(IFACE), {}, True),
        ("empty", None, {"links": []}, True),
        ("none", section(IFACE), {}, True),
        ("none", None, {}, False),
        (None, section(IFACE), {}, False),
    ],
)
def test_network_data_choices_against_given_network_content(choice, network, network_data, refused):
    if refused:
        e = error_of(check_network_choice, choice, network, network_data)
        assert e.field == "network-data" and choice in e.message
    else:
        check_network_choice(choice, network, network_data)


# ---- batch lines ------------------------------------------------------------------------------------------------


def test_batch_lines_take_a_network_section_and_new_instance_id():
    section = {"interfaces": [{"addresses": ["10.1.2.3/24"]}]}
    attach, bad = read_batch(
        [
            json.dumps({"vm": "a", "vmdata": {"metadata": {}}, "network": section, "new_instance_id": True}),
            json.dumps({"vm": "b", "vmdata": {"metadata": {}}, "new_instance_id": "yes"}),
        ],
        "attach",
    )
    assert attach.error is None and attach.data.network == normalized(section)
    assert attach.options == {"new_instance_id": True} and attach.overrides == {}
    assert bad.error is not None and bad.error.field == "line 2: new_instance_id"
    update, refresh, wrong = read_batch(
        [
            json.dumps({"vm": "a", "network": section}),
            json.dumps({"vm": "b", "new_instance_id": True}),  # a change on its own
            json.dumps({"vm": "c", "network": {"interfaces": [{"addresses": ["10.1.2.3"]}]}}),
        ],
        "update",
    )
    assert update.error is None and update.overrides == {"network": normalized(section)}
    assert refresh.error is None and refresh.options == {"new_instance_id": True}
    assert wrong.error is not None and wrong.error.field == "line 3: network.interfaces[0].addresses[0]"
