"""The `mlflowkit` command: parses, calls the library, prints. No logic of its own."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mlflowkit import __version__, images, people, topology, workspaces
from mlflowkit.errors import KitError, UnknownTopology
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack, label_ports
from mlflowkit.validate import Report, validate_all, validate_isolated

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
if not out.is_terminal:  # CI logs and pipes: wide enough for the validation matrix
    out = Console(width=160)
err = Console(stderr=True, highlight=False)
if not err.is_terminal:
    err = Console(stderr=True, highlight=False, width=160)



def _complete_topology(incomplete: str) -> list[str]:
    """Shell completion (`mlflowkit --install-completion`): the topology names."""
    return [name for name in topology.TOPOLOGIES if name.startswith(incomplete)]


TopologyArg = Annotated[str, typer.Argument(help=f"one of: {', '.join(topology.TOPOLOGIES)}", show_default=False,
                                            autocompletion=_complete_topology)]


def _log(message: str) -> None:
    err.print(message, markup=False)


def _stack(name: str) -> Stack:
    return Stack(topology.get(name), Settings(), log=_log)


def _fail(exc: KitError) -> None:
    if exc.details:
        err.print(exc.details.rstrip()[-4000:], markup=False, style="dim")
    err.print(f"error: {exc}", markup=False, style="bold red")
    raise typer.Exit(2 if isinstance(exc, UnknownTopology) else 1)


def guarded(func: Callable[..., None]) -> Callable[..., None]:
    """Every command: a KitError becomes one clear line (plus hint) and a non-zero exit."""
    from functools import wraps

    @wraps(func)
    def wrapper(*args: object, **kwargs: object) -> None:
        try:
            func(*args, **kwargs)
        except KitError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        import mlflow

        out.print(f"mlflowkit {__version__} (MLflow client {mlflow.__version__}; stacks from {Settings().stacks_dir})",
                  markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="the kit's version, and where its stacks are")] = False
             ) -> None:
    """Self-hosted MLflow in every storage topology, each proven by serving a model through it."""


@app.command("list")
@guarded
def list_(markdown: Annotated[bool, typer.Option(help="the README's table")] = False) -> None:
    """The topologies this kit provisions."""
    if markdown:
        sys.stdout.write(topology.markdown_table())
        return
    table = Table("topology", "MLflow scenario", "what it is", "ports (variable=default)")
    for t in topology.TOPOLOGIES.values():
        table.add_row(t.name, str(t.scenario), t.title, ", ".join(f"{p.variable}={p.default}" for p in t.ports))
    out.print(table)


@app.command()
@guarded
def build(base: Annotated[str | None, typer.Option(help="base image (default: $BASE_IMAGE)")] = None) -> None:
    """Build every image the stacks run (cached layers make a rebuild quick)."""
    settings = Settings() if base is None else Settings(base_image=base)
    images.build(settings, _log)


@app.command()
@guarded
def up(name: TopologyArg, keep: Annotated[bool, typer.Option(help="leave failed containers for inspection")] = False,
       auth: Annotated[bool, typer.Option(help="MLflow's basic-auth app with a generated admin")] = False,
       free_ports: Annotated[bool, typer.Option(help="a new stack publishes on free 127.0.0.1 ports, not the "
                                                     "defaults (an existing .env keeps its ports)")] = False,
       metrics: Annotated[bool, typer.Option(help="the metrics profile too: Prometheus scraping every MLflow "
                                                  "server on PROMETHEUS_PORT (not file, sqlite)")] = False,
       workspaces_: Annotated[bool, typer.Option("--workspaces", help="MLflow's workspaces: a team's experiments "
                                                 "and models seen only by its members (`mlflowkit workspaces`; "
                                                 "SQL stores behind a tracking server)")] = False,
       mlflow: Annotated[str | None, typer.Option("--mlflow", metavar="VERSION",
                                                  help="run this MLflow version (one the kit has pins for; "
                                                       "default: the kit's). A stack with data moves with "
                                                       "`upgrade`")] = None) -> None:
    """Build missing images, write the stack's .env, start it and wait until it is healthy."""
    stack = _stack(name)
    if mlflow is not None:
        from mlflowkit import upgrade as upgrades

        upgrades.choose_version(stack, mlflow, _log)
    stack.up(keep=keep, auth=auth, free_ports=free_ports, metrics=metrics, workspaces=workspaces_)


