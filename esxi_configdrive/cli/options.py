"""The option groups the commands share, and turning what they say into VM data and connection settings."""

from __future__ import annotations

import argparse
from typing import Any

from ..defaults import (
    ADMIN_PASS_CHOICES,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_USERDATA_BYTES,
    DEFAULT_TASK_TIMEOUT,
    NETWORK_DATA_CHOICES,
    THREADS_PER_PROCESS,
)
from ..inputs import read_password_file, read_ssh_key_file, read_userdata_file
from ..network_options import NETWORK_OPTIONS, from_options
from ..transport import DEFAULT_TRANSPORT, TRANSPORT_CHOICES
from ..vmdata import VmData

VM_HELP = "name, inventory path, instance/BIOS UUID or id (vm-42); a name starting with '-' goes after --"
NETWORK_DATA_HELP = {
    "file": "the VM data's network data (none: no network_data.json, the guest uses DHCP)",
    "keep": "the drive's network data stays",
    "auto": "DHCP on every NIC, links with the VM's real MACs",
    "empty": "CloudStack's {} (cloud-init then configures no network)",
    "none": "no network_data.json (the guest falls back to DHCP)",
}


def add_content_options(p: argparse.ArgumentParser, vmdata_required: bool) -> None:
    g = p.add_argument_group("drive content")
    g.add_argument(
        "--vmdata",
        metavar="FILE",
        required=vmdata_required,
        help="VM data file: JSON or YAML, or CloudStack's [directory, file, content] list",
    )
    g.add_argument("--userdata-file", metavar="FILE", help="user data (replaces the file's); '-' for stdin")
    g.add_argument(
        "--password-file",
        metavar="FILE",
        help="the VM password, from a file ('-' for stdin); never give it on the command line",
    )
    g.add_argument(
        "--ssh-key-file",
        metavar="FILE",
        action="append",
        help="SSH public keys, one per line (repeatable; replaces the file's keys)",
    )
    g.add_argument("--hostname", help="the guest's host name (metadata local-hostname)")
    g.add_argument("--label", help="volume label (default: config-2, or the current drive's on update)")
    g.add_argument(
        "--no-password-vendor-data",
        dest="password_vendor_data",
        action="store_false",
        default=None,
        help="don't repeat the password as cloud-config in vendor_data.json",
    )
    g.add_argument(
        "--admin-pass",
        choices=ADMIN_PASS_CHOICES,
        default="auto",
        help="put the password in meta_data.json's admin_pass, for cloudbase-init (Windows); auto: yes for build "
        "and for Windows VMs, no for other guests (cloud-init would copy it into a world-readable file)",
    )
    g.add_argument(
        "--dated-versions",
        action="store_true",
        default=None,
        help="also write nova's dated openstack/<date>/ folders (as hard links)",
    )
    g.add_argument(
        "--max-userdata-bytes",
        type=int,
        default=DEFAULT_MAX_USERDATA_BYTES,
        metavar="N",
        help=f"limit on decoded user data (default {DEFAULT_MAX_USERDATA_BYTES})",
    )
    add_network_options(p)


# The network options that take a value: flag, metavar, help.
NETWORK_VALUE_OPTIONS = (
    ("--ip", "[ethN=]ADDR/PREFIX", "a static address, IPv4 or IPv6, with its prefix length (repeatable; default eth0)"),
    ("--gateway", "[ethN=]IP", "the default gateway, IPv4 and/or IPv6 (default: the NIC whose --ip subnet holds it)"),
    ("--route", "[ethN=]NET/PREFIX,via=IP", "a static route (repeatable; default: the NIC whose subnet holds via)"),
    ("--mtu", "[ethN=]BYTES", "the NIC's MTU (default eth0)"),
    ("--mac", "[ethN=]MAC", "the NIC's MAC: build needs it; the vSphere commands take the VM's and check a given one"),
    ("--dns", "IP", "a name server (repeatable)"),
    ("--dns-search", "DOMAIN", "a search domain (repeatable)"),
)


def add_network_options(p: argparse.ArgumentParser) -> None:
    """The `network` section in options (docs/format.md); ethN is the VM's N-th NIC, eth0 the first."""
    g = p.add_argument_group(
        "static addressing (a network section: ethN is the VM's N-th NIC, eth0 the first; "
        "together the options replace the file's network data)"
    )
    for flag, metavar, text in NETWORK_VALUE_OPTIONS:
        g.add_argument(flag, action="append", metavar=metavar, help=text)
    for flag, what in (("--dhcp", "DHCPv4"), ("--dhcp6", "DHCPv6"), ("--slaac", "IPv6 SLAAC")):
        g.add_argument(flag, action="append", nargs="?", const="eth0", metavar="ethN", help=f"{what} on the NIC")


def add_network_data_option(p: argparse.ArgumentParser, command: str) -> None:
    choices = NETWORK_DATA_CHOICES[command]
    p.add_argument(
        "--network-data",
        choices=choices,
        default=choices[0],
        help="; ".join(f"{c}: {NETWORK_DATA_HELP[c]}" for c in choices),
    )


GUESTINFO_PASSWORD_HELP = (
    "over guestinfo (--transport guestinfo, or a guestinfo VM's own): send the password too (refused otherwise: "
    "anyone who may read the VM's configuration in vCenter, and any process in the guest, can read guestinfo "
    "until cloud-init blanks it)"
)


