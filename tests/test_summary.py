"""Phase variables: the XML flag ``periodic="true"`` and the summaries that use it
(neuralmass.summary), against NumPy written here."""

from __future__ import annotations

import numpy as np
import pytest

import neuralmass as nm
from neuralmass.errors import ModelError
from neuralmass.summary import observed, periodic_names, set_statistic, statistic_key

PHASE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="a phase and an amplitude">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Dynamics>
            <StateVariable name="phi" dimension="0.0, 6.28" periodic="{flag}"/>
            <StateVariable name="a" dimension="0.0, 1.0"/>
            <TimeDerivative variable="dphi" value="1 + c_pop0"/>
            <TimeDerivative variable="da" value="-a"/>
        </Dynamics>
    </ComponentType>
    <ComponentType name="coupling_phi">
        <Parameter name="phi_j" dimension="0"/>
        <DerivedParameter name="c_pop0" value="global_coupling"/>
        <Dynamics>
            <DerivedVariable name="pre" value="sin(phi_j - phi)"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""


def test_the_periodic_flag_marks_phase_variables():
    assert nm.load_model("kuramoto").periodic_names == ("theta",)
    assert nm.load_model("montbrio").periodic_names == ()
    assert nm.lems.loads(PHASE_XML.format(flag="true")).periodic_names == ("phi",)
    assert nm.lems.loads(PHASE_XML.format(flag=" False ")).periodic_names == ()
    with pytest.raises(ModelError, match=r"phase.xml:6: periodic of StateVariable 'phi' "
                                         r"must be 'true' or 'false', but got 'yes'"):
        nm.lems.loads(PHASE_XML.format(flag="yes"), filename="phase.xml")


def test_a_run_records_its_phase_variables():
    conn = nm.Connectivity(np.ones((3, 3)) - np.eye(3), np.full((3, 3), 5.0))
    res = nm.simulate("kuramoto", conn, {"global_coupling": np.array([0.2])},
                      backend="numba", n_steps=20)
    assert periodic_names(dict(res.metadata)) == ("theta",)
    assert periodic_names({}) == ()  # files written before the flag existed


def test_a_phase_is_summarised_by_its_order_parameter_an_amplitude_by_mean_and_std():
    rng = np.random.default_rng(4)
    theta = rng.uniform(-20, 20, (9, 5, 3))  # unwrapped angles
    r = np.abs(np.exp(1j * theta).mean(axis=1))  # (T, P)
    np.testing.assert_allclose(set_statistic(theta, "mean", True), r.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(set_statistic(theta, "std", True), r.std(axis=0), rtol=1e-12)
    # a 2 pi shift of any angle changes nothing
    shifted = theta + 2 * np.pi * rng.integers(-3, 4, theta.shape)
    np.testing.assert_allclose(set_statistic(shifted, "mean", True), r.mean(axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(set_statistic(theta, "mean", False), theta.mean(axis=(0, 1)),
                               rtol=1e-13)
    np.testing.assert_allclose(set_statistic(theta, "std", False),
                               theta.std(axis=0).mean(axis=0), rtol=1e-13)
    nan = theta.copy()
    nan[4:, :, 1] = np.nan  # a diverged set stays NaN, the others are untouched
    assert np.isnan(set_statistic(nan, "mean", True)[1])
    np.testing.assert_allclose(set_statistic(nan, "mean", True)[[0, 2]], r.mean(axis=0)[[0, 2]],
                               rtol=1e-13)
    assert statistic_key("theta", "mean", True) == ("theta_order_mean", ("set",))
    assert statistic_key("r", "std", False) == ("r_std", ("region", "set"))
    np.testing.assert_array_equal(observed(theta, True), np.sin(theta))
    assert observed(theta, False) is theta