@app.command("validate")
@guarded
def validate_(
    name: Annotated[str | None, typer.Argument(help="a topology (or --all)", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="bring up, validate and take down every topology")] = False,
    ui: Annotated[bool | None, typer.Option("--ui/--no-ui", help="check the UI in a headless browser (default: "
                                            "when Chromium, chromedriver and Selenium are installed)",
                                            show_default=False)] = None,
) -> None:
    """Prove a running stack end to end: log, register, alias, serve, predict, check where data landed.

    The client runs in a separate process with a plain environment (no MLflow, S3 or AWS variables).
    """
    if all_ == (name is not None):
        raise KitError("give one topology or --all.", hint=f"topologies: {', '.join(topology.TOPOLOGIES)}")
    if name is not None:
        stack = _stack(name)
        report = validate_isolated(stack, ui=ui)
        _print_reports([report])
        failure = report.failure
        if failure is not None:
            raise KitError(f"{name}: step {failure.name!r} failed: {failure.detail}")
        _print_usage(stack)
        return
    reports = validate_all(Settings(), _log, ui=ui)
    _print_reports(reports)
    failed = [r.topology for r in reports if not r.ok]
    if failed:
        raise KitError(f"validation failed for: {', '.join(failed)}")


@app.command()
@guarded
def bench(
    names: Annotated[list[str] | None, typer.Argument(help="topologies (default: --all)", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="every topology, one at a time")] = False,
    quick: Annotated[bool, typer.Option(help="tiny sizes: checks the bench runs (about a minute a topology)")] = False,
    out_dir: Annotated[str | None, typer.Option("--out", help="default: benchmarks/results/<UTC time>")] = None,
    large_mib: Annotated[int, typer.Option(help="size of the large artifact transfer (default 100; 1 GiB runs "
                                               "too where the disk has room)")] = 0,
    cold_build: Annotated[bool, typer.Option(help="first rebuild every image without the layer cache, timing each "
                                                  "(minutes; needs the package mirrors)")] = False,
) -> None:
    """Measure topologies side by side: boot, tracking, artifacts, serving, footprint, server settings.

    Runs its own stacks (compose projects `<MLFLOWKIT_PROJECT_PREFIX>-bench-*`, `mlflowkit-bench-*` by default; free
    127.0.0.1 ports, deleted afterwards); never yours.
    """
    from pathlib import Path

    from mlflowkit.bench.run import choose_sizes, default_out_dir, run_bench

    if all_ and names:
        raise KitError("give topologies or --all, not both.")
    chosen = [topology.get(name).name for name in names] if names else list(topology.TOPOLOGIES)
    settings = Settings()
    sizes = choose_sizes(quick=quick, large_mib=large_mib, cold_build=cold_build)
    target = Path(out_dir) if out_dir else default_out_dir(settings, quick=quick)
    path, table = run_bench(chosen, sizes, settings, target, _log)
    out.print(table, markup=False, highlight=False)
    out.print(f"\nresults: {path} (table.md and the plots beside it)", markup=False, highlight=False)


@app.command()
@guarded
def backup(name: TopologyArg,
           to: Annotated[str | None, typer.Option(help="a new or empty directory (default: a fresh one under "
                                                       "$MLFLOWKIT_HOME/backups)")] = None) -> None:
    """Snapshot a stack: its metadata store, every artifact, and a manifest with counts and checksums."""
    from pathlib import Path

    from mlflowkit import backup as backups

    stack = _stack(name)
    target = Path(to) if to else stack.settings.backup_dir(name)
    manifest = backups.backup(stack, target, _log)
    out.print(f"backup of {name} (MLflow {manifest.mlflow_version}) in {target}", markup=False, highlight=False)


@app.command()
@guarded
def restore(name: TopologyArg,
            from_: Annotated[str, typer.Option("--from", help="a directory `mlflowkit backup` wrote",
                                               show_default=False)],
            force: Annotated[bool, typer.Option(help="replace what the stack holds")] = False,
            validate: Annotated[bool, typer.Option(help="run the stack's validation afterwards")] = True) -> None:
    """Put a backup into an empty stack, check every count and checksum, then validate the stack."""
    from pathlib import Path

    from mlflowkit import backup as backups

    stack = _stack(name)
    backups.restore(stack, Path(from_), _log, force=force)
    if validate:
        report = validate_isolated(stack)
        _print_reports([report])
        failure = report.failure
        if failure is not None:
            raise KitError(f"{name}: restored, but step {failure.name!r} of the validation failed: {failure.detail}")


