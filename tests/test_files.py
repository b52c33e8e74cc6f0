"""Atomic writes: complete or absent, readable by others, nothing temporary left; figures drawn from tables."""

import os

import matplotlib
import pandas as pd
import pytest

from litefocus.files import read_json, save_figure, write_atomic, write_csv, write_json

matplotlib.use("Agg")


def test_write_atomic_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomic(path, fail)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    write_atomic(path, lambda tmp: open(tmp, "w").write("new"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_round_trip_and_truncated_file(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2]}
    (tmp_path / "b.json").write_text('{"x": [1,')
    with pytest.raises(ValueError, match="b.json is not valid JSON"):
        read_json(tmp_path / "b.json")


def test_save_figure_writes_the_format_of_its_suffix(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "f.png")
    save_figure(fig, tmp_path / "f.svg")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "f.svg").read_bytes()[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "f.svg"]


def test_speed_against_length_draws_one_line_per_configuration_and_level():
    from analysis import plots

    speed = pd.DataFrame(dict(seconds=[10.24, 20.48] * 2, configuration=["dense"] * 2 + ["litefocus"] * 2,
                              median_s=[2.0, 5.0, 1.9, 4.0]))
    share = pd.DataFrame(dict(seconds=[10.24, 10.24, 20.48, 20.48], level=[1, 2, 1, 2],
                              module_share=[0.2, 0.05, 0.3, 0.05], core_share=[0.1, 0.01, 0.2, 0.02]))
    left, right = plots.speed_against_length(speed, share)
    assert len(left.get_lines()) >= 2
    lines = {line.get_label(): line.get_ydata() for line in right.get_lines()}
    assert list(lines["level 1 module"]) == [20.0, 30.0] and list(lines["all self-attention"]) == [25.0, 35.0]


def test_write_csv_round_trips_a_table_without_its_index(tmp_path):
    table = pd.DataFrame(dict(block=["down_blocks.1", "up_blocks.2"], ratio=[1.25, float("nan")]), index=[7, 9])
    path = write_csv(tmp_path / "sub" / "t.csv", table)
    assert path.read_text().splitlines()[0] == "block,ratio"
    pd.testing.assert_frame_equal(pd.read_csv(path), table.reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(write_csv(path, [dict(a=1), dict(a=2)])), pd.DataFrame(dict(a=[1, 2])))
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.csv"]


def test_read_csv_gives_back_every_float_exactly(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x\n0.20383249399992565\n0.23733164297710252\n")  # pandas' fast parser moves both by one ULP
    from litefocus.files import read_csv

    assert read_csv(path).x.tolist() == [0.20383249399992565, 0.23733164297710252]
    write_csv(path, read_csv(path))
    assert read_csv(path).x.tolist() == [0.20383249399992565, 0.23733164297710252]
