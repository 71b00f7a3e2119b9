"""Blocking pynetdicom operations for `DimseSource`, with errors translated at the edge.

Everything here blocks and runs in the source's own thread pool, never on the
event loop. Each function raises only `gateway.core.errors.SourceError`s; messages
name the operation and the technical cause, never patient data.

Timeouts (pynetdicom#792: the defaults are too short for large studies and
too long for a hung peer): TCP connect = `connect_timeout_s`; association
negotiation (ACSE), every DIMSE response and network idle = `timeout_s`.

Sockets get TCP_NODELAY: a DIMSE request is written as two PDUs (command,
then data set), and Nagle's algorithm against the peer's delayed ACK costs
~40 ms per C-STORE or C-FIND. With answers that fast, pynetdicom 3.0.4's
association reactor now and then takes the first answer of a request before
`send_*()` reads it (its pause check can see a stale flag) and drops it as an
unexpected message: the request then "times out". `_keep_answers` hands such
an answer back, at the head of the queue. pynetdicom's logging of query
identifiers (patient data, at INFO) is switched off for the whole process.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, _config, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE, SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AddressInformation, AssociationSocket

from gateway.core.errors import (
    NotSupported,
    SourceError,
    SourceProtocolError,
    SourceTimeout,
    SourceUnavailable,
)
from gateway.core.settings import SourceConfig
from gateway.sources.dimse.records import Answer, flatten

VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
STUDY_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
STUDY_MOVE = UID("1.2.840.10008.5.1.4.1.2.2.2")
STUDY_GET = UID("1.2.840.10008.5.1.4.1.2.2.3")
UNCOMPRESSED: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
MAX_CONTEXTS = 128
GET_MESSAGE_ID = 1
PENDING = (0xFF00, 0xFF01)
STORE_OK = (0x0000, 0xB000, 0xB006, 0xB007)

Handler = tuple[evt.EventType, Callable[..., Any]]
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
Meta = tuple[int, str, str, str]  # (index, SOP class, transfer syntax, SOP instance)


class FindRefused(SourceProtocolError):
    """The SCP answered a C-FIND with a failure status."""


@dataclass(frozen=True, slots=True)
class SubOperations:
    """The final counts of a C-GET or C-MOVE."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0


def find_contexts() -> list[PresentationContext]:
    """Patient Root and Study Root C-FIND."""
    return [build_context(PATIENT_FIND), build_context(STUDY_FIND)]


def get_contexts() -> tuple[list[PresentationContext], list[SCP_SCU_RoleSelectionNegotiation]]:
    """Study Root C-GET plus pynetdicom's 120 storage SOP classes (uncompressed), SCP role.

    Instances stored compressed are only received when the SCP can convert them.
    """
    contexts = [build_context(STUDY_GET)]
    roles = []
    for cx in StoragePresentationContexts[: MAX_CONTEXTS - 1]:
        assert cx.abstract_syntax is not None
        contexts.append(build_context(cx.abstract_syntax, UNCOMPRESSED))
        roles.append(build_role(cx.abstract_syntax, scp_role=True))
    return contexts, roles


def context_key(sop_class: str, syntax: str) -> tuple[str, str]:
    """The presentation context a file needs: uncompressed syntaxes share one."""
    return (sop_class, "uncompressed" if UID(syntax) in UNCOMPRESSED else syntax)