@app.command()
@guarded
def gc(name: TopologyArg,
       older_than: Annotated[str | None, typer.Option(help="only what was deleted longer ago, e.g. 30d")] = None
       ) -> None:
    """Permanently delete deleted runs and experiments, their artifacts included (MLflow's gc, run where the
    topology can reach both its store and its artifacts)."""
    from mlflowkit import gc as garbage

    sys.stdout.write(garbage.collect(_stack(name), _log, older_than=older_than))


@app.command()
@guarded
def migrate(source: TopologyArg, target: TopologyArg,
            force: Annotated[bool, typer.Option(help="replace everything the target holds (it must be empty "
                                                     "otherwise: two stores are never merged)")] = False) -> None:
    """Move every experiment, run, model and artifact of one topology's stack into another's, IDs and timestamps
    kept; ends with counts side by side and a field-by-field check of a sample."""
    from mlflowkit import migrate as migration

    migration.route(topology.get(source), topology.get(target))  # bad pairs fail before the engine is asked
    outcome = migration.migrate(_stack(source), _stack(target), _log, force=force)
    table = Table("kind", source, target, "", title=f"migrate {source} -> {target} ({outcome.seconds:.0f} s)")
    for kind, had, got, verdict in outcome.counts:
        table.add_row(kind, str(had), "-" if got is None else str(got),
                      f"[green]{verdict}[/]" if verdict.startswith("equal") else f"[red]{verdict}[/]")
    out.print(table)
    sample = Table("sample", "", "detail", title="field-by-field check")
    for item, equal, detail in outcome.sample:
        sample.add_row(item, "[green]equal[/]" if equal else "[red]DIFFERS[/]", detail)
    out.print(sample)
    for old, new in outcome.renumbered.items():
        out.print(f"experiment id {old} -> {new}", markup=False, highlight=False)
    if not outcome.ok:
        raise KitError(f"{source} -> {target}: the target differs from the source (see the tables above).")


@app.command()
@guarded
def down(name: TopologyArg,
         volumes: Annotated[bool, typer.Option(help="also delete the stack's data volumes")] = False) -> None:
    """Stop and remove the stack's containers (its data volumes stay unless --volumes)."""
    _stack(name).down(volumes=volumes)


@app.command()
@guarded
def status(name: Annotated[str | None, typer.Argument(show_default=False)] = None) -> None:
    """Containers of every (or one) topology: role (each replica as the load balancer sees it), state, health,
    published ports."""
    from mlflowkit.docker import check_engine

    check_engine()
    names = [name] if name else list(topology.TOPOLOGIES)
    table = Table("topology", "service", "role", "state", "health", "published")
    for each in names:
        stack = _stack(each)
        members = stack.members()
        if not members:
            table.add_row(each, "-", "", "down", "", "")
        values = stack.env() if members and stack.env_file.exists() else {}
        for m in members:
            s = m.state
            state = s.state if s.state != "exited" else f"exited ({s.exit_code})"
            table.add_row(each, m.name, m.role, state, s.health, label_ports(s.ports, stack.topology, values))
    out.print(table)


@app.command()
@guarded
def logs(name: TopologyArg, services: Annotated[list[str] | None, typer.Argument()] = None,
         tail: Annotated[int, typer.Option(help="lines per service")] = 100) -> None:
    """The stack's service logs."""
    sys.stdout.write(_stack(name).logs(services or [], tail=tail))


@app.command()
@guarded
def env(name: TopologyArg,
        user: Annotated[str | None, typer.Option(help="that person's environment (`mlflowkit users add`)",
                                                 show_default=False)] = None,
        admin: Annotated[bool, typer.Option(help="the stack's admin: every user's data, every permission")] = False,
        workspace: Annotated[str | None, typer.Option(help="in that workspace (MLFLOW_WORKSPACE; a stack with "
                                                           "--workspaces)", show_default=False)] = None,
        ) -> None:
    """Print the exports a client needs for this stack, secrets included: eval "$(mlflowkit env NAME)"; a stack
    with --auth needs --user NAME (a person's own password) or --admin."""
    stack = _stack(name)
    for key, value in stack.client_connection(user, admin, workspace).environ().items():
        print(f"export {key}={shlex.quote(value)}")
    print(f"# MLflow UI: {stack.ui_url()}")
    if stack.topology.has_metrics and stack.env().get(topology.METRICS_SWITCH):  # from .env: no engine asked
        print(f"# Prometheus (metrics profile): {stack.metrics_url()}")


