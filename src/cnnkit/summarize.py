"""A model's per-layer arithmetic, without running any data.

Every number comes from :mod:`cnnkit.shapes` through the layers' own shape methods: output sizes,
parameter counts with their formula, multiply-accumulates, activation memory, receptive field and
cumulative stride.

Example:
    >>> s = summary("lenet5")
    >>> s.total_params
    61706
    >>> s.rows[0].params_formula
    '6 × (5×5×1 + 1) = 156'
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from . import shapes
from .errors import ShapeError, SpecError
from .layers import Layer, Linear
from .model import Sequential

FieldHW = tuple[int, int]


@dataclass(frozen=True)
class LayerRow:
    """One layer of a :class:`Summary`.

    ``memory_forward`` is the bytes of this layer's output kept for the backward pass;
    ``memory_train`` adds the gradient of the same size (forward + backward). ``receptive_field``
    is the (rows, cols) of input pixels one output unit depends on and ``stride`` the cumulative
    stride (jump) between neighbouring units, in input pixels; both None before the first
    spatial volume.
    """

    name: str
    type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    params_formula: str
    macs: int
    memory_forward: int
    memory_train: int
    receptive_field: FieldHW | None
    stride: FieldHW | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("input_shape", "output_shape", "receptive_field", "stride"):
            d[key] = list(d[key]) if d[key] is not None else None
        d["memory_forward_bytes"] = d.pop("memory_forward")
        d["memory_train_bytes"] = d.pop("memory_train")
        return d


@dataclass(frozen=True)
class Summary:
    """Per-layer rows and totals; print it, or use :meth:`to_text`, :meth:`to_markdown`,
    :meth:`to_dict` (the CLI's JSON: ``layers`` and ``total_params`` among others)."""

    name: str
    input_shape: tuple[int, ...]
    dtype: str
    batch_size: int
    rows: tuple[LayerRow, ...]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of one forward pass of the whole batch."""
        return sum(r.macs for r in self.rows) * self.batch_size

    @property
    def memory_forward(self) -> int:
        return sum(r.memory_forward for r in self.rows)

    @property
    def memory_train(self) -> int:
        return sum(r.memory_train for r in self.rows)

    @property
    def input_bytes(self) -> int:
        return shapes.activation_memory(self.input_shape, self.itemsize, self.batch_size)[0]

    @property
    def itemsize(self) -> int:
        return 8 if self.dtype == "float64" else 4

    @property
    def param_bytes(self) -> int:
        return self.total_params * self.itemsize

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.rows[-1].output_shape if self.rows else self.input_shape

    # ----------------------------------------------------------------- formats
    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``model``, ``input_shape``, ``dtype``, ``batch_size``, ``layers`` (each with
        ``name``, ``type``, ``input_shape``, ``output_shape``, ``params``, ``params_formula``,
        ``macs``, ``memory_forward_bytes``, ``memory_train_bytes``, ``receptive_field``,
        ``stride``), ``total_params``, ``total_macs``, ``memory_forward_bytes``,
        ``memory_train_bytes``, ``input_bytes``, ``param_bytes``."""
        return {
            "model": self.name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "layers": [r.to_dict() for r in self.rows],
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "memory_forward_bytes": self.memory_forward,
            "memory_train_bytes": self.memory_train,
            "input_bytes": self.input_bytes,
            "param_bytes": self.param_bytes,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON, with each list of numbers on one line."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        return re.sub(r"\[\s*([-\d,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)

    def _headline(self) -> str:
        per = "per image" if self.batch_size == 1 else f"for a batch of {self.batch_size}"
        return f"{self.name} on {shapes.fmt_shape(self.input_shape)} ({self.dtype}; MACs and memory {per})"

    def _table(self) -> tuple[list[str], list[list[str]]]:
        head = ["layer", "type", "output", "parameters", "MACs", "memory fwd", "fwd+bwd", "field", "stride"]
        body = [[r.name, r.type, shapes.fmt_shape(r.output_shape),
                 r.params_formula if r.params else "0", shapes.fmt_int(r.macs * self.batch_size),
                 shapes.fmt_bytes(r.memory_forward), shapes.fmt_bytes(r.memory_train),
                 _fmt_field(r.receptive_field), _fmt_stride(r.stride)] for r in self.rows]
        return head, body

    def _totals(self) -> list[str]:
        return [
            f"Total parameters: {shapes.fmt_int(self.total_params)} "
            f"({shapes.fmt_bytes(self.param_bytes)} as {self.dtype})",
            f"Output: {shapes.fmt_shape(self.output_shape)}",
            f"MACs: {shapes.fmt_int(self.total_macs)}",
            f"Activation memory: forward {shapes.fmt_bytes(self.memory_forward)}, forward + backward "
            f"{shapes.fmt_bytes(self.memory_train)} (input {shapes.fmt_bytes(self.input_bytes)})",
        ]

    def to_text(self) -> str:
        head, body = self._table()
        numeric = {4, 5, 6}
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

        def line(cells):
            return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([self._headline(), "", line(head), rule, *map(line, body), rule, *self._totals()])

    def to_markdown(self) -> str:
        head, body = self._table()
        align = ["---", "---", "---", "---", "---:", "---:", "---:", "---", "---"]
        rows = [f"| {' | '.join(head)} |", f"| {' | '.join(align)} |"]
        rows += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join([f"**{self._headline()}**", "", *rows, "", *(f"- {t}" for t in self._totals())])

    def __str__(self) -> str:
        return self.to_text()


def _fmt_field(hw: FieldHW | None) -> str:
    return "-" if hw is None else shapes.fmt_shape(hw)


def _fmt_stride(hw: FieldHW | None) -> str:
    return "-" if hw is None else str(hw[0]) if hw[0] == hw[1] else shapes.fmt_shape(hw)


def _as_model(model_or_spec, input_shape) -> tuple[Sequential, tuple[int, ...] | None]:
    """A model (never built here: no weights are drawn) and the input shape to use."""
    from .spec import model_from_config, resolve_spec, spec_input_shape

    if isinstance(model_or_spec, Sequential):
        return model_or_spec, tuple(input_shape) if input_shape is not None else model_or_spec.input_shape
    if isinstance(model_or_spec, Layer):
        model_or_spec = [model_or_spec]
    if isinstance(model_or_spec, (list, tuple)) and model_or_spec and all(isinstance(x, Layer) for x in model_or_spec):
        model_or_spec = [layer.config() for layer in model_or_spec]  # copies: the caller's layers keep no names
    if isinstance(model_or_spec, str):
        model_or_spec = resolve_spec(model_or_spec, input_shape)
    if isinstance(model_or_spec, (dict, list)):
        return model_from_config(model_or_spec, build=False), spec_input_shape(model_or_spec, input_shape)
    raise SpecError(f"summary: expected a Sequential, a layer, a spec dict or list, or a model name/spec string; "
                    f"received {type(model_or_spec).__name__}")


def summary(model_or_spec, input_shape: Sequence[int] | None = None, *, batch_size: int = 1) -> Summary:
    """The per-layer arithmetic of a model, computed from shapes alone (no data, no weights).

    Args:
        model_or_spec: a :class:`Sequential`, a layer or list of layers, a spec dict or list of
            layer dicts, or a string: a built-in name (``"lenet5"``), a ``.json`` spec file, a
            ``.npz`` model file or an inline spec (``"conv(10,5,padding=2)"``).
        input_shape: (H, W, C) without the batch; default: the model's or the spec's.
        batch_size: MACs and memory are given for this many images (default 1).

    Example:
        >>> s = summary("conv(10, 5, padding=2)", (32, 32, 3))
        >>> s.rows[0].output_shape, s.rows[0].params_formula
        ((32, 32, 10), '10 × (5×5×3 + 1) = 760')
    """
    shapes.check_positive(batch_size, "batch_size", "summary")
    model, shape = _as_model(model_or_spec, input_shape)
    if shape is None:
        raise ShapeError(f"summary of {model.name}: no input shape; pass input_shape=(H, W, C) "
                         "(on the command line: --input HxWxC)")
    itemsize = model.dtype.itemsize
    rows = []
    field: shapes.Field | None = shapes.Field() if len(shape) == 3 else None
    map_field, map_hw = field, tuple(shape[:2])  # the last spatial volume, for fully-connected units
    for layer, in_shape, out_shape in model.shapes(shape):
        if field is not None and len(in_shape) == 3:
            field = layer.field(field, in_shape)
            if len(out_shape) == 3:
                map_field, map_hw = field, out_shape[:2]
        elif isinstance(layer, Linear) and map_field is not None:
            field = map_field.whole(map_hw)  # each output sees every unit of the last map
        fwd, train = shapes.activation_memory(out_shape, itemsize, batch_size)
        rows.append(LayerRow(
            name=layer.name, type=type(layer).__name__, input_shape=tuple(in_shape), output_shape=tuple(out_shape),
            params=layer.param_count(in_shape), params_formula=layer.params_formula(in_shape),
            macs=layer.macs(in_shape), memory_forward=fwd, memory_train=train,
            receptive_field=field.size if field else None, stride=field.jump if field else None))
    return Summary(name=model.name, input_shape=tuple(shape), dtype=model.dtype.name, batch_size=batch_size,
                   rows=tuple(rows))
