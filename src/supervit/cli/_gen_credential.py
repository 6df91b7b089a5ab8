"""``supervit gen-credential``: print a signed credential for any of the 12 RPC actions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from supervit.auth import Action, SharedSecret, Signer, build_payload, new_nonce
from supervit.cli._secret_options import pick_secret
from supervit.protocol import common_pb2

__all__ = ["gen_credential"]

_SUBJECT_HELP = {
    Action.REGISTER: "the registration fingerprint (64 lowercase hex)",
    Action.REPORT: "the ReportRequest timestamp (defaults to --timestamp)",
    Action.UPDATE_CONFIG: "the config key",
    Action.GET_CONFIG: "the config key",
    Action.CREATE_REALM: "the realm id",
    Action.GET_REALM: "the realm id",
    Action.UPDATE_REALM: "the realm id",
    Action.DELETE_REALM: "the realm id",
}
# NonceCredential.timestamp is a uint64, ReportRequest.timestamp an int64: the common range.
_MAX_TIMESTAMP = 2**63 - 1
_REALM_ACTIONS = {Action.CREATE_REALM, Action.GET_REALM, Action.UPDATE_REALM, Action.DELETE_REALM}


def parse_config_type(value: str) -> int:
    """A ConfigType given by number (``3``) or name (``LOG_LEVEL``, case-insensitive)."""
    text = value.strip()
    if text.isdigit():
        number = int(text)
        if number in common_pb2.ConfigType.values():
            return number
    else:
        try:
            return int(common_pb2.ConfigType.Value(text.upper()))
        except ValueError:
            pass
    names = ", ".join(f"{n}={v}" for n, v in common_pb2.ConfigType.items())
    raise click.BadParameter(f"unknown config type {value!r}; expected one of {names}", param_hint="--config-type")


def _subject(action: Action, subject: str | None, timestamp: int) -> str | None:
    if not action.needs_subject:
        if subject is not None:
            raise click.UsageError(f"action {action.value} takes no --subject")
        return None
    if action is Action.REPORT and subject is None:
        return str(timestamp)
    if subject is None:
        raise click.UsageError(f"action {action.value} needs --subject ({_SUBJECT_HELP[action]})")
    if action in _REALM_ACTIONS and not (subject.isdigit() and int(subject) < 2**32):
        raise click.UsageError(f"--subject for {action.value} must be a realm id (0..4294967295), got {subject!r}")
    if action is Action.REPORT and not subject.lstrip("-").isdigit():
        raise click.UsageError(f"--subject for report must be an integer timestamp, got {subject!r}")
    return subject


@click.command("gen-credential")
@click.option(
    "--action",
    required=True,
    type=click.Choice([a.value for a in Action]),
    help="RPC action (the payload prefix).",
)
@click.option("--node-id", required=True, help="The node id in the payload.")
@click.option(
    "--shared-secret",
    envvar=["SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET", "SUPERVIT_SHARED_SECRET"],
    show_envvar=True,
    help="Hex secret (>= 64 hex chars). Prefer the env var or a file: command lines are visible to other users.",
)
@click.option(
    "--shared-secret-file",
    envvar="SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET_FILE",
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the hex secret from this file (mode 0600).",
)
@click.option("--subject", help="Fingerprint, report timestamp, realm id or config key (by action).")
@click.option("--config-type", help="ConfigType number or name (update_config/get_config).")
@click.option("--timestamp", type=click.IntRange(0, _MAX_TIMESTAMP), help="Unix seconds (default: now).")
@click.option("--nonce", help="Nonce text (default: a fresh UUID v4).")
@click.option("--output", type=click.Choice(["human", "json"]), default="human", show_default=True)
def gen_credential(
    action: str,
    node_id: str,
    shared_secret: str | None,
    shared_secret_file: Path | None,
    subject: str | None,
    config_type: str | None,
    timestamp: int | None,
    nonce: str | None,
    output: str,
) -> None:
    """Print a NonceCredential for one request, e.g. to call a node with grpcurl.

    With fixed --timestamp and --nonce the output is deterministic.
    """
    act = Action(action)
    if not node_id:
        raise click.BadParameter("must not be empty", param_hint="--node-id")
    secret_text = pick_secret(shared_secret, shared_secret_file, "--shared-secret", "--shared-secret-file")
    if not secret_text:
        raise click.UsageError(
            "missing --shared-secret or --shared-secret-file (or SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET)"
        )
    secret = SharedSecret.from_hex(secret_text, field="--shared-secret")
    signer = Signer(secret)
    ts = signer.now() if timestamp is None else timestamp
    subj = _subject(act, subject, ts)
    ctype: int | None = None
    if act.needs_config_type:
        if config_type is None:
            raise click.UsageError(f"action {act.value} needs --config-type")
        ctype = parse_config_type(config_type)
    elif config_type is not None:
        raise click.UsageError(f"action {act.value} takes no --config-type")
    payload = build_payload(act, node_id, subj, ctype)
    cred = signer.credential(payload, timestamp=ts, nonce=nonce if nonce is not None else new_nonce())
    if output == "json":
        doc = {"timestamp": cred.timestamp, "nonce": cred.nonce, "signature": cred.signature, "payload": payload}
        click.echo(json.dumps(doc, ensure_ascii=False))
    else:
        click.echo(f"action     {act.value}")
        click.echo(f"payload    {payload}")
        click.echo(f"timestamp  {cred.timestamp}")
        click.echo(f"nonce      {cred.nonce}")
        click.echo(f"signature  {cred.signature}")
