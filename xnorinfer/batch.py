"""Batch inference over many images: the streaming form of `xnorinfer run` and the shared row format.

`xnorinfer run MODEL INPUTS... --output results.{parquet,csv,jsonl}` and the Ray Data path
(`xnorinfer.ray`) produce the same rows, one per input, in the input's order:

    path, error, class_1, label_1, score_1, ..., class_K, label_K, score_K

`error` is null for an image that was classified and holds the reason (file not found, not an image,
truncated, ...) for one that was not; that row's class/label/score columns are null. Scores are the
class probabilities `xnorinfer run` prints (the output as is when the model ends in softmax, else
its softmax). Images go through `xnorinfer.preprocess.preprocess_image` with the model's metadata,
exactly as the single-image `run` does.

Memory stays bounded whatever the input count: paths are listed lazily (folders walked one directory
at a time, globs with `glob.iglob`, a `--list` file read line by line), decoded by a thread pool
(Pillow and numpy release the GIL) at most `prefetch` batches ahead of the engine, and each batch's
rows are written (and flushed) before the next one is taken. The resume set (the paths already in
the output) is the one thing that grows with the input: about 100 bytes per image.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xnorinfer.cli import IMAGE_SUFFIXES, _probabilities
from xnorinfer.preprocess import ImageError, InputSpec, preprocess_image

FORMATS = (".parquet", ".csv", ".jsonl")


# --------------------------------------------------------------------------------------------- inputs


def _walk(folder: Path) -> Iterator[str]:
    """Image files under `folder`, recursively, sorted within each directory; one directory in memory."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield os.path.join(root, name)


def iter_inputs(items: Iterable[str], list_file: str | None = None) -> Iterator[str]:
    """Paths from files, folders (recursive), glob patterns and a file list (one path per line).

    Nothing is checked here: a path that does not exist becomes an error row, not a failed job.
    A glob that matches nothing yields nothing (as a shell with `nullglob` would).
    """
    for item in items:
        if os.path.isdir(item):
            yield from _walk(Path(item))
        elif not os.path.lexists(item) and glob.has_magic(item):
            for match in glob.iglob(item, recursive=True):
                if os.path.isdir(match):
                    yield from _walk(Path(match))
                else:
                    yield match
        else:
            yield item
    if list_file is not None:
        with open(list_file, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line


# ------------------------------------------------------------------------------------ decode + predict


@dataclass
class Decoded:
    """One input after decoding: the (1, C, H, W) array, or the reason it has none."""

    path: str
    array: np.ndarray | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def decode(path: str, spec: InputSpec, data: bytes | None = None) -> Decoded:
    """Decode and preprocess one image (from `data` when given, else from the file); never raises.

    Any failure (missing, not an image, truncated, too large, ...) becomes `Decoded.error`.
    """
    notes: list[str] = []
    try:
        if data is None:
            array = preprocess_image(path, spec, notes)
        else:
            from PIL import Image, UnidentifiedImageError

            try:
                image = Image.open(io.BytesIO(data))
            except UnidentifiedImageError as err:
                raise ImageError(f"{path}: not a recognised image (PNG, JPEG, BMP, GIF, TIFF, WebP)") from err
            except Image.DecompressionBombError as err:
                raise ImageError(f"{path}: image dimensions are too large to decode safely ({err})") from err
            # preprocess_image names a PIL image `<image>` in its messages; put the path back
            try:
                with image:
                    array = preprocess_image(image, spec, notes)
            except ImageError as err:
                raise ImageError(str(err).replace("<image>", path, 1)) from err
        return Decoded(path, array, None, notes)
    except MemoryError:
        return Decoded(path, None, f"{path}: out of memory decoding the image")
    except Exception as err:  # noqa: BLE001 - a bad file must become an error row, whatever Pillow raises
        message = str(err) if isinstance(err, ImageError) else f"{path}: {type(err).__name__}: {err}"
        return Decoded(path, None, message)


def class_count(session: Any) -> int:
    """The number of classes (outputs per image): one zero input through the model."""
    out = session.run(np.zeros(session.input_shape, dtype=np.float32))
    return int(np.asarray(out).reshape(1, -1).shape[1])


def columns_for(top: int) -> list[str]:
    names = ["path", "error"]
    for k in range(1, top + 1):
        names += [f"class_{k}", f"label_{k}", f"score_{k}"]
    return names


def predict(session: Any, items: list[Decoded], top: int, logits: bool = False) -> dict[str, list[Any]]:
    """Run the decoded images of `items` in one engine call; one row per item, in order (columns).

    `top` is capped at the number of classes. With `logits`, a `logits` column holds the raw model
    output per image (null for an error row).
    """
    good = [d for d in items if d.array is not None]
    probs = raw = None
    if good:
        raw = np.asarray(session.run(np.concatenate([d.array for d in good])))
        probs = _probabilities(raw, session.metadata)
        raw = raw.reshape(raw.shape[0], -1)
    labels = session.labels
    cols: dict[str, list[Any]] = {name: [] for name in columns_for(top)}
    if logits:
        cols["logits"] = []
    j = 0
    for d in items:
        cols["path"].append(d.path)
        cols["error"].append(d.error)
        if d.array is None:
            for k in range(1, top + 1):
                cols[f"class_{k}"].append(None)
                cols[f"label_{k}"].append(None)
                cols[f"score_{k}"].append(None)
            if logits:
                cols["logits"].append(None)
            continue
        row = probs[j]
        order = np.argsort(-row, kind="stable")[:top]
        for k in range(1, top + 1):
            i = int(order[k - 1]) if k <= len(order) else None
            cols[f"class_{k}"].append(i)
            cols[f"label_{k}"].append(None if i is None else (labels[i] if labels and i < len(labels) else str(i)))
            cols[f"score_{k}"].append(None if i is None else float(row[i]))
        if logits:
            cols["logits"].append([float(v) for v in raw[j]])
        j += 1
    return cols


def arrow_table(cols: dict[str, list[Any]], top: int):
    """The columns as a pyarrow Table with fixed types (int32 classes, string labels, float64 scores)."""
    import pyarrow as pa

    fields = [pa.field("path", pa.string()), pa.field("error", pa.string())]
    for k in range(1, top + 1):
        fields += [
            pa.field(f"class_{k}", pa.int32()),
            pa.field(f"label_{k}", pa.string()),
            pa.field(f"score_{k}", pa.float64()),
        ]
    if "logits" in cols:
        fields.append(pa.field("logits", pa.list_(pa.float32())))
    schema = pa.schema(fields)
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in fields}, schema=schema)


