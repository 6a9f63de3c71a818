"""Connectivity: conventions, delays, edge lists, the bundled connectome, TVB zips, errors."""

from __future__ import annotations

import math
import sys
import zipfile

import numpy as np
import pytest

from neuralmass.connectivity import Connectivity
from neuralmass.data import make_default_connectome
from neuralmass.errors import ConnectivityError

# weights[i, j]: to i from j. Region 0 receives from 1 and 2; region 2 from 0; region 1 nothing.
WEIGHTS = [[0.0, 0.5, -1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
LENGTHS = [[0.0, 2.5, 3.5], [2.5, 0.0, 1.0], [3.5, 1.0, 0.0]]


def small(**kwargs) -> Connectivity:
    return Connectivity(WEIGHTS, LENGTHS, **kwargs)


def test_arrays_are_read_only_float64_copies_with_defaults():
    weights = np.array(WEIGHTS)
    conn = Connectivity(weights, LENGTHS)
    weights[0, 1] = 99.0
    assert conn.weights[0, 1] == 0.5
    assert conn.weights.dtype == conn.tract_lengths.dtype == np.float64
    assert not conn.weights.flags.writeable and not conn.tract_lengths.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        conn.weights[0, 0] = 1.0
    assert conn.n_regions == 3
    assert conn.speed == 3.0
    assert conn.labels == ("r0", "r1", "r2")
    assert conn.centres is None
    with pytest.raises(AttributeError):
        conn.speed = 4.0  # frozen


def test_labels_and_centres_are_kept():
    conn = small(labels=["a", "b", "c"], centres=np.arange(9).reshape(3, 3))
    assert conn.labels == ("a", "b", "c")
    assert conn.centres.shape == (3, 3) and conn.centres.dtype == np.float64
    assert not conn.centres.flags.writeable


def test_delay_steps_by_hand_with_round_half_to_even():
    # speed * dt = 1 mm per step: 2.5 -> 2 and 3.5 -> 4 (half to even), 1.0 -> 1.
    conn = small(speed=2.0)
    expected = [[0, 2, 4], [2, 0, 1], [4, 1, 0]]
    np.testing.assert_array_equal(conn.delay_steps(0.5), expected)
    assert conn.delay_steps(0.5).dtype == np.int64
    assert conn.max_delay_steps(0.5) == 4
    # speed given explicitly overrides the stored one: 0.5 mm per step.
    np.testing.assert_array_equal(conn.delay_steps(0.25, speed=2.0), 2 * np.array(LENGTHS))


def test_delays_divide_by_speed_then_dt_like_tvb_library():
    # 1.05 / 3 / 0.1 == 3.5 -> 4 (tvb-library's order), but 1.05 / (3 * 0.1) == 3.4999... -> 3.
    conn = Connectivity(np.ones((2, 2)), [[0.0, 1.05], [0.75, 0.0]], speed=3.0)
    np.testing.assert_array_equal(conn.delay_steps(0.1), [[0, 4], [2, 0]])


def test_infinite_speed_gives_zero_delays():
    conn = small(speed=math.inf)
    np.testing.assert_array_equal(conn.delay_steps(0.1), np.zeros((3, 3), dtype=np.int64))
    assert conn.max_delay_steps(0.1) == 0
    assert small().delay_steps(0.1, speed=math.inf).max() == 0


def test_edges_are_the_nonzero_weights_in_csr_order():
    target, source, weight, length = small().edges()
    np.testing.assert_array_equal(target, [0, 0, 2])
    np.testing.assert_array_equal(source, [1, 2, 0])
    np.testing.assert_array_equal(weight, [0.5, -1.0, 2.0])
    np.testing.assert_array_equal(length, [2.5, 3.5, 3.5])
    assert target.dtype == source.dtype == np.int64
    np.testing.assert_array_equal(small(speed=2.0).edge_delay_steps(0.5), [2, 4, 4])
    np.testing.assert_array_equal(small().edge_delay_steps(0.5, speed=2.0), [2, 4, 4])


def test_edges_of_a_random_matrix_match_a_dense_loop():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(7, 7)) * (rng.random((7, 7)) < 0.3)
    conn = Connectivity(weights, rng.uniform(0, 100, (7, 7)))
    expected = [(i, j) for i in range(7) for j in range(7) if weights[i, j] != 0]
    target, source, weight, _ = conn.edges()
    assert list(zip(target.tolist(), source.tolist())) == expected
    np.testing.assert_array_equal(weight, weights[target, source])
    np.testing.assert_array_equal(conn.edge_delay_steps(0.1), conn.delay_steps(0.1)[target, source])


def test_normalized_and_with_speed_return_copies():
    conn = small(labels=["a", "b", "c"])
    unit = conn.normalized()
    assert unit.weights.max() == 1.0
    np.testing.assert_array_equal(unit.weights, np.array(WEIGHTS) / 2.0)
    assert unit.labels == conn.labels and conn.weights.max() == 2.0
    fast = conn.with_speed(10.0)
    assert fast.speed == 10.0 and conn.speed == 3.0
    np.testing.assert_array_equal(fast.weights, conn.weights)


def test_default_connectome_properties():
    conn = Connectivity.default()
    n = conn.n_regions
    assert n == 76
    assert conn.labels[0] == "L.R00" and conn.labels[38] == "R.R00" and len(set(conn.labels)) == 76
    assert conn.centres.shape == (76, 3)
    assert np.all(np.abs(conn.centres) <= [70.0 + 6, 100.0, 60.0])  # + mirror jitter in x
    assert np.all(conn.centres[:38, 0] < 0) and np.all(conn.centres[38:, 0] > 0)
    w, lengths = conn.weights, conn.tract_lengths
    density = np.count_nonzero(w) / (n * (n - 1))
    assert 0.2 <= density <= 0.3
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(lengths, lengths.T)
    assert w.max() == 1.0 and w.min() == 0.0
    assert np.all(np.diag(w) == 0) and np.all(np.diag(lengths) == 0)
    on_edges = lengths[w != 0]
    assert on_edges.min() >= 10.0 and on_edges.max() <= 250.0
    assert np.all(np.diag(w[:38, 38:]) > 0)  # homotopic connections
    assert conn.speed == 3.0 and Connectivity.default(speed=5.0).speed == 5.0


def test_default_connectome_is_deterministic_and_matches_its_script():
    first, second = Connectivity.default(), Connectivity.default()
    np.testing.assert_array_equal(first.weights, second.weights)
    regenerated = make_default_connectome.generate()
    np.testing.assert_array_equal(first.weights, regenerated["weights"])
    np.testing.assert_array_equal(first.tract_lengths, regenerated["tract_lengths"])
    np.testing.assert_array_equal(first.centres, regenerated["centres"])
    assert first.labels == tuple(regenerated["labels"])


def test_default_connectome_file_is_small():
    assert make_default_connectome.OUTPUT.stat().st_size < 200_000


def write_zip(path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)


def matrix_text(matrix) -> str:
    return "\n".join(" ".join(f"{x:.17g}" for x in row) for row in np.asarray(matrix))


CENTRES_TEXT = "ra 1.0 2.0 3.0\nrb -1.5 0.0 2.0\nrc 0.0 4.0 -2.0\n"


def test_zip_round_trip_with_centres_txt(tmp_path):
    path = tmp_path / "conn.zip"
    write_zip(path, {
        "weights.txt": matrix_text(WEIGHTS),
        "tract_lengths.txt": matrix_text(LENGTHS),
        "centres.txt": CENTRES_TEXT,
        "info.txt": "ignored",
    })
    conn = Connectivity.from_tvb_zip(path, speed=2.0)
    np.testing.assert_array_equal(conn.weights, WEIGHTS)
    np.testing.assert_array_equal(conn.tract_lengths, LENGTHS)
    assert conn.labels == ("ra", "rb", "rc")
    np.testing.assert_array_equal(conn.centres, [[1, 2, 3], [-1.5, 0, 2], [0, 4, -2]])
    assert conn.speed == 2.0


def test_zip_round_trip_with_centers_txt_in_a_subfolder(tmp_path):
    path = tmp_path / "conn.zip"
    write_zip(path, {
        "connectivity_3/weights.txt": matrix_text(WEIGHTS),
        "connectivity_3/tract_lengths.txt": matrix_text(LENGTHS),
        "connectivity_3/centers.txt": CENTRES_TEXT.replace(" 3.0\n", " 3.0 extra\n"),
    })
    conn = Connectivity.from_tvb_zip(str(path))
    np.testing.assert_array_equal(conn.weights, WEIGHTS)
    assert conn.labels == ("ra", "rb", "rc")
    assert conn.speed == 3.0


def test_zip_with_bz2_members(tmp_path):
    import bz2

    path = tmp_path / "conn.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.txt.bz2", bz2.compress(matrix_text(WEIGHTS).encode()))
        archive.writestr("tract_lengths.txt", matrix_text(LENGTHS))
        archive.writestr("centres.txt", CENTRES_TEXT)
    np.testing.assert_array_equal(Connectivity.from_tvb_zip(path).weights, WEIGHTS)


