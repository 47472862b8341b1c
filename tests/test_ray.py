"""Ray Data: `xnorinfer.ray.Predictor` and `ray_run` on a local cluster started here (2 CPUs).

Same real images and independent reference as tests/test_run_stream.py (1000 MNIST PNGs written from
the IDX file, a corrupt and a truncated PNG, the 500 CIFAR-10 JPEGs): the Ray output must equal
`Session.run` image by image and the streaming `xnorinfer run`, with one row per input file, also
when an actor process dies in the middle of a batch (Ray restarts it and retries the batch).
Ray and pyarrow are in the `test` extra: without them these tests fail, they do not skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import ray
from test_run_stream import MODEL, TOP, check_rows, images, read_rows, reference, session  # noqa: F401

from xnorinfer import cli
from xnorinfer.batch import iter_inputs
from xnorinfer.ray import Predictor, count_files, outside_source_trees, ray_run


@pytest.fixture(scope="module")
def cluster():
    with outside_source_trees():  # (pytest runs from the checkout, whose xnorinfer/ has no extension)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def errors_of(images: dict) -> set[str]:  # noqa: F811
    mnist = images["root"] / "mnist"
    return {str(mnist / "corrupt.png"), str(mnist / "truncated.png")}


def test_predictor_on_a_batch_without_a_cluster(images, session):  # noqa: F811
    mnist = images["root"] / "mnist"
    paths = [str(mnist / f"{i:04d}.png") for i in range(40)] + sorted(errors_of(images))
    batch = {"path": np.array(paths), "bytes": np.array([Path(p).read_bytes() for p in paths], dtype=object)}
    table = Predictor(MODEL.read_bytes(), threads=1, top=TOP, logits=True)(batch)
    rows = table.to_pylist()
    ref = {k: v for k, v in reference(session, images).items() if k in paths}
    check_rows(rows, ref, errors_of(images))
    assert "not a recognised image" in rows[-2]["error"] and "truncated" in rows[-1]["error"]
    x = ((images["mnist"][0].astype(np.float32) / 255.0 - 0.5) / 0.5)[None, None]
    np.testing.assert_array_equal(np.asarray(rows[0]["logits"], dtype=np.float32), session.run(x).reshape(-1))
    assert rows[-1]["logits"] is None


def test_ray_run_equals_session_and_the_streaming_run(cluster, images, session, tmp_path):  # noqa: F811
    root = images["root"]
    counts = ray_run(str(MODEL), str(root), str(tmp_path / "ray"), actors=1, threads_per_actor=1, batch=128, top=TOP)
    assert counts == {"inputs": 1502, "rows": 1502, "errors": 2}
    rows = pads.dataset(tmp_path / "ray", format="parquet").to_table().to_pylist()
    check_rows(rows, reference(session, images), errors_of(images))
    # the same rows as the single-machine `xnorinfer run --output`
    assert cli.main(["run", str(MODEL), str(root), "-o", str(tmp_path / "s.parquet"), "--top", str(TOP)]) == 0
    stream = {r["path"]: r for r in read_rows(tmp_path / "s.parquet")}
    assert {r["path"]: r for r in rows} == stream
    assert count_files(str(root), {".png", ".jpg"}) == 1502 == len(list(iter_inputs([str(root)])))


def test_an_actor_killed_mid_run_loses_and_duplicates_nothing(cluster, images, session, tmp_path):  # noqa: F811
    mnist = images["root"] / "mnist"
    marker = tmp_path / "crashed"
    counts = ray_run(
        str(MODEL),
        str(mnist),
        str(tmp_path / "ray"),
        actors=2,
        threads_per_actor=1,
        batch=100,
        top=TOP,
        predictor_kwargs={"crash_once_on": "0550.png", "crash_marker": str(marker)},
    )
    assert marker.exists()  # the actor that got image 550 did exit mid-batch
    assert counts == {"inputs": 1002, "rows": 1002, "errors": 2}
    rows = pads.dataset(tmp_path / "ray", format="parquet").to_table().to_pylist()
    ref = {k: v for k, v in reference(session, images).items() if k.startswith(str(mnist))}
    check_rows(rows, ref, errors_of(images))  # every path exactly once, predictions as Session.run


def test_ray_run_cli_refuses_an_existing_output_without_overwrite(cluster, images, tmp_path, capsys):  # noqa: F811
    src = images["root"] / "mnist"
    out = tmp_path / "ray"
    args = ["ray-run", str(MODEL), str(src / "0001.png"), "-o", str(out), "--top", "2"]
    assert cli.main(args) == 0
    assert "wrote 1 rows (0 error rows) for 1 images" in capsys.readouterr().err
    assert cli.main(args) == 2  # an existing output is not mixed with a new run
    assert "exists; give another --output or --overwrite" in capsys.readouterr().err
    assert cli.main(["ray-run", str(MODEL), str(tmp_path / "none"), "-o", str(tmp_path / "o2")]) == 4
    assert cli.main([*args, "--overwrite"]) == 0
    rows = pads.dataset(out, format="parquet").to_table().to_pylist()
    assert [(r["path"], r["class_1"]) for r in rows] == [(str(src / "0001.png"), 2)]
