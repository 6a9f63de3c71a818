"""RateML-dialect LEMS XML → :class:`neuralmass.model.Model`.

The dialect (see ``docs/xml.md``)::

    <Lems description="...">
      <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.5"/>   sweep range
        <Constant name="tau" value="1.0" dimension="lo=0.001, hi=15.0, step=0.01"/>
        <DerivedParameter name="rec_n" value="1 / n_node"/>
        <Exposure name="r" dimension="r"/>                            observable expression
        <Dynamics>
          <StateVariable name="r" dimension="0.0, 2.0" exposure="0.0, inf"/>  init range, bounds
          <DerivedVariable name="..." value="..."/>
          <ConditionalDerivedVariable name="f1">
            <Case condition="x1 &lt; 0" value="..."/>
            <Case value="..."/>                                       the last Case is 'else'
          </ConditionalDerivedVariable>
          <TimeDerivative variable="dr" value="..."/>
        </Dynamics>
      </ComponentType>
      <ComponentType name="coupling_r">                any name containing 'coupling'
        <Parameter name="r_j" dimension="0"/>          delayed variable, its state index
                                                       (one or more, each its own Parameter)
        <DerivedParameter name="c_pop0" value="global_coupling"/>
        <Dynamics>
          <DerivedVariable name="pre" value="r_j"/>
          <DerivedVariable name="post" value="1"/>     'pre' in post = the weighted sum
        </Dynamics>
      </ComponentType>
      <ComponentType name="noise"/>                    additive noise of std nsig per step
    </Lems>

Every error is a :class:`~neuralmass.errors.ModelError` (or
:class:`~neuralmass.errors.ExpressionError`) whose message starts with ``file:line:``.
"""

from __future__ import annotations

import difflib
import keyword
import os
import re
import warnings
from collections.abc import Mapping

import sympy
from lxml import etree

from ..errors import ExpressionError, ModelError, ModelWarning
from ..model import (
    IMPLICIT_SCALARS,
    SWEEP_ONLY,
    CouplingTerm,
    DerivedQuantity,
    Exposure,
    Model,
    Parameter,
    StateVariable,
    symbol,
    topological_order,
)
from ._expression import parse_expression

__all__ = ["MAX_ELEMENTS", "MAX_FILE_BYTES", "load", "loads"]

# Sane sizes. RateML's largest models are ~20 kB and ~200 elements; a file far beyond that is a
# wrong file (or a hostile one), and reading it would cost minutes: reading is linear, but a
# 10,000-character expression takes ~0.5 s to turn into SymPy (issue 8, section 7).
MAX_FILE_BYTES = 1024 * 1024
MAX_ELEMENTS = 10_000

_COUPLING_SCALE_RE = re.compile(r"c_pop(\d+)$")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
# A plain decimal literal: what parse_expression reads as the same float64, only faster.
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_RESERVED = {"pi", "inf", "M_PI", "M_PI_F", "dt", "n_node", "pre", "post"}
# Implicit scalars a model may declare itself, and the elements that may declare them.
_IMPLICIT_DECLARATIONS = {
    "global_coupling": ("Parameter", "Constant"),
    "global_speed": ("Parameter", "Constant"),
    "rec_speed_dt": ("Parameter", "Constant", "DerivedParameter"),
}
_RESERVED_PREFIX = "nm_"  # neuralmass's own generated names (see neuralmass.scheme)


