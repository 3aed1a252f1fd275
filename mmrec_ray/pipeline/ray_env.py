"""The one place that starts or joins Ray, and that maps a run directory to storage.

* Local: ``ray.init(address="local", num_cpus=...)`` starts an in-process single-node Ray.
* Cluster: under ``ray job submit`` (or with ``RAY_ADDRESS`` set) the driver joins the existing cluster.
* Environment: usage stats are off. ``RAY_AUTH_MODE`` is left to the user and to Ray: Ray 2.60 accepts
  ``disabled`` and ``token`` (a static bearer token on the dashboard, jobs API and GCS; case-insensitive), and a
  typo would silently mean ``disabled``, so a set value is checked. Unset, Ray's own default applies: a new local
  instance (``ray.init`` without an address) turns token auth on and generates ``~/.ray/auth_token`` when
  missing, so local runs need no setup; ``ray start --head`` turns it on only if a token already exists, and a
  driver joining a cluster by explicit address only with ``RAY_AUTH_MODE=token`` exported (the token comes from
  ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, in that order). A driver under
  ``ray job submit`` inherits the cluster nodes' environment, token included. See ``cluster.yaml`` and the
  README for a cluster.
* Storage: a run directory is a local path (made absolute: Ray workers do not share the driver's cwd) or a URI
  (``s3://``, ``gs://``). Stages that write plain files work in a local staging folder which is pulled from and
  pushed to the URI around each stage; Ray Tune/Train write their experiment state to the URI directly.
  A multi-node run needs shared storage (a URI or an NFS path mounted at the same place on every node):
  checkpoints written by a worker on one node are read by workers on another.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

AUTH_MODES = ("disabled", "token")


def configure_environment() -> None:
    """Set Ray's process-level switches before Ray starts (raylets and workers inherit the environment)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Not defaulted: writing ``disabled`` here would switch off the token auth Ray enables for local instances.
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() not in AUTH_MODES:
        from mmrec_ray.errors import ConfigError

        raise ConfigError(f"RAY_AUTH_MODE={mode!r}: Ray 2.60 accepts {list(AUTH_MODES)}")
    from mmrec_ray.pipeline import console

    console.quiet_ray_environment()
    # Train V2 is the default in 2.60; pinning it keeps the TorchTrainer semantics we rely on.
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # Tune/Train otherwise print a line per reported metric; the stage progress lines are ours.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def init_ray(
    address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None, **kwargs
) -> bool:
    """Start or join Ray once. Returns True when this call started it (the caller then shuts it down).

    ``address``: None = ``RAY_ADDRESS`` if set (job submission, existing cluster), else a fresh local instance;
    "local" = always a fresh local instance; anything else = that cluster.
    """
    configure_environment()
    import ray

    if ray.is_initialized():
        return False
    from mmrec_ray.pipeline import console

    address = address or os.environ.get("RAY_ADDRESS") or "local"
    options = {**console.ray_init_options(), **kwargs}
    if address == "local":
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, **options)
    else:
        ray.init(address=address, **options)
    console.quiet_ray_libraries()
    return True


def shutdown_ray(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()


# --------------------------------------------------------------------------------------------------- storage
def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def ray_storage_path(run_dir: str | os.PathLike) -> str:
    """Where Ray Tune/Train keep experiment state: the URI itself, or the absolute local path."""
    if is_uri(run_dir):
        return str(run_dir).rstrip("/") + "/ray"
    return str((Path(run_dir) / "ray").resolve())


def local_run_dir(run_dir: str | os.PathLike) -> Path:
    """The local folder where file-writing stages work: the run dir itself, or a staging copy of a URI."""
    if not is_uri(run_dir):
        return Path(run_dir).resolve()
    digest = hashlib.sha1(str(run_dir).encode()).hexdigest()[:12]
    base = Path(os.environ.get("MMREC_STAGING", Path.home() / ".cache" / "mmrec_ray" / "staging"))
    return base / digest


def _copy(source: str, destination: str) -> None:
    import pyarrow.fs as pafs

    source_fs, source_path = pafs.FileSystem.from_uri(source)
    info = source_fs.get_file_info(source_path)
    if info.type == pafs.FileType.NotFound:
        return
    destination_fs, destination_path = pafs.FileSystem.from_uri(destination)
    destination_fs.create_dir(destination_path, recursive=True)
    pafs.copy_files(
        source_path, destination_path, source_filesystem=source_fs, destination_filesystem=destination_fs
    )


def pull(run_dir: str | os.PathLike) -> Path:
    """Bring a URI run dir's plain files (not Ray's own state) into the staging folder; no-op for local paths."""
    local = local_run_dir(run_dir)
    local.mkdir(parents=True, exist_ok=True)
    if is_uri(run_dir):
        _copy(str(run_dir).rstrip("/") + "/files", local.as_uri())
    return local


def push(run_dir: str | os.PathLike) -> None:
    """Publish the staging folder to the URI run dir after a stage (so a re-run elsewhere resumes from it)."""
    if is_uri(run_dir):
        _copy(local_run_dir(run_dir).as_uri(), str(run_dir).rstrip("/") + "/files")


def remove(run_dir: str | os.PathLike, relative: str) -> None:
    """Delete ``relative`` (a file or folder of the run) from a URI run dir: Ray's state (``ray/...``) lives at the
    URI itself, plain files under ``files/``. A local run dir is its own staging folder: nothing more to do."""
    if not is_uri(run_dir):
        return
    import pyarrow.fs as pafs

    base = str(run_dir).rstrip("/")
    target = f"{base}/{relative}" if relative.startswith("ray/") else f"{base}/files/{relative}"
    filesystem, path = pafs.FileSystem.from_uri(target)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        filesystem.delete_dir(path)
    elif info.type == pafs.FileType.File:
        filesystem.delete_file(path)


def require_per_node(what: str, needs: dict[str, tuple[float, str, str]]) -> None:
    """Fail now when one unit of ``what`` (a trial, a worker) needs more of a resource than any node of the Ray
    cluster has: Tune and Train would otherwise leave it pending forever, printing only resource warnings.
    ``needs``: resource ("CPU", "GPU") -> (amount per unit, config key, the command's own flag for the fix)."""
    import ray

    from mmrec_ray.errors import ConfigError, hint

    nodes = [n for n in ray.nodes() if n.get("Alive", n.get("alive"))]
    for resource, (amount, key, flag) in needs.items():
        if amount <= 0:
            continue
        largest = max((float(n["Resources"].get(resource, 0.0)) for n in nodes), default=0.0)
        if largest < amount:
            fix = 0 if resource == "GPU" else largest
            advice = (
                "to run on CPUs, or start GPU nodes first" if resource == "GPU" else "or start larger nodes"
            )
            raise ConfigError(
                f"{what} ask for {amount:g} {resource}(s) each, but no node of the Ray cluster has that many "
                f"(largest: {largest:g}); use {hint(key, f'{fix:g}', flag)} {advice}"
            )
