"""Checkpoint variable names and layouts -> a PyTorch ``state_dict``, declared as rules.

A :class:`Rule` pairs a *source* name template (a TensorFlow variable name,
or a key of some other ``state_dict``) with a *target* key template and a
layout transform. Templates are literal text with ``{field}`` placeholders;
a placeholder may carry its regular expression, ``{field:regex}`` (default
``[^/.]+``: one name component; the expression may not contain braces). A
field's expression, given in either template, applies to both::

    Rule("HighRes3DNet/res_{stage:\\d+}_{block:\\d+}/conv_{i:\\d+}/w",
         "res_{stage}_{block}.conv_{i}.weight", "conv3d_dhwio_to_oidhw")

maps ``HighRes3DNet/res_2_1/conv_0/w`` of shape ``(3, 3, 3, 32, 32)`` to
``res_2_1.conv_0.weight`` of shape ``(32, 32, 3, 3, 3)``. Because both sides
are templates, :meth:`RuleSet.reversed` derives the opposite direction
(PyTorch -> TensorFlow names and layouts) from the same declaration.

:func:`convert_state_dict` applies a :class:`RuleSet` strictly: every source
variable maps onto exactly one key (or is ignored by the rule set), no key is
produced twice, every key the module expects is produced, and every shape
matches; otherwise :class:`~niftyport.errors.MappingError` names the variable
and both shapes, or lists the missing/unexpected keys, sorted.

Rules for a user's own model can be written in Python or in a JSON / TOML
file (:func:`load_rules`; format in the README).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np

from .errors import MappingError
from .tensors import to_numpy, to_torch

if TYPE_CHECKING:  # pragma: no cover
    import torch

Shape = tuple[int, ...]
Expected = Union[Mapping[str, Sequence[int]], "torch.nn.Module"]

# --------------------------------------------------------------------------- layout transforms

#: Axis permutations between TensorFlow and PyTorch weight layouts: output axis i is input axis p[i].
#: TensorFlow convolution kernels are (spatial..., in, out); PyTorch's are (out, in, spatial...).
PERMUTATIONS: dict[str, tuple[int, ...]] = {
    "conv3d_dhwio_to_oidhw": (4, 3, 0, 1, 2),
    "conv2d_hwio_to_oihw": (3, 2, 0, 1),
    "conv1d_wio_to_oiw": (2, 1, 0),
    "dense_io_to_oi": (1, 0),
}


def _inverse_name(name: str) -> str:
    """``"conv3d_dhwio_to_oidhw"`` -> ``"conv3d_oidhw_to_dhwio"``."""
    kind, layouts = name.split("_", 1)
    source, target = layouts.split("_to_")
    return f"{kind}_{target}_to_{source}"


PERMUTATIONS.update({_inverse_name(name): tuple(int(i) for i in np.argsort(p))
                     for name, p in list(PERMUTATIONS.items())})
TRANSFORMS: tuple[str, ...] = ("identity", *PERMUTATIONS)


def inverse_transform(name: str) -> str:
    """Name of the transform undoing ``name``."""
    return name if name == "identity" else _inverse_name(name)


def transformed_shape(shape: Sequence[int], transform: str) -> Shape | None:
    """Shape after ``transform``, or None when the array has the wrong number of axes for it."""
    if transform == "identity":
        return tuple(shape)
    perm = PERMUTATIONS[transform]
    if len(shape) != len(perm):
        return None
    return tuple(shape[i] for i in perm)


def apply_transform(array: np.ndarray, transform: str) -> np.ndarray:
    """``array`` in the target layout, as a C-contiguous array (values unchanged, bit for bit)."""
    if transform == "identity":
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(np.transpose(array, PERMUTATIONS[transform]))


# --------------------------------------------------------------------------- templates

DEFAULT_FIELD_REGEX = r"[^/.]+"
_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]*))?\}")


def _template_fields(template: str) -> dict[str, str | None]:
    """``{field: inline regex or None}`` of a template, in order of appearance."""
    fields: dict[str, str | None] = {}
    for match in _PLACEHOLDER.finditer(template):
        if match.group(2) is not None or match.group(1) not in fields:
            fields[match.group(1)] = match.group(2)
    return fields


def _compile_template(template: str, regexes: Mapping[str, str]) -> re.Pattern:
    """Regex matching names that ``template`` describes; each field is a named group."""
    parts, seen, pos = [], set(), 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[pos:match.start()]))
        name = match.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>{regexes[name]})")
        seen.add(name)
        pos = match.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


def _render(template: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class Rule:
    """``source`` name template -> ``target`` key template, with a layout ``transform``."""

    source: str
    target: str
    transform: str = "identity"
    _source_re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise MappingError(f"rule {self.source!r}: unknown transform {self.transform!r} "
                               f"(known: {', '.join(TRANSFORMS)})")
        source_fields, target_fields = _template_fields(self.source), _template_fields(self.target)
        if set(source_fields) != set(target_fields):
            raise MappingError(f"rule {self.source!r} -> {self.target!r}: both templates must use the same "
                               f"fields ({sorted(source_fields)} vs {sorted(target_fields)})")
        regexes = {name: target_fields[name] or source_fields[name] or DEFAULT_FIELD_REGEX
                   for name in source_fields}
        try:
            object.__setattr__(self, "_source_re", _compile_template(self.source, regexes))
        except re.error as exc:
            raise MappingError(f"rule {self.source!r}: bad field regex ({exc})") from None

    def apply(self, name: str) -> str | None:
        """Target key for source ``name``, or None if the rule does not match it."""
        match = self._source_re.fullmatch(name)
        return None if match is None else _render(self.target, match.groupdict())

    def reversed(self) -> "Rule":
        """The rule mapping targets back to sources, with the inverse transform.

        Field regexes declared inline in either template apply to both, so
        swapping the templates is enough.
        """
        return Rule(self.target, self.source, inverse_transform(self.transform))


#: Keys of a PyTorch module that no TensorFlow checkpoint holds: BatchNorm's
#: step counters (training bookkeeping; :func:`niftyport.weights.load_niftynet_weights`
#: takes them from the module).
BOOKKEEPING_KEYS = (r"(.+\.)?num_batches_tracked",)


@dataclass(frozen=True)
class RuleSet:
    """Rules tried in order (the first that matches a name wins), plus what may stay unmapped.

    Attributes:
        rules: the :class:`Rule` table.
        ignore_source: regexes (whole-name match) of source names that map to nothing.
        ignore_target: regexes of expected keys that no source need provide.
        name: shown in error messages.
    """

    rules: tuple[Rule, ...]
    ignore_source: tuple[str, ...] = ()
    ignore_target: tuple[str, ...] = BOOKKEEPING_KEYS
    name: str = "rules"

    def __post_init__(self) -> None:
        for name in ("rules", "ignore_source", "ignore_target"):  # lists are welcome too
            object.__setattr__(self, name, tuple(getattr(self, name)))
        try:
            object.__setattr__(self, "_ignore_source", [re.compile(p) for p in self.ignore_source])
            object.__setattr__(self, "_ignore_target", [re.compile(p) for p in self.ignore_target])
        except re.error as exc:
            raise MappingError(f"{self.name}: bad ignore regex ({exc})") from None

    def target_of(self, name: str) -> tuple[Rule, str] | None:
        """``(rule, target key)`` of the first rule matching source ``name``, or None."""
        for rule in self.rules:
            target = rule.apply(name)
            if target is not None:
                return rule, target
        return None

    def ignores_source(self, name: str) -> bool:
        return any(p.fullmatch(name) for p in self._ignore_source)

    def ignores_target(self, key: str) -> bool:
        return any(p.fullmatch(key) for p in self._ignore_target)

    def covers(self, name: str) -> bool:
        """Whether source ``name`` is mapped by a rule or ignored (the strict check passes for it)."""
        return self.ignores_source(name) or self.target_of(name) is not None

    def reversed(self) -> "RuleSet":
        """Rule set of the opposite direction (target keys -> source names, inverse layouts)."""
        return RuleSet(tuple(rule.reversed() for rule in self.rules), ignore_source=self.ignore_target,
                       ignore_target=self.ignore_source, name=f"{self.name} (reversed)")


# --------------------------------------------------------------------------- conversion

def expected_shapes(expected: Expected) -> dict[str, Shape]:
    """``{key: shape}`` of a module's ``state_dict``, or of a mapping of shapes."""
    if hasattr(expected, "state_dict"):
        return {key: tuple(value.shape) for key, value in expected.state_dict().items()}
    return {key: tuple(int(n) for n in shape) for key, shape in expected.items()}


