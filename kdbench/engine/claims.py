"""One process at a time per Job across hosts: a PostgreSQL advisory lock keyed by the Job id.

``kdbench.engine.lock`` (``flock`` in the Job's folder) serialises the processes of one machine,
and of several machines only where the shared file system implements ``flock`` across clients
(NFSv4 does, NFSv3 needs lockd; Lustre and GPFS depend on mount options). Where the runners of
one grid record into PostgreSQL, the claim is taken there instead, and held for the whole Job:
``pg_try_advisory_lock`` on a dedicated connection. The server holds it for that connection
only, so it is released when the holder ends, is killed (the kernel closes its socket) or its
host disappears (TCP keep-alives on both sides: about 40 s). Waiting processes poll it and say
once who holds it (``application_name``: host, pid, SLURM job). A holder checks that it still
has the claim before it records the Job; a connection lost meanwhile stops the Job unrecorded.

Where: ``KDBENCH_CLAIMS`` (a PostgreSQL URL, e.g. the one ``scripts/cluster/postgres.sh url``
prints), else the MLflow tracking URI when it is a PostgreSQL database; else no claim (the
lock file alone). Advisory locks create no table: any database of the server works, as long as
every runner of the grid names the same one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from kdbench.errors import KdbenchError

ENV_CLAIMS = "KDBENCH_CLAIMS"
# client and server TCP keep-alives: a vanished host's claim is released within ~40 s
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 20, "keepalives_interval": 5,
              "keepalives_count": 4,
              "options": "-c tcp_keepalives_idle=20 -c tcp_keepalives_interval=5 "
                         "-c tcp_keepalives_count=4"}


def claims_url(tracking_uri: str | None) -> str | None:
    """The PostgreSQL URL where Job claims are taken, or ``None`` (lock files only)."""
    explicit = os.environ.get(ENV_CLAIMS)
    if explicit:
        if not _is_postgres(explicit):
            raise KdbenchError(f"{ENV_CLAIMS}={_masked(explicit)}: Job claims need a PostgreSQL "
                               "URL (postgresql://user:password@host:port/database); unset it "
                               "to rely on the lock file in each Job's folder")
        return explicit
    if tracking_uri and _is_postgres(tracking_uri):
        return tracking_uri
    return None


def claim_key(job_id: str) -> int:
    """The advisory lock key of a Job: its 16 hex digits as a signed 64-bit integer."""
    return int.from_bytes(bytes.fromhex(job_id[:16].rjust(16, "0")), "big", signed=True)


def _is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _masked(url: str) -> str:
    from kdbench.urls import display_url

    return display_url(url)


def _libpq(url: str) -> str:
    """A SQLAlchemy-style URL (``postgresql+psycopg://``) as libpq takes it."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if "+" in scheme else url


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Claim:
    """A held claim: :meth:`check` raises if the server no longer holds it for us."""

    def __init__(self, connection: Any, job_id: str, url: str) -> None:
        self.connection, self.job_id, self.url = connection, job_id, url

    def check(self) -> None:
        """Raise ``KdbenchError`` unless this process still holds the Job's claim."""
        key = claim_key(self.job_id)
        try:
            held = self.connection.execute(
                "select count(*) from pg_locks where locktype = 'advisory' and granted "
                "and pid = pg_backend_pid() and classid = %s and objid = %s and objsubid = 1",
                (*_halves(key),)).fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - any driver error means the claim is gone
            raise KdbenchError(f"Job {self.job_id}: the connection holding its claim in "
                               f"{_masked(self.url)} was lost ({exc}); another process may be "
                               "running it, so this one stops without recording it") from None
        if not held:
            raise KdbenchError(f"Job {self.job_id}: its claim in {_masked(self.url)} is no "
                               "longer held; this process stops without recording it")


def _halves(key: int) -> tuple[int, int]:
    """``pg_locks`` shows a bigint key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key % 2**64
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _holder_name() -> str:
    from kdbench.engine.lock import holder

    who = holder()
    slurm = f" slurm {who['slurm_job']}" if who["slurm_job"] else ""
    return f"kdbench {who['host']} pid {who['pid']}{slurm}"[:63]


@contextlib.contextmanager
def job_claim(url: str, job_id: str, *, poll: float = 5.0,
              wait_message: Callable[[str], None] = _say) -> Iterator[Claim]:
    """Hold Job ``job_id``'s claim in PostgreSQL ``url`` for the block (see the module
    docstring); wait while another process holds it.

    Raises:
        KdbenchError: the driver is missing or the server cannot be reached.
    """
    try:
        import psycopg
    except ImportError:
        raise KdbenchError(f"Job claims in {_masked(url)} need psycopg: pip install "
                           "'kdbench[cluster]'") from None
    try:
        connection = psycopg.connect(_libpq(url), autocommit=True,
                                     application_name=_holder_name(), **_KEEPALIVE)
    except psycopg.Error as exc:
        raise KdbenchError(f"cannot reach {_masked(url)} to claim Job {job_id}: "
                           f"{' '.join(str(exc).split())}; check the server and the URL "
                           f"({ENV_CLAIMS} or --tracking-uri)") from None
    key = claim_key(job_id)
    with connection:
        told = False
        while not connection.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            if not told:
                row = connection.execute(
                    "select a.application_name, host(a.client_addr) from pg_locks l "
                    "join pg_stat_activity a on a.pid = l.pid where l.locktype = 'advisory' "
                    "and l.granted and l.classid = %s and l.objid = %s and l.objsubid = 1",
                    _halves(key)).fetchone()
                who = f"{row[0]} from {row[1] or 'a local socket'}" if row else "unknown holder"
                wait_message(f"Job {job_id} is claimed by another process ({who}); "
                             "waiting for it")
                told = True
            time.sleep(poll)
        try:
            yield Claim(connection, job_id, url)
        finally:
            with contextlib.suppress(Exception):  # a lost connection has released it already
                connection.execute("select pg_advisory_unlock(%s)", (key,))
