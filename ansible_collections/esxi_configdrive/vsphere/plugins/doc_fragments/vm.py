"""How a VM is named by id, the same in every module of the collection (the package's lookup: docs/usage.md)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  uuid:
    description:
      - The VM's instance UUID (else its BIOS UUID, when no VM has that instance UUID and only one has that BIOS
        UUID).
    type: str
  moid:
    description:
      - The VM's managed object id, such as C(vm-42).
    type: str
"""
