"""A throw-away PostgreSQL server for the tests: Debian's postgresql-15
binaries (tools/bootstrap.sh installs them), initdb into a temporary
directory, the server on a free port of 127.0.0.1, trust authentication
for its superuser, no fsync (the data dies with the test session).

initdb and postgres refuse to run as root: as root they run as the
`postgres` user that the Debian package creates, in a directory it owns."""

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile


def pg_bin_dir():
    """The newest $PG_LIB/<version>/bin holding initdb (Debian's layout, as
    tools/bootstrap.sh checks it), or None."""
    lib = os.environ.get("PG_LIB", "/usr/lib/postgresql")
    found = [d for d in glob.glob(os.path.join(lib, "*")) if os.path.basename(d).isdigit()
             and os.path.exists(os.path.join(d, "bin", "initdb"))]
    if not found:
        return None
    return os.path.join(max(found, key=lambda d: int(os.path.basename(d))), "bin")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, bin_dir, durable=False):
        self.bin = bin_dir
        # durable: fsync and synchronous commits on, as in production (the
        # ingestion bench); the tests' data dies with them and need neither
        self.durable = durable
        self.dir = tempfile.mkdtemp(prefix="pgtest-")
        self.data = os.path.join(self.dir, "data")
        self.port = None
        self.as_user = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = "postgres"

    def _run(self, *cmd, timeout=60):
        argv = [os.path.join(self.bin, cmd[0]), *cmd[1:]]
        if self.as_user:
            argv = ["runuser", "-u", self.as_user, "--", *argv]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stdout}{p.stderr}{self.log()}")
        return p

    def log(self):
        try:
            with open(os.path.join(self.dir, "log")) as f:
                return "\n--- server log ---\n" + f.read()[-3000:]
        except OSError:
            return ""

    def start(self):
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        for _ in range(5):       # a port taken between the probe and the bind: try another
            self.port = _free_port()
            opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
            if not self.durable:
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            try:
                self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"),
                          "-o", opts, "-w", "-t", "60", "start", timeout=90)
                return self
            except RuntimeError:
                if "could not bind" not in self.log() and "in use" not in self.log():
                    raise
        raise RuntimeError("no free port for PostgreSQL" + self.log())

    def url(self, db="postgres"):
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self):
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