def test_default_connectome_survives_a_zip_round_trip(tmp_path):
    conn = Connectivity.default()
    centres = "\n".join(f"{label} {x!r} {y!r} {z!r}" for label, (x, y, z)
                        in zip(conn.labels, conn.centres.tolist()))
    path = tmp_path / "default.zip"
    write_zip(path, {
        "weights.txt": matrix_text(conn.weights),
        "tract_lengths.txt": matrix_text(conn.tract_lengths),
        "centres.txt": centres,
    })
    back = Connectivity.from_tvb_zip(path)
    np.testing.assert_array_equal(back.weights, conn.weights)
    np.testing.assert_array_equal(back.tract_lengths, conn.tract_lengths)
    np.testing.assert_array_equal(back.centres, conn.centres)
    assert back.labels == conn.labels


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"tract_lengths.txt": "0", "centres.txt": "a 0 0 0"},
         r"conn\.zip must hold one weights\.txt, but it has no"),
        ({"a/weights.txt": "0", "b/weights.txt": "0", "tract_lengths.txt": "0",
          "centres.txt": "a 0 0 0"},
         r"conn\.zip must hold one weights\.txt, but it has several \(a/weights\.txt, "
         r"b/weights\.txt\)"),
        ({"weights.txt": "0", "tract_lengths.txt": "0"},
         r"conn\.zip must hold one centres\.txt or centers\.txt, but it has no"),
        ({"weights.txt": "0 x", "tract_lengths.txt": "0", "centres.txt": "a 0 0 0"},
         r"conn\.zip:weights\.txt: expected rows of numbers"),
        ({"weights.txt": "0", "tract_lengths.txt": "0", "centres.txt": "a 0 0"},
         r"conn\.zip:centres\.txt: expected lines 'label x y z'"),
        ({"weights.txt": "0 1\n1 0", "tract_lengths.txt": "0 1\n1 0", "centres.txt": "a 0 0 0"},
         r"conn\.zip:centres\.txt must have one line per region \(2 like weights\.txt\), "
         r"but has 1"),
        ({"weights.txt": "0 1\n1 0", "tract_lengths.txt": "0 1 2\n1 0 2",
          "centres.txt": "a 0 0 0\nb 0 0 0"},
         r"conn\.zip \(weights\.txt, tract_lengths\.txt\): tract_lengths must have shape "
         r"\(2, 2\) like weights, but got \(2, 3\)"),
    ],
)
def test_bad_zip_contents(tmp_path, files, match):
    path = tmp_path / "conn.zip"
    write_zip(path, files)
    with pytest.raises(ConnectivityError, match=match):
        Connectivity.from_tvb_zip(path)


