"""atheris (libFuzzer) target: read_iso on arbitrary bytes (seeded with real config drives: pass a corpus folder).

Only ValidationError may come out, naming a field; anything else is a finding. A drive that reads is built again
(update does exactly that): a clean ValidationError there too, or an ISO that reads back the same.
Run: ``.venv/bin/python tests/fuzz/fuzz_read_iso.py -runs=20000 corpus_dir``.
"""

import sys

import atheris

with atheris.instrument_imports(include=["esxi_configdrive", "pycdlib"]):
    from esxi_configdrive.errors import ValidationError
    from esxi_configdrive.iso import build_iso, read_iso


def one_input(raw: bytes) -> None:
    try:
        data = read_iso(raw)
    except ValidationError as e:
        if not e.field:
            raise AssertionError(f"an error that names no field: {e!r}") from None
        return
    try:
        again = read_iso(build_iso(data))
    except ValidationError as e:  # e.g. a file where the layout puts a folder: refused, clearly
        if not e.field:
            raise AssertionError(f"an error that names no field: {e!r}") from None
        return
    if again != data:
        raise AssertionError("a drive read, written and read again changed")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
