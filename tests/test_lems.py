"""Reading RateML-dialect LEMS XML: every element, and a pinned message for every mistake.

Messages start with ``file:line:``; the tests write ``model.xml`` into ``tmp_path`` and pin
the line with :func:`line_of`, so the template can grow without renumbering every test.
Resulting SymPy expressions are compared numerically, never as strings.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy

import neuralmass as nm
import neuralmass.lems as lems
from neuralmass.errors import ExpressionError, ModelError, ModelWarning
from neuralmass.model import symbol

# A two-variable model with one coupling term; @NAME@ markers are replaced by each test.
TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="test model">
  <ComponentType name="derivatives">
    <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.5"/>
    <Constant name="omega" value="1.5"/>
    <Constant name="tau" value="2.0"/>
    @PARAMS@
    <Dynamics>
      <StateVariable name="x" dimension="0.0, 1.0"/>
      <StateVariable name="y" dimension="-1.0, 1.0"/>
      @DYNAMICS@
      <TimeDerivative variable="dx" value="@DX@"/>
      <TimeDerivative variable="dy" value="@DY@"/>
    </Dynamics>
  </ComponentType>
  @COUPLING@
  @COMPONENTS@
</Lems>
"""
COUPLING_X = """<ComponentType name="coupling_x">
    <Parameter name="x_j" dimension="0"/>
    <DerivedParameter name="c_pop0" value="global_coupling"/>
    <Dynamics>
      <DerivedVariable name="pre" value="x_j - x"/>
    </Dynamics>
  </ComponentType>"""


def make(*, params="", dynamics="", dx="omega + c_pop0", dy="-y / tau", coupling=COUPLING_X,
         components="", template=TEMPLATE) -> str:
    return (template.replace("@PARAMS@", params).replace("@DYNAMICS@", dynamics)
            .replace("@DX@", dx).replace("@DY@", dy).replace("@COUPLING@", coupling)
            .replace("@COMPONENTS@", components))


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line of ``text`` that contains ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def quoted(text: str, word: str, *, before: str = "") -> int:
    """The line of the first ``<before>"<word>"`` in ``text`` (f-strings cannot hold quotes)."""
    return line_of(text, f'{before}"{word}"')


