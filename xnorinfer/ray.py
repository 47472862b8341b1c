"""Batch inference on Ray Data (`pip install 'xnorinfer[ray]'`): `Predictor` and `xnorinfer ray-run`.

    import ray, xnorinfer.ray as xr
    ds = ray.data.read_binary_files("s3://bucket/images/", include_paths=True)
    model = ray.put(open("model.xbin", "rb").read())          # shipped once through the object store
    out = ds.map_batches(
        xr.Predictor,
        fn_constructor_kwargs={"model": model, "threads": 2, "top": 5},
        batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=8),
        num_cpus=2,                                            # = threads: one actor per 2 CPUs
    )
    out.write_parquet("s3://bucket/predictions/")

Each actor loads the model once (from bytes, an ObjectRef of bytes, or a path every node can read)
into one `Session` with `threads` engine threads, and turns each batch of `bytes` + `path` rows
(what `read_binary_files(include_paths=True)` gives) into the rows `xnorinfer run --output` writes:
path, error, class_k / label_k / score_k for k = 1..top (and `logits` with `logits=True`). Images
are decoded and preprocessed in the actor exactly as `xnorinfer run` does (the model's metadata);
an image that cannot be decoded is an error row. Every batch gives as many rows as it got.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xnorinfer.batch import arrow_table, class_count, decode, predict
from xnorinfer.preprocess import InputSpec


class Predictor:
    """A callable class for `Dataset.map_batches(..., compute=ray.data.ActorPoolStrategy(...))`.

    `model`: the .xbin as bytes, an ObjectRef of them, or a path. `threads`: engine threads of the
    actor's Session (reserve as many CPUs with `num_cpus`). `top`: classes per row (capped at the
    model's class count). `logits`: also return the raw outputs. `crash_once_on` (fault-injection
    for tests): the actor process exits abruptly on the first batch holding a path ending with this
    string, once per `crash_marker` file (created before exiting), so that Ray's retry is tested.
    """

    def __init__(
        self,
        model: Any,
        threads: int = 1,
        top: int = 5,
        logits: bool = False,
        crash_once_on: str | None = None,
        crash_marker: str | None = None,
    ) -> None:
        from xnorinfer.session import load, load_bytes

        try:
            import ray

            if isinstance(model, ray.ObjectRef):
                model = ray.get(model)
        except ImportError:  # usable without ray too (tests, a plain loop over batches)
            pass
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.session = load_bytes(bytes(model), threads=threads, name="<model bytes>")
        else:
            self.session = load(str(model), threads=threads)
        self.spec = InputSpec.from_metadata(self.session.metadata)
        self.top = min(top, class_count(self.session))
        self.logits = logits
        self.crash_once_on, self.crash_marker = crash_once_on, crash_marker

    def __call__(self, batch: dict[str, Any]):
        paths = [str(p) for p in batch["path"]]
        data = batch.get("bytes")
        if self.crash_once_on is not None and any(p.endswith(self.crash_once_on) for p in paths):
            marker = Path(self.crash_marker or f"{self.crash_once_on}.crashed")
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                os._exit(1)  # the actor dies mid-batch, as a killed node would
        items = [decode(p, self.spec, None if data is None else bytes(data[i])) for i, p in enumerate(paths)]
        cols = predict(self.session, items, self.top, logits=self.logits)
        if len(cols["path"]) != len(paths):
            raise AssertionError(f"{len(paths)} rows in, {len(cols['path'])} rows out")
        return arrow_table(cols, self.top)


@contextlib.contextmanager
def outside_source_trees() -> Iterator[None]:
    """Run ray.init from a neutral folder: Ray puts the driver's working directory on every worker's
    sys.path, and from a source checkout of xnorinfer that directory's `xnorinfer/` (no compiled
    extension) would shadow the installed package in the workers."""
    here = os.getcwd()
    os.chdir(tempfile.gettempdir())
    try:
        yield
    finally:
        os.chdir(here)


def _init_ray(address: str | None):
    import ray

    if ray.is_initialized():
        return ray
    with outside_source_trees():
        if address is not None:
            ray.init(address=address)
            return ray
        try:
            ray.init(address="auto")  # a running cluster (RAY_ADDRESS or `ray start` on this node)
        except ConnectionError:
            ray.init()  # none: a local one on this machine
    return ray


def count_files(uri: str, suffixes: set[str]) -> int:
    """Files under `uri` (a file, a folder, recursively, any pyarrow filesystem) with an image suffix."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), os.path.abspath(uri))
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return 1
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return sum(1 for i in infos if i.type == pafs.FileType.File and os.path.splitext(i.path)[1].lower() in suffixes)


def ray_run(
    model: str,
    input_uri: str,
    output_uri: str,
    *,
    actors: int = 1,
    threads_per_actor: int = 1,
    batch: int = 256,
    top: int = 5,
    logits: bool = False,
    address: str | None = None,
    overwrite: bool = False,
    predictor_kwargs: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Classify every image under `input_uri` into Parquet files under `output_uri`; returns counts.

    Raises AssertionError when the output does not hold exactly one row per input file.
    """
    from xnorinfer.cli import IMAGE_SUFFIXES

    ray = _init_ray(address)
    import pyarrow.dataset as pads

    model_ref = ray.put(Path(model).read_bytes())
    # Each actor reserves its engine threads' CPUs, but the pool never takes the whole cluster: Ray
    # Data's read and write tasks need some CPU budget too, else they never start (a deadlock).
    total = float(ray.cluster_resources().get("CPU", 1.0))
    cpus_per_actor = min(float(threads_per_actor), max(0.1, (total - 0.5) / actors))
    # Reading files and writing Parquet is I/O: a fraction of a CPU each, so that actors holding every
    # CPU of the cluster (actors x threads-per-actor = CPUs) do not starve them (a deadlock otherwise).
    io_cpus = 0.1
    ds = ray.data.read_binary_files(
        input_uri,
        include_paths=True,
        file_extensions=sorted(s.lstrip(".") for s in IMAGE_SUFFIXES),
        num_cpus=io_cpus,
    )
    out = ds.map_batches(
        Predictor,
        fn_constructor_kwargs={"model": model_ref, "threads": threads_per_actor, "top": top, "logits": logits}
        | (predictor_kwargs or {}),
        batch_size=batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        udf_modifying_row_count=False,
    )
    out.write_parquet(
        output_uri,
        mode=ray.data.SaveMode.OVERWRITE if overwrite else ray.data.SaveMode.ERROR,
        ray_remote_args={"num_cpus": io_cpus},
    )
    n_in = count_files(input_uri, IMAGE_SUFFIXES)
    table = pads.dataset(output_uri, format="parquet").to_table(columns=["path", "error"])
    n_out = table.num_rows
    errors = n_out - table.column("error").null_count
    if n_out != n_in:
        raise AssertionError(f"{n_in} input images but {n_out} output rows in {output_uri}")
    return {"inputs": n_in, "rows": n_out, "errors": errors}


def main_args(args: Any) -> dict[str, int]:
    """`xnorinfer ray-run` (xnorinfer.cli parses the arguments)."""
    return ray_run(
        args.model,
        args.input_uri,
        args.output,
        actors=args.actors,
        threads_per_actor=args.threads_per_actor,
        batch=args.batch,
        top=args.top,
        logits=args.logits,
        address=args.address,
        overwrite=args.overwrite,
    )


__all__ = ["Predictor", "ray_run", "count_files"]
