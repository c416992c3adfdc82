"""File tree <-> ISO 9660 bytes, in memory, with pycdlib: Rock Ridge + Joliet names, the volume label, hard links.

Rock Ridge (Linux) and Joliet (Windows) carry the real names, so ``user_data`` keeps its underscore; the plain
ISO 9660 names underneath are upper-case d-characters, as genisoimage makes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from time import struct_time
from typing import Any, BinaryIO, Union

from .defaults import DEFAULT_LABEL, DEFAULT_MAX_USERDATA_BYTES, MAX_ISO_BYTES
from .errors import ValidationError
from .fields import check_label, check_tree_path
from .layout import FileTree
from .transport import DEFAULT_TRANSPORT, Transport, build_drive_tree, read_drive_tree
from .vmdata import VmData

MAX_FILES = 10_000
MAX_EXTRACTED_BYTES = 4 * MAX_ISO_BYTES  # hard links may repeat data; crafted ISOs may repeat it a lot
_ISO_NAME_MAX = 30  # name + extension, Ecma-119 7.5.2 (what genisoimage -l allows)
_JOLIET_NAME_MAX = 64  # pycdlib's limit for a Joliet name, counted in UTF-8 bytes
_NON_D_CHARS = re.compile(r"[^A-Z0-9_]")

# Reproducible drives: the same content gives the same bytes, so a re-upload never changes an attached file and
# a digest identifies a drive. ISO dates are SOURCE_DATE_EPOCH (the reproducible-builds convention) or 2000-01-01.
BUILD_EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "946684800"))

PUBLIC_FILE_MODE, PRIVATE_FILE_MODE = 0o100444, 0o100400  # Rock Ridge modes; hard links share their file's

IsoSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]


class IsoTooLarge(ValidationError):
    """The drive would exceed the 64 MiB CloudStack and most readers accept."""


class _BuildClock:
    """Stands in for the ``time`` module inside pycdlib: a fixed "now", and UTC instead of local time (pycdlib
    records the local UTC offset in every date). Every date of a drive is the same instant, so its broken-down
    form is computed once, not twice per directory record."""

    def __init__(self) -> None:
        self._epoch_tm = time.gmtime(BUILD_EPOCH)

    def time(self) -> float:
        return float(BUILD_EPOCH)

    def gmtime(self, secs: float | None = None) -> struct_time:
        if secs is None or secs == BUILD_EPOCH:
            return self._epoch_tm
        return time.gmtime(secs)

    localtime = gmtime

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


_CLOCK = _BuildClock()


def _pycdlib() -> Any:
    import pycdlib  # deferred: importing this package should stay cheap

    for module in ("pycdlib", "headervd", "dates", "utils", "inplaceeditor", "udf"):
        mod: Any = sys.modules.get(f"pycdlib.{module}")  # its ``time`` is replaced: not in the module's type
        if mod is not None and not isinstance(getattr(mod, "time", None), _BuildClock):
            mod.time = _CLOCK
    return pycdlib


def build_iso(
    data: VmData,
    label: str | None = None,
    *,
    max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES,
    transport: Transport = DEFAULT_TRANSPORT,
) -> bytes:
    """VmData -> ISO 9660 bytes (Rock Ridge + Joliet) of ``transport``, labelled ``label`` (default: the
    transport's: ``data.label`` for a config drive, ``cidata`` for a NoCloud seed)."""
    tree = build_drive_tree(data, transport, max_userdata_bytes=max_userdata_bytes)
    if label is not None:
        tree.label = label
    return tree_to_iso(tree)


def read_iso(source: IsoSource) -> VmData:
    """An ISO (bytes, a path or a binary file) -> VmData. Raises ValidationError when it is no config drive and
    no NoCloud seed."""
    return read_drive(source)[1]


def read_drive(source: IsoSource) -> tuple[Transport, VmData]:
    """An ISO -> its transport (config drive or NoCloud seed, by its label and files) and the VmData it holds."""
    return read_drive_tree(iso_to_tree(source))


def iso_digest(iso: bytes) -> str:
    return hashlib.sha256(iso).hexdigest()


# ---- writing ----------------------------------------------------------------------------------------------


def tree_to_iso(tree: FileTree) -> bytes:
    """Write ``tree`` as an ISO. Each ``links`` entry becomes a directory record sharing its target's extent."""
    from pycdlib.pycdlibexception import PyCdlibException  # deferred: importing the package should stay cheap

    check_size(tree)
    try:
        return _write_iso(tree)
    except PyCdlibException as e:
        raise ValidationError("iso", f"cannot build the ISO: {e}") from None


def check_size(tree: FileTree) -> None:
    """Everything that can make ``tree`` unwritable, checked without writing: the label, every path and name,
    and the content's size (the written image is checked once more: headers add a little)."""
    check_label(tree.label)
    for path in tree.all_paths():
        check_tree_path(path, f"tree:{path}")
        if any(len(part.encode("utf-8")) > _JOLIET_NAME_MAX for part in path.split("/")):
            raise ValidationError(f"tree:{path}", f"a name is longer than Joliet's {_JOLIET_NAME_MAX} bytes")
    clash = sorted(set(_directories(tree.all_paths())) & set(tree.all_paths()))
    if clash:
        raise ValidationError(f"tree:{clash[0]}", "is both a file and a directory")
    payload = sum(len(v) for v in tree.files.values())
    if payload > MAX_ISO_BYTES:
        raise IsoTooLarge("iso", f"content of {payload} bytes exceeds the {MAX_ISO_BYTES}-byte limit")


def _write_iso(tree: FileTree) -> bytes:
    key = _layout_key(tree)
    layout = _LAYOUTS.take(key)
    try:
        if layout is None:
            layout = _Layout(tree)
        else:
            layout.refill(tree)
        image = layout.master()
    except BaseException:
        if layout is not None:
            layout.close()
        raise
    _LAYOUTS.give_back(key, layout)
    if len(image) > MAX_ISO_BYTES:
        raise IsoTooLarge("iso", f"{len(image)} bytes exceeds the {MAX_ISO_BYTES}-byte limit")
    return image


def _new_image(tree: FileTree, names: dict[str, str], buffers: dict[str, BinaryIO]) -> Any:
    """A new PyCdlib holding ``tree``: the directories, then the files, then the links, each in path order."""
    iso = _pycdlib().PyCdlib()
    iso.new(
        interchange_level=3,
        vol_ident=tree.label,
        sys_ident="LINUX",
        app_ident_str="esxi-configdrive",
        joliet=3,
        rock_ridge="1.09",
    )
    for directory in _directories(tree.all_paths()):
        iso.add_directory(names[directory], rr_name=_base(directory), joliet_path="/" + directory)
    for path in sorted(tree.files):
        mode = PRIVATE_FILE_MODE if path in tree.private else PUBLIC_FILE_MODE
        length = len(tree.files[path])
        iso.add_fp(buffers[path], length, names[path], rr_name=_base(path), joliet_path="/" + path, file_mode=mode)
    for path in sorted(tree.links):
        target = tree.links[path]
        if target not in tree.files:
            raise ValidationError(f"tree:{path}", f"hard link to {target}, which is not a file of the drive")
        iso.add_hard_link(iso_old_path=names[target], iso_new_path=names[path], rr_name=_base(path))
        iso.add_hard_link(iso_old_path=names[target], joliet_new_path="/" + path)
    return iso


# ---- reusing a layout -------------------------------------------------------------------------------------
# Where a build's time went (docs/performance.md): two thirds in pycdlib making the directory records (ISO 9660,
# Rock Ridge and Joliet, each with its dates) in add_directory/add_fp/add_hard_link, one third in write_fp; pycdlib
# already re-assigns extents once per write, not per add. The drives one process builds nearly all share their
# paths, links and modes (a batch; an attach validates, then builds): only the contents differ. So a layout's
# PyCdlib object is kept after its write and refilled with pycdlib's update_file_contents_fp, which swaps each
# file's data and length; the next write_fp re-assigns every extent. Same bytes as a fresh build: tests/test_iso.py
# pins them.
_LAYOUTS_KEPT = 8  # distinct layouts kept: a fleet's drives come in a few
_LAYOUT_MAX_PATHS = 1_000  # a typical drive has 15; an odd huge tree is built fresh rather than kept in memory


def _layout_key(tree: FileTree) -> tuple[Any, ...]:
    """Everything but the contents that decides the bytes: the label, the paths, which are private, the links."""
    files = tuple((path, path in tree.private) for path in sorted(tree.files))
    return tree.label, files, tuple(sorted(tree.links.items()))


class _Layout:
    """One layout's PyCdlib object. Between builds it holds no content: the buffers handed to pycdlib are closed
    after each write (a password must not outlive its build in a cache), so a file left unfilled would fail the
    write rather than repeat an older drive's data."""

    def __init__(self, tree: FileTree) -> None:
        self.names = _iso9660_names(tree.all_paths())
        self.paths = len(self.names)
        self.buffers = _buffers(tree)
        self.iso = _new_image(tree, self.names, self.buffers)

    def refill(self, tree: FileTree) -> None:
        self.buffers = _buffers(tree)
        for path, fp in self.buffers.items():
            self.iso.update_file_contents_fp(fp, len(tree.files[path]), iso_path=self.names[path])

    def master(self) -> bytes:
        out = io.BytesIO()
        try:
            self.iso.write_fp(out)
        finally:
            for fp in self.buffers.values():
                fp.close()
        return out.getvalue()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.iso.close()


def _buffers(tree: FileTree) -> dict[str, BinaryIO]:
    return {path: io.BytesIO(content) for path, content in tree.files.items()}


class _LayoutCache:
    """Idle layouts, least recently used first. A build takes its layout out while it writes, so threads never
    share one (a second thread building the same layout meanwhile makes its own, and the last one back stays)."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._idle: OrderedDict[tuple[Any, ...], _Layout] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: tuple[Any, ...]) -> _Layout | None:
        with self._lock:
            return self._idle.pop(key, None)

    def give_back(self, key: tuple[Any, ...], layout: _Layout) -> None:
        dropped = [layout]
        # an older pycdlib without update_file_contents_fp cannot refill: every build there is a fresh one
        if layout.paths <= _LAYOUT_MAX_PATHS and hasattr(layout.iso, "update_file_contents_fp"):
            with self._lock:
                dropped = [self._idle.pop(key)] if key in self._idle else []
                self._idle[key] = layout
                while len(self._idle) > self._kept:
                    dropped.append(self._idle.popitem(last=False)[1])
        for old in dropped:
            old.close()

    def clear(self) -> None:
        with self._lock:
            dropped, self._idle = list(self._idle.values()), OrderedDict()
        for old in dropped:
            old.close()


_LAYOUTS = _LayoutCache(_LAYOUTS_KEPT)


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _directories(paths: Iterable[str]) -> list[str]:
    """Every directory the paths need, parents before children."""
    dirs: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def _iso9660_names(paths: Iterable[str]) -> dict[str, str]:
    """Map every file and directory path to a unique ISO 9660 path (upper-case d-characters, ``;1`` on files)."""
    paths = sorted(paths)
    dirs = _directories(paths)
    children: dict[str, list[tuple[str, bool]]] = {}
    for d in dirs:
        parent = d.rsplit("/", 1)[0] if "/" in d else ""
        children.setdefault(parent, []).append((d, True))
    for p in paths:
        parent = p.rsplit("/", 1)[0] if "/" in p else ""
        children.setdefault(parent, []).append((p, False))

    names: dict[str, str] = {"": ""}
    for parent in sorted(children, key=lambda d: (d.count("/") if d else -1, d)):
        taken: set[str] = set()
        for path, is_dir in sorted(children[parent]):
            name = _unique(_mangle(_base(path), is_dir), taken)
            taken.add(name)
            names[path] = f"{names[parent]}/{name}" + ("" if is_dir else ";1")
    return names


def _mangle(name: str, is_dir: bool) -> str:
    if is_dir or "." not in name.lstrip("."):
        return _NON_D_CHARS.sub("_", name.upper())[:_ISO_NAME_MAX] or "_"
    stem, ext = name.rsplit(".", 1)
    stem = _NON_D_CHARS.sub("_", stem.upper()) or "_"
    ext = _NON_D_CHARS.sub("_", ext.upper())[:3]
    return f"{stem[: _ISO_NAME_MAX - len(ext) - 1]}.{ext}"


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem, dot, ext = name.partition(".")
    for n in range(1, 100_000):
        suffix = f"_{n}"
        candidate = f"{stem[: _ISO_NAME_MAX - len(ext) - len(suffix) - 1]}{suffix}{dot}{ext}"
        if candidate not in taken:
            return candidate
    raise ValidationError("tree", "too many files whose ISO 9660 names collide")


# ---- reading ----------------------------------------------------------------------------------------------


def iso_to_tree(source: IsoSource) -> FileTree:
    """Read every file of an ISO, by its Rock Ridge names (else Joliet, else plain ISO 9660 names).

    Files sharing one extent become hard links. Any failure to parse is a ValidationError: a corrupt or
    truncated ISO downloaded from a datastore is bad input, not a crash.
    """
    pycdlib = _pycdlib()
    from pycdlib.pycdlibexception import PyCdlibException

    fp, close = _open_source(source)
    iso = pycdlib.PyCdlib()
    try:
        _check_not_truncated(fp)
        iso.open_fp(fp)
        return _read_tree(iso)
    except ValidationError:
        raise
    except (PyCdlibException, ValueError, IndexError, KeyError, TypeError, OverflowError, AttributeError) as e:
        raise ValidationError("iso", f"not a readable ISO 9660 image ({type(e).__name__}: {e})") from None
    except (EOFError, MemoryError, RecursionError, AssertionError, struct.error) as e:
        raise ValidationError("iso", f"not a readable ISO 9660 image ({type(e).__name__})") from None
    finally:
        with contextlib.suppress(Exception):
            iso.close()
        if close:
            fp.close()


def _check_not_truncated(fp: BinaryIO) -> None:
    """pycdlib silently shortens files that run past the end of the image; a download cut short would then read
    as a drive with truncated user data. Compare the primary volume descriptor's declared size with the image's."""
    size = fp.seek(0, os.SEEK_END)
    for sector in range(16, 32):
        fp.seek(sector * 2048)
        vd = fp.read(2048)
        if len(vd) < 2048 or vd[1:6] != b"CD001" or vd[0] == 255:
            break
        if vd[0] == 1:
            (blocks,) = struct.unpack_from("<I", vd, 80)
            (block_size,) = struct.unpack_from("<H", vd, 128)
            if blocks * block_size > size:
                raise ValidationError("iso", f"truncated: the image declares {blocks * block_size} bytes, has {size}")
            break
    fp.seek(0)


def _open_source(source: IsoSource) -> tuple[BinaryIO, bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > MAX_ISO_BYTES:
            raise IsoTooLarge("iso", f"{len(source)} bytes exceeds the {MAX_ISO_BYTES}-byte limit")
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
            if size > MAX_ISO_BYTES:
                raise IsoTooLarge("iso", f"{size} bytes exceeds the {MAX_ISO_BYTES}-byte limit")
            return open(source, "rb"), True
        except OSError as e:
            raise ValidationError("iso", f"cannot read {os.fspath(source)}: {e.strerror or e}") from None
    return source, False


def _read_tree(iso: Any) -> FileTree:
    if iso.has_rock_ridge():
        kind = "rr_path"
    elif iso.has_joliet():
        kind = "joliet_path"
    else:
        kind = "iso_path"
    label = iso.pvd.volume_identifier.decode("ascii", "replace").rstrip(" \x00") or DEFAULT_LABEL
    tree = FileTree(label=label)
    by_extent: dict[tuple[int, int], str] = {}
    total = 0
    for top, _dirs, files in iso.walk(**{kind: "/"}):
        for name in files:
            full = f"{top.rstrip('/')}/{name}"
            path = _clean_path(full, kind)
            record = iso.get_record(**{kind: full})
            size = record.get_data_length()
            key = (record.extent_location(), size)
            if key in by_extent and size > 0:
                tree.links[path] = by_extent[key]
                continue
            total += size
            if len(tree.files) >= MAX_FILES or total > MAX_EXTRACTED_BYTES:
                raise ValidationError("iso", "holds more files or data than a config drive can")
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **{kind: full})
            tree.files[path] = out.getvalue()
            by_extent[key] = path
    return tree


def _clean_path(full: str, kind: str) -> str:
    path = full.lstrip("/")
    if kind == "iso_path":
        path = re.sub(r";\d+$", "", path).rstrip(".").lower()
    check_tree_path(path, f"iso:{path}")
    return path
