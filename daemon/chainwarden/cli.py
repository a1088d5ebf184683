"""Command line: run, check, fix, fetch-chain, inspect. Exit codes (Nagios): 0 ok, 1 warn, 2 error, 3 could not run."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime

from . import __version__
from .config import Config, ConfigError, load_config
from .gcpolicy import tune_collector

EXIT_OK, EXIT_WARNING, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2, 3


class UsageError(Exception):
    """Bad command-line input: exit 3 with the message."""


def main(argv: Sequence[str] | None = None) -> int:
    # Names from the file system or a JSON file may hold lone surrogates (undecodable bytes, "\ud800"):
    # written as escapes they keep text and JSON output valid instead of crashing it.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors; Nagios wants 3
        return EXIT_UNKNOWN if exc.code not in (0, None) else EXIT_OK
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_UNKNOWN
    tune_collector()
    try:
        config = load_config(args.config)
        return int(args.handler(args, config))
    except (ConfigError, UsageError) as exc:
        print(f"chainwarden: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        return EXIT_UNKNOWN
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - a bug must read as "could not run" (3), never as a verdict
        if os.environ.get("CHAINWARDEN_DEBUG"):
            raise  # the whole traceback, for a bug report (it may quote input)
        print(f"chainwarden: internal error: {_where_it_failed(exc)}; please report it", file=sys.stderr)
        return EXIT_UNKNOWN


def _where_it_failed(exc: BaseException) -> str:
    """The exception's type and the innermost line of chainwarden's code it passed through; not its
    message, which might quote input (a secret, say)."""
    frames = traceback.extract_tb(exc.__traceback__)
    # By the package's own folder: a venv or checkout named chainwarden holds other code too.
    package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")
    ours = [f for f in frames if os.path.abspath(f.filename).startswith(package)] or frames
    if not ours:
        return type(exc).__name__
    frame = ours[-1]
    return f"{type(exc).__name__} in {os.path.basename(frame.filename)}:{frame.lineno} ({frame.name})"


OFFLINE_HELP = "do not probe endpoints (use the daemon's cached chains, else leaves in bundles)"
CHECK_EXIT = """\
exit status (Nagios):
  0  every connection ok
  1  warnings only
  2  at least one error; a connection file that is missing, unreadable or not valid JSON
     counts here too: it is a located connection_invalid result in the report, with or
     without --connection (such a file may hold NAME: its own error is reported)
  3  the command itself could not run: usage (a bad option, a --connection NAME that no
     file has), an unreadable configuration, an internal error"""
FIX_EXIT = """\
--connection NAME completes and moves only NAME, but the resubmission JSON carries its
whole file: every connection of each file holding NAME is verified and counted below
(another broken one is listed as "left broken" or "not fixable by a bundle").