# ------------------------------------------------------------------------------------------- writers


class OutputError(ValueError):
    """An output that cannot be written or resumed (unknown format, pyarrow missing, damaged file)."""


def _drop_partial_line(path: Path) -> None:
    """Cut a last line without its newline (a run killed mid-write) so that appending stays valid."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                f.truncate(pos + nl + 1)
                return
        f.truncate(0)


class _JsonlWriter:
    def __init__(self, path: Path, top: int, resume: bool) -> None:
        self.path, self.top = path, top
        if resume and path.exists():
            _drop_partial_line(path)
        self.f = open(path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    @staticmethod
    def done(path: Path) -> set[str]:
        seen: set[str] = set()
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a partial last line: dropped before appending
                try:
                    seen.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError) as err:
                    raise OutputError(f"{path}: not an xnorinfer JSON-lines output ({err})") from err
        return seen

    def write(self, cols: dict[str, list[Any]]) -> None:
        names = list(cols)
        for i in range(len(cols["path"])):
            self.f.write(json.dumps({n: cols[n][i] for n in names}) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class _CsvWriter:
    def __init__(self, path: Path, top: int, resume: bool) -> None:
        self.path, self.top = path, top
        if resume and path.exists():
            _drop_partial_line(path)
        fresh = not (resume and path.exists() and path.stat().st_size > 0)
        self.f = open(path, "a" if not fresh else "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.w = csv.writer(self.f)
        if fresh:
            self.w.writerow(columns_for(top))
            self.f.flush()

    @staticmethod
    def done(path: Path) -> set[str]:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return set()
            if not header or header[0] != "path":
                raise OutputError(f"{path}: not an xnorinfer CSV output (first column is not `path`)")
            return {row[0] for row in reader if row}

    def write(self, cols: dict[str, list[Any]]) -> None:
        names = columns_for(self.top)
        for i in range(len(cols["path"])):
            self.w.writerow(["" if cols[n][i] is None else cols[n][i] for n in names])
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class _ParquetWriter:
    """Row groups into a temporary file next to the output, renamed over it when closed.

    Parquet cannot be appended to: with `resume`, the existing rows are copied first. Closing (also
    on an interrupt) writes the footer and renames, so an interrupted run leaves a complete file
    with every finished batch; only a killed process (SIGKILL, power loss) loses the rows of the
    run it interrupted (the previous file stays as it was). Use .jsonl or .csv for an append-only,
    per-batch-flushed output.
    """

    def __init__(self, path: Path, top: int, resume: bool) -> None:
        import pyarrow.parquet as pq

        self.path, self.top = path, top
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.schema = arrow_table(predict_empty(top), top).schema
        self.w = pq.ParquetWriter(self.tmp, self.schema)
        try:
            if resume and path.exists():
                old = pq.read_table(path)
                if old.schema.names != self.schema.names:
                    raise OutputError(f"{path}: its columns differ from this run's (another --top?)")
                self.w.write_table(old.cast(self.schema))
        except BaseException:
            self.w.close()
            self.tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def done(path: Path) -> set[str]:
        import pyarrow.parquet as pq

        try:
            return set(pq.read_table(path, columns=["path"]).column("path").to_pylist())
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise OutputError(f"{path}: cannot resume from it: not a complete Parquet file ({err})") from err

    def write(self, cols: dict[str, list[Any]]) -> None:
        self.w.write_table(arrow_table(cols, self.top))

    def close(self) -> None:
        self.w.close()
        os.replace(self.tmp, self.path)


def predict_empty(top: int) -> dict[str, list[Any]]:
    return {name: [] for name in columns_for(top)}


def open_output(path: str | Path, top: int, resume: bool):
    """A writer for the output's format (its suffix); OutputError for an unknown one or no pyarrow."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        cls: Any = _JsonlWriter
    elif suffix == ".csv":
        cls = _CsvWriter
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError as err:
            raise OutputError(
                f"{path}: Parquet output needs pyarrow, which is not installed "
                "(pip install pyarrow, or 'xnorinfer[batch]'); .csv and .jsonl need nothing"
            ) from err
        cls = _ParquetWriter
    else:
        raise OutputError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(FORMATS)}")
    done: set[str] = set()
    if resume and path.exists():
        done = cls.done(path)
    return cls(path, top, resume), done


