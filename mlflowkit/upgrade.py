"""Move a running stack to another MLflow version with its data: ``mlflowkit upgrade <topology> --to VERSION``.

Backup → the new version's image (built from its pins when missing) → stop the MLflow servers → the stack's
``migrate`` one-shot (the schema brought to the new MLflow's, as ``mlflow db upgrade``) with the new image → the
servers on the new image → validation.
MLflow's schema migrations are not guaranteed to be transactional, so a failure at any step after the backup
puts the old image back in ``.env``, restores the backup and starts the old version again.

The versions the kit can run are the ones it has pins for, beside the image's build context
(``stacks/images/mlflow``): ``requirements.txt``/``.lock`` for the kit's own MLflow, and
``mlflow-<version>.txt``/``.lock`` for each other version (named apart from ``requirements*``, which are the
default image's: a contract test holds those to the default tag). A stack runs another version when its ``.env``
sets ``MLFLOW_IMAGE`` (default: ``stacks/common/images.yaml``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from mlflowkit import envfile, images
from mlflowkit.backup import check_supported
from mlflowkit.docker import check_engine, image_exists
from mlflowkit.errors import CommandError, KitError
from mlflowkit.settings import Settings
from mlflowkit.stack import Stack
from mlflowkit.topology import IMAGE_VARIABLE, Backend

Log = Callable[[str], None]
LOCK_ARG = "MLFLOW_LOCK"  # the pins the mlflow image installs (stacks/images/compose.yaml, build arg)
# The images of the kit's own MLflow (servers; serving), and the one that builds another version's: one full image
# a stack on that version runs for everything (stacks/images/compose.yaml).
KIT_SERVICES = ("mlflow", "mlflow-serving")
OTHER_VERSION_SERVICE = "mlflow-serving"
MIGRATE = "migrate"  # the one-shot that migrates the schema (stacks/common/postgres.yaml)
T = TypeVar("T")
_PINNED = re.compile(r"^(requirements|mlflow-[^/]+)\.txt$")


# --- versions the kit has pins for --------------------------------------------------------------------------------

def versions(settings: Settings) -> dict[str, Path]:
    """Every MLflow version the kit can build an image of -> its lock file (read from each requirements file's
    ``mlflow==`` pin, so a file's name cannot claim another version than it installs)."""
    found: dict[str, Path] = {}
    context = images_context(settings)
    for path in sorted(context.glob("*.txt")):
        if not _PINNED.match(path.name):
            continue
        version = _mlflow_pin(path)
        if version is not None and path.with_suffix(".lock").is_file():
            found[version] = path.with_suffix(".lock")
    return dict(sorted(found.items(), key=lambda item: _version(item[0])))


def default_version(settings: Settings) -> str:
    """The kit's own MLflow: the pin of ``requirements.txt`` (the image ``mlflowkit build`` makes)."""
    version = _mlflow_pin(images_context(settings) / "requirements.txt")
    if version is None:
        raise KitError("stacks/images/mlflow/requirements.txt pins no mlflow version.")
    return version


def lock_file(settings: Settings, version: str) -> Path:
    """The hash-checked lock of ``version`` (what its image, and an old client of the tests, install)."""
    known = versions(settings)
    if version not in known:
        raise KitError(f"MLflow {version} has no pins in this kit; it has: {', '.join(known)}.",
                       hint="add stacks/images/mlflow/mlflow-<version>.txt and its .lock "
                       "(stacks/images/mlflow/mlflow-2.22.5.txt says how).")
    return known[version]


def images_context(settings: Settings) -> Path:
    return settings.images_compose_file.parent / "mlflow"


def _mlflow_pin(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if requirement.name.lower() == "mlflow" and pinned:
            return pinned[0]
    return None


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise KitError(f"{text!r} is not an MLflow version (e.g. 3.17.2).") from None


# --- images --------------------------------------------------------------------------------------------------

def image_for(settings: Settings, version: str) -> str:
    """``mlflowkit/mlflow:<version>``: the kit's image repository (stacks/common/images.yaml), tagged."""
    (default,) = images.names(settings, "mlflow")
    return f"{default.rsplit(':', 1)[0]}:{version}"


def ensure_image(settings: Settings, version: str, log: Log) -> str:
    """The image of MLflow ``version``, built from its pins; its name. The kit's own version is built when
    missing (`mlflowkit build` rebuilds it); another version is built every time, which its cached layers make a
    matter of seconds, so an image made by an older kit (another entrypoint, other pins) is never run."""
    lock = lock_file(settings, version)
    image = image_for(settings, version)
    if version == default_version(settings):
        if not all(image_exists(name) for name in images.names(settings, *KIT_SERVICES)):
            images.build(settings, log, list(KIT_SERVICES))
        return image
    base = images.base_image(settings)
    images.ensure_base(base, log)
    compose = images.compose(settings, base)
    compose = dataclasses.replace(compose, env={**(compose.env or {}), IMAGE_VARIABLE: image, LOCK_ARG: lock.name})
    log_dir = Path(settings.home) / ".logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"build-mlflow-{version}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.log"
    log(f"build: {image} from {lock.name} on {base} (full log: {path})")
    progress = images.BuildProgress(log)
    with path.open("w") as full:
        def on_line(line: str) -> None:
            full.write(line + "\n")
            progress.feed(line)

        try:
            compose.build([OTHER_VERSION_SERVICE], timeout=settings.build_timeout, on_line=on_line)
        except CommandError as exc:
            raise KitError(f"building {image} failed after {progress.elapsed():.0f} s (exit {exc.returncode}).",
                           hint=f"the full log is {path}.", details=exc.stderr) from None
    log(f"build: {image} in {progress.elapsed():.0f} s")
    return image


# --- the stack's .env -----------------------------------------------------------------------------------------

# --- a new stack on another version ------------------------------------------------------------------------------

def choose_version(stack: Stack, version: str, log: Log) -> None:
    """Make ``stack`` run MLflow ``version`` from its next `up` (`mlflowkit up --mlflow VERSION`): the image built
    from the kit's pins when missing, named in the stack's .env. Only for a stack without data of another version:
    moving data between versions is `upgrade` (backup, migration, rollback)."""
    _version(version)
    lock_file(stack.settings, version)  # refuses a version without pins, naming the ones there are
    check_engine()
    wanted = image_for(stack.settings, version)
    default = image_for(stack.settings, default_version(stack.settings))
    current = (stack.env().get(IMAGE_VARIABLE) if stack.env_file.exists() else None) or default
    if current != wanted and _holds_data(stack):
        raise KitError(f"{stack.topology.name} already holds data of {current}; starting it on {wanted} "
                       "would skip the migration between them.",
                       hint=f"`mlflowkit upgrade {stack.topology.name} --to {version}` moves it with its data "
                       f"(or `mlflowkit down {stack.topology.name} --volumes` to start empty).")
    ensure_image(stack.settings, version, log)
    envfile.set_value(stack.env_file, IMAGE_VARIABLE, None if wanted == default else wanted)
    log(f"up: {stack.topology.name} runs MLflow {version} ({wanted})")


def _holds_data(stack: Stack) -> bool:
    if stack.states() or stack.volumes():
        return True
    values = stack.env() if stack.env_file.exists() else {}
    data = Path(values.get("MLFLOW_DATA_DIR") or stack.settings.data_dir(stack.topology.name))
    return stack.topology.uses_data_dir and data.is_dir() and any(data.iterdir())


# --- the upgrade ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What an upgrade will do, checked before anything changes."""

    stack: Stack
    current: str  # the MLflow version the stack's server runs
    target: str
    image: str | None  # the image to run; None: the kit's image of ``target`` (built when missing)
    old_image: str | None  # the .env's MLFLOW_IMAGE before the upgrade (None: not set, the default image)
    backup_dir: Path


class StepFailed(Exception):
    def __init__(self, step: str, cause: str) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step
        self.cause = cause


def check(stack: Stack, target: str) -> None:
    """Refuse what no upgrade can do, before asking the engine anything (one line each)."""
    topology = stack.topology
    check_supported(topology, "upgrade")
    if MIGRATE not in topology.one_shots:
        if topology.backend is Backend.FILE:
            instead = (f"a file store has no schema to migrate: set {IMAGE_VARIABLE}=<image> in its .env and run "
                       f"`mlflowkit up {topology.name}` again (after `mlflowkit backup {topology.name}`)")
        else:
            instead = (f"its {topology.backend.value} database belongs to the client: `mlflowkit backup "
                       f"{topology.name}`, then `mlflow db upgrade <its tracking URI>` with the new MLflow client")
        raise KitError(f"{topology.name} has no server-side database to migrate (no {MIGRATE} one-shot).",
                       hint=instead + ".")
    _version(target)
    lock_file(stack.settings, target)  # refuses a version without pins, naming the ones there are


def plan(stack: Stack, target: str, *, image: str | None = None, backup_dir: Path | None = None) -> Plan:
    """Check the request against the running stack: known version, a stack that is up, no downgrade."""
    check(stack, target)
    check_engine()
    states = {state.service: state for state in stack.states()}
    down = [service for service in stack.topology.services
            if service not in states or states[service].state != "running"]
    if down:
        raise KitError(f"{stack.topology.name} is not up ({', '.join(down)} not running); upgrade needs the "
                       "running stack (its data is backed up through it).",
                       hint=f"`mlflowkit up {stack.topology.name}` first.")
    current = stack.server_version()
    if _version(target) < _version(current):
        raise KitError(f"{stack.topology.name} runs MLflow {current}; {target} would be a downgrade, which "
                       "MLflow's migrations cannot undo.",
                       hint="restore a backup taken before the upgrade (`mlflowkit restore --force`) instead.")
    if _version(target) == _version(current) and image is None:
        raise KitError(f"{stack.topology.name} already runs MLflow {current}: nothing to upgrade.")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    default_dir = Path(stack.settings.home) / "backups" / f"{stack.topology.name}-{stamp}-before-{target}"
    return Plan(stack=stack, current=current, target=target, image=image,
                old_image=stack.env().get(IMAGE_VARIABLE) or None, backup_dir=backup_dir or default_dir)


def upgrade(stack: Stack, target: str, log: Log, *, image: str | None = None,
            backup_dir: Path | None = None) -> Path:
    """Upgrade ``stack`` to MLflow ``target``; the backup's directory. ``image``: run this image instead of the
    kit's image of ``target`` (tests use it to prove the rollback with an image whose migration fails)."""
    chosen = plan(stack, target, image=image, backup_dir=backup_dir)
    return run(chosen, log)


def run(plan: Plan, log: Log) -> Path:
    stack, topology = plan.stack, plan.stack.topology
    started = time.monotonic()
    servers = [*topology.servers]
    steps = 6
    log(f"upgrade: {topology.name} from MLflow {plan.current} to {plan.target} ({steps} steps; the backup "
        f"goes to {plan.backup_dir})")

    def step(number: int, name: str, what: str) -> float:
        log(f"upgrade [{number}/{steps}] {name}: {what}")
        return time.monotonic()

    def done(number: int, name: str, since: float, result: str = "done") -> None:
        log(f"upgrade [{number}/{steps}] {name}: {result} ({time.monotonic() - since:.1f} s)")

    # Steps 1-2 change nothing in the stack: a failure there leaves it as it was.
    from mlflowkit import backup as backups

    since = step(1, "backup", f"metadata and artifacts into {plan.backup_dir}")
    try:
        manifest = backups.backup(stack, plan.backup_dir, log)
    except KitError as exc:
        raise KitError(f"upgrade of {topology.name} stopped at step 'backup' ({exc.message}); nothing changed: "
                       f"it still runs MLflow {plan.current}.", hint=exc.hint, details=exc.details) from None
    done(1, "backup", since, ", ".join(f"{count} {name}" for name, count in manifest.counts.items()))
    since = step(2, "image", f"MLflow {plan.target}")
    try:
        image = plan.image or ensure_image(stack.settings, plan.target, log)
        if not image_exists(image):
            raise KitError(f"image {image} does not exist.")
    except KitError as exc:
        raise KitError(f"upgrade of {topology.name} stopped at step 'image' ({exc.message}); nothing changed: "
                       f"it still runs MLflow {plan.current} (backup: {plan.backup_dir}).",
                       hint=exc.hint, details=exc.details) from None
    done(2, "image", since, image)

    serving = any(s.service == topology.serve_service and s.state == "running" for s in stack.states())
    try:
        since = step(3, "stop", ", ".join(servers))
        stopped = [*servers, *([topology.serve_service] if serving else [])]
        _attempt("stop", lambda: stack.compose(with_serve=True).call("stop", *stopped))
        # The kit's own image is the default (unset): its servers and its serving service run different variants.
        value = None if image == image_for(stack.settings, default_version(stack.settings)) else image
        _attempt("stop", lambda: envfile.set_value(stack.env_file, IMAGE_VARIABLE, value))
        done(3, "stop", since, f"{IMAGE_VARIABLE}={value} in {stack.env_file}" if value
             else f"{IMAGE_VARIABLE} unset in {stack.env_file} (the kit's images)")
        since = step(4, "migrate", f"the schema brought to {image}")
        output = _attempt("migrate", lambda: stack.compose().call(
            "run", "--rm", "--no-deps", "-T", MIGRATE, timeout=stack.settings.up_timeout))
        done(4, "migrate", since, _last_line(output) or "done")
        since = step(5, "start", ", ".join(servers))
        _attempt("start", lambda: stack.compose().up(servers, timeout=stack.settings.up_timeout, no_deps=True,
                                                     progress=False))
        now = _attempt("start", lambda: stack.server_version())
        if now != plan.target:
            raise StepFailed("start", f"the server reports MLflow {now}, not {plan.target}")
        done(5, "start", since, f"MLflow {now}")
        since = step(6, "validate", "log, register, alias, serve, predict")
        _attempt("validate", lambda: _validate(stack))
        done(6, "validate", since)
    except StepFailed as failure:
        _roll_back(plan, failure, log)
    if serving:
        stack.serve()
    log(f"upgrade: {topology.name} runs MLflow {plan.target} ({time.monotonic() - started:.0f} s); "
        f"the backup of MLflow {plan.current} stays in {plan.backup_dir}")
    return plan.backup_dir


def _attempt(step: str, action: Callable[[], T]) -> T:
    """``action()``; any failure becomes :class:`StepFailed` with its cause in one line (the last line of what
    the failing command printed, else the error's message)."""
    try:
        return action()
    except KitError as exc:
        raise StepFailed(step, _last_line(exc.details or "") or exc.message) from None
    except Exception as exc:  # noqa: BLE001 - MLflow, requests, OS errors: every cause leads to the rollback
        raise StepFailed(step, f"{type(exc).__name__}: {exc}") from None


def _validate(stack: Stack) -> None:
    from mlflowkit.validate import validate_isolated

    report = validate_isolated(stack)
    failure = report.failure
    if failure is not None:
        raise KitError(f"step {failure.name!r}: {failure.detail}")


def _roll_back(plan: Plan, failure: StepFailed, log: Log) -> None:
    """The old image back in .env, the backup restored, the old servers started; then the one line that says
    what happened. A rollback that fails itself says where the backup is."""
    from mlflowkit import backup as backups

    stack = plan.stack
    name = stack.topology.name
    log(f"upgrade: step {failure.step!r} failed ({failure.cause}); rolling back to MLflow {plan.current}")
    try:
        envfile.set_value(stack.env_file, IMAGE_VARIABLE, plan.old_image)
        try:  # restore talks to the servers; the old ones start unless the migration got far enough to change
            stack.up(keep=True)  # the schema (keep: the stores stay up for the restore either way)
        except KitError as exc:
            log(f"upgrade: MLflow {plan.current} does not start on the store as the failed step left it "
                f"({exc.message}); restoring with its servers stopped")
        backups.restore(stack, plan.backup_dir, log, force=True)
        stack.up()
        back = stack.server_version()
    except Exception as exc:  # noqa: BLE001 - whatever stops the rollback, the user gets the backup's path
        cause = exc.message if isinstance(exc, KitError) else f"{type(exc).__name__}: {exc}"
        raise KitError(f"upgrade of {name} to {plan.target} failed at step {failure.step!r} ({failure.cause}), "
                       f"and the rollback failed too ({cause}).",
                       hint=f"the backup is {plan.backup_dir}: `mlflowkit restore {name} --from {plan.backup_dir} "
                       "--force` once the stack runs its old image again.") from None
    raise KitError(f"upgrade of {name} to MLflow {plan.target} failed at step {failure.step!r} ({failure.cause}); "
                   f"rolled back: it runs MLflow {back} with the data of the backup {plan.backup_dir}.")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
