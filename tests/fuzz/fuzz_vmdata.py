"""atheris (libFuzzer) target: VmData.from_text on arbitrary bytes, as JSON-or-YAML and as YAML.

Only ValidationError may come out, naming a field; anything else (a traceback for the admin) is a finding.
Run: ``.venv/bin/python tests/fuzz/fuzz_vmdata.py -runs=100000 [corpus_dir]`` (tests/test_hostile_input.py runs
it for a bounded number of iterations).
"""

import sys

import atheris

with atheris.instrument_imports(include=["esxi_configdrive", "yaml", "json"]):
    from esxi_configdrive.errors import ValidationError
    from esxi_configdrive.vmdata import VmData


def one_input(raw: bytes) -> None:
    # As bytes (the UTF-8 check first), and as the text they mostly are (so mutations reach the parsers).
    for text, yaml_first in ((raw, False), (raw.decode("utf-8", "replace"), False), (raw, True)):
        try:
            VmData.from_text(text, yaml_first=yaml_first, max_userdata_bytes=4096)
        except ValidationError as e:
            if not e.field or not str(e).startswith(e.field):
                raise AssertionError(f"an error that names no field: {e!r}") from None


if __name__ == "__main__":
    sys.setrecursionlimit(1000)  # as in the CLI: deep nesting must end in a ValidationError, not a crash
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
