"""Start a local MQTT broker for the simulator and the tests.

Mosquitto when it is installed (the real thing, as a utility runs it);
otherwise amqtt, a pure-Python broker from PyPI, so the MQTT path is always
real. The broker listens on a free loopback port and is stopped on exit.

    with Broker() as b:          # b.host, b.port, b.kind
        ...

Secured mode (Mosquitto only), as a utility would run it for meters:

    acl = meter_acl({"M1": 1, "M2": 1}, admins=["headend"])
    with Broker(tls=True, users={"M1": pw1, "M2": pw2, "headend": pw}, acl=acl) as b:
        b.ca_pem       # the test CA, generated for this broker at start-up
        b.ca_file      # ... and its path

- TLS listener: a CA and a server certificate for "localhost" and
  127.0.0.1 are generated at run time (`cryptography` package); clients
  must validate the server against the CA.
- Per-user passwords: a Mosquitto password file (salted SHA-512, "$6$").
- ACL: `meter_acl` gives each meter its own topics only (pattern lines with
  %u) and read access to its region's tariff; admins may use everything;
  readers (the ingestion workers' user, utility/ingest.py) read the
  meters' uplink only. Put readers in `admins=` of Broker (or --admin) so
  they connect on the head-end's listener.
- Queues: a session holds up to MAX_QUEUED QoS 1 messages beyond those in
  flight (`max_queued_messages`).
- Client ids: with passwords, meters and the head-end get separate
  listeners (b.port and b.admin_port) with separate users; the meters'
  listener replaces a client's id by its user name
  (`use_username_as_clientid`), so no meter can take over another's id.
- Packets larger than MAX_PACKET bytes are refused (`max_packet_size`).
- Persistence (on by default when secured): sessions and queued QoS 1
  messages survive a restart.

stop() and start() again restart the broker on the same port with the same
certificates: that is how the tests make outages.

From the command line, a broker configured as the project configures it
for meters (docs/INTEGRATION.md), in the foreground until Ctrl-C:

    python tools/broker.py --dir DIR [--host H] [--port P] [--admin-port Q]
                           [--tls [--hostname NAME]] [--admin USER ...]
                           (--passwd FILE --acl FILE | --anonymous)
    python tools/broker.py --dir DIR --pki-only [--hostname NAME]

DIR keeps the broker's state across restarts: the CA and server
certificate (made at the first --tls start, for NAME and 127.0.0.1;
DIR/ca.pem is what meters and the head-end trust), sessions and queued
messages. --passwd and --acl are Mosquitto files, as `headend.py
broker-files` or `simmeter.py --broker-files` write them; the --admin users
(default: headend) get the head-end's listener (Q, default P + 1), every
other user the meters' one (P). --anonymous (one listener, no passwords, no
ACL) is for a plain simulator only.
"""

import argparse
import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Largest MQTT packet (fixed header included) the broker passes on; the same
# limit as the meter's comms.net.MAX_PACKET.
MAX_PACKET = 4096

# QoS 1 messages Mosquitto queues per session beyond those in flight (its
# default is 1000, and it drops the rest). An ingestion worker that is down
# keeps receiving its round-robin share of the uplink into its session
# (docs/HEADEND.md §Ingestion): this is what one slot can hold meanwhile.
MAX_QUEUED = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_path():
    """The broker binary: on PATH or where Debian puts daemons (the places
    tools/bootstrap.sh checks and installs to; SBIN_DIRS overrides them in tests)."""
    sbin = os.environ.get("SBIN_DIRS", "/usr/sbin:/usr/local/sbin")
    return shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), sbin]))


# what an ingestion worker (utility/ingest.py) reads: the meters' uplink
UPLINK_TOPICS = ("m/+/t", "m/+/e", "m/+/s", "m/+/a")


def meter_acl(meters: dict, admins=("headend",), readers=()) -> str:
    """ACL text: meters {id: region} may publish telemetry, events, status
    and acks and read commands under m/<own id>/, and read their region's
    tariff, fleet commands and firmware manifests; admins read and write
    everything under m/ and r/; readers (the ingestion workers' user) read
    the meters' uplink and write nothing."""
    lines = []
    for a in admins:
        lines += [f"user {a}", "topic readwrite m/#", "topic readwrite r/#", ""]
    for u in readers:
        lines += [f"user {u}", *(f"topic read {t}" for t in UPLINK_TOPICS), ""]
    for mid, region in meters.items():
        lines += [f"user {mid}", f"topic read r/{region}/tariff", f"topic read r/{region}/fleet",
                  # the manifests of each board (r/<r>/ota/<board>; the broker does not
                  # know a meter's board) and the region-wide one of older images
                  f"topic read r/{region}/ota/+", f"topic read r/{region}/ota", ""]
    lines += ["pattern write m/%u/t", "pattern write m/%u/e", "pattern write m/%u/s",
              "pattern write m/%u/a", "pattern write m/%u/or", "pattern read m/%u/c",
              "pattern read m/%u/o", ""]
    return "\n".join(lines)


