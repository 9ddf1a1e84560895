"""Model specs: JSON files, inline text and built-in names, turned into :class:`Sequential`.

JSON schema (also the ``architecture`` of model files)::

    {"name": "tiny", "input_shape": [28, 28, 1],
     "layers": [{"type": "conv2d", "filters": 6, "size": 5, "padding": 2},
                {"type": "relu"}, {"type": "maxpool2d", "size": 2},
                {"type": "flatten"}, {"type": "linear", "outputs": 10}]}

A bare list of layers is accepted too. ``type`` is a layer type or an alias (``conv``, ``pool``,
``fc``, ``bn``, ``gap`` …); the other keys are the layer's constructor arguments.

Inline specs write the same as calls separated by ``-`` or ``,`` (arguments in the constructor's
order, or by keyword; bare words are strings)::

    conv(6,5,padding=2)-relu-maxpool(2)-conv(16,5)-relu-maxpool(2)-flatten-fc(120)-relu-fc(84)-relu-fc(10)
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from typing import Any, Sequence

from .errors import SpecError, UserInputError
from .layers import LAYER_ALIASES, LAYER_CLASSES, Layer
from .model import Sequential

INLINE_EXAMPLE = "conv(6,5,padding=2)-relu-maxpool(2)-flatten-fc(10)"


def layer_class(type_name: str, where: str = "spec") -> type[Layer]:
    key = str(type_name).lower().replace("_", "")
    key = LAYER_ALIASES.get(key, key)
    if key not in LAYER_CLASSES:
        known = sorted(set(LAYER_CLASSES) | set(LAYER_ALIASES))
        raise SpecError(f"{where}: unknown layer type {type_name!r}; expected one of {', '.join(known)}")
    return LAYER_CLASSES[key]


def layer_from_config(cfg: dict[str, Any], where: str = "spec") -> Layer:
    """Build one layer from ``{"type": ..., **arguments}``."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise SpecError(f"{where}: each layer must be an object with a \"type\". Received: {cfg!r}")
    cls = layer_class(cfg["type"], where)
    args = {k: v for k, v in cfg.items() if k != "type"}
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise SpecError(f"{where} ({cls.type_name}): unknown argument {', '.join(map(repr, unknown))}; "
                        f"expected one of {', '.join(allowed)}")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    if "padding" in args and isinstance(args["padding"], tuple):
        args["padding"] = tuple(tuple(p) if isinstance(p, list) else p for p in args["padding"])
    try:
        return cls(**args)
    except TypeError as e:
        raise SpecError(f"{where} ({cls.type_name}): {e}") from None
    except UserInputError as e:  # the layer's own check: say which layer of the spec it is
        raise type(e)(f"{where}: {e}") from None


def model_from_config(cfg: dict[str, Any] | list, input_shape: Sequence[int] | None = None, *,
                      seed: int = 0, dtype=None, name: str | None = None, build: bool = True) -> Sequential:
    """Build a :class:`Sequential` from a spec dict (or a bare list of layers).

    ``input_shape`` overrides the spec's; the model is built when either gives one and ``build``
    is True. With ``build=False`` no weights are drawn (a summary needs only the shapes): pass
    :func:`spec_input_shape` of the spec to :meth:`Sequential.shapes`.
    """
    if isinstance(cfg, list):
        cfg = {"layers": cfg}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list) or not cfg["layers"]:
        raise SpecError("model spec: expected an object with a non-empty \"layers\" list")
    layers = [layer_from_config(c, f"layer {i + 1}") for i, c in enumerate(cfg["layers"])]
    shape = spec_input_shape(cfg, input_shape)
    model_name = name or cfg.get("name", "model")
    if not isinstance(model_name, str):
        raise SpecError(f"model spec: name must be a string. Received: {model_name!r}")
    dtype = dtype or cfg.get("dtype", "float32")
    try:
        return Sequential(layers, input_shape=shape if build else None, seed=seed, dtype=dtype, name=model_name)
    except TypeError:
        raise SpecError(f"model spec: dtype must be float32 or float64. Received: {dtype!r}") from None


def spec_input_shape(cfg: dict[str, Any] | list, input_shape: Sequence[int] | None = None) -> tuple[int, ...] | None:
    """``input_shape`` if given, else the spec's ``"input_shape"`` (or None), checked to be [H, W, C]."""
    shape = input_shape if input_shape is not None else (cfg.get("input_shape") if isinstance(cfg, dict) else None)
    if shape is None:
        return None
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)):
        raise SpecError(f"model spec: input_shape must be [H, W, C] with positive integers. Received: {shape!r}")
    return tuple(shape)


# ------------------------------------------------------------------------- inline specs
def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise SpecError(f"inline spec: unbalanced ')' in {text!r}")
        if depth == 0 and ch in "-,;|\n ":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise SpecError(f"inline spec: unbalanced '(' in {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _literal(node: ast.AST, where: str) -> Any:
    if isinstance(node, ast.Name):
        return {"true": True, "false": False, "none": None}.get(node.id.lower(), node.id)
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_literal(e, where) for e in node.elts)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise SpecError(f"{where}: cannot read argument {ast.unparse(node)!r}") from None


