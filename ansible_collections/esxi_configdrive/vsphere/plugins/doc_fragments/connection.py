"""The vCenter connection options every module of the collection takes (community.vmware's names)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  hostname:
    description:
      - The vCenter or ESXi host name or address, without scheme or path.
      - If not set in the task, the environment variable E(VMWARE_HOST) is used.
    type: str
  username:
    description:
      - The vSphere user name.
      - If not set in the task, the environment variable E(VMWARE_USER) is used.
    type: str
    aliases: [admin, user]
  password:
    description:
      - The vSphere user's password. It is never logged or returned.
      - If not set in the task, the environment variable E(VMWARE_PASSWORD) is used.
    type: str
    aliases: [pass, pwd]
  port:
    description:
      - The HTTPS port of the vCenter or ESXi host.
      - If not set in the task, the environment variable E(VMWARE_PORT) is used.
    type: int
    default: 443
  validate_certs:
    description:
      - Verify the server's TLS certificate (against O(ca_file), else the system's trust store), or the pinned
        O(thumbprint).
      - V(false) accepts any certificate. Only for a lab.
      - If not set in the task, the environment variable E(VMWARE_VALIDATE_CERTS) is used.
    type: bool
    default: true
  ca_file:
    description:
      - A PEM bundle of the CA certificates to trust, for a vCenter whose certificate the system does not trust
        (the VMCA's root, from C(https://vcenter/certs/download.zip)).
    type: path
  thumbprint:
    description:
      - Trust exactly the certificate with this SHA-1, SHA-256 or SHA-512 thumbprint (hex, colons allowed),
        whoever signed it; checked on every connection, datastore transfers included.
    type: str
notes:
  - The modules run where the C(esxi-configdrive) Python package is installed, normally the Ansible controller
    (C(delegate_to=localhost)); C(pip install esxi-configdrive) there.
  - Proxies (community.vmware's C(proxy_host), C(proxy_port)) are not supported.
requirements:
  - esxi-configdrive (Python package, on the host that runs the module)
"""