def write(tmp_path, text: str, name: str = "model.xml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path, text: str):
    return lems.load(write(tmp_path, text))


def fails(tmp_path, text: str, line: int | None, match: str, error=ModelError):
    """Loading ``text`` from model.xml raises ``error`` with ``model.xml:<line>: <match>``."""
    prefix = "model\\.xml" + (f":{line}" if line is not None else "") + ": "
    with pytest.raises(error, match=prefix + match) as info:
        load(tmp_path, text)
    return info.value


def value(expr: sympy.Basic, **numbers: float) -> float:
    result = expr.xreplace({symbol(k): sympy.Float(v) for k, v in numbers.items()})
    return float(result)


# --------------------------------------------------------------------------- a valid model


def test_template_loads(tmp_path):
    model = load(tmp_path, make())
    assert model.name == "model"
    assert model.description == "test model"
    assert model.state_names == ("x", "y")
    assert model.source == str(tmp_path / "model.xml")
    dx, dy = model.drift
    assert value(dx, omega=1.5, c_pop0=0.25) == 1.75
    assert value(dy, y=0.5, tau=2.0) == -0.25


def test_loads_from_a_string_and_from_bytes():
    text = make()
    for source in (text, text.encode("utf-8")):
        model = lems.loads(source, filename="from_string.xml")
        assert model.name == "from_string"
        assert model.state_names == ("x", "y")
    assert lems.loads(text).source is None


# --------------------------------------------------------------------------- expressions


def test_unknown_symbol_suggests_the_declared_name(tmp_path):
    text = make(dx="omgea + c_pop0")
    fails(tmp_path, text, line_of(text, "omgea"),
          r"TimeDerivative 'dx': unknown symbol 'omgea' in 'omgea \+ c_pop0'; "
          r"did you mean 'omega'\?", ExpressionError)


def test_unknown_symbol_without_a_close_name_lists_the_known_ones(tmp_path):
    text = make(dy="-qqq")
    fails(tmp_path, text, line_of(text, "-qqq"),
          r"TimeDerivative 'dy': unknown symbol 'qqq' in '-qqq' \(known: c_pop0, dt, "
          r"global_coupling, global_speed, n_node, omega, rec_speed_dt, tau, x, y\)",
          ExpressionError)


def test_syntax_error(tmp_path):
    text = make(dx="omega * (x + ")
    fails(tmp_path, text, line_of(text, "omega * (x"),
          r"TimeDerivative 'dx': syntax error at column \d+ in 'omega \* \(x \+ ': ",
          ExpressionError)


def test_unknown_function_suggests_a_known_one(tmp_path):
    text = make(dy="tanhf(y) + sinn(x)")
    fails(tmp_path, text, line_of(text, "sinn"),
          r"TimeDerivative 'dy': unknown function 'sinn' in 'tanhf\(y\) \+ sinn\(x\)'; "
          r"did you mean 'sin'\?", ExpressionError)


def test_names_used_where_they_are_not_available(tmp_path):
    text = make(params='<DerivedParameter name="k" value="2 * x"/>')
    fails(tmp_path, text, line_of(text, '"k"'),
          rf"DerivedParameter 'k': 'x' is the StateVariable on line "
          rf"{quoted(text, 'x', before='name=')}, which cannot be used here in '2 \* x'",
          ExpressionError)
    text = make(params='<Exposure name="e" dimension="h"/>',
                dynamics='<DerivedVariable name="h" value="2 * x"/>')
    fails(tmp_path, text, line_of(text, 'name="e"'),
          rf"Exposure 'e': 'h' is the DerivedVariable on line {quoted(text, 'h', before='name=')}, "
          "which cannot be used here", ExpressionError)
    text = make(dx="x_j")
    fails(tmp_path, text, line_of(text, 'value="x_j"'),
          rf"TimeDerivative 'dx': 'x_j' is the delayed coupling variable on line "
          rf"{quoted(text, 'x_j', before='name=')}, which cannot be used here", ExpressionError)


@pytest.mark.parametrize(
    ("dx", "expected"),
    [
        ("{x^3}", 8.0),
        ("x^3", 8.0),
        ("2e-3*x^3", 2e-3 * 8.0),  # 2e-3*x**3, not (2e-3*x)**3
        ("1.0f * x + .5f + 1e-3f", 2.501),
        ("pi * x", 2 * math.pi),
        ("x .gt. 1 .and. y .lt. 1", 1.0),
        ("x &gt; 1 and not y &gt;= 1", 1.0),
        ("x .geq. 3 .or. y .neq. 0.5", 0.0),
        ("x .leq. 2 .and. y .eq. 0.5", 1.0),
        ("x if y &lt; 0 else -x", -2.0),
        ("max(x, y) + min(x, y, 0) + heaviside(y)", 3.0),
        ("expf(0.0f) + powf(x, 2)", 5.0),
        ("exp(log(x)) + sqrt(4) + abs(-1) + floor(1.5) + ceil(1.5)", 2 + 2 + 1 + 1 + 2),
    ],
)
def test_expression_features_in_xml(tmp_path, dx, expected):
    model = load(tmp_path, make(dx=dx))
    assert value(model.drift[0], x=2.0, y=0.5) == pytest.approx(expected)


def test_names_sympify_would_misread(tmp_path):
    params = "".join(f'<Constant name="{n}" value="{i + 2}"/>'
                     for i, n in enumerate(["beta", "gamma", "I", "E", "S", "N"]))
    model = load(tmp_path, make(params=params, dx="beta + gamma * I + E * S * N"))
    dx = model.drift[0]
    assert dx.free_symbols == {symbol(n) for n in ["beta", "gamma", "I", "E", "S", "N"]}
    assert all(s.is_real for s in dx.free_symbols)
    assert not dx.has(sympy.I, sympy.E, sympy.S.EulerGamma)
    assert value(dx, beta=2, gamma=3, I=4, E=5, S=6, N=7) == 2 + 12 + 210
    assert model.defaults["I"] == 4.0


def test_implicit_names(tmp_path):
    text = make(dx="dt + n_node + global_coupling + global_speed + rec_speed_dt + c_pop0")
    model = load(tmp_path, text)
    dx = model.drift[0]
    expected = 0.1 + 76 + 0.5 + 4.0 + 1 / (4.0 * 0.1) + 0.3
    assert value(dx, dt=0.1, n_node=76, global_coupling=0.5, global_speed=4.0,
                 c_pop0=0.3) == pytest.approx(expected)
    assert model.parameter_names == ("global_coupling", "omega", "tau", "global_speed")
    assert model.defaults["global_speed"] is None  # the connectivity's speed
    assert model.parameter("global_speed").kind == "implicit"


def test_rec_speed_dt_can_be_defined_by_the_model(tmp_path):
    text = make(params='<DerivedParameter name="rec_speed_dt" value="2 / global_speed / dt"/>',
                dx="rec_speed_dt")
    dx = load(tmp_path, text).drift[0]
    assert value(dx, global_speed=4.0, dt=0.1) == pytest.approx(5.0)
    text = make(params='<Constant name="rec_speed_dt" value="3.0"/>', dx="rec_speed_dt")
    model = load(tmp_path, text)
    assert model.drift[0] == symbol("rec_speed_dt")
    assert model.defaults["rec_speed_dt"] == 3.0


def test_derived_parameters_and_variables_in_any_order(tmp_path):
    params = ('<DerivedParameter name="k2" value="2 * k1"/>'
              '<DerivedParameter name="k1" value="omega + 1"/>')
    dynamics = ('<DerivedVariable name="b" value="a * k2"/>'
                '<DerivedVariable name="c" value="a + b"/>'
                '<DerivedVariable name="a" value="x + c_pop0"/>')
    model = load(tmp_path, make(params=params, dynamics=dynamics, dx="c", dy="b - y"))
    assert [d.name for d in model.derived_parameters] == ["k1", "k2"]
    assert [d.name for d in model.derived_variables] == ["a", "b", "c"]
    k2 = 2 * (1.5 + 1)
    a = 0.5 + 0.25
    dx, dy = model.drift
    assert value(dx, x=0.5, c_pop0=0.25, omega=1.5) == pytest.approx(a + a * k2)
    assert value(dy, x=0.5, y=1.0, c_pop0=0.25, omega=1.5) == pytest.approx(a * k2 - 1.0)
    assert value(model.resolve(symbol("k2")), omega=1.5) == pytest.approx(k2)


def test_cycle_among_derived_variables(tmp_path):
    dynamics = ('<DerivedVariable name="a" value="b + 1"/>\n'
                '      <DerivedVariable name="b" value="2 * a"/>')
    text = make(dynamics=dynamics)
    fails(tmp_path, text, line_of(text, 'name="a"'),
          "cycle among derived variables: a -> b -> a")


def test_self_reference_and_derived_parameter_cycles(tmp_path):
    text = make(dynamics='<DerivedVariable name="a" value="a + 1"/>')
    fails(tmp_path, text, line_of(text, 'name="a"'), "cycle among derived variables: a -> a")
    params = ('<DerivedParameter name="p" value="q"/>\n'
              '    <DerivedParameter name="q" value="r"/>\n'
              '    <DerivedParameter name="r" value="p"/>')
    text = make(params=params)
    fails(tmp_path, text, line_of(text, 'name="p"'),
          "cycle among derived parameters: p -> q -> r -> p")


def test_conditional_derived_variable_is_piecewise_with_the_last_case_as_else(tmp_path):
    dynamics = """<ConditionalDerivedVariable name="f">
        <Case condition="x &lt; 0" value="-x"/>
        <Case condition="x .lt. 1" value="10 * x"/>
        <Case condition="x &gt; 1000" value="100"/>
      </ConditionalDerivedVariable>"""
    model = load(tmp_path, make(dynamics=dynamics, dx="f"))
    (f,) = model.derived_variables
    assert isinstance(f.expression, sympy.Piecewise)
    assert f.expression.args[-1].cond == sympy.true  # the last condition is ignored
    assert [value(model.drift[0], x=v) for v in (-2.0, 0.5, 3.0)] == [2.0, 5.0, 100.0]


def test_case_condition_may_be_a_bare_constant(tmp_path):
    dynamics = """<ConditionalDerivedVariable name="h">
        <Case condition="modification" value="x"/>
        <Case value="2 * x"/>
      </ConditionalDerivedVariable>"""
    model = load(tmp_path, make(params='<Constant name="modification" value="0"/>',
                                dynamics=dynamics, dx="h"))
    assert value(model.drift[0], x=3.0, modification=0.0) == 6.0
    assert value(model.drift[0], x=3.0, modification=1.0) == 3.0


def test_conditional_derived_variable_errors(tmp_path):
    text = make(dynamics='<ConditionalDerivedVariable name="h"/>')
    fails(tmp_path, text, line_of(text, 'name="h"'),
          r"ConditionalDerivedVariable 'h' needs at least one <Case condition='...' "
          r"value='...'/>")
    text = make(dynamics='<ConditionalDerivedVariable name="h">\n'
                         '        <Case value="1"/>\n        <Case value="2"/>\n'
                         '      </ConditionalDerivedVariable>')
    fails(tmp_path, text, line_of(text, '"1"'), "<Case> needs a 'condition' attribute")
    text = make(dynamics='<ConditionalDerivedVariable name="h">\n'
                         '        <Case condition="x &lt;" value="1"/>\n'
                         '        <Case value="2"/>\n      </ConditionalDerivedVariable>')
    fails(tmp_path, text, line_of(text, '"1"'),
          r"condition of 'h': syntax error( at column \d+)? in 'x <': invalid syntax",
          ExpressionError)


# --------------------------------------------------------------------------- documents


def test_not_well_formed_xml(tmp_path):
    text = make().replace("</Dynamics>", "</Dynamic>")
    fails(tmp_path, text, line_of(text, "</Dynamic>"),
          "XML is not well-formed: Opening and ending tag mismatch: Dynamics")
    fails(tmp_path, "<Lems><ComponentType name='derivatives'>", 1,
          "XML is not well-formed: ")


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_empty_file(tmp_path, text):
    fails(tmp_path, text, None, "empty XML document$")
    with pytest.raises(ModelError, match=r"^<string>: empty XML document$"):
        lems.loads(text)


def test_wrong_root_element(tmp_path):
    text = '<?xml version="1.0"?>\n<NeuroML>\n</NeuroML>\n'
    fails(tmp_path, text, 2, "the root element must be <Lems>, not <NeuroML>")


def test_namespaced_lems_is_read(tmp_path):
    text = make().replace("<Lems ", '<Lems xmlns="http://www.neuroml.org/lems/0.7.4" ')
    assert load(tmp_path, text).state_names == ("x", "y")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.xml"
    with pytest.raises(ModelError, match=re.escape(str(path))
                       + ": cannot read model file: No such file or directory"):
        lems.load(path)
    with pytest.raises(ModelError, match="cannot read model file: Is a directory"):
        lems.load(tmp_path)


def test_unknown_element(tmp_path):
    text = make(params='<Paramter name="k" value="1"/>')
    fails(tmp_path, text, line_of(text, "Paramter"),
          r"unknown element <Paramter> in <ComponentType name='derivatives'>; did you mean "
          r"<Parameter>\? \(expected one of <Parameter>, <Constant>, <DerivedParameter>, "
          r"<Exposure>, <Dynamics>\)")
    text = make(dynamics="<OnCondition/>")
    fails(tmp_path, text, line_of(text, "OnCondition"),
          r"unknown element <OnCondition> in <Dynamics> \(expected one of <StateVariable>, "
          r"<DerivedVariable>, <ConditionalDerivedVariable>, <TimeDerivative>\)")
    text = make(components="<Component/>")
    fails(tmp_path, text, line_of(text, "<Component/>"),
          r"unknown element <Component> in <Lems>; did you mean <ComponentType>\?")


def test_unknown_component_type(tmp_path):
    text = make(components='<ComponentType name="derivates"/>')
    fails(tmp_path, text, line_of(text, "derivates"),
          r"unknown ComponentType 'derivates'; did you mean 'derivatives'\? \(expected "
          r"'derivatives', a name containing 'coupling', or 'noise'\)")
    text = make(components='<ComponentType name="stimulus"/>')
    fails(tmp_path, text, line_of(text, "stimulus"), r"unknown ComponentType 'stimulus' \(")


def test_missing_derivatives_and_dynamics(tmp_path):
    fails(tmp_path, "<Lems>\n</Lems>", 1, "no <ComponentType name='derivatives'> in the model")
    text = '<Lems>\n  <ComponentType name="derivatives">\n  </ComponentType>\n</Lems>'
    fails(tmp_path, text, 2, "'derivatives' has no <Dynamics>")
    text = make(components='<ComponentType name="derivatives"/>')
    fails(tmp_path, text, line_of(text, '"derivatives"', 2),
          "more than one <ComponentType name='derivatives'>")
    text = make(params="<Dynamics/>")
    fails(tmp_path, text, line_of(text, "<Dynamics>"), "more than one <Dynamics> in "
          "'derivatives'")


def test_missing_attributes(tmp_path):
    text = make(params='<Constant name="k"/>')
    fails(tmp_path, text, line_of(text, '"k"'), "<Constant> needs a 'value' attribute")
    text = make(params='<Constant value="1"/>')
    fails(tmp_path, text, line_of(text, 'value="1"'), "<Constant> needs a 'name' attribute")
    text = make().replace('<TimeDerivative variable="dx" value="omega + c_pop0"/>',
                          '<TimeDerivative variable="dx"/>')
    fails(tmp_path, text, line_of(text, '"dx"'), "<TimeDerivative> needs a 'value' attribute")


def test_hostile_xml_reads_no_file_and_does_not_explode(tmp_path):
    secret = write(tmp_path, "1.0", "secret.txt")
    doctype = f'<!DOCTYPE Lems [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
    text = make(params='<Constant name="k" value="&xxe;"/>').replace("<Lems", doctype + "<Lems")
    fails(tmp_path, text, line_of(text, "&xxe;"),
          "XML is not well-formed: Attribute references external entity 'xxe'")
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">'
                     for i in range(10))
    text = make(params='<Constant name="k" value="&l9;"/>').replace(
        "<Lems", f"<!DOCTYPE Lems [{laughs}]>\n<Lems")
    fails(tmp_path, text, line_of(text, "&l9;"),
          "XML is not well-formed: Maximum entity amplification factor exceeded")


