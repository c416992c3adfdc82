"""Datastore files: upload/download over vCenter's ``/folder`` HTTP API, the FileManager calls (mkdir, delete,
copy) and a folder listing through the datastore browser. ``DatastorePath`` is a plain value
(vsphere_values.py).
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from pyVmomi import vim

from ..defaults import DEFAULT_TASK_TIMEOUT
from ..errors import LICENCE_REFUSAL, ConfigDriveError, FileKept, ValidationError, one_line
from ..vsphere_values import DatastorePath
from .changes import send_change
from .connection import RELOGINS_PER_CALL, Session, present
from .retries import TransientHttpError, describe_network_error, retrying
from .tasks import wait_for_task

__all__ = ["DatastoreFiles"]

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


# ---- files of one datacenter ------------------------------------------------------------------------------


class DatastoreFiles:
    """Files on the datastores of one datacenter: HTTP for content, FileManager for the rest."""

    def __init__(
        self,
        session: Session,
        datacenter: vim.Datacenter,
        datacenter_path: str,
        task_timeout: float = DEFAULT_TASK_TIMEOUT,
    ) -> None:
        self.session = session
        self.datacenter = datacenter
        self.datacenter_path = datacenter_path
        self.task_timeout = task_timeout

    def _check(self, response: requests.Response, what: str, path: DatastorePath) -> None:
        _check_response(response, what, path, self.datacenter_path)

    def url(self, path: DatastorePath) -> str:
        """``/folder/<path>?dcPath=<datacenter inventory path>&dsName=<datastore>`` (full path: nested DCs)."""
        return (
            f"{self.session.base_url()}/folder/{quote(path.path)}"
            f"?dcPath={quote(self.datacenter_path, safe='')}&dsName={quote(path.datastore, safe='')}"
        )

    # -- HTTP

    def upload(self, path: DatastorePath, content: bytes | BinaryIO) -> str:
        """PUT a file, streamed with a Content-Length; returns its SHA-256. Retries transient failures; after
        the last one, removes whatever partial file the server may have kept."""
        url = self.url(path)
        stream: BinaryIO | None = None
        if isinstance(content, (bytes, bytearray)):
            digest = hashlib.sha256(content).hexdigest()
            size, start = len(content), 0
        else:
            stream, start = content, content.tell()
            digest, size = _hash_stream(content)

        def put(http: requests.Session) -> requests.Response:
            if stream is not None:
                stream.seek(start)  # each attempt sends the whole file again
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            response = http.put(url, data=content, headers=headers, **self._request_options())
            self._check(response, "upload to", path)
            return response

        try:
            self._exchange(put, "upload to", path)
        except Exception:
            self._remove_partial(path)
            raise
        log.info("uploaded %d bytes to %s", size, path)
        return digest

    def download(self, path: DatastorePath, limit: int) -> bytes:
        """GET a file, refusing more than ``limit`` bytes: a datastore file is untrusted input."""
        url = self.url(path)

        def get(http: requests.Session) -> requests.Response:
            response = http.get(url, stream=True, **self._request_options())
            self._check(response, "download of", path)
            return response

        response = self._exchange(get, "download of", path)
        chunks, total = [], 0
        with response:
            for chunk in response.iter_content(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise ValidationError("iso", f"{path} is larger than {limit} bytes: not a config drive")
                chunks.append(chunk)
        return b"".join(chunks)

    def exists(self, path: DatastorePath) -> bool:
        """HEAD the file: one cheap request."""
        url = self.url(path)

        def head(http: requests.Session) -> requests.Response:
            response = http.head(url, **self._request_options())
            if response.status_code != 404:
                self._check(response, "look-up of", path)
            return response

        return self._exchange(head, "look-up of", path).status_code != 404

    def _request_options(self) -> dict:
        # verify, proxies and a .netrc login: the session's, taken from the settings and the environment once
        # (Session.http)
        return {"timeout": self.session.settings.timeout}

    def _exchange(self, fn, what: str, path: DatastorePath) -> requests.Response:
        """One HTTP exchange with retries. A 401 on a session vSphere no longer knows means it was lost: log in
        again (once for all threads) and repeat, as often as Session.call would; a 401 on a live session is a
        refusal (the user may not use /folder here). A connection that keeps failing becomes one line naming the
        file (requests' own message is a page of URL and nested causes)."""
        session = self.session

        def attempt() -> requests.Response:
            refused = ConfigDriveError(f"{what} {path}: HTTP 401 Unauthorized")
            for _ in range(RELOGINS_PER_CALL):
                generation = session.login_generation
                try:
                    return fn(session.http())
                except _Unauthorized as e:
                    refused = ConfigDriveError(f"{what} {path}: HTTP 401 Unauthorized: {e.args[0]}")
                # The generation is read after the look: a login by another thread meanwhile means try again
                if session.still_logged_in() and session.login_generation == generation:
                    raise refused from None
                try:
                    session.relogin(generation)
                except ConfigDriveError:  # vSphere refused the new login
                    raise refused from None
            raise refused from None  # lost again after every login: give up as Session.call does

        try:
            for tried in retrying(session.retry_attempts, what=f"{what} {path}"):
                with tried:
                    return attempt()
        except requests.RequestException as e:
            raise ConfigDriveError(f"{what} {path}: {describe_network_error(e)}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _remove_partial(self, path: DatastorePath) -> None:
        try:
            if self.exists(path):
                self.delete(path)
        except Exception:  # the upload's own error is the one to report
            log.warning("could not remove a partial upload at %s", path, exc_info=True)

    # -- FileManager

    def mkdir(self, folder: DatastorePath) -> bool:
        """Create the folder (and its parents when missing). True only for the one caller that created it: the
        folder itself is made without createParentDirectories, which fails with FileAlreadyExists on an existing
        folder everywhere (with it, vcsim succeeds silently), so two runs cannot both believe they made it."""
        fm = present(self.session.content.fileManager, "FileManager")

        def make(path: DatastorePath, parents: bool) -> bool:
            try:
                make_dir = lambda: fm.MakeDirectory(str(path), self.datacenter, parents)  # noqa: E731
                send_change(
                    self.session,
                    make_dir,
                    "MakeDirectory",
                    duplicate_refused=True,
                    refused_as_done=(vim.fault.FileAlreadyExists,),  # a lost answer's copy: the folder is ours
                )
            except vim.fault.FileAlreadyExists:
                return False
            return True

        def with_parent() -> bool:
            try:
                return make(folder, parents=False)
            except vim.fault.FileNotFound:  # the parent (ConfigDrive/) is missing: the datastore's first drive
                make(folder.folder, parents=True)
                return make(folder, parents=False)

        parent = str(folder.folder)
        if parent not in self.session.known_folders:
            # The first drive a session puts on a datastore may have to make ConfigDrive/ too: one caller finds
            # out, the others (a batch) wait for it instead of each failing and making it again.
            with self.session.folders_lock:
                if parent not in self.session.known_folders:
                    created = with_parent()
                    self.session.known_folders.add(parent)
                    return created
        return with_parent()

    def delete(self, path: DatastorePath) -> bool:
        """Delete a file, or a folder with its content. True when deleted, False when already gone; FileKept when
        vSphere keeps it (locked, in use)."""
        try:
            task = self._send_delete(path)
            wait_for_task(self.session, task, what=f"delete {path}", timeout=self.task_timeout)
        except vim.fault.FileNotFound:
            return False
        except _KEPT as fault:
            raise _kept(path, fault) from fault
        return True

    def start_delete(self, path: DatastorePath) -> Future[bool] | None:
        """Delete a file whose outcome a batch confirms later: the task is sent now and its Future settled by the
        session's shared poller (True deleted, False already gone). None when no shared poller waits here."""
        if getattr(self.session, "task_waiter", None) is None:
            return None
        task = self._send_delete(path)
        deleted: Future[bool] = Future()

        def settle(done: Future[Any]) -> None:
            error = done.exception()
            if isinstance(error, vim.fault.FileNotFound):
                deleted.set_result(False)
            elif isinstance(error, _KEPT):
                deleted.set_exception(_kept(path, error))
            elif error is not None:
                deleted.set_exception(error)
            else:
                deleted.set_result(True)

        wait_for_task(
            self.session, task, what=f"delete {path}", timeout=self.task_timeout, background=True
        ).add_done_callback(settle)
        return deleted

    def _send_delete(self, path: DatastorePath) -> vim.Task:
        fm = present(self.session.content.fileManager, "FileManager")
        delete = lambda: fm.DeleteDatastoreFile_Task(str(path), self.datacenter)  # noqa: E731
        return send_change(self.session, delete, "DeleteFile", duplicate_refused=True)

    def copy(self, source: DatastorePath, target: DatastorePath, force: bool = False) -> None:
        """Copy a file between datastores of this datacenter; an existing target raises FileExistsError unless
        ``force`` (a file of that name may be another VM's)."""
        fm = present(self.session.content.fileManager, "FileManager")
        dc = self.datacenter
        try:
            copy = lambda: fm.CopyDatastoreFile_Task(str(source), dc, str(target), dc, force)  # noqa: E731
            task = send_change(self.session, copy, "CopyDatastoreFile", duplicate_refused=not force)
            wait_for_task(self.session, task, what=f"copy {source} to {target}", timeout=self.task_timeout)
        except vim.fault.FileAlreadyExists:
            raise FileExistsError(f"{target} already exists") from None

    def list(
        self, folder: DatastorePath, browser: vim.host.DatastoreBrowser, pattern: str = "*.iso"
    ) -> list[str] | None:
        """File names in a datastore folder; None when the folder does not exist."""
        spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=[pattern])
        try:
            task = self.session.call(lambda: browser.SearchDatastore_Task(str(folder), spec), "SearchDatastore")
            result = wait_for_task(
                self.session, task, what=f"list {folder}", want_result=True, timeout=self.task_timeout
            )
        except vim.fault.FileNotFound:
            return None
        return sorted(f.path for f in (getattr(result, "file", None) or []))


# Faults of a delete that leave the file where it is (nova treats them as non-fatal in clean-up, REFERENCE §9).
_KEPT = (vim.fault.FileLocked, vim.fault.CannotDeleteFile)


def _kept(path: DatastorePath, fault: BaseException) -> FileKept:
    why = "locked or in use" if isinstance(fault, vim.fault.FileLocked) else "vSphere cannot delete it now"
    return FileKept(f"{path} was kept: {why} ({type(fault).__name__.rsplit('.', 1)[-1]})")


class _Unauthorized(ConfigDriveError):
    """HTTP 401: the session expired (``_exchange`` logs in again once)."""


def folder_privileges(datacenter: str, datastore: str) -> str:
    """What a user refused by ``/folder`` lacks, and where (vSphere Web Services SDK Programming Guide, "Privilege
    Requirements for HTTP Access"; docs/privileges.md)."""
    return (
        "the user needs System.View on the root folder, and Datastore.Browse and Datastore.FileManagement on "
        f"datacenter {datacenter or '(the host)'} and on datastore {datastore}; granted on the datastore alone they "
        "are not enough (docs/privileges.md)"
    )


def _check_response(response: requests.Response, what: str, path: DatastorePath, datacenter: str = "") -> None:
    if response.status_code in (200, 201, 204):
        return
    said = one_line(response.text)[:200] if response.status_code == 403 else ""
    response.close()
    if response.status_code == 401:
        raise _Unauthorized(folder_privileges(datacenter, path.datastore))
    if response.status_code == 403:
        if "RestrictedVersion" in said:
            raise ConfigDriveError(f"{what} {path}: {LICENCE_REFUSAL} (HTTP 403: {said})")
        raise ConfigDriveError(
            f"{what} {path}: HTTP 403 Forbidden ({said}): {folder_privileges(datacenter, path.datastore)}, or the "
            "datastore refuses writes (an NFS export without no_root_squash, or read-only)"
        )
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientHttpError(f"{what} {path}: HTTP {response.status_code}")
    if response.status_code == 404:
        raise FileNotFoundError(f"{what} {path}: not found (HTTP 404)")
    raise ConfigDriveError(f"{what} {path}: HTTP {response.status_code} {response.reason}")


def _hash_stream(fp: BinaryIO) -> tuple[str, int]:
    start = fp.tell()
    digest, size = hashlib.sha256(), 0
    while chunk := fp.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    fp.seek(start)
    return digest.hexdigest(), size