def store_contexts(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """One context per SOP class for uncompressed files, one per compressed syntax."""
    contexts: dict[tuple[str, str], PresentationContext] = {}
    for sop_class, syntax in pairs:
        key = context_key(sop_class, syntax)
        if key not in contexts:
            syntaxes: list[str | UID] = UNCOMPRESSED if key[1] == "uncompressed" else [UID(syntax)]
            contexts[key] = build_context(sop_class, syntaxes)
    return list(contexts.values())


class _NoDelayAE(AE):
    """An AE whose association sockets send each PDU at once (TCP_NODELAY)."""

    def _create_socket(
        self, assoc: Association, address: AddressInformation, tls_args: Any
    ) -> AssociationSocket:
        sock = super()._create_socket(assoc, address, tls_args)
        if sock.socket is not None:
            sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _keep_answers(assoc: Association) -> None:
    """Make the reactor give back a response it took from under a `send_*()` call."""
    serve = assoc._serve_request
    queue = assoc.dimse.msg_queue

    def serve_or_give_back(msg: Any, context_id: int) -> None:
        if msg.is_valid_request or not msg.is_valid_response:
            serve(msg, context_id)
            return
        with queue.mutex:  # the earliest answer: back at the head, order kept
            queue.queue.appendleft((context_id, msg))
            queue.unfinished_tasks += 1
            queue.not_empty.notify()

    setattr(assoc, "_serve_request", serve_or_give_back)  # noqa: B010 - shadows a method


class DimseClient:
    """One AE for one source; every method blocks."""

    def __init__(self, config: SourceConfig) -> None:
        self.source = config.id
        self.host = config.host or "127.0.0.1"
        self.port = int(config.port or 104)
        self.called_aet = config.called_aet or "ANY-SCP"
        self.timeout_s = config.timeout_s
        self.connect_timeout_s = config.connect_timeout_s
        ae = _NoDelayAE(ae_title=config.calling_aet)
        ae.acse_timeout = config.timeout_s
        ae.dimse_timeout = config.timeout_s
        ae.network_timeout = config.timeout_s
        ae.connection_timeout = config.connect_timeout_s
        ae.maximum_pdu_size = 0  # no limit: fewer, larger P-DATA PDUs
        self.ae = ae
        self.patient_counts: bool | None = None  # learnt: Patient Root gives study counts

    def _error(self, cls: type[SourceError], message: str) -> SourceError:
        return cls(self.source, message)

    def associate(
        self,
        contexts: list[PresentationContext],
        ext_neg: Sequence[Any] = (),
        handlers: Sequence[Handler] = (),
    ) -> Association:
        """Open an association; raise a typed error saying why it failed."""
        state: dict[str, Any] = {"connected": False, "acse": None}

        def on_open(_: evt.Event) -> None:
            state["connected"] = True

        def on_acse(event: evt.Event) -> None:
            state["acse"] = getattr(event, "primitive", None)

        base: list[Handler] = [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_ACSE_RECV, on_acse)]
        start = time.monotonic()
        try:
            assoc = self.ae.associate(
                self.host,
                self.port,
                contexts,
                ae_title=self.called_aet,
                ext_neg=list(ext_neg) or None,
                evt_handlers=[*base, *handlers],
            )
        except OSError as exc:
            raise self._error(SourceUnavailable, f"association: {type(exc).__name__}") from None
        except Exception as exc:  # translated at the edge
            raise self._error(SourceProtocolError, f"association: {type(exc).__name__}") from None
        if assoc.is_established:
            _keep_answers(assoc)
            return assoc
        elapsed = time.monotonic() - start
        prim = state["acse"]
        if not state["connected"]:
            if elapsed >= self.connect_timeout_s * 0.9:
                raise self._error(
                    SourceTimeout, f"connect: no answer within {self.connect_timeout_s:g}s"
                )
            raise self._error(SourceUnavailable, "connect: connection refused or unreachable")
        if assoc.is_rejected and isinstance(prim, A_ASSOCIATE):
            kind = "transient" if prim.result == 0x02 else "permanent"
            reason = f"association rejected ({kind}): {prim.reason_str}"
            raise self._error(
                SourceUnavailable if kind == "transient" else SourceProtocolError, reason
            )
        if prim is None and elapsed >= self.timeout_s * 0.9:
            raise self._error(SourceTimeout, f"association: no answer within {self.timeout_s:g}s")
        if prim is None:
            raise self._error(
                SourceUnavailable, "association aborted: connection closed by the peer"
            )
        if isinstance(prim, A_ASSOCIATE) and prim.result == 0x00:
            raise self._error(NotSupported, "association: no presentation context accepted")
        raise self._error(SourceUnavailable, "association aborted by the peer")

    def release(self, assoc: Association) -> None:
        """Release (or abort) the association, never raising."""
        try:
            if assoc.is_established:
                assoc.release()
        except Exception:  # best effort on the way out
            assoc.abort()

    def _require(self, assoc: Association, sop_class: UID, what: str) -> None:
        if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
            raise self._error(NotSupported, f"{what}: not accepted by the SCP")

    def _no_response(self, assoc: Association, op: str, since: float) -> SourceError:
        if time.monotonic() - since >= self.timeout_s * 0.9:
            assoc.abort()
            return self._error(SourceTimeout, f"{op}: no response within {self.timeout_s:g}s")
        return self._error(SourceUnavailable, f"{op}: association aborted")

    def echo(self, assoc: Association) -> None:
        """C-ECHO."""
        self._require(assoc, VERIFICATION, "C-ECHO")
        start = time.monotonic()
        status = assoc.send_c_echo()
        if "Status" not in status:
            raise self._no_response(assoc, "C-ECHO", start)
        if status.Status != 0:
            raise self._error(SourceProtocolError, f"C-ECHO: status 0x{status.Status:04X}")

    def find(self, assoc: Association, model: UID, identifiers: Iterable[Dataset]) -> list[Answer]:
        """C-FIND each identifier in turn; all pending answers, flattened."""
        self._require(assoc, model, "C-FIND")
        out: list[Answer] = []
        for ident in identifiers:
            last = time.monotonic()
            for status, answer in assoc.send_c_find(ident, model):
                if "Status" not in status:
                    raise self._no_response(assoc, "C-FIND", last)
                last = time.monotonic()
                code = int(status.Status)
                if code in PENDING:
                    if answer is None:
                        raise self._error(SourceProtocolError, "C-FIND: undecodable answer")
                    out.append(flatten(answer))
                elif code != 0x0000:
                    raise FindRefused(self.source, f"C-FIND: status 0x{code:04X}")
        return out

    def _sub_operations(self, assoc: Association, op: str, responses: Any) -> SubOperations:
        final: Dataset | None = None
        last = time.monotonic()
        for status, _ in responses:
            if "Status" not in status:
                raise self._no_response(assoc, op, last)
            last = time.monotonic()
            if int(status.Status) not in PENDING:
                final = status
        if final is None:
            raise self._error(SourceProtocolError, f"{op}: no final status")
        return SubOperations(
            status=int(final.Status),
            completed=int(final.get("NumberOfCompletedSuboperations") or 0),
            failed=int(final.get("NumberOfFailedSuboperations") or 0),
            warning=int(final.get("NumberOfWarningSuboperations") or 0),
        )

    def get(self, assoc: Association, ident: Dataset) -> SubOperations:
        """C-GET; the instances arrive through the association's C-STORE handler."""
        self._require(assoc, STUDY_GET, "C-GET")
        responses = assoc.send_c_get(ident, STUDY_GET, msg_id=GET_MESSAGE_ID)
        return self._sub_operations(assoc, "C-GET", responses)

    def move(self, assoc: Association, ident: Dataset, destination: str) -> SubOperations:
        """C-MOVE to `destination` (an AE title the SCP knows)."""
        self._require(assoc, STUDY_MOVE, "C-MOVE")
        responses = assoc.send_c_move(ident, destination, STUDY_MOVE)
        return self._sub_operations(assoc, "C-MOVE", responses)

    def store(self, assoc: Association, dataset: Dataset) -> int:
        """C-STORE one dataset; its status code."""
        start = time.monotonic()
        try:
            status = assoc.send_c_store(dataset)
        except ValueError:
            raise self._error(NotSupported, "C-STORE: SOP class not accepted") from None
        if "Status" not in status:
            raise self._no_response(assoc, "C-STORE", start)
        return int(status.Status)


def read_metas(source: str, files: Sequence[bytes]) -> list[Meta]:
    """What each file needs for C-STORE; SourceProtocolError for a non-Part 10 file."""
    out = []
    for index, data in enumerate(files):
        try:
            ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            meta = ds.file_meta
            out.append(
                (
                    index,
                    str(meta.MediaStorageSOPClassUID),
                    str(meta.TransferSyntaxUID),
                    str(meta.MediaStorageSOPInstanceUID),
                )
            )
        except (InvalidDicomError, AttributeError, ValueError, EOFError, KeyError):
            raise SourceProtocolError(
                source, f"store: file {index} is not a DICOM Part 10 file"
            ) from None
    return out


def batches(metas: list[Meta]) -> list[list[Meta]]:
    """Split files so each association needs at most 128 presentation contexts."""
    out: list[list[Meta]] = []
    current: list[Meta] = []
    keys: set[tuple[str, str]] = set()
    for meta in metas:
        key = context_key(meta[1], meta[2])
        if key not in keys and len(keys) == MAX_CONTEXTS:
            out.append(current)
            current, keys = [], set()
        keys.add(key)
        current.append(meta)
    if current:
        out.append(current)
    return out