def password_line(user: str, password: str) -> str:
    """A Mosquitto password-file line ("$6$": SHA-512 over password + salt)."""
    salt = os.urandom(12)
    h = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(h).decode()}"


def make_test_pki(d: Path, hostname: str = "localhost"):
    """A throw-away CA and a server certificate signed by it. Returns the paths
    (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meter test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return d / "ca.pem", d / "server.pem", d / "server.key"


class Broker:
    def __init__(self, kind: str | None = None, port: int | None = None, tls: bool = False,
                 users: dict | None = None, acl: str | None = None, persistence: bool | None = None,
                 admins=("headend",), directory: str | None = None, host: str = "127.0.0.1",
                 passwd_file: str | None = None, admin_port: int | None = None,
                 hostname: str = "localhost"):
        # users: {name: password}, or passwd_file: a Mosquitto password file
        # ("name:hash" lines); directory: kept, its certificates reused
        # (else a temporary one)
        self.kind = kind or ("mosquitto" if mosquitto_path() else "amqtt")
        if passwd_file is not None:
            users = {}
            for ln in Path(passwd_file).read_text().splitlines():
                if ln.strip():
                    users[ln.split(":", 1)[0]] = ln
        self._hashed = passwd_file is not None
        secured = tls or users is not None or acl is not None
        if secured and self.kind != "mosquitto":
            raise RuntimeError("TLS, passwords and ACLs need Mosquitto (apt-get install mosquitto)")
        self.host = host
        self.hostname = hostname
        self.port = port or free_port()
        # with passwords, the head-end has a listener of its own (see _mosquitto_conf)
        self.admins = tuple(admins)
        self.admin_port = (admin_port or free_port()) if users is not None else self.port
        self.tls = tls
        self.users = users
        self.acl = acl
        self.persistence = secured if persistence is None else persistence
        self.proc = None
        self.ca_file = None
        self.ca_pem = None
        self._dir = None
        if directory is None:
            self._dir = tempfile.TemporaryDirectory(prefix="broker-")
            directory = self._dir.name
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _mosquitto_conf(self) -> str:
        d = self.dir
        lines = ["log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                 # the meter refuses anything larger itself (docs/PROTOCOL.md §1);
                 # the broker disconnects a publisher of a larger packet first
                 f"max_packet_size {MAX_PACKET}", f"max_queued_messages {MAX_QUEUED}"]
        if self.persistence:
            # sessions and queued QoS 1 messages survive a restart, as in production
            lines += ["persistence true", f"persistence_location {d}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # keep access to the files in our temp dir
        if self.tls and self.ca_file is None:
            ca = d / "ca.pem"
            if not all((d / f).exists() for f in ("ca.pem", "server.pem", "server.key")):
                ca, _cert, _key = make_test_pki(d, self.hostname)
            self.ca_file = str(ca)
            self.ca_pem = ca.read_text()
        if self.users is None:
            lines += ["allow_anonymous true", f"listener {self.port} {self.host}"]
            lines += self._tls_lines()
        else:
            # Meters and the head-end on separate listeners, each with its own
            # users. On the meters' listener a client's id is its user name,
            # so one meter's credentials cannot connect as another meter and
            # push it off; the head-end's listener (the back office's network
            # in production) knows only the admins, whose several clients
            # (service, CLI) keep ids of their own.
            meters = {u: p for u, p in self.users.items() if u not in self.admins}
            admins = {u: p for u, p in self.users.items() if u in self.admins}
            lines.append("per_listener_settings true")
            # (files of their own: an input --passwd/--acl in DIR is never overwritten)
            for port, users, name in ((self.port, meters, "meters.passwd"),
                                      (self.admin_port, admins, "admins.passwd")):
                (d / name).write_text("".join((p if self._hashed else password_line(u, p)) + "\n"
                                              for u, p in users.items()))
                lines += [f"listener {port} {self.host}", "allow_anonymous false",
                          f"password_file {d / name}"]
                if port == self.port:
                    lines.append("use_username_as_clientid true")
                if self.acl is not None:
                    lines.append(f"acl_file {d / 'broker.acl'}")
                lines += self._tls_lines()
        if self.acl is not None:
            (d / "broker.acl").write_text(self.acl)
        return "\n".join(lines) + "\n"

    def _tls_lines(self):
        if not self.tls:
            return []
        d = self.dir
        return [f"cafile {self.ca_file}", f"certfile {d / 'server.pem'}",
                f"keyfile {d / 'server.key'}", "tls_version tlsv1.2"]

    def start(self):
        d = self.dir
        if self.kind == "mosquitto":
            conf = d / "mosquitto.conf"
            conf.write_text(self._mosquitto_conf())
            cmd = [mosquitto_path(), "-c", str(conf)]
        else:
            conf = d / "amqtt.yaml"
            conf.write_text(
                f"listeners:\n  default:\n    type: tcp\n    bind: {self.host}:{self.port}\n"
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                "    allow_anonymous: true\n"
            )
            cmd = [str(Path(sys.executable).parent / "amqtt"), "-c", str(conf)]
        self.log = open(d / "broker.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("{} exited: {}".format(self.kind, (d / "broker.log").read_text()))
            try:
                for port in {self.port, self.admin_port}:
                    with socket.create_connection((self.host, port), timeout=0.2):
                        pass
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not start listening on {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="broker.py", description="An MQTT broker for meters, "
                                 "configured as the project configures it (Mosquitto).")
    ap.add_argument("--dir", required=True, help="broker state: certificates, sessions, log")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, help="meters' listener (default 8883 with --tls, else 1883)")
    ap.add_argument("--admin-port", type=int, help="head-end's listener (default: --port + 1)")
    ap.add_argument("--tls", action="store_true", help="TLS 1.2 listeners (CA in DIR/ca.pem)")
    ap.add_argument("--hostname", default="localhost", help="server certificate name")
    ap.add_argument("--passwd", help="Mosquitto password file (headend.py broker-files)")
    ap.add_argument("--acl", help="Mosquitto ACL file (headend.py broker-files)")
    ap.add_argument("--admin", action="append", help="a head-end user (default: headend)")
    ap.add_argument("--anonymous", action="store_true", help="no passwords and no ACL (simulator only)")
    ap.add_argument("--pki-only", action="store_true",
                    help="only make DIR/ca.pem and the server certificate (if absent), then exit")
    args = ap.parse_args(argv)
    if args.pki_only:
        d = Path(args.dir)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "ca.pem").exists():
            make_test_pki(d, args.hostname)
        print(f"CA: {d / 'ca.pem'}")
        return 0
    if args.anonymous == bool(args.passwd or args.acl) or not args.anonymous and not (args.passwd and args.acl):
        ap.error("give --passwd and --acl (as the project runs it), or --anonymous")
    if mosquitto_path() is None and not (args.anonymous and not args.tls):
        ap.error("Mosquitto is not installed (apt-get install mosquitto)")
    for name in ("passwd", "acl"):
        f = getattr(args, name)
        if f and not Path(f).is_file():
            ap.error(f"--{name} {f}: no such file (headend.py broker-files writes it)")
    port = args.port or (8883 if args.tls else 1883)
    busy = port_in_use(args.host, [port] if args.anonymous else [port, args.admin_port or port + 1])
    if busy:
        print(f"broker.py: {args.host}:{busy[0]} is already in use ({busy[1]}): another broker? "
              "choose --port/--admin-port", file=sys.stderr)
        return 1
    b = Broker(None, port, args.tls, acl=Path(args.acl).read_text() if args.acl else None,
               persistence=True, admins=tuple(args.admin or ("headend",)), directory=args.dir,
               host=args.host, passwd_file=args.passwd, admin_port=args.admin_port or port + 1,
               hostname=args.hostname)
    try:
        b.start()
    except RuntimeError as e:
        print(f"broker.py: {e}", file=sys.stderr)
        return 2
    who = "anonymous" if args.anonymous else f"meters on {b.port}, head-end on {b.admin_port}"
    print(f"broker: {b.kind} on {b.host}, {who}, tls {'on, CA ' + b.ca_file if b.tls else 'off'}",
          flush=True)

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)   # a service manager's stop: stop Mosquitto too
    try:
        rc = b.proc.wait()
    except KeyboardInterrupt:
        b.stop()
        return 0
    if rc:
        tail = (b.dir / "broker.log").read_text(errors="replace").strip().splitlines()[-5:]
        print(f"broker.py: {b.kind} on port {b.port} exited with status {rc}:", *tail,
              sep="\n  ", file=sys.stderr)
    return rc


def port_in_use(host, ports):
    """(port, reason) of the first of ports that cannot be bound on host, else None."""
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Mosquitto binds
            try:
                s.bind((host, port))
            except OSError as e:
                return port, e.strerror or str(e)
    return None


if __name__ == "__main__":
    sys.exit(main())
