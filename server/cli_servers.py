"""The command-line side of deployed servers: `servers ...`, `run NAME`, and what `doctor` says is mounted."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from builder.errors import InputError
from builder.service import Foundry
from server.gateway.errors import GatewayError


def run_server(foundry: Foundry, args: argparse.Namespace) -> int:
    """`run NAME`: the sandboxed server on this process's stdio (the client's, nothing in between), supervised so
    that its cgroup and /tmp are removed when it ends (server.gateway.alone)."""
    import anyio

    from builder import deploy
    from server.gateway.alone import run_alone

    manifest = deploy.get_server(foundry.settings.servers_dir, args.name, args.version)
    backend = foundry.backend
    sys.stdout.flush()
    return anyio.run(run_alone, manifest, foundry.settings, backend)


def print_mounts(foundry: Foundry) -> None:
    """For `doctor`: what `serve` mounts, the limits each gets, the names tools get and what each server needs."""
    from builder import deploy
    from server.gateway.launch import SERVE_CPU_SECONDS, disk_usage, resolve_secrets, serve_states
    from server.gateway.mounts import scan

    table = scan(foundry.settings.servers_dir)
    print("mounted servers (what `serve` serves, sandboxed; `serve --mount/--no-mount` narrows it):")
    print("  limits of each mounted server (and of `run NAME`), for as long as its process runs:")
    for state in serve_states(foundry.settings, foundry.backend):
        print(f"    {'in force' if state.in_force else 'NOT in force':<13} {state.name:<10} {state.detail}")
    print(f"    per process: RLIMIT_CPU {SERVE_CPU_SECONDS} s; no wall clock (the idle timeout stops it)")
    if not table.mounts and not table.skipped:
        print("  none deployed")
    for m in table.mounts.values():
        needs = ["network" if m.manifest.needs_network else "no network"]
        if m.manifest.secrets:
            try:
                resolve_secrets(m.manifest, foundry.settings.secrets_file)
                needs.append(f"secrets {', '.join(m.manifest.secrets)} (all set)")
            except GatewayError:
                needs.append(f"secrets {', '.join(m.manifest.secrets)} (NOT all set: it will not start)")
        state = disk_usage(deploy.state_dir(foundry.settings.servers_dir, m.name))
        print(f"  {m.name:<24} v{m.version:<5} {len(m.tools)} tool(s), {len(m.prompts)} prompt(s); "
              f"{'; '.join(needs)}; state dir {state / 1024:.0f} KiB")
        for exposed, original in m.tools.items():
            print(f"      {exposed}" + (f"  (= {original})" if exposed != f"{m.name}__{original}" else ""))
    for name, why in table.skipped.items():
        print(f"  {name:<24} not mounted: {why}")


def servers(foundry: Foundry, args: argparse.Namespace) -> int:
    """`servers [list|show|add|rollback|remove]`."""
    from builder import deploy

    root = foundry.settings.servers_dir
    if args.action == "add":
        return servers_add(foundry, args)
    if args.action == "list":
        servers = deploy.list_servers(root)
        if not servers:
            print("no deployed servers")
        for s in servers:
            print(f"{s.name:<30} current {s.current:<8} versions {', '.join(s.versions)}")
        return 0
    if not args.name:
        print(f"mcp-foundry: error: servers {args.action} needs a NAME", file=sys.stderr)
        return 2
    if args.action == "show":
        from server.gateway.launch import serve_states
        from server.gateway.mounts import details

        info = deploy.get_server(root, args.name, args.version)
        limits = serve_states(foundry.settings, foundry.backend)
        print(json.dumps({**info.model_dump(mode="json"), **details(info, root, limits=limits)}, indent=2))
    elif args.action == "rollback":
        print(f"{args.name}: current version is now {deploy.rollback_server(root, args.name, args.version).version}")
        print(deploy.state_note(root, args.name, "rollback"))
    else:
        removed = deploy.remove_server(root, args.name, args.version)
        print(f"removed {args.name} {', '.join(removed)}")
        print(deploy.state_note(root, args.name, "remove"))
    return 0


def servers_add(foundry: Foundry, args: argparse.Namespace) -> int:
    """`servers add PATH --name N`: the "deploy" job, queued for the worker and followed here, its progress on
    stderr."""
    from builder.adopt import AdoptReport
    from builder.params import deploy_params
    from server.jobs_cli import print_outcome, run_job

    if not args.name or not args.as_name:
        raise InputError("servers add", "needs the server directory and --name",
                         "mcp-foundry servers add PATH --name NAME [--network] [--secret VAR]")
    params = deploy_params(args.name, args.as_name, args.network, args.secret or None, args.description)
    foundry.backend  # noqa: B018 - an unusable sandbox backend is refused now, not inside the job
    job = run_job(foundry, "deploy", params, quiet=args.json)
    return print_outcome(job, args.json, lambda r: _render_adopt(AdoptReport.model_validate(r)))


def _render_adopt(r: Any) -> str:
    if not r.ok:
        return f"NOT DEPLOYED: {r.name}: {r.error}"
    d = r.deployment
    assert d is not None
    lines = [f"DEPLOYED {d.name} v{d.version} at {d.directory}",
             f"  served by `mcp-foundry serve` as {d.name}__<tool>; alone, sandboxed: mcp-foundry run {d.name}",
             f"  network: {'yes' if r.needs_network else 'no'}; secrets: {', '.join(r.secrets) or 'none'}",
             f"  stored as case {r.case_id}", *(f"  note: {n}" for n in r.notes)]
    return "\n".join(lines)