def add_transport_option(p: argparse.ArgumentParser, command: str) -> None:
    """--transport: how the data reaches the guest (transport.py); attach and update keep the drive's own unless
    given (transport.kept_or), a new drive is a config drive."""
    on_a_vm = command in ("attach", "update")
    default = f"the drive's own, {DEFAULT_TRANSPORT.value} for a new drive" if on_a_vm else DEFAULT_TRANSPORT.value
    p.add_argument(
        "--transport",
        default=None if on_a_vm else DEFAULT_TRANSPORT.value,
        metavar="|".join(TRANSPORT_CHOICES),
        help=f"configdrive: a config-2 ISO; nocloud: a NoCloud seed ISO labelled cidata; guestinfo: VMware "
        f"guestinfo keys in the VM's extraConfig, no ISO (default: {default})",
    )
    p.add_argument("--guestinfo-password", action="store_true", help=GUESTINFO_PASSWORD_HELP)


def add_connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vCenter connection (else GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD, GOVC_INSECURE, …)")
    g.add_argument("--url", help="[https://][user@]host[:port][/sdk] (no password here: it would show in ps)")
    g.add_argument("--username", help="user name (else GOVC_USERNAME or the URL's)")
    g.add_argument("--vc-password-file", metavar="FILE", help="vCenter password from a file (else GOVC_PASSWORD)")
    g.add_argument("--ca-file", metavar="PEM", help="trust this CA bundle (else GOVC_TLS_CA_CERTS)")
    g.add_argument("--thumbprint", help="trust the certificate with this SHA-1/SHA-256 thumbprint only")
    g.add_argument("--insecure", action="store_true", default=None, help="do not verify TLS (else GOVC_INSECURE)")
    g.add_argument("--datacenter", help="datacenter for inventory paths and lookups (else GOVC_DATACENTER)")
    g.add_argument(
        "--task-timeout", type=float, default=DEFAULT_TASK_TIMEOUT, metavar="SECONDS", help="wait this long per task"
    )


def add_vm_options(p: argparse.ArgumentParser, changes: bool = True, batch: bool = False) -> None:
    """The VM (or a batch file), --json, and for changing commands --dry-run and --force-eject."""
    if batch:
        p.add_argument("vm", metavar="VM", nargs="?", help=VM_HELP)
        g = p.add_argument_group("batch mode")
        g.add_argument("--batch", metavar="FILE", help="JSON lines, one VM per line ('-': stdin); see docs/usage.md")
        g.add_argument(
            "--concurrency",
            type=int,
            default=DEFAULT_CONCURRENCY,
            metavar="N",
            help=f"VMs at a time (default {DEFAULT_CONCURRENCY})",
        )
        g.add_argument(
            "--processes",
            type=int,
            metavar="N",
            help=f"worker processes sharing the VMs (default: one per {THREADS_PER_PROCESS} of the concurrency, at "
            "most one per core, at least one; 1: all in this process)",
        )
    else:
        p.add_argument("vm", metavar="VM", help=VM_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    if changes:
        p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
        p.add_argument(
            "--force-eject",
            action="store_true",
            help="answer the guest's locked-CD-ROM question with yes (the guest loses the mounted drive)",
        )
    add_connection_options(p)


# ---- what the options say ---------------------------------------------------------------------------------


def content_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The --userdata-file/--password-file/--ssh-key-file/--hostname values and the network options, read and
    checked."""
    out: dict[str, Any] = {}
    if args.userdata_file:
        out["userdata"] = read_userdata_file(args.userdata_file, args.max_userdata_bytes)
    if args.password_file:
        out["password"] = read_password_file(args.password_file)
    if args.ssh_key_file:
        out["public_keys"] = [k for path in args.ssh_key_file for k in read_ssh_key_file(path)]
    if args.hostname is not None:
        out["hostname"] = args.hostname
    network = from_options({key: getattr(args, key) or [] for key in NETWORK_OPTIONS})
    if network is not None:
        out["network"] = network
    return out


def layout_options(args: argparse.Namespace) -> dict[str, Any]:
    """How the drive is laid out, where the command line says so (VmData fields)."""
    given = {
        "label": args.label,
        "password_vendor_data": args.password_vendor_data,
        "dated_versions": args.dated_versions,
    }
    return {k: v for k, v in given.items() if v is not None}


def load_vmdata(args: argparse.Namespace) -> VmData:
    """The --vmdata file with the command line's overrides and layout options applied, validated."""
    data = VmData.from_file(args.vmdata, max_userdata_bytes=args.max_userdata_bytes)
    data = data.with_overrides(**content_overrides(args), max_userdata_bytes=args.max_userdata_bytes)
    data = data.copy(**layout_options(args))
    if args.admin_pass != "auto":
        data.admin_pass = args.admin_pass == "yes"
    data.validate(max_userdata_bytes=args.max_userdata_bytes)
    return data


def connection_settings(args: argparse.Namespace) -> Any:
    from ..vsphere.settings import ConnectionSettings

    return ConnectionSettings.from_sources(
        url=args.url,
        username=args.username,
        password_file=args.vc_password_file,
        ca_file=args.ca_file,
        thumbprint=args.thumbprint,
        insecure=args.insecure,
        datacenter=args.datacenter,
    )