users = typer.Typer(no_args_is_help=True,
                    help="The people of a stack run with --auth, each with a password of their own (MLflow's "
                         "basic-auth users, through its REST API).")
app.add_typer(users, name="users")
PersonArg = Annotated[str, typer.Argument(help="the user name: lower-case letters, digits, '.', '_', '-'",
                                          show_default=False)]


def _change_person(name: str, person: str, change: Callable[[people.Server, people.Passwords, str], object],
                   said: str) -> None:
    stack = _stack(name)
    change(stack.user_server(), stack.passwords, person)
    out.print(said, markup=False, highlight=False)


@users.command("add")
@guarded
def users_add(name: TopologyArg, person: PersonArg) -> None:
    """Make PERSON a user of the stack with a new password (kept by the kit; never printed here); with
    --workspaces, a user of the default workspace too."""
    _stack(name).add_person(person)
    out.print(f"{person} is a user of {name}; their environment: eval \"$(mlflowkit env {name} --user {person})\"",
              markup=False, highlight=False)


@users.command("list")
@guarded
def users_list(name: TopologyArg) -> None:
    """The stack's users: admin or not, and whether the kit holds their password."""
    stack = _stack(name)
    table = Table("user", "admin", "password kept by the kit", title=f"users of {name}")
    for person in people.people(stack.user_server(), stack.passwords):
        table.add_row(person.name, "yes" if person.admin else "no", "yes" if person.password_kept else "no")
    out.print(table)


@users.command("reset")
@guarded
def users_reset(name: TopologyArg, person: PersonArg) -> None:
    """A new password for PERSON (the old one stops working at once)."""
    _change_person(name, person, people.reset,
                   f"{person} has a new password on {name}: eval \"$(mlflowkit env {name} --user {person})\"")


@users.command("remove")
@guarded
def users_remove(name: TopologyArg, person: PersonArg) -> None:
    """Remove PERSON from the stack (what they logged stays; their password stops working)."""
    _change_person(name, person, people.remove, f"{person} is no longer a user of {name}")


@app.command()
@guarded
def upgrade(name: TopologyArg,
            to: Annotated[str, typer.Option(help="the MLflow version (one the kit has pins for)", show_default=False)],
            backup_dir: Annotated[str | None, typer.Option(help="where the backup goes (default: a new directory "
                                                                 "under $MLFLOWKIT_HOME/backups)")] = None) -> None:
    """Move a running stack to another MLflow version with its data: backup, image, migrate, start, validate;
    on any failure the old version and the backup are put back."""
    from pathlib import Path

    from mlflowkit import upgrade as upgrades

    stack = _stack(name)
    upgrades.check(stack, to)
    kept = upgrades.upgrade(stack, to, _log, backup_dir=Path(backup_dir) if backup_dir else None)
    out.print(f"{name} runs MLflow {to}; the backup taken before is {kept}", markup=False, highlight=False)


def _print_reports(reports: list[Report]) -> None:
    if len(reports) == 1:
        table = Table("step", "result", "time", "detail", title=f"validation of {reports[0].topology}")
        for s in reports[0].steps:
            table.add_row(s.name, "[green]PASS[/]" if s.ok else "[red]FAIL[/]", f"{s.seconds:.1f} s", s.detail)
        out.print(table)
        return
    steps: list[str] = []  # every report's steps, each report's order kept
    for report in reports:
        position = -1
        for step in report.steps:
            if step.name in steps:
                position = steps.index(step.name)
            else:
                position += 1
                steps.insert(position, step.name)
    table = Table("step", *(r.topology for r in reports), title="validation (PASS/FAIL, seconds)")
    cells = [{s.name: f"[green]PASS[/] {s.seconds:.1f}" if s.ok else f"[red]FAIL[/] {s.seconds:.1f}"
              for s in r.steps} for r in reports]
    for name in steps:
        table.add_row(name, *(c.get(name, "[dim]-[/]") for c in cells))
    out.print(table)


