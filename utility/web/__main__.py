"""The console's command line.

    python -m utility.web adduser NAME --role operator|viewer --db URL   (password: prompt or stdin)
    python -m utility.web serve --db URL [--broker HOST:PORT --ca CA --user headend ...] --port P

serve runs the console with waitress. Without --broker it is read-only;
with it, actions go through a HeadEnd connected to that broker (the
head-end's password from HEADEND_PASSWORD, never on the command line
where `ps` shows it); online top-up's PAYMENT_SECRET, PAYMENT_CHECKOUT_URL,
PAYMENT_REFUND_URL and PAYMENT_CURRENCY from the environment too. Exit status: 0 done, 2 usage or a clear error.
"""

import argparse
import getpass
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _password(stream=sys.stdin):
    if stream.isatty():
        pw = getpass.getpass("password: ")
        if pw != getpass.getpass("again: "):
            raise SystemExit("console: the two passwords differ")
        return pw
    return stream.readline().rstrip("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m utility.web", description="The operators' console.")
    ap.add_argument("--db", default=os.environ.get("HEADEND_DB", "headend.sqlite"),
                    help="the store: a SQLite path or a database URL")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("adduser", help="create a console user (password from the prompt or stdin)")
    p.add_argument("name")
    p.add_argument("--role", choices=["operator", "viewer"], required=True)
    p = sub.add_parser("serve", help="serve the console with waitress")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--broker", help="HOST:PORT of the head-end's listener: enables actions")
    p.add_argument("--ca", default=os.environ.get("HEADEND_CA"), help="CA file: TLS to the broker")
    p.add_argument("--user", default=os.environ.get("HEADEND_USER", "headend"))
    p.add_argument("--master", help="master key file (default: <db>.master)")
    p.add_argument("--office", help="office signing key (default: <db>.office.pem)")
    p.add_argument("--secret-key-file", help="file holding the session key (default: a new key "
                   "per start, which logs everyone out at a restart)")
    p.add_argument("--ingest-workers", action="store_true",
                   help="ingestion workers (python -m utility.ingest) store the uplink: the "
                   "console's head-end does not subscribe to it and reads acks from the store")
    p.add_argument("--silent-hours", type=int, default=24)
    p.add_argument("--insecure-http", action="store_true",
                   help="session cookie without Secure, for plain http on a trusted machine only")
    args = ap.parse_args(argv)
    if args.cmd == "adduser":
        return _adduser(args)
    return _serve(args)


def _adduser(args):
    from utility import store

    from . import auth
    engine = store.open_store(args.db)
    store.migrate(engine)
    try:
        auth.add_user(engine, args.name, _password(), args.role)
    except ValueError as e:
        print(f"console: {e}", file=sys.stderr)
        return 2
    print(f"user {args.name} ({args.role}) added to {args.db}")
    return 0


def _serve(args):
    from waitress import serve

    from . import create_app
    config = {"SILENT_HOURS": args.silent_hours}
    if args.secret_key_file:
        config["SECRET_KEY"] = Path(args.secret_key_file).read_text().strip()
    if args.insecure_http:
        config["SESSION_COOKIE_SECURE"] = config["REMEMBER_COOKIE_SECURE"] = False
    # online top-up (docs/HEADEND.md §Online top-up): the provider's secret
    # from the environment only, like the head-end's password
    config.update({k: os.environ[k] for k in ("PAYMENT_SECRET", "PAYMENT_CHECKOUT_URL",
                                              "PAYMENT_REFUND_URL", "PAYMENT_CURRENCY")
                   if os.environ.get(k)})
    he = _headend(args) if args.broker else None
    app = create_app(args.db, headend=he, **config)
    mode = "actions through " + args.broker if he else "read-only"
    print(f"console on http://{args.host}:{args.port}/ ({mode}), store {args.db}", flush=True)
    try:
        serve(app, host=args.host, port=args.port, threads=8)
    finally:
        if he is not None:
            he.close()
    return 0


def _headend(args):
    sys.path.insert(0, str(ROOT / "tools"))
    from headend import HeadEnd, HeadEndError, read_master
    host, _, port = args.broker.rpartition(":")
    office = args.office or args.db + ".office.pem"
    try:
        he = HeadEnd(args.db, read_master(args.master or args.db + ".master"), host or "127.0.0.1",
                     int(port), args.user, os.environ.get("HEADEND_PASSWORD"), args.ca,
                     client_id="console", persistent=True,
                     office=office if Path(office).exists() else None,
                     ingest=not args.ingest_workers)
        return he.connect()
    except (HeadEndError, ValueError) as e:
        raise SystemExit(f"console: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