exit status: what the connections will be once the planned bundles are in place, with or
without --write (each connection a bundle moves is verified again with its new bundle,
against the endpoint chains this run used); every error and warning still there is listed
as "remains", errors first, and the last line counts the connections by their worst:
  0  every connection ok
  1  warnings remain (fix leaves warnings such as wrong_order to the operator); with
     --offline, a connection without a cached or bundled leaf keeps endpoint_not_verified,
     a warning, as with check --offline
  2  something stays broken: a connection no bundle can mend ("not fixable by a bundle"),
     a fix that failed (fix_failed), a connection file with errors of its own (missing,
     unreadable, invalid JSON), another broken connection of a file fixed with
     --connection, or, with --write, a write that failed
  3  the command itself could not run: usage (a bad option, a --connection NAME that no
     file has), an unreadable configuration, an internal error"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainwarden",
        description="Keep Windchill+ connection trust bundles complete.",
    )
    parser.add_argument("--version", action="version", version=f"chainwarden {__version__}")
    sub = parser.add_subparsers(dest="command")

    def add(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--config",
            metavar="FILE",
            default=os.environ.get("CHAINWARDEN_CONFIG") or None,
            help="the daemon's TOML configuration (default: $CHAINWARDEN_CONFIG if set, else built-in defaults)",
        )
        return p

    check = add("check", "verify connection bundles (or one bundle) against the endpoint's chain", CHECK_EXIT)
    check.add_argument("files", nargs="*", metavar="CONNECTIONS.json")
    check.add_argument("--connection", metavar="NAME", help="only this connection")
    check.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    check.add_argument("--bundle", metavar="BUNDLE", help="check one bundle instead of connection files")
    check.add_argument("--chain", metavar="PRESENTED.pem", help="the endpoint's presented chain, leaf first")
    check.add_argument("--host", metavar="NAME", help="the name the endpoint's certificate must carry")
    check.add_argument("--at", metavar="ISO8601", help="evaluate at this moment, or 'apply_at' (each file's)")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(handler=_cmd_check)

    fix = add("fix", "complete bundles and write a resubmission JSON with a bumped apply_at", FIX_EXIT)
    fix.add_argument("files", nargs="+", metavar="CONNECTIONS.json")
    fix.add_argument(
        "--connection", metavar="NAME", help="fix only this connection (its files' others are still reported)"
    )
    fix.add_argument("--outbox", metavar="DIR", help="where to write (default: [regenerate] outbox)")
    fix.add_argument("--write", action="store_true", help="write the files (default: show the plan)")
    fix.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    fix.add_argument("--format", choices=("text", "json"), default="text")
    fix.set_defaults(handler=_cmd_fix)

    fetch = add("fetch-chain", "print the chain an endpoint presents, as PEM (leaf first)")
    fetch.add_argument("target", metavar="HOST[:PORT]")
    fetch.add_argument("--servername", metavar="NAME", help="SNI name (default: HOST)")
    fetch.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="connect and handshake deadline (default: [verify] timeout)"
    )
    fetch.set_defaults(handler=_cmd_fetch_chain)

    inspect = add("inspect", "list every block of a bundle: role, subject, issuer, expiry, fingerprint")
    inspect.add_argument("bundle", metavar="BUNDLE")
    inspect.add_argument("--format", choices=("text", "json"), default="text")
    inspect.set_defaults(handler=_cmd_inspect)

    run = add("run", "run the daemon: watch, re-verify, export metrics")
    run.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    run.add_argument("--once", action="store_true", help="one verification pass, then exit")
    run.set_defaults(handler=_cmd_run)
    return parser


def parse_moment(text: str) -> datetime:
    from .connections import parse_apply_at

    try:
        return parse_apply_at(text)
    except ValueError as exc:
        raise UsageError(f"--at {text}: {exc}") from None


def _cmd_check(args: argparse.Namespace, config: Config) -> int:
    from .checker import evaluate_pass, file_result, presented_chains, read_inputs, selected
    from .render import results_json, results_text
    from .report import Result, overall_exit_code

    at_apply = args.at == "apply_at"
    now = datetime.now(UTC) if args.at is None or at_apply else parse_moment(args.at)
    if args.bundle:
        if args.files:
            raise UsageError("give either connection files or --bundle, not both")
        results = [_check_one_bundle(args, config, now)]
    else:
        if not args.files:
            raise UsageError("check needs CONNECTIONS.json files, or --bundle BUNDLE")
        if args.chain or args.host:
            raise UsageError("--chain and --host go with --bundle")
        inputs = read_inputs(args.files, now=now)
        connections = selected(inputs, args.connection)
        own: list[Result] = []
        if args.connection:
            # Files that name the connection without a usable one (it is broken), or that could not be
            # read far enough to tell (missing, not JSON...): their own errors are the answer.
            usable = {c.file for c in connections}
            own = [
                file_result(cf)
                for cf in inputs.files
                if cf.problems
                and (cf.names is None or (args.connection in cf.names and cf.path not in usable))
            ]
            if not connections and not own:
                raise UsageError(f"no connection named {args.connection!r} in {', '.join(args.files)}")
        presented = presented_chains(connections, config, offline=args.offline)
        if at_apply:
            for connection_file in inputs.files:
                if connection_file.apply_at is not None:
                    when = connection_file.apply_at.isoformat()
                elif connection_file.apply_at_key == "apply_at":
                    when = "now (its apply_at is not a valid date-time; see apply_at_invalid)"
                elif connection_file.apply_at_key == "schedule_at":
                    when = "now (it says schedule_at, which is not used; see schedule_at_used)"
                else:
                    when = "now (it has no apply_at)"
                print(f"chainwarden: {connection_file.path}: evaluated at {when}", file=sys.stderr)
        results = own + evaluate_pass(
            inputs, presented, now, config, connection_name=args.connection, at_apply=at_apply
        )
    print(
        results_json(results) if args.format == "json" else results_text(results),
        end="" if args.format == "text" else "\n",
    )
    return overall_exit_code(results)