# --------------------------------------------------------------------------- declarations


def test_duplicate_parameters(tmp_path):
    # (a Constant declared twice is RateML's convention: see the tests at the end)
    text = make(params='<Parameter name="omega" dimension="0, 2"/>')
    fails(tmp_path, text, line_of(text, '"omega"', 2),
          rf"duplicate name 'omega' \(first declared on line {quoted(text, 'omega')}\)")


def test_parameter_and_state_variable_with_one_name(tmp_path):
    text = make(params='<Constant name="x" value="2"/>')
    fails(tmp_path, text, line_of(text, '<StateVariable name="x"'),
          rf"duplicate name 'x' \(first declared on line "
          rf"{quoted(text, 'x', before='<Constant name=')}\)")


def test_derived_variable_shadowing_a_parameter(tmp_path):
    text = make(dynamics='<DerivedVariable name="tau" value="2"/>')
    fails(tmp_path, text, line_of(text, '<DerivedVariable name="tau"'),
          rf"duplicate name 'tau' \(first declared on line {quoted(text, 'tau')}\)")


@pytest.mark.parametrize(
    ("declaration", "match"),
    [
        ('<Constant name="pi" value="3"/>', "'pi' is a reserved name"),
        ('<Constant name="dt" value="3"/>', "'dt' is a reserved name"),
        ('<Constant name="n_node" value="3"/>', "'n_node' is a reserved name"),
        ('<Constant name="pre" value="3"/>', "'pre' is a reserved name"),
        ('<Constant name="lambda" value="3"/>',
         r"'lambda' is a Python keyword and cannot be a name in an expression; rename it "
         r"\(e.g. 'lamda' for 'lambda'\)"),
        ('<Constant name="2x" value="3"/>', r"'2x' is not a valid name \(letters, digits, _\)"),
        ('<Constant name="a.b" value="3"/>', "'a.b' is not a valid name"),
        ('<DerivedParameter name="global_speed" value="2"/>',
         "'global_speed' is an implicit parameter; declare it with <Parameter> or "
         "<Constant>, not <DerivedParameter>"),
        ('<Constant name="global_coupling" value="2"/>',
         r"duplicate name 'global_coupling' \(first declared on line 4\)"),
        ('<DerivedParameter name="c_pop1" value="global_coupling"/>',
         "'c_pop1' names a coupling term: declare it as the DerivedParameter of a coupling "
         "ComponentType"),
    ],
)
def test_invalid_names(tmp_path, declaration, match):
    text = make(params=declaration)
    fails(tmp_path, text, line_of(text, declaration), match)