def test_missing_or_corrupt_zip(tmp_path):
    with pytest.raises(ConnectivityError, match=r"cannot read TVB connectivity zip .*nope\.zip"):
        Connectivity.from_tvb_zip(tmp_path / "nope.zip")
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    with pytest.raises(ConnectivityError, match=r"cannot read TVB connectivity zip .*bad\.zip"):
        Connectivity.from_tvb_zip(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": np.zeros(3)},
         r"weights must be a square 2-D array \(N, N\) with N >= 1, but got shape \(3,\)"),
        ({"weights": np.zeros((3, 2))}, r"but got shape \(3, 2\)"),
        ({"weights": np.zeros((0, 0)), "tract_lengths": np.zeros((0, 0))},
         r"but got shape \(0, 0\)"),
        ({"weights": np.full((3, 3), "x")},
         r"weights must be an array of real numbers, but got dtype <U1"),
        ({"weights": np.eye(3) * 1j}, r"weights must be an array of real numbers, but got "
                                      r"dtype complex128"),
        ({"tract_lengths": np.zeros((3, 2))},
         r"tract_lengths must have shape \(3, 3\) like weights, but got \(3, 2\)"),
        ({"weights": [[0, 1, 0], [0, 0, np.nan], [0, 0, 0]]},
         r"weights must be finite, but weights\[1, 2\] is nan"),
        ({"tract_lengths": [[0, 1, 0], [np.inf, 0, 0], [0, 0, 0]]},
         r"tract_lengths must be finite, but tract_lengths\[1, 0\] is inf"),
        ({"tract_lengths": [[0, 1, 0], [1, 0, 0], [0, -2, 0]]},
         r"tract_lengths must be >= 0 mm, but tract_lengths\[2, 1\] is -2\.0"),
        ({"speed": 0.0}, r"speed must be a number of mm/ms > 0 \(inf for no delays\), "
                         r"but got 0\.0"),
        ({"speed": -3}, r"speed must be .*, but got -3"),
        ({"speed": math.nan}, r"speed must be .*, but got nan"),
        ({"speed": "fast"}, r"speed must be .*, but got 'fast'"),
        ({"labels": ["a", "b"]},
         r"labels must be a sequence of one name per region \(3\), but got 2 labels"),
        ({"labels": "abc"}, r"labels must be .* \(3\), but got 'abc'"),
        ({"centres": np.zeros((3, 2))}, r"centres must have shape \(3, 3\), but got \(3, 2\)"),
        ({"centres": [[0, 0, 0], [0, 0, 0], [0, np.nan, 0]]},
         r"centres must be finite, but centres\[2, 1\] is nan"),
    ],
)
def test_constructor_errors(kwargs, match):
    arguments = {"weights": WEIGHTS, "tract_lengths": LENGTHS} | kwargs
    with pytest.raises(ConnectivityError, match=match):
        Connectivity(**arguments)