def _listing(texts: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` texts joined on one line, then how many more."""
    return ", ".join(texts[:limit]) + (f", ... ({len(texts) - limit} more)" if len(texts) > limit else "")


def map_tensors(tensors: Mapping[str, Any], rules: RuleSet, *,
                expected: Expected | None = None) -> dict[str, np.ndarray]:
    """Rename and re-lay-out ``tensors`` by ``rules``; numpy arrays in, numpy arrays out.

    With ``expected`` (a module or ``{key: shape}``), the result must hold
    exactly the expected keys (less those ``rules.ignore_target`` excuses),
    with the expected shapes, and comes back in the expected order; without
    it, in source-name order. Values are never changed, only transposed.
    """
    shapes = None if expected is None else expected_shapes(expected)
    out: dict[str, np.ndarray] = {}
    producer: dict[str, str] = {}
    unmapped = []
    for name in sorted(tensors):
        if rules.ignores_source(name):
            continue
        hit = rules.target_of(name)
        if hit is None:
            unmapped.append(name)
            continue
        rule, key = hit
        if key in producer:
            raise MappingError(f"{rules.name}: key {key!r} produced twice, from {producer[key]!r} and {name!r}")
        array = to_numpy(tensors[name])
        shape = transformed_shape(array.shape, rule.transform)
        if shape is None:
            raise MappingError(f"variable {name!r} has shape {tuple(array.shape)}, which transform "
                               f"{rule.transform!r} cannot take (it maps {rule.source!r} -> {rule.target!r})")
        if shapes is not None and key in shapes and shapes[key] != shape:
            raise MappingError(f"variable {name!r} of shape {tuple(array.shape)} gives {key!r} of shape {shape}, "
                               f"but the module expects {shapes[key]}")
        producer[key] = name
        out[key] = apply_transform(array, rule.transform)
    if unmapped:
        raise MappingError(f"{rules.name}: {len(unmapped)} variable(s) match no rule: "
                           + _listing([repr(name) for name in unmapped]))
    if shapes is None:
        return out
    missing = [key for key in shapes if key not in out and not rules.ignores_target(key)]
    unexpected = [key for key in out if key not in shapes]
    if missing or unexpected:
        problems = []
        if missing:
            sources = rules.reversed()
            hints = [f"{key!r} (from {hit[1]!r})" if (hit := sources.target_of(key)) else repr(key)
                     for key in sorted(missing)]
            problems.append(f"missing {len(missing)} key(s): {_listing(hints)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)} key(s): {_listing([repr(k) for k in sorted(unexpected)])}")
        raise MappingError(f"{rules.name}: " + "; ".join(problems))
    return {key: out[key] for key in shapes if key in out}


def convert_state_dict(tensors: Mapping[str, Any], rules: RuleSet, *,
                       expected: Expected | None = None) -> "dict[str, torch.Tensor]":
    """A PyTorch ``state_dict`` from checkpoint ``tensors`` (see :func:`map_tensors` for the checks).

    Tensors keep the source dtype (bfloat16 included) and values bit for
    bit; kernels are transposed into PyTorch's layout and made contiguous.
    """
    return {key: to_torch(array) for key, array in map_tensors(tensors, rules, expected=expected).items()}


def export_state_dict(state_dict: Mapping[str, Any], rules: RuleSet) -> dict[str, np.ndarray]:
    """The reverse of :func:`convert_state_dict`: ``{source name: array in the source layout}``.

    Uses ``rules.reversed()``; keys the rules ignore on the target side
    (e.g. ``num_batches_tracked``) are left out.
    """
    return map_tensors(state_dict, rules.reversed())


# --------------------------------------------------------------------------- rule-building helpers

#: NiftyNet ``BNLayer`` variable names -> ``nn.BatchNorm`` keys.
BN_NAMES = (("gamma", "weight"), ("beta", "bias"),
            ("moving_mean", "running_mean"), ("moving_variance", "running_var"))


def bn_rules(source_scope: str, target_prefix: str) -> tuple[Rule, ...]:
    """Rules for one NiftyNet ``BNLayer`` (``source_scope/gamma`` ...) -> ``target_prefix.weight`` ...."""
    return tuple(Rule(f"{source_scope}/{tf}", f"{target_prefix}.{pt}") for tf, pt in BN_NAMES)


def __getattr__(name: str):
    # Documented import paths of the HighRes3DNet rules, which now live with the network.
    if name in ("HIGHRES3DNET_NIFTYNET_RULES", "HIGHRES3DNET_THIRD_PARTY_RULES"):
        from .networks.highres3dnet import rules

        return getattr(rules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- rules files

_FILE_KEYS = {"name", "rules", "ignore_source", "ignore_target"}
_RULE_KEYS = {"source", "target", "transform"}


def rules_from_dict(data: Mapping[str, Any], *, name: str = "rules") -> RuleSet:
    """A :class:`RuleSet` from the structure of a rules file (see the README)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise MappingError(f"{name}: expected a table with a 'rules' list")
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise MappingError(f"{name}: unknown key(s) {sorted(unknown)} (allowed: {sorted(_FILE_KEYS)})")
    rules = []
    for i, item in enumerate(data["rules"]):
        if not isinstance(item, Mapping) or not {"source", "target"} <= set(item) or set(item) - _RULE_KEYS:
            raise MappingError(f"{name}: rule {i} must have 'source' and 'target' (and optionally "
                               f"'transform') only, got {item!r}")
        rules.append(Rule(str(item["source"]), str(item["target"]), str(item.get("transform", "identity"))))
    lists = {"ignore_source": data.get("ignore_source", ()),
             "ignore_target": data.get("ignore_target", BOOKKEEPING_KEYS)}
    for key, value in lists.items():
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise MappingError(f"{name}: '{key}' must be a list of regular expressions, got {value!r}")
    return RuleSet(tuple(rules), ignore_source=tuple(lists["ignore_source"]),
                   ignore_target=tuple(lists["ignore_target"]), name=str(data.get("name", name)))


#: Largest rules file read (bytes): a rules table is a few kB; more is not a rules file.
MAX_RULES_FILE_BYTES = 16 * 2**20


def _rules_text(path: Path) -> str:
    """The UTF-8 text of a rules file; :class:`MappingError` naming it when it cannot be read."""
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise MappingError(f"{path}: a folder, not a rules file")
        if size > MAX_RULES_FILE_BYTES:
            raise MappingError(f"{path}: {size} bytes is too large for a rules file "
                               f"(at most {MAX_RULES_FILE_BYTES})")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read rules file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: rules file is not UTF-8 text (byte {exc.start})") from None


def _parse_rules_text(text: str, path: Path) -> Any:
    """The table of a rules file's text: TOML for ``.toml`` (Python >= 3.11), else JSON."""
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise MappingError(f"{path}: TOML rules need Python >= 3.11; use JSON") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MappingError(f"{path}: not valid TOML ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MappingError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise MappingError(f"{path}: not a rules file (JSON nested too deeply)") from None


def load_rules(path: str | os.PathLike) -> RuleSet:
    """Read a rules file: ``.json``, or ``.toml`` (Python >= 3.11).

    Every problem -- unreadable file, invalid JSON/TOML, a bad rule, an
    invalid regular expression -- raises :class:`MappingError` on one line
    starting with the file's path.
    """
    path = Path(path)
    data = _parse_rules_text(_rules_text(path), path)
    try:
        return rules_from_dict(data, name=path.name)
    except MappingError as exc:
        message = str(exc)
        if message.startswith(f"{path.name}: "):
            message = message[len(path.name) + 2:]
        raise MappingError(f"{path}: {message}") from None