def test_parameter_ranges_and_defaults(tmp_path):
    params = ('<Parameter name="g" dimension="0.5, 2.0"/>'
              '<Parameter name="h" dimension="-1, 1" default="0.25" description="an h"/>'
              '<Parameter name="k" default="pi / 2"/>')
    model = load(tmp_path, make(params=params))
    g, h, k = (model.parameter(n) for n in "ghk")
    assert (g.default, g.range, g.kind) == (0.5, (0.5, 2.0), "parameter")
    assert (h.default, h.range, h.description) == (0.25, (-1.0, 1.0), "an h")
    assert (k.default, k.range) == (pytest.approx(math.pi / 2), None)
    assert model.parameter("global_coupling").range == (0.0, 1.0)


@pytest.mark.parametrize(
    ("declaration", "match"),
    [
        ('<Parameter name="g" dimension="a, b"/>',
         "range of Parameter 'g': expected a number but got 'a'"),
        ('<Parameter name="g" dimension="1.0"/>',
         "range of Parameter 'g': expected 'lo, hi' but got '1.0'"),
        ('<Parameter name="g" dimension="2, 1"/>', "range of Parameter 'g': lo 2 > hi 1"),
        ('<Parameter name="g"/>', "Parameter 'g' needs a range 'lo, hi' or a default"),
        ('<Parameter name="g" dimension="0, 1" default="x"/>',
         "default of Parameter 'g': expected a number but got 'x'"),
        ('<Constant name="k" value="abc"/>',
         "value of Constant 'k': expected a number but got 'abc'"),
        ('<Constant name="k" value="None"/>',
         "value of Constant 'k': expected a number but got 'None'"),
        ('<Constant name="k" value="1" dimension="lo=0, hi=x"/>',
         "domain of Constant 'k': expected a number but got 'x'"),
        ('<Constant name="k" value="1" dimension="0, 1"/>',
         r"domain of Constant 'k': expected 'lo=.., hi=.., step=..' but got '0, 1'"),
    ],
)
def test_non_numeric_values(tmp_path, declaration, match):
    text = make(params=declaration)
    fails(tmp_path, text, line_of(text, declaration), match)


def test_constant_domains(tmp_path):
    params = ('<Constant name="a" value="0.1" dimension="lo=0.0, hi=1.0, step=0.05"/>'
              '<Constant name="b" value="1e-3f" dimension="lo=-1, hi=1"/>'
              '<Constant name="c" value="2 * pi" dimension="None"/>'
              '<Constant name="d" value="0.641 / 1000" dimension="step=0.1"/>')
    model = load(tmp_path, make(params=params))
    a, b, c, d = (model.parameter(n) for n in "abcd")
    assert (a.default, a.range, a.step, a.kind) == (0.1, (0.0, 1.0), 0.05, "constant")
    assert (b.default, b.range, b.step) == (1e-3, (-1.0, 1.0), None)
    assert (c.default, c.range) == (pytest.approx(2 * math.pi), None)
    assert (d.default, d.range, d.step) == (pytest.approx(0.641e-3), None, 0.1)


def test_state_variable_ranges_and_bounds(tmp_path):
    template = TEMPLATE.replace(
        '<StateVariable name="x" dimension="0.0, 1.0"/>',
        '<StateVariable name="x" dimension="0.0, 2 * pi" exposure="0.0, inf"/>').replace(
        '<StateVariable name="y" dimension="-1.0, 1.0"/>',
        '<StateVariable name="y" dimension="-1.0, 1.0" exposure="None, 1.0"/>')
    dynamics = ('<StateVariable name="z" dimension="0, 1" exposure="-inf, inf"/>'
                '<StateVariable name="w" dimension="0, 1" boundaries="0.0, 1.0"/>'
                '<TimeDerivative variable="dz" value="0"/>'
                '<TimeDerivative variable="dw" value="0"/>')
    model = load(tmp_path, make(template=template, dynamics=dynamics))
    x, y, z, w = model.state_variables
    assert x.initial_range == (0.0, pytest.approx(2 * math.pi))
    assert x.bounds == (0.0, None)
    assert y.bounds == (None, 1.0)
    assert z.bounds is None
    assert w.bounds == (0.0, 1.0)


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ('<StateVariable name="z"/>',
         "StateVariable 'z' needs an initial range dimension='lo, hi'"),
        ('<StateVariable name="z" dimension="0, a"/>',
         "initial range of StateVariable 'z': expected a number but got 'a'"),
        ('<StateVariable name="z" dimension="0, 1" exposure="1, 0"/>',
         "bounds of StateVariable 'z': lo > hi"),
        ('<StateVariable name="z" dimension="0, 1" exposure="0, 1, 2"/>',
         "bounds of StateVariable 'z': expected 'lo, hi' but got '0, 1, 2'"),
    ],
)
def test_state_variable_errors(tmp_path, state, match):
    text = make(dynamics=state + '<TimeDerivative variable="dz" value="0"/>')
    fails(tmp_path, text, line_of(text, state), match)


# --------------------------------------------------------------------------- pairing


def test_state_variable_without_a_derivative(tmp_path):
    text = make().replace('<TimeDerivative variable="dy" value="-y / tau"/>', "")
    fails(tmp_path, text, line_of(text, '<StateVariable name="y"'),
          "state variable 'y' has no TimeDerivative")


def test_time_derivative_for_no_state(tmp_path):
    # Before or after the named ones: the positions of x and y are taken by dx and dy.
    for text in (make(dynamics='<TimeDerivative variable="dz" value="1"/>'),
                 make().replace("</Dynamics>", '  <TimeDerivative variable="dz" value="1"/>'
                                               '\n    </Dynamics>', 1)):
        fails(tmp_path, text, line_of(text, '"dz"'),
              r"TimeDerivative 'dz' has no state variable \(state variables: x, y\)")


