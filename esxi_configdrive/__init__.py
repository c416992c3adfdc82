"""esxi-configdrive: config drives (ISO 9660, label ``config-2``) for VMware vSphere VMs."""

__version__ = "0.1.0"
