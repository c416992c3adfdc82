"""Connection settings from arguments and GOVC_* variables; no server involved."""

from __future__ import annotations

import pytest

from esxi_configdrive.errors import ValidationError
from esxi_configdrive.vsphere.connection import ConnectionSettings
from esxi_configdrive.vsphere.settings import normalize_thumbprint, parse_url

ENV = {"GOVC_URL": "vc.example.com", "GOVC_USERNAME": "admin@vsphere.local", "GOVC_PASSWORD": "env-secret"}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("vc.example.com", ("https", "vc.example.com", 443, None, None)),
        ("vc.example.com:8443", ("https", "vc.example.com", 8443, None, None)),
        ("https://vc.example.com/sdk", ("https", "vc.example.com", 443, None, None)),
        ("http://127.0.0.1:8989/sdk", ("http", "127.0.0.1", 8989, None, None)),
        ("user:p%40ss@vc", ("https", "vc", 443, "user", "p@ss")),
        ("https://[::1]:9443/sdk", ("https", "::1", 9443, None, None)),
    ],
)
def test_govc_url_forms(raw, expected):
    assert parse_url(raw) == expected


@pytest.mark.parametrize("raw", ["ftp://vc", "https://", "vc:notaport"])
def test_bad_urls(raw):
    with pytest.raises(ValidationError) as e:
        parse_url(raw)
    assert e.value.field == "url"


def test_settings_from_govc_environment():
    env = {**ENV, "GOVC_INSECURE": "1", "GOVC_DATACENTER": "DC0", "GOVC_DATASTORE": "LocalDS_0"}
    s = ConnectionSettings.from_sources(env=env, prompt=False)
    assert (s.host, s.port, s.username, s.password) == ("vc.example.com", 443, "admin@vsphere.local", "env-secret")
    assert s.insecure and s.datacenter == "DC0" and s.datastore == "LocalDS_0"
    assert s.url == "https://vc.example.com/sdk"
    assert "env-secret" not in repr(s)


def test_tls_is_verified_unless_asked():
    s = ConnectionSettings.from_sources(env=ENV, prompt=False)
    assert not s.insecure and s.ca_file is None and s.thumbprint is None


def test_password_in_govc_url_is_accepted_but_not_in_argv():
    env = {"GOVC_URL": "root:from-env@esx1"}
    s = ConnectionSettings.from_sources(env=env, prompt=False)
    assert (s.username, s.password) == ("root", "from-env")
    with pytest.raises(ValidationError) as e:
        ConnectionSettings.from_sources(url="root:argv-secret@esx1", env={}, prompt=False)
    assert e.value.field == "url" and "argv-secret" not in str(e.value)


def test_arguments_override_environment_and_password_file(tmp_path):
    pw = tmp_path / "vc.pw"
    pw.write_text("file-secret\n")
    s = ConnectionSettings.from_sources(
        url="https://other:9443/sdk", username="bob", password_file=str(pw), env=ENV, prompt=False
    )
    assert (s.host, s.port, s.username, s.password) == ("other", 9443, "bob", "file-secret")


def test_missing_pieces_are_named():
    with pytest.raises(ValidationError) as e:
        ConnectionSettings.from_sources(env={}, prompt=False)
    assert e.value.field == "url"
    with pytest.raises(ValidationError) as e:
        ConnectionSettings.from_sources(env={"GOVC_URL": "vc"}, prompt=False)
    assert e.value.field == "username"
    with pytest.raises(ValidationError) as e:
        ConnectionSettings.from_sources(env={"GOVC_URL": "vc", "GOVC_USERNAME": "u"}, prompt=False)
    assert e.value.field == "password"


def test_ca_file_must_exist(tmp_path):
    with pytest.raises(ValidationError) as e:
        ConnectionSettings.from_sources(env={**ENV, "GOVC_TLS_CA_CERTS": str(tmp_path / "nope.pem")}, prompt=False)
    assert e.value.field == "ca-file"


def test_thumbprints_normalized_and_known_hosts(tmp_path):
    sha1 = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"
    assert normalize_thumbprint(sha1) == sha1.replace(":", "").lower()
    with pytest.raises(ValidationError):
        normalize_thumbprint("abc")
    known = tmp_path / "known_hosts"
    known.write_text(f"other-host 00\nvc.example.com {sha1}\n")
    s = ConnectionSettings.from_sources(env={**ENV, "GOVC_TLS_KNOWN_HOSTS": str(known)}, prompt=False)
    assert s.thumbprint == sha1.replace(":", "").lower()


def test_ansible_variables_are_a_fallback():
    env = {"VMWARE_HOST": "vc2", "VMWARE_USER": "ansible", "VMWARE_PASSWORD": "a-secret", "VMWARE_VALIDATE_CERTS": "no"}
    s = ConnectionSettings.from_sources(env=env, prompt=False)
    assert (s.host, s.username, s.password, s.insecure) == ("vc2", "ansible", "a-secret", True)