def load(path: str | os.PathLike) -> Model:
    """Read a RateML-dialect LEMS XML file into a :class:`Model`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            _check_size(os.path.basename(path), os.fstat(handle.fileno()).st_size)
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ModelError(f"{path}: cannot read model file: {err.strerror}") from None
    return loads(data, filename=path)


def loads(text: str | bytes, *, filename: str = "<string>") -> Model:
    """Read RateML-dialect LEMS XML from a string; ``filename`` is used in messages."""
    return _Reader(filename).read(text)


def _check_size(display: str, n_bytes: int) -> None:
    if n_bytes > MAX_FILE_BYTES:
        raise ModelError(f"{display}: the model is {n_bytes:,} bytes, more than the "
                         f"{MAX_FILE_BYTES:,} bytes neuralmass reads (a neural mass model is a "
                         "few kB; a larger file is refused rather than read for minutes)")


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


class _Unavailable(Mapping):
    """The names the model declares that an expression may not use, each with the reason
    (``"is the StateVariable on line 9, which cannot be used here"``). Looked up lazily: built
    per expression, a dict would make reading quadratic in the number of declarations."""

    def __init__(self, reader: _Reader, allowed: Mapping[str, object]):
        self.reader, self.allowed = reader, allowed

    def __getitem__(self, name: str) -> str:
        if name in self.allowed or name not in self.reader.kinds:
            raise KeyError(name)
        return (f"is the {self.reader.kinds[name]} on line {self.reader.declared[name]}, "
                "which cannot be used here")

    def __iter__(self):
        return (name for name in self.reader.kinds if name not in self.allowed)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Reader:
    def __init__(self, filename: str):
        self.filename = filename
        self.display = os.path.basename(filename) if filename != "<string>" else filename
        self.symbols: dict[str, sympy.Symbol] = {}
        self.declared: dict[str, int | None] = {}  # name -> line of declaration
        self.kinds: dict[str, str] = {}  # name -> the element that declared it
        self.constant_positions: dict[str, int] = {}  # Constant name -> its place in parameters

    # ------------------------------------------------------------------ helpers
    def at(self, element: etree._Element | None) -> str:
        line = getattr(element, "sourceline", None)
        return f"{self.display}:{line}" if line else self.display

    def error(self, element: etree._Element | None, message: str) -> ModelError:
        return ModelError(f"{self.at(element)}: {message}")

    def warn(self, element: etree._Element | None, message: str) -> None:
        # The message names the model file and line, which is what a user needs.
        warnings.warn(f"{self.at(element)}: {message}", ModelWarning, stacklevel=2)

    def attribute(self, element, *names: str, required: bool = True) -> str | None:
        for name in names:
            value = element.get(name)
            if value is not None:
                return value
        if required:
            raise self.error(element, f"<{_local(element.tag)}> needs a {names[0]!r} attribute")
        return None

    def name_of(self, element) -> str:
        name = self.attribute(element, "name", "variable")
        name = name.strip()
        if not _NAME_RE.match(name):
            raise self.error(element, f"{name!r} is not a valid name (letters, digits, _)")
        return name

    def declare(self, name: str, element, *, kind: str | None = None) -> sympy.Symbol:
        kind = kind or _local(element.tag)
        if name in self.declared:
            first = self.declared[name]
            where = f" (first declared on line {first})" if first else ""
            raise self.error(element, f"duplicate name {name!r}{where}")
        if name in _RESERVED or name.startswith(_RESERVED_PREFIX):
            raise self.error(element, f"{name!r} is a reserved name (as are names starting "
                                      f"with {_RESERVED_PREFIX!r})")
        if keyword.iskeyword(name):
            raise self.error(element, f"{name!r} is a Python keyword and cannot be a name in "
                                      "an expression; rename it (e.g. 'lamda' for 'lambda')")
        if kind != "coupling term" and _COUPLING_SCALE_RE.match(name):
            raise self.error(element, f"{name!r} names a coupling term: declare it as the "
                                      "DerivedParameter of a coupling ComponentType, e.g. "
                                      f"<DerivedParameter name={name!r} value='global_coupling'/>")
        allowed = _IMPLICIT_DECLARATIONS.get(name)
        if allowed is not None and kind not in allowed:
            raise self.error(element, f"{name!r} is an implicit parameter; declare it with "
                                      + " or ".join(f"<{a}>" for a in allowed)
                                      + f", not <{kind}>")
        self.declared[name] = element.sourceline
        self.kinds[name] = kind
        sym = symbol(name)
        self.symbols[name] = sym
        return sym

    def expression(self, element, text: str, allowed, *, what: str, boolean=False):
        where = f"{self.at(element)}: {what}"
        return parse_expression(text, allowed, where=where, boolean=boolean,
                                unavailable=_Unavailable(self, allowed))

    def number(self, element, text: str, *, what: str) -> float:
        """A numeric literal or constant expression (``pi/2``, ``1e-3f``, ``inf``)."""
        text = text.strip()
        if text.lower() in ("none", ""):
            raise self.error(element, f"{what}: expected a number but got {text!r}")
        if _DECIMAL_RE.fullmatch(text):  # the common case, without building an AST
            return float(text)
        try:
            value = parse_expression(text, {}, where=f"{self.at(element)}: {what}")
        except ExpressionError as err:
            raise self.error(element, f"{what}: expected a number but got {text!r}") from err
        if not value.is_number:
            raise self.error(element, f"{what}: expected a number but got {text!r}")
        return float(value)

    def pair(self, element, text: str, *, what: str, allow_none: bool = False):
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise self.error(element, f"{what}: expected 'lo, hi' but got {text!r}")
        values = []
        for part in parts:
            if allow_none and part.lower() in ("none", "", "null"):
                values.append(None)
            else:
                values.append(self.number(element, part, what=what))
        return tuple(values)

    def children(self, element, allowed: tuple[str, ...], context: str):
        for child in element:
            if not isinstance(child.tag, str):  # comments, processing instructions
                continue
            tag = _local(child.tag)
            if tag not in allowed:
                close = difflib.get_close_matches(tag, allowed, n=1)
                hint = f"; did you mean <{close[0]}>?" if close else ""
                raise self.error(
                    child,
                    f"unknown element <{tag}> in {context}{hint} (expected one of "
                    + ", ".join(f"<{a}>" for a in allowed) + ")",
                )
            yield tag, child

    # ------------------------------------------------------------------ document
    def read(self, text: str | bytes) -> Model:
        if isinstance(text, str):
            text = text.encode("utf-8")
        _check_size(self.display, len(text))
        if not text.strip():
            raise ModelError(f"{self.display}: empty XML document")
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False
        )
        try:
            root = etree.fromstring(text, parser)
        except etree.XMLSyntaxError as err:
            line = err.lineno or (err.position[0] if err.position else None)
            where = f"{self.display}:{line}" if line else self.display
            raise ModelError(f"{where}: XML is not well-formed: {err.msg}") from None
        if root is None:
            raise ModelError(f"{self.display}: empty XML document")
        if _local(root.tag) != "Lems":
            raise self.error(root, f"the root element must be <Lems>, not <{_local(root.tag)}>")
        for count, element in enumerate(root.iter(), 1):
            if count > MAX_ELEMENTS:
                raise self.error(element, f"more than {MAX_ELEMENTS:,} XML elements, the most "
                                          "neuralmass reads in a model (a neural mass model "
                                          "has tens to hundreds)")

        derivatives = None
        couplings, noise = [], None
        for tag, child in self.children(root, ("ComponentType",), "<Lems>"):
            kind = (child.get("name") or "").strip()
            if kind == "derivatives":
                if derivatives is not None:
                    raise self.error(child, "more than one <ComponentType name='derivatives'>")
                derivatives = child
            elif "coupling" in kind.lower():
                couplings.append(child)
            elif kind == "noise":
                if noise is not None:
                    raise self.error(child, "more than one <ComponentType name='noise'> (the "
                                            f"first on line {noise.sourceline})")
                noise = child
            else:
                close = difflib.get_close_matches(kind, ("derivatives", "noise"), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error(
                    child,
                    f"unknown ComponentType {kind!r}{hint} (expected 'derivatives', a name "
                    "containing 'coupling', or 'noise')",
                )
        if derivatives is None:
            raise self.error(root, "no <ComponentType name='derivatives'> in the model")

        name = os.path.splitext(os.path.basename(self.filename))[0]
        return self.build(name, root.get("description", "").strip(), derivatives, couplings,
                          noise)

    # ------------------------------------------------------------------ model
    def build(self, name, description, derivatives, couplings, noise) -> Model:
        parameters: list[Parameter] = []
        derived_parameters: list[tuple[str, str, etree._Element]] = []
        exposures: list[etree._Element] = []
        dynamics = None

        for tag, el in self.children(
            derivatives,
            ("Parameter", "Constant", "DerivedParameter", "Exposure", "Dynamics"),
            "<ComponentType name='derivatives'>",
        ):
            if tag == "Parameter":
                parameters.append(self.read_parameter(el))
            elif tag == "Constant":
                self.add_constant(el, parameters)
            elif tag == "DerivedParameter":
                pname = self.name_of(el)
                self.declare(pname, el)
                derived_parameters.append((pname, self.attribute(el, "value", "expression"), el))
            elif tag == "Exposure":
                exposures.append(el)
            elif dynamics is not None:
                raise self.error(el, "more than one <Dynamics> in 'derivatives'")
            else:
                dynamics = el
        if dynamics is None:
            raise self.error(derivatives, "'derivatives' has no <Dynamics>")

        # Names that exist without declaration.
        for implicit in IMPLICIT_SCALARS:
            if implicit not in self.symbols:
                self.symbols[implicit] = symbol(implicit)
        declared_parameters = {p.name for p in parameters}
        for implicit, default in SWEEP_ONLY.items():
            if implicit not in declared_parameters:
                parameters.append(Parameter(implicit, default, kind="implicit"))

        # Coupling components declare c_pop<k>, the delayed variables and their own names.
        states = list(self.read_state_variables(dynamics))
        coupling_parts = [self.read_coupling_declarations(el, states, parameters,
                                                          derived_parameters)
                          for el in couplings]

        scalar_names = {p.name for p in parameters} | {n for n, _, _ in derived_parameters} | {
            "dt", "n_node", "rec_speed_dt", "global_coupling", "global_speed"}
        scalar_symbols = {n: self.symbols[n] for n in scalar_names}
        resolved_derived = self.read_derived_parameters(derived_parameters, scalar_symbols)

        indices: dict[int, int | None] = {}
        for part in coupling_parts:
            scale_name, _, scale_el = part["scale"]
            index = int(_COUPLING_SCALE_RE.match(scale_name).group(1))
            if index in indices:  # c_pop0 and c_pop00
                raise self.error(scale_el, f"c_pop{index} is defined twice (also on line "
                                           f"{indices[index]})")
            indices[index] = scale_el.sourceline
        state_symbols = {sv["name"]: self.symbols[sv["name"]] for sv in states}
        coupling_terms = sorted((self.finish_coupling(part, scalar_symbols, state_symbols)
                                 for part in coupling_parts if part["delayed"]),
                                key=lambda t: t.index)
        # Components that couple nothing (see read_coupling_declarations): c_pop<k> = 0.
        zero_couplings = [DerivedQuantity(name, sympy.Integer(0), el.sourceline)
                          for name, _, el in (part["scale"] for part in coupling_parts
                                              if not part["delayed"])]
        resolved_derived = zero_couplings + resolved_derived

        dynamic_symbols = {**scalar_symbols, **state_symbols,
                           **{str(t.symbol): t.symbol for t in coupling_terms},
                           **{z.name: self.symbols[z.name] for z in zero_couplings}}
        derived_variables, derivative_elements = self.read_dynamics(dynamics, dynamic_symbols)
        state_variables = self.pair_derivatives(states, derivative_elements, dynamic_symbols)

        exposure_symbols = {**scalar_symbols, **state_symbols}
        model_exposures = [self.read_exposure(el, exposure_symbols, state_symbols)
                           for el in exposures]
        exposure_lines: dict[str, int | None] = {}
        for exposure in model_exposures:
            if exposure.name in exposure_lines:
                raise ModelError(f"{self.display}:{exposure.line}: duplicate Exposure "
                                 f"{exposure.name!r} (first on line "
                                 f"{exposure_lines[exposure.name]})")
            exposure_lines[exposure.name] = exposure.line
        if not model_exposures:
            model_exposures = [Exposure(sv.name, symbol(sv.name), sv.line)
                               for sv in state_variables]

        noise_amplitude = None
        if noise is not None:
            noise_amplitude = self.read_noise(noise, scalar_symbols)

        return Model(
            name=name,
            description=description,
            state_variables=tuple(state_variables),
            parameters=tuple(parameters),
            derived_parameters=tuple(resolved_derived),
            derived_variables=tuple(derived_variables),
            coupling_terms=tuple(coupling_terms),
            exposures=tuple(model_exposures),
            noise_amplitude=noise_amplitude,
            source=self.filename if self.filename != "<string>" else None,
        )

    # ------------------------------------------------------------------ declarations
    def read_parameter(self, el) -> Parameter:
        name = self.name_of(el)
        self.declare(name, el)
        rng_text = self.attribute(el, "dimension", "range", required=False)
        rng = None
        if rng_text is not None and rng_text.strip():
            rng = self.pair(el, rng_text, what=f"range of Parameter {name!r}")
            if rng[0] > rng[1]:
                raise self.error(el, f"range of Parameter {name!r}: lo {rng[0]:g} > hi {rng[1]:g}")
        default_text = self.attribute(el, "default", "value", required=False)
        if default_text is not None:
            default = self.number(el, default_text, what=f"default of Parameter {name!r}")
        elif name == "global_speed":
            default = None  # the connectivity's speed
        elif rng is not None:
            default = rng[0]
        else:
            raise self.error(el, f"Parameter {name!r} needs a range 'lo, hi' or a default")
        return Parameter(name, default, rng, "parameter", None,
                         el.get("description", "").strip(), el.sourceline)

    def add_constant(self, el, parameters: list[Parameter]) -> None:
        """Append the Constant ``el`` to ``parameters``. A Constant declared again replaces
        the earlier one in place, as RateML does (it keeps the last), with a ModelWarning."""
        name = self.name_of(el)
        position = self.constant_positions.get(name)
        if position is None:
            self.declare(name, el)
            self.constant_positions[name] = len(parameters)
            parameters.append(self.read_constant(el, name))
            return
        earlier, constant = parameters[position], self.read_constant(el, name)
        parameters[position] = constant
        if constant.default == earlier.default:
            self.warn(el, f"Constant {name!r} is declared twice, on lines {earlier.line} and "
                          f"{constant.line}, with the same value {constant.default!r}; the "
                          "last declaration is used, as RateML does")
        else:
            self.warn(el, f"Constant {name!r} is declared twice with different values: "
                          f"{earlier.default!r} on line {earlier.line} and "
                          f"{constant.default!r} on line {constant.line}; keeping the last "
                          f"({constant.default!r}), as RateML does")

    def read_constant(self, el, name: str) -> Parameter:
        value = self.number(el, self.attribute(el, "value", "default"),
                            what=f"value of Constant {name!r}")
        rng, step = None, None
        domain = self.attribute(el, "dimension", "domain", required=False)
        if domain is not None and domain.strip() and domain.strip().lower() != "none":
            fields = {}
            for part in domain.split(","):
                key, sep, text = part.partition("=")
                if not sep or key.strip() not in ("lo", "hi", "step"):
                    raise self.error(
                        el, f"domain of Constant {name!r}: expected 'lo=.., hi=.., step=..' "
                        f"but got {domain!r}")
                fields[key.strip()] = self.number(el, text, what=f"domain of Constant {name!r}")
            if "lo" in fields and "hi" in fields:
                rng = (fields["lo"], fields["hi"])
            step = fields.get("step")
        return Parameter(name, value, rng, "constant", step, el.get("description", "").strip(),
                         el.sourceline)

    def read_state_variables(self, dynamics):
        for tag, el in self.children(
            dynamics,
            ("StateVariable", "DerivedVariable", "ConditionalDerivedVariable", "TimeDerivative"),
            "<Dynamics>",
        ):
            if tag != "StateVariable":
                continue
            name = self.name_of(el)
            self.declare(name, el)
            rng_text = self.attribute(el, "dimension", "default", required=False)
            if rng_text is None or not rng_text.strip():
                raise self.error(el, f"StateVariable {name!r} needs an initial range "
                                     "dimension='lo, hi'")
            rng = self.pair(el, rng_text, what=f"initial range of StateVariable {name!r}")
            bounds_text = self.attribute(el, "exposure", "boundaries", required=False)
            bounds = None
            # RateML writes exposure="None" (or "") for a state variable without bounds.
            if bounds_text is not None and bounds_text.strip().lower() not in ("", "none"):
                lo, hi = self.pair(el, bounds_text, what=f"bounds of StateVariable {name!r}",
                                   allow_none=True)
                lo = None if lo is not None and lo == float("-inf") else lo
                hi = None if hi is not None and hi == float("inf") else hi
                if lo is not None and hi is not None and lo > hi:
                    raise self.error(el, f"bounds of StateVariable {name!r}: lo > hi")
                bounds = None if lo is None and hi is None else (lo, hi)
            periodic_text = (self.attribute(el, "periodic", required=False) or "false")
            if periodic_text.strip().lower() not in ("true", "false"):
                raise self.error(el, f"periodic of StateVariable {name!r} must be 'true' or "
                                     f"'false', but got {periodic_text!r}")
            yield {"name": name, "range": rng, "bounds": bounds, "element": el,
                   "periodic": periodic_text.strip().lower() == "true"}

    def read_derived_parameters(self, items, scalar_symbols):
        where, exprs = {}, {}
        for name, text, el in items:
            if _COUPLING_SCALE_RE.match(name):
                continue
            where[name] = self.at(el)
            exprs[name] = (self.expression(el, text, scalar_symbols,
                                           what=f"DerivedParameter {name!r}"), el.sourceline)
        order = topological_order(((n, e, line) for n, (e, line) in exprs.items()),
                                  where=where, kind="derived parameters")
        return [DerivedQuantity(n, exprs[n][0], exprs[n][1]) for n in order]

    # ------------------------------------------------------------------ coupling
    def read_coupling_declarations(self, component, states, parameters, derived_parameters):
        kind = component.get("name")
        context = f"<ComponentType name={kind!r}>"
        delayed, scale, dynamics = [], None, None
        for tag, el in self.children(
            component, ("Parameter", "Constant", "DerivedParameter", "Dynamics"), context
        ):
            if tag == "Parameter":
                name = self.name_of(el)
                self.declare(name, el, kind="delayed coupling variable")
                index_text = self.attribute(el, "dimension", "index")
                try:
                    index = int(index_text.strip())
                except ValueError:
                    raise self.error(el, f"state index of {name!r} must be an integer, "
                                         f"got {index_text!r}") from None
                if not 0 <= index < len(states):
                    names = ", ".join(f"{i}={s['name']}" for i, s in enumerate(states))
                    raise self.error(el, f"coupling index {index} of {name!r} is out of range: "
                                         f"the model has {len(states)} state variables ({names})")
                source = states[index]["name"]
                named = name[:-2] if name.endswith("_j") else None
                if named != source and any(s["name"] == named for s in states):
                    raise self.error(el, f"{name!r} names state variable {name[:-2]!r} but its "
                                         f"index {index} is {source!r}")
                for other, other_source, other_el in delayed:
                    if other_source == source:
                        raise self.error(el, f"{name!r} reads state variable {source!r} (index "
                                             f"{index}), as {other!r} on line "
                                             f"{other_el.sourceline} already does; a coupling "
                                             "term reads each state variable once")
                delayed.append((name, source, el))
            elif tag == "Constant":
                self.add_constant(el, parameters)
            elif tag == "DerivedParameter":
                name = self.name_of(el)
                text = self.attribute(el, "value", "expression")
                if _COUPLING_SCALE_RE.match(name):
                    if scale is not None:
                        raise self.error(el, f"{context} defines more than one c_pop<k> "
                                             f"({scale[0]!r} on line {scale[2].sourceline}); "
                                             "use one coupling ComponentType per term")
                    if name in self.declared:
                        raise self.error(el, f"{name} is defined twice (also on line "
                                             f"{self.declared[name]})")
                    self.declare(name, el, kind="coupling term")
                    scale = (name, text, el)
                else:
                    self.declare(name, el)
                    derived_parameters.append((name, text, el))
            else:
                dynamics = el
        functions = {}
        if dynamics is not None:
            for tag, el in self.children(dynamics, ("DerivedVariable",), f"{context} Dynamics"):
                fname = self.name_of(el)
                if fname not in ("pre", "post"):
                    raise self.error(el, f"coupling functions are 'pre' and 'post', not {fname!r}")
                if fname in functions:
                    raise self.error(el, f"{context} defines {fname!r} twice")
                functions[fname] = (self.attribute(el, "value", "expression"), el)
        if scale is None:
            raise self.error(component, f"{context} needs a DerivedParameter 'c_pop<k>' "
                                        "(the coupling scale, e.g. value='global_coupling')")
        if not delayed and not functions:
            # RateML generates no coupling for such a component: its c_pop<k> is 0.
            self.warn(component, f"{context} has no Parameter naming a delayed variable and "
                                 f"no 'pre' or 'post': it couples nothing and {scale[0]} is "
                                 "0, as in RateML")
        elif not delayed:
            raise self.error(component, f"{context} needs a Parameter naming the delayed "
                                        "variable and its state index, e.g. "
                                        "<Parameter name='x1_j' dimension='0'/>")
        return {"component": component, "delayed": delayed, "scale": scale,
                "functions": functions}

    def finish_coupling(self, part, scalar_symbols, state_symbols) -> CouplingTerm:
        """The CouplingTerm of a component read by :meth:`read_coupling_declarations`. With
        several delayed variables, ``pre`` is required and must read each of them."""
        scale_name, scale_text, scale_el = part["scale"]
        index = int(_COUPLING_SCALE_RE.match(scale_name).group(1))
        context = f"<ComponentType name={part['component'].get('name')!r}>"
        delayed = {name: self.symbols[name] for name, _, _ in part["delayed"]}
        pre_symbols = {**scalar_symbols, **state_symbols, **delayed}
        if "pre" in part["functions"]:
            text, fel = part["functions"]["pre"]
            pre = self.expression(fel, text, pre_symbols, what="coupling 'pre'")
        elif len(delayed) == 1:
            (pre,) = delayed.values()
        else:
            raise self.error(part["component"], f"{context} reads {len(delayed)} delayed "
                                                f"variables ({', '.join(delayed)}) and needs a "
                                                "'pre' that combines them, e.g. <DerivedVariable "
                                                f"name='pre' value='{' - '.join(delayed)}'/>")
        if len(delayed) > 1:
            for name, _, el in part["delayed"]:
                if delayed[name] not in pre.free_symbols:
                    raise self.error(el, f"{context} declares the delayed variable {name!r} but "
                                         f"its 'pre' does not read it; remove the Parameter or "
                                         f"use {name!r} in 'pre'")
        summed = symbol("pre")
        if "post" in part["functions"]:
            text, fel = part["functions"]["post"]
            post = self.expression(fel, text, {**scalar_symbols, "pre": summed},
                                   what="coupling 'post'")
        else:
            post = sympy.Integer(1)
        scale = self.expression(scale_el, scale_text, scalar_symbols,
                                what=f"DerivedParameter {scale_name!r}")
        return CouplingTerm(index=index, sources=tuple(s for _, s, _ in part["delayed"]),
                            delayed=tuple(delayed.values()), pre=pre, post=post,
                            summed=summed, scale=scale, line=scale_el.sourceline)

    # ------------------------------------------------------------------ dynamics
    def read_dynamics(self, dynamics, dynamic_symbols):
        definitions: dict[str, tuple[str, object, etree._Element]] = {}
        derivative_elements = []
        for tag, el in self.children(
            dynamics,
            ("StateVariable", "DerivedVariable", "ConditionalDerivedVariable", "TimeDerivative"),
            "<Dynamics>",
        ):
            if tag == "DerivedVariable":
                name = self.name_of(el)
                self.declare(name, el)
                definitions[name] = ("plain", self.attribute(el, "value", "expression"), el)
            elif tag == "ConditionalDerivedVariable":
                name = self.name_of(el)
                self.declare(name, el)
                cases = [c for t, c in self.children(el, ("Case",), f"<{tag} name={name!r}>")]
                if not cases:
                    raise self.error(el, f"ConditionalDerivedVariable {name!r} needs at least "
                                         "one <Case condition='...' value='...'/>")
                definitions[name] = ("cases", cases, el)
            elif tag == "TimeDerivative":
                derivative_elements.append(el)

        allowed = {**dynamic_symbols, **{n: self.symbols[n] for n in definitions}}
        exprs, where = {}, {}
        for name, (kind, payload, el) in definitions.items():
            where[name] = self.at(el)
            if kind == "plain":
                expr = self.expression(el, payload, allowed, what=f"DerivedVariable {name!r}")
            else:
                pieces = []
                for i, case in enumerate(payload):
                    value = self.expression(case, self.attribute(case, "value", "expression"),
                                            allowed, what=f"Case of {name!r}")
                    if i == len(payload) - 1:
                        condition = sympy.true  # RateML: the last Case is 'else'
                    else:
                        condition = self.expression(case, self.attribute(case, "condition"),
                                                    allowed, what=f"condition of {name!r}",
                                                    boolean=True)
                    pieces.append((value, condition))
                expr = sympy.Piecewise(*pieces)
            exprs[name] = (expr, el.sourceline)
        order = topological_order(((n, e, line) for n, (e, line) in exprs.items()),
                                  where=where, kind="derived variables")
        derived = [DerivedQuantity(n, exprs[n][0], exprs[n][1]) for n in order]
        self.dynamic_allowed = allowed
        return derived, derivative_elements

    def pair_derivatives(self, states, derivative_elements, dynamic_symbols):
        """Pair TimeDerivatives with state variables: by name (``d<state>`` or ``<state>``)
        where the name says, else by position, with a warning that says so."""
        names = [s["name"] for s in states]
        paired: dict[str, etree._Element] = {}
        by_position = []
        for position, el in enumerate(derivative_elements):
            variable = self.attribute(el, "variable", "name").strip()
            if variable.startswith("d") and variable[1:] in names:
                target = variable[1:]
            elif variable in names:
                target = variable
            else:
                by_position.append((position, variable, el))
                continue
            if target in paired:
                raise self.error(el, f"state variable {target!r} has two TimeDerivatives "
                                     f"(the other on line {paired[target].sourceline})")
            paired[target] = el
        # RateML pairs by position; only positions whose state is not named elsewhere.
        for position, variable, el in by_position:
            if position >= len(names) or names[position] in paired:
                raise self.error(el, f"TimeDerivative {variable!r} has no state variable "
                                     f"(state variables: {', '.join(names)})")
            target = names[position]
            self.warn(el, f"TimeDerivative {variable!r} names no state variable; "
                          f"paired by position with {target!r}")
            paired[target] = el
        result = []
        for s in states:
            el = paired.get(s["name"])
            if el is None:
                raise self.error(s["element"], f"state variable {s['name']!r} has no "
                                               "TimeDerivative")
            derivative = self.expression(
                el, self.attribute(el, "value", "expression"), self.dynamic_allowed,
                what=f"TimeDerivative {el.get('variable') or el.get('name')!r}")
            result.append(StateVariable(s["name"], derivative, s["range"], s["bounds"],
                                        s["element"].sourceline, periodic=s["periodic"]))
        return result

    def read_exposure(self, el, exposure_symbols, state_symbols) -> Exposure:
        name = self.name_of(el)
        text = self.attribute(el, "dimension", "value", "expression", required=False)
        if text is None or not text.strip():
            if name not in state_symbols:
                raise self.error(el, f"Exposure {name!r} needs an expression "
                                     "(dimension='...') or must name a state variable")
            text = name
        expr = self.expression(el, text, exposure_symbols, what=f"Exposure {name!r}")
        return Exposure(name, expr, el.sourceline)

    def read_noise(self, component, scalar_symbols):
        amplitude = None
        for tag, el in self.children(component, ("Parameter", "Constant", "DerivedParameter"),
                                     "<ComponentType name='noise'>"):
            if self.name_of(el) != "nsig":
                raise self.error(el, "the noise component only declares 'nsig' (per-step "
                                     "standard deviation of the additive noise)")
            if amplitude is not None or "nsig" in self.symbols:
                raise self.error(el, "duplicate name 'nsig'")
            text = self.attribute(el, "value", "default", "expression")
            amplitude = self.expression(el, text, scalar_symbols, what="nsig")
        if amplitude is not None:
            return amplitude
        if "nsig" in self.symbols:  # a Parameter, Constant or DerivedParameter of the model
            return self.symbols["nsig"]
        return sympy.Float(1.0)  # RateML: a noise component without nsig has nsig = 1