spaces = typer.Typer(no_args_is_help=True,
                     help="The workspaces of a stack run with --workspaces (MLflow's own): each team's experiments, "
                          "models, prompts and traces, seen only by its members.")
app.add_typer(spaces, name="workspaces")
WorkspaceArg = Annotated[str, typer.Argument(help="the workspace: 2-63 lower-case letters, digits, inner '-'",
                                             show_default=False)]


@spaces.command("list")
@guarded
def workspaces_list(name: TopologyArg) -> None:
    """The stack's workspaces (those the admin sees: all of them)."""
    table = Table("workspace", "description", title=f"workspaces of {name}")
    for space in workspaces.listed(_stack(name).workspace_server()):
        table.add_row(space.name, space.description)
    out.print(table)


@spaces.command("add")
@guarded
def workspaces_add(name: TopologyArg, workspace: WorkspaceArg,
                   description: Annotated[str, typer.Option(help="what the workspace is for")] = "") -> None:
    """Make WORKSPACE (no one but the stack's admin is in it until `workspaces grant`)."""
    workspaces.add(_stack(name).workspace_server(), workspace, description)
    out.print(f"{workspace} is a workspace of {name}; add people: mlflowkit workspaces grant {name} {workspace} "
              "NAME", markup=False, highlight=False)


@spaces.command("remove")
@guarded
def workspaces_remove(name: TopologyArg, workspace: WorkspaceArg) -> None:
    """Remove an empty WORKSPACE (one that still holds experiments or models is refused, nothing deleted)."""
    workspaces.remove(_stack(name).workspace_server(), workspace)
    out.print(f"{workspace} is no longer a workspace of {name}", markup=False, highlight=False)


@spaces.command("members")
@guarded
def workspaces_members(name: TopologyArg, workspace: WorkspaceArg) -> None:
    """Who is in WORKSPACE, and at which level."""
    table = Table("user", "level", title=f"members of {workspace} on {name}")
    for member in workspaces.members(_stack(name).workspace_server(), workspace):
        table.add_row(member.person, member.level.value)
    out.print(table)


@spaces.command("grant")
@guarded
def workspaces_grant(name: TopologyArg, workspace: WorkspaceArg, person: PersonArg,
                     level: Annotated[workspaces.Level, typer.Option(
                         help="user: reads everything there, writes what they create; admin: everything, members "
                              "included")] = workspaces.Level.USER) -> None:
    """Make PERSON (`mlflowkit users add`) a member of WORKSPACE."""
    workspaces.grant(_stack(name).workspace_server(), workspace, person, level)
    out.print(f"{person} is in {workspace} as {level.value}; their environment there: eval \"$(mlflowkit env {name} "
              f"--user {person} --workspace {workspace})\"", markup=False, highlight=False)


@spaces.command("revoke")
@guarded
def workspaces_revoke(name: TopologyArg, workspace: WorkspaceArg, person: PersonArg) -> None:
    """PERSON leaves WORKSPACE (what they made there stays)."""
    workspaces.revoke(_stack(name).workspace_server(), workspace, person)
    out.print(f"{person} is no longer in {workspace}", markup=False, highlight=False)


def _print_usage(stack: Stack) -> None:
    conn = stack.connection()
    lines = [f"The {stack.topology.name} stack works. Point a client at it:"]
    secret = ("AWS_", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME")
    lines += [f"  export {key}={value}" for key, value in conn.environ().items() if not key.startswith(secret)]
    name = stack.topology.name
    if conn.password:
        lines.append(f"  # and the secrets: people of their own (`mlflowkit users add {name} NAME`, then "
                     f"eval \"$(mlflowkit env {name} --user NAME)\"), or the admin's (`mlflowkit env {name} --admin`)")
    elif conn.aws_access_key_id:
        lines.append(f"  # and the secrets: eval \"$(mlflowkit env {name})\" (prints them)")
    lines += [f"UI: {stack.ui_url()}",
              f"Stop: mlflowkit down {stack.topology.name}   (add --volumes to delete its data)"]
    out.print("\n".join(lines), markup=False, highlight=False)


def main() -> None:
    """The console script: `mlflowkit` and `python -m mlflowkit`."""
    app(prog_name="mlflowkit")


if __name__ == "__main__":
    main()