def test_global_coupling_may_be_a_constant_or_implicit(tmp_path):
    template = TEMPLATE.replace('<Parameter name="global_coupling" dimension="0.0, 1.0" '
                                'default="0.5"/>', "")
    model = load(tmp_path, make(template=template))
    assert model.parameter("global_coupling").default == 1.0
    assert model.parameter("global_coupling").kind == "implicit"
    model = load(tmp_path, make(template=template,
                                params='<Constant name="global_coupling" value="0.2"/>'))
    assert model.parameter("global_coupling").kind == "constant"
    text = make(template=template,
                params='<DerivedParameter name="global_coupling" value="0.2"/>')
    fails(tmp_path, text, line_of(text, "global_coupling"),
          "'global_coupling' is an implicit parameter; declare it with <Parameter> or "
          "<Constant>, not <DerivedParameter>")
    text = make(template=template, params="",
                dynamics='<StateVariable name="global_speed" dimension="0, 1"/>')
    fails(tmp_path, text, line_of(text, "global_speed"),
          "'global_speed' is an implicit parameter; declare it with <Parameter> or "
          "<Constant>, not <StateVariable>")


def test_two_derivatives_for_one_state(tmp_path):
    text = make().replace('variable="dy"', 'variable="dx"')
    fails(tmp_path, text, line_of(text, '"dx"', 2),
          rf"state variable 'x' has two TimeDerivatives \(the other on line "
          rf"{quoted(text, 'dx')}\)")


def test_derivatives_pair_by_name_in_any_order(tmp_path):
    text = make().replace('variable="dx" value="omega + c_pop0"', 'variable="dy" value="7"') \
                 .replace('variable="dy" value="-y / tau"', 'variable="x" value="8"')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load(tmp_path, text)
    assert model.drift == (8, 7)


def test_derivatives_pair_by_position_with_a_warning(tmp_path):
    text = make().replace('variable="dx"', 'variable="first"') \
                 .replace('variable="dy"', 'variable="second"')
    with pytest.warns(UserWarning) as record:
        model = load(tmp_path, text)
    messages = [str(w.message) for w in record]
    assert messages == [
        f"model.xml:{line_of(text, 'first')}: TimeDerivative 'first' names no state variable; "
        "paired by position with 'x'",
        f"model.xml:{line_of(text, 'second')}: TimeDerivative 'second' names no state "
        "variable; paired by position with 'y'",
    ]
    assert value(model.drift[0], omega=1.5, c_pop0=0.0) == 1.5


def test_state_named_like_a_derivative(tmp_path):
    dynamics = ('<StateVariable name="dz" dimension="0, 1"/>'
                '<TimeDerivative variable="ddz" value="3"/>')
    model = load(tmp_path, make(dynamics=dynamics))
    assert model.state_names == ("x", "y", "dz")
    assert model.drift[2] == 3


# --------------------------------------------------------------------------- coupling


def coupling(name="coupling_x", delayed='<Parameter name="x_j" dimension="0"/>',
             scale='<DerivedParameter name="c_pop0" value="global_coupling"/>',
             functions='<DerivedVariable name="pre" value="x_j - x"/>'):
    return (f'<ComponentType name="{name}">\n    {delayed}\n    {scale}\n'
            f'    <Dynamics>\n      {functions}\n    </Dynamics>\n  </ComponentType>')


def test_coupling_term(tmp_path):
    model = load(tmp_path, make())
    (term,) = model.coupling_terms
    assert (term.index, term.sources, term.delayed, term.line) == (
        0, ("x",), (symbol("x_j"),), line_of(make(), "c_pop0\" value"))
    assert value(term.pre, x=0.25, x_j=1.0) == 0.75
    assert term.post == 1  # no post: the weighted sum itself
    assert term.scale == symbol("global_coupling")
    assert term.symbol == symbol("c_pop0")
    assert model.coupled_variables == ("x",)


def test_coupling_pre_and_post(tmp_path):
    functions = ('<DerivedVariable name="pre" value="sin(y_j - x) * a"/>\n'
                 '      <DerivedVariable name="post" value="tanh(pre) / n_node"/>')
    component = coupling(delayed='<Parameter name="y_j" dimension="1"/>',
                         scale='<DerivedParameter name="c_pop1" value="2 * global_coupling"/>\n'
                               '    <Constant name="a" value="0.5"/>',
                         functions=functions, name="coupling_y")
    model = load(tmp_path, make(components=component, dy="c_pop1"))
    first, second = model.coupling_terms
    assert (second.index, second.sources) == (1, ("y",))
    assert value(second.pre, x=0.0, y_j=0.5, a=0.5) == pytest.approx(0.5 * math.sin(0.5))
    assert second.summed in second.post.free_symbols
    assert value(second.post, pre=0.3, n_node=3) == pytest.approx(math.tanh(0.3) / 3)
    assert value(second.scale, global_coupling=0.5) == 1.0
    assert model.parameter("a").default == 0.5
    assert model.coupled_variables == ("x", "y")


def test_coupling_without_dynamics_is_the_delayed_variable(tmp_path):
    component = ('<ComponentType name="coupling_x">\n'
                 '    <Parameter name="x_j" dimension="0"/>\n'
                 '    <DerivedParameter name="c_pop0" value="global_coupling"/>\n'
                 '  </ComponentType>')
    (term,) = load(tmp_path, make(coupling=component)).coupling_terms
    assert (term.pre, term.post) == (symbol("x_j"), 1)


def test_coupling_index_out_of_range(tmp_path):
    text = make(coupling=coupling(delayed='<Parameter name="x_j" dimension="5"/>'))
    fails(tmp_path, text, line_of(text, "x_j"),
          r"coupling index 5 of 'x_j' is out of range: the model has 2 state variables "
          r"\(0=x, 1=y\)")
    text = make(coupling=coupling(delayed='<Parameter name="x_j" dimension="-1"/>'))
    fails(tmp_path, text, line_of(text, "x_j"), "coupling index -1 of 'x_j' is out of range")
    text = make(coupling=coupling(delayed='<Parameter name="x_j" dimension="zero"/>'))
    fails(tmp_path, text, line_of(text, "x_j"),
          "state index of 'x_j' must be an integer, got 'zero'")


def test_coupling_name_contradicting_its_index(tmp_path):
    text = make(coupling=coupling(delayed='<Parameter name="x_j" dimension="1"/>'))
    fails(tmp_path, text, line_of(text, "x_j"),
          "'x_j' names state variable 'x' but its index 1 is 'y'")


