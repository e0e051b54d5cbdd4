"""``ballast``: an operator's command line over a service's admin API (installed with the package).

    ballast models                              production, the version kept warm, the rollout, history
    ballast rollout start VERSION [--policy JSON]
    ballast rollout status
    ballast rollout approve|pause|resume|abort [--reason TEXT]
    ballast rollback --reason TEXT
    ballast audit verify                        the audit trail's hash chain (exit 1 if broken)
    ballast audit query|export [--request-id ID] [--since T] [--until T] [--version V] [--route R]
                               [--kind prediction|shadow] [--decision D]
    ballast drift [--api-key KEY]               the latest drift window per version, feature by feature

``--url`` (or ``BALLAST_URL``, default http://127.0.0.1:3000) names the service, ``--token`` (or
``BALLAST_TOKEN``) the caller's bearer token (``drift`` needs none: it reads a prediction route,
with the API key ``--api-key``, or ``BALLAST_CLIENT_API_KEY``, when the service has one);
``--json`` prints the API's answer as it is. A refusal prints the API's error and exits 1; a
request that cannot be sent exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx

ACTIONS = {"approve": "approved", "pause": "paused", "resume": "resumed", "abort": "aborted"}
"""Each rollout action and the reason recorded when none is given."""


def call(url: str, token: str, path: str, body: Any = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        answer = client.get(path) if body is None else client.post(path, json=body)
    found = answer.json()
    if answer.status_code >= 400:
        error = found.get("error", {})
        fields = "; ".join(f"{f['path']}: {f['message']}" for f in error.get("fields") or [])
        raise Refused(answer.status_code, f"{error.get('message', answer.text)}{' (' + fields + ')' if fields else ''}")
    return dict(found)


def drift_summary(found: dict[str, Any]) -> str:
    """The drift report, for a person: a block per version and source, a line per feature."""
    lines = [
        f"service {found['service']}: windows of {found['window_rows']} rows, "
        f"confirmed after {found['confirm_windows']}"
    ]
    if not found["reports"]:
        lines.append("no window closed yet")
    for r in found["reports"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["closed_at"]))
        decided = "" if r["decided"] else " (too few rows: not judged)"
        lines.append(f"\n{r['version']} {r['source']}: window of {r['rows']} rows closed {when}{decided}")
        for f in r["features"]:
            mark = "CONFIRMED" if f["name"] in r["confirmed"] else "drifted" if f["drifted"] else ""
            lines.append(
                f"  {f['name']:<22} {f['test']:<4} p={f['adjusted_p']:<9.3g} distance {f['distance']:.3f} "
                f"(threshold {f['threshold']:.3f}) {f['direction']:<8} {mark}"
            )
        if r["unseen"]:
            lines.append(f"  unseen categories past their share: {', '.join(r['unseen'])}")
        summary = r.get("summary") or {}
        if "score_change" in summary:
            changed = "CHANGED within the window" if summary["score_change"] else "no change"
            lines.append(f"  score (ADWIN): mean {summary['score_mean']:.4f}, {changed}")
        if "estimated_accuracy" in summary:
            lines.append(
                f"  accuracy its calibrated scores promise (no labels): {summary['estimated_accuracy']:.4f} "
                f"+- {summary['estimate_stderr']:.4f}"
            )
    for p in found.get("performance", []):
        lines.append(
            f"\n{p['version']} performance on labelled feedback: {p['standing'].upper()}, {p['labels']} labels"
        )
        for f in p["figures"]:
            measured = "not enough labels" if f["observed"] is None else f"{f['observed']:.4f} (p={f['p_value']:.3g})"
            lines.append(f"  {f['figure']:<9} held-out {f['held_out']:.4f}, measured {measured}  {f['standing']}")
        if p["error_change_at"] is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(p["error_change_at"]))
            lines.append(f"  the error rate changed (ADWIN) at predictions of {when}")
        if p["estimate_unreliable"]:
            lines.append("  the calibrated estimate disagrees with the labels: it is unreliable")
    return "\n".join(lines)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")


def summary(state: dict[str, Any]) -> str:
    """The answer of an admin call, for a person."""
    lines = [f"model       {state['model']}", f"production  {state['production']}"]
    if state.get("previous"):
        lines.append(f"previous    {state['previous']} (kept warm for a rollback)")
    rollout = state.get("rollout")
    if rollout is None:
        lines.append("rollout     none")
    else:
        if rollout["state"] == "shadow":
            where = "shadow"
        elif rollout["state"] == "watching":
            until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(rollout["watch_until"]))
            where = f"promoted, watched until {until}"
        else:
            where = f"{rollout['state']} (stage {rollout['stage']})"
        flags = [f for f in ("paused", "inconclusive") if rollout[f]]
        lines.append(
            f"rollout     {rollout['version']}: {where}, {rollout['share']:.0%} of the traffic"
            f"{', ' + ', '.join(flags) if flags else ''}; started by {rollout['started_by']}"
        )
        if rollout.get("reason"):
            lines.append(f"            last: {rollout['reason']}")
        evidence = rollout.get("evidence") or {}
        shown = {
            "candidate_trials",
            "candidate_failures",
            "production_trials",
            "production_failures",
            "shadow_compared",
            "shadow_agreed",
            "shadow_dropped",
            "shadow_mean_distance",
            "shadow_mean_inference_ms",
        }
        figures = ", ".join(f"{k} {v:.3g}" for k, v in evidence.items() if k in shown)
        if figures:
            lines.append(f"            evidence: {figures}")
    for change in (state.get("history") or [])[:5]:
        lines.append(f"  {change['principal']}: {change['action']} {json.dumps(change['detail'], sort_keys=True)}")
    return "\n".join(lines)


def audit_command(args: argparse.Namespace) -> int:
    """``ballast audit verify|query|export``: 0, or 1 when the chain has problems."""
    if args.action == "verify":
        checked = call(args.url, args.token, "/admin/audit/verify", {})
        if args.json:
            print(json.dumps(checked, indent=2, sort_keys=True))
        else:
            print(f"{checked['rows']} rows; " + ("the chain verifies" if not checked["problems"] else "problems:"))
            for problem in checked["problems"]:
                print(f"  {problem}")
        return 1 if checked["problems"] else 0
    filters = {
        k: v
        for k, v in {
            "request_id": args.request_id,
            "since": args.since,
            "until": args.until,
            "version": args.version,
            "route": args.route,
            "kind": args.kind,
            "decision": args.decision,
        }.items()
        if v is not None
    }
    if args.action == "query":
        rows = call(args.url, args.token, "/admin/audit/query", {**filters, "limit": args.limit})["rows"]
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    after = 0
    while True:  # export: page through everything that matches
        rows = call(args.url, args.token, "/admin/audit/query", {**filters, "after_seq": after, "limit": 1000})["rows"]
        for row in rows:
            print(json.dumps(row, sort_keys=True, separators=(",", ":")))
        if len(rows) < 1000:
            return 0
        after = rows[-1]["seq"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ballast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("BALLAST_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--token", default=os.environ.get("BALLAST_TOKEN"))
    parser.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="production, the rollout in progress, the latest changes")
    rollout = commands.add_parser("rollout", help="start, follow and decide a rollout").add_subparsers(
        dest="action", required=True
    )
    start = rollout.add_parser("start", help="start a rollout of a version")
    start.add_argument("version")
    start.add_argument("--policy", type=json.loads, help='JSON: {"stages": [0.01, 0.05, 0.2, 1.0], ...}')
    rollout.add_parser("status", help="the rollout in progress")
    for action, said in ACTIONS.items():
        rollout.add_parser(action, help=f"{action} the rollout").add_argument("--reason", default=said)
    commands.add_parser("rollback", help="stop a rollout, or return production to the version kept warm").add_argument(
        "--reason", required=True
    )
    drift = commands.add_parser("drift", help="the latest drift window per version, feature by feature")
    drift.add_argument("--api-key", default=os.environ.get("BALLAST_CLIENT_API_KEY"), help="the service's API key")
    audit = commands.add_parser("audit", help="read the audit trail (an auditor's token)").add_subparsers(
        dest="action", required=True
    )
    audit.add_parser("verify", help="verify the hash chain; exit 1 if anything is wrong")
    for name, said in (("query", "rows matching the filters"), ("export", "every matching row, as JSON Lines")):
        reading = audit.add_parser(name, help=said)
        reading.add_argument("--request-id")
        reading.add_argument("--since", type=float, help="seconds since the epoch")
        reading.add_argument("--until", type=float, help="seconds since the epoch")
        reading.add_argument("--version")
        reading.add_argument("--route", choices=["production", "canary", "shadow"])
        reading.add_argument("--kind", choices=["prediction", "shadow"])
        reading.add_argument("--decision", help="rows with an answer of this decision (e.g. decline)")
        if name == "query":
            reading.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    if args.command == "drift":
        return drift_command(args)
    if not args.token:
        parser.error("a token is needed: --token or BALLAST_TOKEN")
    try:
        if args.command == "audit":
            return audit_command(args)
        if args.command == "models" or (args.command == "rollout" and args.action == "status"):
            state = call(args.url, args.token, "/admin/models")
        elif args.command == "rollback":
            state = call(args.url, args.token, "/admin/rollback", {"reason": args.reason})
        elif args.action == "start":
            body: dict[str, Any] = {"version": args.version, **({"policy": args.policy} if args.policy else {})}
            state = call(args.url, args.token, "/admin/rollouts", body)
        else:
            state = call(args.url, args.token, f"/admin/rollouts/{args.action}", {"reason": args.reason})
    except Refused as exc:
        print(f"ballast: refused: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"ballast: {args.url} did not answer: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(state, indent=2, sort_keys=True) if args.json else summary(state))
    return 0


def drift_command(args: argparse.Namespace) -> int:
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    try:
        answer = httpx.get(f"{args.url}/v1/drift", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"ballast: {args.url} did not answer: {exc}", file=sys.stderr)
        return 2
    found = answer.json()
    if answer.status_code >= 400:
        print(
            f"ballast: refused: {answer.status_code}: {found.get('error', {}).get('message', answer.text)}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(found, indent=2, sort_keys=True) if args.json else drift_summary(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