def test_negative_weights_are_allowed():
    assert small().weights[0, 2] == -1.0


@pytest.mark.parametrize("dt", [0.0, -0.1, math.inf, math.nan, None])
def test_dt_must_be_positive_and_finite(dt):
    with pytest.raises(ConnectivityError, match=r"dt must be a finite number of ms > 0, but got"):
        small().delay_steps(dt)
    with pytest.raises(ConnectivityError, match=r"dt must be"):
        small().edge_delay_steps(dt)


def test_speed_argument_of_delay_steps_is_checked():
    with pytest.raises(ConnectivityError, match=r"speed must be .*, but got -1\.0"):
        small().delay_steps(0.1, speed=-1.0)
    with pytest.raises(ConnectivityError, match=r"speed must be"):
        small().with_speed(0.0)


def test_normalized_needs_a_positive_maximum():
    with pytest.raises(ConnectivityError, match=r"it must be > 0, but it is -1\.0"):
        Connectivity(-np.ones((2, 2)), np.ones((2, 2))).normalized()


def test_error_is_a_value_error():
    assert issubclass(ConnectivityError, ValueError)


def test_from_tvb_data_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tvb_data", None)  # makes `import tvb_data` fail
    with pytest.raises(
        ConnectivityError,
        match=r"from_tvb_data\(76\) needs the optional tvb-data package: "
              r"pip install 'neuralmass\[tvb\]'",
    ):
        Connectivity.from_tvb_data(76)


def test_from_tvb_data_76():
    pytest.importorskip("tvb_data", reason="needs the optional tvb-data package (extra 'tvb')")
    conn = Connectivity.from_tvb_data(76)
    assert conn.weights.shape == conn.tract_lengths.shape == (76, 76)
    assert conn.weights.max() == 3.0
    assert conn.normalized().weights.max() == 1.0
    assert conn.labels[:2] == ("rA1", "rA2") and conn.centres.shape == (76, 3)
    np.testing.assert_array_equal(conn.delay_steps(0.1), np.rint(conn.tract_lengths / 0.3))
    with pytest.raises(ConnectivityError, match=r"no connectivity with 77 regions; available "
                                                r"sizes are .*\b76\b"):
        Connectivity.from_tvb_data(77)


@pytest.mark.tvb
@pytest.mark.parametrize("n_regions", [66, 68, 76])
def test_from_tvb_data_matches_tvb_library(n_regions):
    pytest.importorskip("tvb_data", reason="needs the optional tvb-data package (extra 'tvb')")
    tvb_connectivity = pytest.importorskip(
        "tvb.datatypes.connectivity", reason="needs tvb-library (extra 'tvb')"
    )
    theirs = tvb_connectivity.Connectivity.from_file(f"connectivity_{n_regions}.zip")
    theirs.speed = np.array([3.0])
    theirs.configure()
    theirs.set_idelays(0.1)
    ours = Connectivity.from_tvb_data(n_regions)
    np.testing.assert_array_equal(ours.weights, theirs.weights)
    np.testing.assert_array_equal(ours.tract_lengths, theirs.tract_lengths)
    np.testing.assert_array_equal(ours.centres, theirs.centres)
    assert ours.labels == tuple(theirs.region_labels)
    np.testing.assert_array_equal(ours.delay_steps(0.1), theirs.idelays)
    assert ours.max_delay_steps(0.1) + 1 == theirs.horizon