def test_coupling_variable_with_another_name(tmp_path):
    text = make(coupling=coupling(delayed='<Parameter name="delayed_x" dimension="0"/>',
                                  functions='<DerivedVariable name="pre" value="delayed_x"/>'))
    (term,) = load(tmp_path, text).coupling_terms
    assert (term.sources, term.delayed) == (("x",), (symbol("delayed_x"),))


def test_missing_c_pop(tmp_path):
    text = make(coupling=coupling(scale=""))
    fails(tmp_path, text, line_of(text, "coupling_x"),
          r"<ComponentType name='coupling_x'> needs a DerivedParameter 'c_pop<k>' \(the "
          r"coupling scale, e.g. value='global_coupling'\)")
    text = make(dy="c_pop1")
    fails(tmp_path, text, line_of(text, '"c_pop1"'),
          r"TimeDerivative 'dy': unknown symbol 'c_pop1' in 'c_pop1'; did you mean 'c_pop0'\?",
          ExpressionError)


def test_missing_delayed_variable(tmp_path):
    text = make(coupling=coupling(delayed=""))
    fails(tmp_path, text, line_of(text, "coupling_x"),
          r"<ComponentType name='coupling_x'> needs a Parameter naming the delayed variable "
          r"and its state index, e.g. <Parameter name='x1_j' dimension='0'/>")


def test_duplicate_c_pop(tmp_path):
    second = coupling(name="coupling_y", delayed='<Parameter name="y_j" dimension="1"/>',
                      functions='<DerivedVariable name="pre" value="y_j"/>')
    text = make(components=second)
    fails(tmp_path, text, line_of(text, '"c_pop0"', 2),
          rf"c_pop0 is defined twice \(also on line {quoted(text, 'c_pop0')}\)")
    text = make(coupling=coupling(
        scale='<DerivedParameter name="c_pop0" value="global_coupling"/>\n'
              '    <DerivedParameter name="c_pop1" value="global_coupling"/>'))
    fails(tmp_path, text, line_of(text, '"c_pop1"'),
          r"<ComponentType name='coupling_x'> defines more than one c_pop<k> \('c_pop0' on "
          rf"line {quoted(text, 'c_pop0')}\); use one coupling ComponentType per term")


def test_c_pop_cannot_be_shadowed(tmp_path):
    text = make(dynamics='<DerivedVariable name="c_pop0" value="1"/>')
    fails(tmp_path, text, line_of(text, '<DerivedVariable name="c_pop0"'),
          rf"duplicate name 'c_pop0' \(first declared on line "
          rf"{quoted(text, 'c_pop0', before='<DerivedParameter name=')}\)")


def test_coupling_component_errors(tmp_path):
    text = make(coupling=coupling(
        delayed='<Parameter name="x_j" dimension="0"/>\n    '
                '<Parameter name="y_j" dimension="1"/>'))
    fails(tmp_path, text, line_of(text, "y_j"),
          r"<ComponentType name='coupling_x'> declares the delayed variable 'y_j' but its "
          r"'pre' does not read it; remove the Parameter or use 'y_j' in 'pre'")
    text = make(coupling=coupling(functions='<DerivedVariable name="gain" value="x_j"/>'))
    fails(tmp_path, text, line_of(text, "gain"),
          "coupling functions are 'pre' and 'post', not 'gain'")
    text = make(coupling=coupling(functions='<DerivedVariable name="pre" value="x_j"/>\n'
                                            '      <DerivedVariable name="pre" value="x"/>'))
    fails(tmp_path, text, line_of(text, '"pre"', 2),
          "<ComponentType name='coupling_x'> defines 'pre' twice")
    text = make(coupling=coupling(functions='<DerivedVariable name="post" value="x * pre"/>'))
    fails(tmp_path, text, line_of(text, '"post"'),
          rf"coupling 'post': 'x' is the StateVariable on line "
          rf"{quoted(text, 'x', before='<StateVariable name=')}, which cannot be used here",
          ExpressionError)


# --------------------------------------------------------------------------- noise, exposures


def test_noise_component(tmp_path):
    component = ('<ComponentType name="noise">\n'
                 '    <Constant name="nsig" value="0.5 * tau"/>\n  </ComponentType>')
    model = load(tmp_path, make(components=component))
    assert value(model.noise_amplitude, tau=2.0) == 1.0
    assert load(tmp_path, make()).noise_amplitude is None
    model = load(tmp_path, make(components='<ComponentType name="noise"/>'))
    assert float(model.noise_amplitude) == 1.0  # RateML: nsig = 1 when none is declared
    model = load(tmp_path, make(params='<Constant name="nsig" value="0.01"/>',
                                components='<ComponentType name="noise"/>'))
    assert model.noise_amplitude == symbol("nsig")
    assert model.defaults["nsig"] == 0.01


def test_noise_errors(tmp_path):
    component = '<ComponentType name="noise">\n    <Constant name="sigma" value="1"/>\n' \
                '  </ComponentType>'
    text = make(components=component)
    fails(tmp_path, text, line_of(text, "sigma"),
          r"the noise component only declares 'nsig' \(per-step standard deviation of the "
          r"additive noise\)")
    text = make(components='<ComponentType name="noise"/>\n  <ComponentType name="noise"/>')
    fails(tmp_path, text, line_of(text, '"noise"', 2),
          rf"more than one <ComponentType name='noise'> \(the first on line "
          rf"{quoted(text, 'noise')}\)")
    component = ('<ComponentType name="noise">\n    <Constant name="nsig" value="1"/>\n'
                 '    <Constant name="nsig" value="2"/>\n  </ComponentType>')
    text = make(components=component)
    fails(tmp_path, text, line_of(text, '"nsig"', 2), "duplicate name 'nsig'")
    text = make(params='<Constant name="nsig" value="1"/>',
                components='<ComponentType name="noise">\n'
                           '    <Constant name="nsig" value="2"/>\n  </ComponentType>')
    fails(tmp_path, text, line_of(text, '"nsig"', 2), "duplicate name 'nsig'")


def test_exposures(tmp_path):
    params = ('<Exposure name="total" dimension="x + y * tau"/>'
              '<Exposure name="y" dimension="y"/>'
              '<Exposure name="x"/>')
    model = load(tmp_path, make(params=params))
    assert model.exposure_names == ("total", "y", "x")
    assert value(model.exposure_expressions[0], x=1.0, y=2.0, tau=2.0) == 5.0
    assert model.exposure_expressions[1:] == (symbol("y"), symbol("x"))


def test_exposures_default_to_the_state_variables(tmp_path):
    model = load(tmp_path, make())
    assert model.exposure_names == ("x", "y")
    assert model.exposure_expressions == (symbol("x"), symbol("y"))