def parse_inline(text: str) -> list[dict[str, Any]]:
    """``"conv(6,5,padding=2)-relu-fc(10)"`` → a list of layer configs.

    >>> parse_inline("conv(6, 5, padding=2)-relu-fc(10)")
    [{'type': 'conv2d', 'filters': 6, 'size': 5, 'padding': 2}, {'type': 'relu'}, {'type': 'linear', 'outputs': 10}]
    """
    configs = []
    for i, item in enumerate(_split_top(text)):
        where = f"inline spec item {i + 1} {item!r}"
        try:
            node = ast.parse(item if "(" in item else f"{item}()", mode="eval").body
        except SyntaxError:
            raise SpecError(f"{where}: not of the form name or name(args); example: {INLINE_EXAMPLE}") from None
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise SpecError(f"{where}: not of the form name or name(args); example: {INLINE_EXAMPLE}")
        cls = layer_class(node.func.id, where)
        positional = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "name")]
        if len(node.args) > len(positional):
            raise SpecError(f"{where}: {cls.type_name} takes at most {len(positional)} positional arguments "
                            f"({', '.join(positional)}), received {len(node.args)}")
        cfg: dict[str, Any] = {"type": cls.type_name}
        for key, arg in zip(positional, node.args):
            cfg[key] = _literal(arg, where)
        for kw in node.keywords:
            if kw.arg is None:
                raise SpecError(f"{where}: '**' arguments are not allowed; example: {INLINE_EXAMPLE}")
            cfg[kw.arg] = _literal(kw.value, where)
        configs.append(cfg)
    if not configs:
        raise SpecError(f"inline spec is empty; example: {INLINE_EXAMPLE}")
    return configs


# ------------------------------------------------------------------------- resolving a MODEL|SPEC argument
def resolve_spec(text: str, input_shape: Sequence[int] | None = None, *, classes: int | None = None) -> dict[str, Any]:
    """A built-in name, a JSON spec file, a model file (``.npz``) or an inline spec → a spec dict.

    Built-in models take ``input_shape`` and ``classes`` (the last layer's outputs) when given;
    ``input_shape`` otherwise replaces the spec's.

    >>> resolve_spec("lenet5")["input_shape"]
    [28, 28, 1]
    >>> [layer["type"] for layer in resolve_spec("conv(4,5)-relu", (32, 32, 3))["layers"]]
    ['conv2d', 'relu']
    """
    from .zoo import BUILTIN_MODELS, builtin_spec

    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"model: expected a built-in name, a .json spec, a .npz model file or an inline spec; "
                        f"received {text!r}")
    key = text.strip().lower()
    if key in BUILTIN_MODELS:
        return builtin_spec(key, input_shape, classes)
    path = Path(text)
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise SpecError(f"spec file {text!r} not found")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(f"spec file {text!r} is not valid JSON: {e}") from None
        if isinstance(cfg, list):
            cfg = {"layers": cfg}
        if not isinstance(cfg, dict):
            raise SpecError(f"spec file {text!r}: expected an object with a \"layers\" list or a list of layers")
        cfg = {"name": path.stem, **cfg}
    elif path.suffix.lower() == ".npz":
        from .io import load

        cfg = load(text).config()
    elif any(ch in text for ch in "(-,") or key.replace("_", "") in LAYER_CLASSES or key.replace("_", "") in LAYER_ALIASES:
        cfg = {"name": "inline", "layers": parse_inline(text)}
    else:
        raise SpecError(f"unknown model {text!r}; expected one of {', '.join(BUILTIN_MODELS)}, a .json spec file, "
                        f"a model.npz file, or an inline spec such as {INLINE_EXAMPLE!r}")
    if input_shape is not None:
        cfg = {**cfg, "input_shape": list(input_shape)}
    return cfg


def resolve_model(text: str, input_shape: Sequence[int] | None = None, *, classes: int | None = None,
                  seed: int = 0, dtype=None, build: bool = True) -> Sequential:
    """A built-in name, a JSON spec file, a model file (``.npz``) or an inline spec → a model.

    Built-in models take ``input_shape`` and ``classes`` (the last layer's outputs) when given.
    A model file keeps its weights unless another ``input_shape`` asks for a rebuilt model.
    """
    if isinstance(text, str) and text.lower().endswith(".npz"):
        from .io import load

        model = load(text)
        if input_shape is None or tuple(input_shape) == model.input_shape:
            return model
        return model_from_config(model.config(), input_shape, seed=seed, dtype=dtype, build=build)
    cfg = resolve_spec(text, input_shape, classes=classes)
    return model_from_config(cfg, seed=seed, dtype=dtype, build=build)