def _check_one_bundle(args: argparse.Namespace, config: Config, now: datetime):  # type: ignore[no-untyped-def]
    from .bundle import read_bundle_file
    from .engine import Presented, Target, evaluate, finish_shared_bundles
    from .roots import load_root_store

    presented = None
    if args.chain:
        chain_reading = read_bundle_file(args.chain)
        if not chain_reading.readable or not chain_reading.certificates():
            reasons = "; ".join(p.message for p in chain_reading.problems) or "no certificate in it"
            raise UsageError(f"--chain {args.chain}: {reasons}")
        presented = Presented(chain_reading.certificates(), "file")
        if not args.host:
            print("chainwarden: no --host given: the endpoint certificate's names were not checked", file=sys.stderr)
    evaluation = evaluate(
        Target(None, None, args.host, args.host, args.bundle),
        read_bundle_file(args.bundle),
        presented,
        now,
        store=load_root_store(config.verify_trusted_roots),
        warn_days=config.verify_warn_days,
    )
    return finish_shared_bundles([evaluation])[0]


def _cmd_fetch_chain(args: argparse.Namespace, config: Config) -> int:
    from .probe import parse_target, probe
    from .report import iso_utc

    target = args.target
    if "://" in target:  # a baseurl pasted from the connection JSON
        from urllib.parse import urlsplit

        # Never echo the URL: its user information or query may carry credentials.
        unusable = UsageError("fetch-chain: expected HOST[:PORT] or an https:// URL with a host and a numeric port")
        try:
            parts = urlsplit(target)
            port = parts.port or 443
        except ValueError:
            raise unusable from None
        if parts.scheme != "https" or not parts.hostname:
            raise unusable
        target = f"[{parts.hostname}]:{port}" if ":" in parts.hostname else f"{parts.hostname}:{port}"
    try:
        host, port = parse_target(target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = probe(host, port, servername=args.servername, timeout=args.timeout or config.verify_timeout)
    if not result.ok:
        print(f"chainwarden: {result.error}", file=sys.stderr)
        return EXIT_ERROR
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from .certinfo import describe

    for index, der in enumerate(result.chain):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cert = x509.load_der_x509_certificate(der)
            facts = describe(cert)  # never raises on an odd name
            print(f"# {index}: subject {facts.subject}", file=sys.stderr)
            print(f"#    issuer {facts.issuer}, expires {iso_utc(facts.not_after)}", file=sys.stderr)
            sys.stdout.write(cert.public_bytes(Encoding.PEM).decode())
        except ValueError as exc:
            print(f"# {index}: unreadable certificate: {exc}", file=sys.stderr)
    sys.stdout.flush()
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace, config: Config) -> int:
    from .inspect import inspect_bundle

    return inspect_bundle(args.bundle, args.format)


def _cmd_fix(args: argparse.Namespace, config: Config) -> int:
    from .fixcli import run_fix

    return run_fix(args, config)


def _cmd_run(args: argparse.Namespace, config: Config) -> int:
    from .service import run_service

    return run_service(args, config)


if __name__ == "__main__":
    sys.exit(main())