def test_exposure_errors(tmp_path):
    text = make(params='<Exposure name="e"/>')
    fails(tmp_path, text, line_of(text, '"e"'),
          r"Exposure 'e' needs an expression \(dimension='...'\) or must name a state variable")
    text = make(params='<Exposure name="e" dimension="x"/>\n    '
                       '<Exposure name="e" dimension="y"/>')
    fails(tmp_path, text, line_of(text, '"e"', 2),
          rf"duplicate Exposure 'e' \(first on line {quoted(text, 'e')}\)")


# --------------------------------------------------------------------------- bundled models


def test_every_bundled_model_loads():
    from neuralmass.models import available, load_model
    for name in available():
        model = load_model(name)
        assert model.name == name
        assert model.coupling_terms
        assert len(model.drift) == len(model.state_variables)


def test_the_example_in_the_docs(tmp_path):
    docs = (Path(__file__).parents[1] / "docs" / "xml.md").read_text(encoding="utf-8")
    example = re.search(r"```xml\n(.*?)```", docs, re.S).group(1)
    model = load(tmp_path, example)
    assert model.state_names == ("V", "W")
    assert model.exposure_names == ("V", "VW")
    assert float(model.noise_amplitude) == 0.01
    dV, dW = model.drift
    assert value(dV, V=0.5, W=0.2, I=0.5, c_pop0=0.1) == pytest.approx(0.5 - 0.125 / 3 - 0.2
                                                                      + 0.6)
    assert value(dV, V=-2.0, W=0.2, I=0.5, c_pop0=0.1) == pytest.approx(-2.0 + 8 / 3 - 0.2)
    assert value(dW, V=0.5, W=0.2, a=0.7, tau=12.5) == pytest.approx((0.5 + 0.7 - 0.16) / 12.5)
    # The error quoted at the end of the page is the one a typo gives.
    quoted = re.search(r"\n    (model\.xml:\d+: .*)\n", docs).group(1)
    with pytest.raises(ExpressionError) as info:
        load(tmp_path, example.replace("cubic - W", "cubc - W"))
    assert str(info.value) == quoted


# --------------------------------------------------------------------------- RateML's conventions
# (issue 8, section 4) RateML's own model files use three conventions RateML accepts; a file
# written with them loads unchanged, with a ModelWarning where neuralmass makes a choice.

RATEML_CONVENTIONS = Path(__file__).parent / "data" / "rateml_conventions.xml"


def test_rateml_exposure_none_or_empty_means_no_bounds(tmp_path):
    template = TEMPLATE.replace(
        '<StateVariable name="x" dimension="0.0, 1.0"/>',
        '<StateVariable name="x" dimension="0.0, 1.0" exposure="None"/>').replace(
        '<StateVariable name="y" dimension="-1.0, 1.0"/>',
        '<StateVariable name="y" dimension="-1.0, 1.0" exposure=""/>')
    dynamics = ('<StateVariable name="z" dimension="0, 1" exposure=" none "/>'
                '<TimeDerivative variable="dz" value="0"/>')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: this is plain RateML
        model = load(tmp_path, make(template=template, dynamics=dynamics))
    assert [sv.bounds for sv in model.state_variables] == [None, None, None]


def test_rateml_constant_declared_twice_with_one_value_warns_naming_both_lines(tmp_path):
    text = make(params='<Constant name="tau" value="2.0" description="again"/>')
    first, second = line_of(text, '"tau"'), line_of(text, '"tau"', 2)
    with pytest.warns(ModelWarning) as record:
        model = load(tmp_path, text)
    (warning,) = record
    assert str(warning.message) == (
        f"model.xml:{second}: Constant 'tau' is declared twice, on lines {first} and {second}, "
        "with the same value 2.0; the last declaration is used, as RateML does")
    assert model.parameter_names.count("tau") == 1
    assert model.parameter("tau").description == "again"  # the last declaration
    assert model.parameter("tau").line == second


def test_rateml_constant_declared_twice_with_two_values_keeps_the_last(tmp_path):
    # Redeclared in a coupling component: RateML keeps the last one there too.
    component = coupling(name="coupling_y", delayed='<Parameter name="y_j" dimension="1"/>',
                         scale='<DerivedParameter name="c_pop1" value="global_coupling"/>\n'
                               '    <Constant name="omega" value="0.25"/>',
                         functions='<DerivedVariable name="pre" value="y_j"/>')
    text = make(components=component, dy="c_pop1 - y / tau")
    first, second = line_of(text, '"omega"'), line_of(text, '"omega"', 2)
    with pytest.warns(ModelWarning) as record:
        model = load(tmp_path, text)
    (warning,) = record
    assert str(warning.message) == (
        f"model.xml:{second}: Constant 'omega' is declared twice with different values: "
        f"1.5 on line {first} and 0.25 on line {second}; keeping the last (0.25), as RateML "
        "does")
    assert model.defaults["omega"] == 0.25
    # The constant keeps its first place among the parameters.
    assert model.parameter_names[:3] == ("global_coupling", "omega", "tau")
    assert value(model.drift[0], c_pop0=0.0, omega=model.defaults["omega"]) == 0.25


def test_a_constant_redeclared_as_another_element_is_still_an_error(tmp_path):
    text = make(params='<Parameter name="tau" dimension="0, 1"/>'
                       '<Constant name="tau" value="3"/>')
    fails(tmp_path, text, line_of(text, '"tau"', 2),
          rf"duplicate name 'tau' \(first declared on line {quoted(text, 'tau')}\)")


def test_rateml_coupling_without_delayed_variable_or_functions_is_zero(tmp_path):
    empty = ('<ComponentType name="coupling_nothing">\n'
             '    <DerivedParameter name="c_pop1" value="global_coupling"/>\n'
             '  </ComponentType>')
    text = make(components=empty, dy="c_pop1 - y / tau")
    with pytest.warns(ModelWarning) as record:
        model = load(tmp_path, text)
    (warning,) = record
    assert str(warning.message) == (
        f"model.xml:{line_of(text, 'coupling_nothing')}: <ComponentType "
        "name='coupling_nothing'> has no Parameter naming a delayed variable and no 'pre' or "
        "'post': it couples nothing and c_pop1 is 0, as in RateML")
    assert [t.index for t in model.coupling_terms] == [0]
    assert model.coupled_variables == ("x",)
    assert symbol("c_pop1") not in model.drift[1].free_symbols
    assert value(model.drift[1], y=0.5, tau=2.0) == -0.25
    # Its index is taken: another c_pop1 is an error.
    text = make(components=empty.replace("c_pop1", "c_pop0"))
    fails(tmp_path, text, line_of(text, '"c_pop0"', 2), "c_pop0 is defined twice")
    text = make(components=empty + "\n" + empty.replace("nothing", "nothing_again"),
                dy="c_pop1 - y")
    with pytest.warns(ModelWarning):  # the first of the two
        fails(tmp_path, text, line_of(text, '"c_pop1"', 2),
              rf"c_pop1 is defined twice \(also on line {quoted(text, 'c_pop1')}\)")