# ------------------------------------------------------------------------------------------ the run


@dataclass
class StreamStats:
    rows: int = 0  # rows written by this run (errors included)
    errors: int = 0
    skipped: int = 0  # inputs already in the output (--resume)
    converted: int = 0  # images changed to fit the model (colour, aspect ratio)
    first_note: str | None = None
    seconds: float = 0.0


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for p in paths:
        chunk.append(p)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_stream(
    session: Any,
    inputs: Iterable[str],
    output: str | Path,
    *,
    top: int = 5,
    batch: int = 32,
    resume: bool = False,
    workers: int | None = None,
    prefetch: int = 2,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> StreamStats:
    """Classify every input into `output`, one row each, in input order; see the module docstring.

    `top` is capped at the number of classes (so the columns are the same for every row).
    `on_batch(rows_written_so_far)` is called after each batch is written (tests use it to
    interrupt a run). An interrupt (KeyboardInterrupt) closes the output with every finished batch.
    """
    import time

    spec = InputSpec.from_metadata(session.metadata)
    top = min(top, class_count(session))
    writer, done = open_output(output, top, resume)
    stats = StreamStats()
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    pending: deque[list[Any]] = deque()
    t0 = time.perf_counter()
    bar = None
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm comes with the batch/ray/convert extras, not with the base install
            print("xnorinfer: warning: no progress bar: pip install tqdm", file=sys.stderr)
            progress = False
    if progress:
        bar = tqdm(unit="img", file=sys.stderr, dynamic_ncols=True, desc="xnorinfer run", smoothing=0.1)

    def todo() -> Iterator[str]:
        for p in inputs:
            if p in done:
                stats.skipped += 1
            else:
                yield p

    def finish(futures: list[Any]) -> None:
        items = [f.result() for f in futures]
        cols = predict(session, items, top)
        if len(cols["path"]) != len(items):  # rows in == rows out, always
            raise AssertionError(f"{len(items)} images gave {len(cols['path'])} rows")
        writer.write(cols)
        stats.rows += len(items)
        for d in items:
            if d.error is not None:
                stats.errors += 1
            elif d.notes:
                stats.converted += 1
                if stats.first_note is None:
                    stats.first_note = f"{d.path}: {', '.join(d.notes)}"
        if bar is not None:
            bar.update(len(items))
        if on_batch is not None:
            on_batch(stats.rows)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xnorinfer-decode")
    try:
        for chunk in _chunks(todo(), batch):
            pending.append([pool.submit(decode, p, spec) for p in chunk])
            if len(pending) > prefetch:
                finish(pending.popleft())
        while pending:
            finish(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
        if bar is not None:
            bar.close()
        stats.seconds = time.perf_counter() - t0
    return stats