def test_a_rateml_style_file_loads_unchanged_and_simulates_as_written_out():
    # The reference is the same model with the conventions written out by hand: theta's last
    # value, no bounds, and c_pop1 replaced by 0. Same backend, same float64 operations, so
    # the runs agree to rounding (1e-12 relative).
    with pytest.warns(ModelWarning) as record:
        model = lems.load(RATEML_CONVENTIONS)
    assert len(record) == 3  # w_ee twice (same), theta twice (different), coupling_function_I
    assert model.state_names == ("E", "I")
    assert [sv.bounds for sv in model.state_variables] == [None, None]
    assert model.defaults["theta"] == 0.25 and model.defaults["w_ee"] == 1.2
    text = RATEML_CONVENTIONS.read_text(encoding="utf-8")
    explicit = re.sub(r'\s*<Constant name="(w_ee|theta)"[^>]*/>', "", text, count=0)
    explicit = explicit.replace('<Constant name="w_ei"', '<Constant name="w_ee" default="1.2"/>'
                                '<Constant name="theta" default="0.25"/><Constant name="w_ei"')
    explicit = re.sub(r"<ComponentType name=\"coupling_function_I\">.*?</ComponentType>", "",
                      explicit, flags=re.S)
    explicit = explicit.replace("c_pop1", "0").replace(' exposure="None"', "").replace(
        ' exposure=""', "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference = lems.loads(explicit, filename="explicit.xml")
    rng = np.random.default_rng(8)
    weights = rng.uniform(0, 1, (3, 3))
    np.fill_diagonal(weights, 0)
    conn = nm.Connectivity(weights, rng.uniform(5, 20, (3, 3)), speed=4.0)
    initial = rng.uniform(0, 0.5, (2, 3))
    runs = [nm.simulate(m, conn, {"global_coupling": 0.2}, backend="numba", dt=0.1,
                        n_steps=200, initial_state=initial) for m in (model, reference)]
    assert np.all(np.isfinite(runs[0].data))
    np.testing.assert_allclose(runs[0].data, runs[1].data, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- sizes
# (issue 8, section 7) Reading is linear in the file, and a model beyond sane sizes is refused.


def many_declarations(n: int) -> str:
    """A valid model with about ``n`` elements: Constants, DerivedParameters and
    DerivedVariables that each use an earlier name (each one an expression to parse)."""
    quarter = n // 4
    params = "\n".join(
        [f'<Constant name="k{i}" value="{i}e-3"/>' for i in range(2 * quarter)]
        + [f'<DerivedParameter name="p{i}" value="k{i} * 2 + k{i + 1}"/>'
           for i in range(quarter)])
    dynamics = "\n".join(f'<DerivedVariable name="v{i}" value="x * p{i} - y"/>'
                         for i in range(quarter))
    return make(params=params, dynamics=dynamics)


def cpu_seconds(function, repeats: int) -> float:
    """The least CPU time (process_time: others' load on a shared machine does not count)
    of ``repeats`` calls of ``function``."""
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def test_reading_time_is_linear_in_the_number_of_declarations():
    # 8x the declarations must cost about 8x the time. Before issue 8 every expression built
    # a dict of every declared name: 1,000 -> 8,000 elements cost ~23x. The margin (16x) is
    # twice the linear ratio, for the noise of a shared machine.
    small, large = many_declarations(1000), many_declarations(8000)
    assert len(lems.loads(large).derived_variables) == 2000
    ratio = cpu_seconds(lambda: lems.loads(large), 2) / cpu_seconds(lambda: lems.loads(small), 3)
    assert ratio < 16, f"8x the declarations took {ratio:.1f}x the time"


def test_parsing_time_is_linear_in_the_length_of_an_expression():
    # A sum (and a product) of 1,600 terms in one expression costs about 4x one of 400 terms
    # (n log n: SymPy sorts the terms). Built pairwise, SymPy re-flattened the whole sum at
    # every '+': 400 -> 1,600 terms cost ~190x. Margin: 12x (the short run takes ~10 ms).
    def model(n: int) -> str:
        params = "\n".join(f'<Constant name="k{i}" value="1"/>' for i in range(n))
        terms = " + ".join(f"k{i} * x" for i in range(0, n, 2))
        factors = " * ".join(f"k{i}" for i in range(1, n, 2))
        return make(params=params, dynamics=f'<DerivedVariable name="s" value="{terms}"/>'
                                             f'<DerivedVariable name="m" value="{factors}"/>')
    short, long = model(400), model(1600)
    (s, m) = lems.loads(long).derived_variables
    assert len(s.expression.args) == 800 and len(m.expression.args) == 800
    ratio = cpu_seconds(lambda: lems.loads(long), 3) / cpu_seconds(lambda: lems.loads(short), 5)
    assert ratio < 12, f"4x the terms took {ratio:.1f}x the time"


def test_a_model_beyond_sane_sizes_is_refused_clearly(tmp_path):
    # Too many elements: refused at the first one beyond the limit, before building anything.
    n = lems.MAX_ELEMENTS
    text = make(params="\n".join(f'<Constant name="k{i}" value="1"/>' for i in range(n)))
    start = time.process_time()
    # The template declares 5 elements before the Constants k0, k1, ...
    error = fails(tmp_path, text, line_of(text, f'"k{n - 5}"'),
                  r"more than 10,000 XML elements, the most neuralmass reads in a model \(a "
                  r"neural mass model has tens to hundreds\)")
    assert time.process_time() - start < 10  # lxml's parse and a count: well under a second
    assert isinstance(error, ValueError)
    # Too many bytes: a file is refused before it is read (this one is sparse), a string too.
    big = tmp_path / "big.xml"
    with open(big, "wb") as handle:
        handle.truncate(lems.MAX_FILE_BYTES + 1)
    with pytest.raises(ModelError, match=r"^big\.xml: the model is 1,048,577 bytes, more than "
                                         r"the 1,048,576 bytes neuralmass reads \(a neural "
                                         r"mass model is a few kB; a larger file is refused"):
        lems.load(big)
    text = make(params=" " * lems.MAX_FILE_BYTES)
    with pytest.raises(ModelError, match=rf"^<string>: the model is {len(text):,} bytes"):
        lems.loads(text)


def test_an_error_in_a_large_model_names_a_few_known_symbols_not_all():
    text = many_declarations(2000).replace('value="x * p0 - y"', 'value="x * qqq0"')
    with pytest.raises(ExpressionError) as info:
        lems.loads(text)
    message = str(info.value)
    assert re.search(r"unknown symbol 'qqq0' in 'x \* qqq0' \(known: c_pop0, dt, .*, "
                     r"\.\.\. \(\d+ more\)\)$", message), message
    assert len(message) < 600
