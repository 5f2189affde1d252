"""Band indexes (NDVI, EVI, ...) declared as arithmetic expressions over band names.

An expression is parsed with ``ast`` and checked against a whitelist before anything runs;
it is then evaluated by walking that checked tree with numpy ufuncs in float64. Nothing is
ever passed to ``eval``/``exec``.

Allowed: int/float constants, band names, ``+ - * / **``, unary ``-``/``+``, comparisons
(``== != < <= > >=``, chained comparisons mean "all hold"), and calls of ``sqrt abs log
exp minimum maximum where clip`` with positional arguments only.

Limits, checked on the source and the tree before anything is evaluated: at most
:data:`MAX_EXPRESSION_LENGTH` characters, all ASCII (Python's parser folds full-width and other
compatibility letters onto ASCII names, so ``ｎｉｒ`` would silently mean ``nir``), at most
:data:`MAX_EXPRESSION_NODES` nodes nested at most :data:`MAX_EXPRESSION_DEPTH` deep (evaluation
recurses once per level), and a constant exponent of ``**`` of at most :data:`MAX_EXPONENT` in
absolute value. Parts without a band are folded into one constant when compiled; a part that
overflows or is not a finite number (``9**9**9``, ``1/0``, ``log(0)``) is refused.
"""

from __future__ import annotations

import ast
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import DTypeLike
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cube_assets.atomic import atomic_path
from cube_assets.errors import InvalidExpression, InvalidRaster
from cube_assets.raster.codecs import working_file_options
from cube_assets.raster.inputs import open_input, reading_from

_Evaluator = Callable[[Mapping[str, np.ndarray]], np.ndarray | np.float64]

_BINARY_OPS: dict[type[ast.operator], np.ufunc] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
}
_UNARY_OPS: dict[type[ast.unaryop], np.ufunc] = {ast.USub: np.negative, ast.UAdd: np.positive}
_COMPARE_OPS: dict[type[ast.cmpop], np.ufunc] = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}
FUNCTIONS: dict[str, tuple[Callable[..., np.ndarray], int]] = {
    "sqrt": (np.sqrt, 1),
    "abs": (np.abs, 1),
    "log": (np.log, 1),
    "exp": (np.exp, 1),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "where": (np.where, 3),
    "clip": (np.clip, 3),
}
"""Functions an expression may call, with their number of positional arguments."""

#: Longest expression source accepted, in characters.
MAX_EXPRESSION_LENGTH = 4096
#: Most AST expression nodes (band names, constants, operators, calls) an expression may have.
MAX_EXPRESSION_NODES = 256
#: Deepest nesting of expression nodes (``a+b+c`` is 3 deep: each ``+`` nests the one before).
MAX_EXPRESSION_DEPTH = 32
#: Largest absolute value of a constant exponent of ``**``.
MAX_EXPONENT = 64.0
#: Characters of an expression (or of one of its parts) quoted in error messages.
_QUOTED_CHARACTERS = 200


def _quote(text: str) -> str:
    """``repr`` of ``text``, cut to its first :data:`_QUOTED_CHARACTERS` characters."""
    if len(text) <= _QUOTED_CHARACTERS:
        return repr(text)
    return repr(text[:_QUOTED_CHARACTERS]) + f"... ({len(text)} characters)"


@dataclass(frozen=True)
class CompiledExpression:
    """A checked band-index expression.

    ``band_names`` holds the bands the expression actually uses, in order of first use.
    """

    expression: str
    band_names: tuple[str, ...]
    _evaluate: _Evaluator = field(repr=False, compare=False)

    def evaluate_float(self, bands: Mapping[str, np.ndarray]) -> np.ndarray:
        """Return the expression evaluated in float64 with numpy's IEEE rules (no masking)."""
        with np.errstate(all="ignore"):
            return np.asarray(self._evaluate(bands), dtype=np.float64)


@dataclass(frozen=True)
class IndexPixelCounts:
    """Pixels with valid inputs whose index value was lost.

    ``nodata_pixels``: the result was not finite (overflow, division by zero, log of a negative)
    and became nodata. ``clipped_pixels``: the result was finite but outside the output dtype's
    range and was clipped to it.
    """

    nodata_pixels: int = 0
    clipped_pixels: int = 0

    def __add__(self, other: IndexPixelCounts) -> IndexPixelCounts:
        return IndexPixelCounts(self.nodata_pixels + other.nodata_pixels, self.clipped_pixels + other.clipped_pixels)


@dataclass(frozen=True)
class IndexWrite:
    """A written index raster: its ``path`` and the pixels it lost (see :class:`IndexPixelCounts`)."""

    path: Path
    nodata_pixels: int
    clipped_pixels: int


class _Compiler:
    """Turn a checked AST into nested closures; reject anything outside the whitelist.

    Parts that use no band are evaluated once, here, and replaced by their value.
    """

    def __init__(self, expression: str, band_names: frozenset[str]) -> None:
        self.expression = expression
        self.band_names = band_names
        self.used: dict[str, None] = {}

    def reject(self, node: ast.AST, why: str) -> InvalidExpression:
        try:
            part = ast.get_source_segment(self.expression, node) or ast.dump(node)
        except Exception:  # only used to word the message
            part = type(node).__name__
        return InvalidExpression(f"expression {_quote(self.expression)}: {why}: {_quote(part)}")

    def compile(self, node: ast.AST) -> _Evaluator:
        """Return the evaluator of ``node``, folded into a constant when it uses no band."""
        evaluator = self._compile(node)
        if isinstance(node, (ast.Constant, ast.Name)) or self._uses_band(node):
            return evaluator
        return self._fold(node, evaluator)

    def _uses_band(self, node: ast.AST) -> bool:
        return any(isinstance(child, ast.Name) and child.id in self.band_names for child in ast.walk(node))

    def _fold(self, node: ast.AST, evaluator: _Evaluator) -> _Evaluator:
        """Evaluate a band-free part now; refuse it if it overflows or is not a finite number."""
        try:
            with np.errstate(all="raise"):
                value = np.asarray(evaluator({}), dtype=np.float64)
        except (FloatingPointError, OverflowError, ZeroDivisionError) as error:
            raise self.reject(node, f"constant part is not a finite float64 ({error})") from error
        if not np.all(np.isfinite(value)):
            raise self.reject(node, "constant part is not a finite float64")
        number = value[()] if value.ndim == 0 else value
        return lambda bands: number

    def _compile(self, node: ast.AST) -> _Evaluator:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._band(node)
        if isinstance(node, ast.BinOp):
            binary = _BINARY_OPS.get(type(node.op))
            if binary is None:
                raise self.reject(node, f"operator {type(node.op).__name__} is not allowed")
            left, right = self.compile(node.left), self.compile(node.right)
            if isinstance(node.op, ast.Pow) and self._uses_band(node.left) and not self._uses_band(node.right):
                self._check_exponent(node, right)
            return lambda bands: binary(left(bands), right(bands))
        if isinstance(node, ast.UnaryOp):
            unary = _UNARY_OPS.get(type(node.op))
            if unary is None:
                raise self.reject(node, f"operator {type(node.op).__name__} is not allowed")
            operand = self.compile(node.operand)
            return lambda bands: unary(operand(bands))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        kinds = {
            ast.Attribute: "attribute access",
            ast.Subscript: "subscript",
            ast.Lambda: "lambda",
            ast.Starred: "starred argument",
            ast.ListComp: "comprehension",
            ast.SetComp: "comprehension",
            ast.DictComp: "comprehension",
            ast.GeneratorExp: "comprehension",
            ast.BoolOp: "boolean operator (use where/comparisons)",
            ast.IfExp: "conditional expression (use where)",
            ast.NamedExpr: "assignment expression",
            ast.JoinedStr: "string",
        }
        raise self.reject(node, f"{kinds.get(type(node), type(node).__name__)} is not allowed")

    def _check_exponent(self, node: ast.BinOp, exponent: _Evaluator) -> None:
        value = float(np.asarray(exponent({}), dtype=np.float64))
        if abs(value) > MAX_EXPONENT:
            raise self.reject(node, f"exponent {value:g} is beyond +-{MAX_EXPONENT:g}")

    def _constant(self, node: ast.Constant) -> _Evaluator:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            what = "string" if isinstance(value, (str, bytes)) else f"constant of type {type(value).__name__}"
            raise self.reject(node, f"{what} is not allowed")
        try:
            number = np.float64(float(value))
        except OverflowError:
            raise self.reject(node, "constant is too large for float64") from None
        if not np.isfinite(number):
            raise self.reject(node, "constant is too large for float64")
        return lambda bands: number

    def _band(self, node: ast.Name) -> _Evaluator:
        name = node.id
        if name.startswith("__") and name.endswith("__"):
            raise self.reject(node, "dunder name is not allowed")
        if name not in self.band_names:
            if name in FUNCTIONS:
                raise self.reject(node, f"function {name} must be called, not used as a value")
            raise self.reject(node, f"unknown name (bands: {', '.join(sorted(self.band_names)) or 'none'})")
        self.used[name] = None
        return lambda bands: bands[name]

    def _compare(self, node: ast.Compare) -> _Evaluator:
        operands = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]
        ufuncs = []
        for op in node.ops:
            ufunc = _COMPARE_OPS.get(type(op))
            if ufunc is None:
                raise self.reject(node, f"comparison {type(op).__name__} is not allowed")
            ufuncs.append(ufunc)

        def evaluate(bands: Mapping[str, np.ndarray]) -> np.ndarray:
            values = [operand(bands) for operand in operands]
            result: np.ndarray = ufuncs[0](values[0], values[1])
            for position, ufunc in enumerate(ufuncs[1:], start=1):
                result = np.logical_and(result, ufunc(values[position], values[position + 1]))
            return result

        return evaluate

    def _call(self, node: ast.Call) -> _Evaluator:
        if not isinstance(node.func, ast.Name):
            raise self.reject(node.func, "only plain function names may be called")
        name = node.func.id
        if name not in FUNCTIONS:
            raise self.reject(node, f"call of {name} is not allowed (allowed: {', '.join(FUNCTIONS)})")
        if node.keywords:
            raise self.reject(node, "keyword arguments are not allowed")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.reject(node, "starred arguments are not allowed")
        function, arity = FUNCTIONS[name]
        if len(node.args) != arity:
            raise self.reject(node, f"{name} takes {arity} argument(s), got {len(node.args)}")
        arguments = [self.compile(arg) for arg in node.args]
        return lambda bands: function(*(argument(bands) for argument in arguments))


def compile_expression(expression: str, band_names: Iterable[str]) -> CompiledExpression:
    """Parse and check a band-index expression such as ``10000*(nir-red)/(nir+red)``.

    Rule: only the whitelist described in this module's docstring is accepted, within its limits
    (length, ASCII, node count, depth, exponents, finite constant parts); the check runs on the
    whole tree before anything is evaluated.

    Returns:
        The compiled expression; ``band_names`` lists the bands it uses.

    Raises:
        InvalidExpression: naming the expression (its first 200 characters) and the offending part:
            syntax error, non-ASCII character, too long, too many nodes or too deep, attribute,
            import, subscript, lambda, call of another function, dunder or unknown name, keyword
            or starred argument, comprehension, string, an exponent beyond the limit or a
            constant part that overflows; or if it uses no band.
        TypeError: if ``band_names`` is a single string instead of an iterable of names.
    """
    if isinstance(band_names, str):
        raise TypeError(f"band_names must be an iterable of names, not the string {_quote(band_names)}")
    source = _checked_source(expression)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as error:
        raise InvalidExpression(f"expression {_quote(expression)}: syntax error: {error.msg}") from error
    except (RecursionError, MemoryError) as error:
        # How deep Python's parser may go depends on the caller's stack; anything that deep is
        # beyond the depth limit, so say the same as the size check does.
        raise InvalidExpression(
            f"expression {_quote(expression)}: nested more than {MAX_EXPRESSION_DEPTH} deep (beyond the parser's limit)"
        ) from error
    except ValueError as error:
        raise InvalidExpression(f"expression {_quote(expression)}: cannot be parsed ({error})") from error
    _check_size(expression, tree.body)
    compiler = _Compiler(source, frozenset(band_names))
    evaluator = compiler.compile(tree.body)
    if not compiler.used:
        raise InvalidExpression(f"expression {_quote(expression)}: uses no band")
    return CompiledExpression(expression=expression, band_names=tuple(compiler.used), _evaluate=evaluator)


def _checked_source(expression: object) -> str:
    """Return the stripped source of ``expression`` if it is ASCII text of at most the maximum length."""
    if not isinstance(expression, str):
        raise InvalidExpression(f"expression {_quote(repr(expression))}: must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidExpression(
            f"expression {_quote(expression)}: {len(expression)} characters, at most {MAX_EXPRESSION_LENGTH} allowed"
        )
    for position, character in enumerate(expression):
        if not character.isascii():
            raise InvalidExpression(
                f"expression {_quote(expression)}: non-ASCII character {character!r} (U+{ord(character):04X}) at"
                f" position {position}; band names, functions and numbers are ASCII"
            )
    return expression.strip()


def _check_size(expression: str, root: ast.expr) -> None:
    """Refuse a tree of more than the maximum nodes or depth, walking it without recursion."""
    nodes = 0
    pending: list[tuple[ast.AST, int]] = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        nodes += 1
        if nodes > MAX_EXPRESSION_NODES:
            raise InvalidExpression(f"expression {_quote(expression)}: more than {MAX_EXPRESSION_NODES} nodes")
        if depth > MAX_EXPRESSION_DEPTH:
            raise InvalidExpression(f"expression {_quote(expression)}: nested more than {MAX_EXPRESSION_DEPTH} deep")
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))


def round_into_dtype(
    values: np.ndarray,
    valid: np.ndarray,
    dtype: DTypeLike,
    nodata: float,
    name: str = "result",
) -> np.ndarray:
    """Store float results in a cube band's dtype, with ``nodata`` where they are not valid.

    Rule: pixels that are not ``valid`` or not finite become ``nodata``. For integer dtypes the
    rest are rounded (``np.rint``, ties to even) and clipped to the dtype's range instead of
    wrapping. A valid pixel never yields ``nodata``: if ``nodata`` is the dtype's minimum
    (maximum) valid values are clipped to ``[min + 1, max]`` (``[min, max - 1]``); if it lies inside
    the range, a valid result equal to it moves one step toward zero (up when nodata is 0).
    Float dtypes are clipped to their finite range and not rounded.

    Returns:
        An array of ``dtype`` with the shape of ``values``.

    Raises:
        InvalidRaster: naming ``name`` if ``nodata`` cannot be stored in ``dtype`` or the valid mask
            has another shape.
    """
    dtype = np.dtype(dtype)
    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != values.shape:
        raise InvalidRaster(f"{name}: valid mask shape {valid.shape} differs from values shape {values.shape}")
    valid = valid & np.isfinite(values)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if (
            not isinstance(nodata, Real)
            or not np.isfinite(nodata)
            or float(nodata) != int(nodata)
            or not info.min <= nodata <= info.max
        ):
            raise InvalidRaster(f"{name}: nodata {nodata!r} cannot be stored in {dtype}")
        nodata = int(nodata)
        low = info.min + 1 if nodata == info.min else info.min
        high = info.max - 1 if nodata == info.max else info.max
        filled = np.where(valid, values, 0.0)
        out = np.clip(np.rint(filled), low, high).astype(dtype)
        step = -1 if nodata > 0 else 1
        out[valid & (out == nodata)] = nodata + step
    elif dtype.kind == "f":
        float_info = np.finfo(dtype)
        if not isinstance(nodata, Real):
            raise InvalidRaster(f"{name}: nodata {nodata!r} cannot be stored in {dtype}")
        filled = np.where(valid, values, 0.0)
        out = np.clip(filled, float_info.min, float_info.max).astype(dtype)
        nodata_value = dtype.type(nodata)
        if not np.isnan(nodata_value):
            clash = valid & (out == nodata_value)
            out[clash] = np.nextafter(nodata_value, dtype.type(0))
    else:
        raise InvalidRaster(f"{name}: output dtype {dtype} is neither integer nor float")
    out[~valid] = nodata
    return out


def evaluate_index(
    compiled: CompiledExpression,
    bands: Mapping[str, np.ndarray],
    nodata: Mapping[str, float | None] | float | None,
    out_dtype: DTypeLike = np.int16,
    out_nodata: float = -9999,
) -> np.ndarray:
    """Evaluate a compiled index over band arrays.

    Rule: evaluated in float64; a pixel where any used band equals its nodata value (NaN
    nodata matches NaN), or where the result is not finite (division by zero, log of a
    negative...), gets ``out_nodata``; other results are rounded and clipped into
    ``out_dtype`` and never equal ``out_nodata`` (see ``round_into_dtype``). ``nodata`` is one
    value for all bands or a mapping with an entry (possibly ``None``: no nodata) for every
    used band.

    Returns:
        An ``out_dtype`` array with the bands' shape.

    Raises:
        InvalidRaster: if a used band is missing, shapes differ, a used band has no entry in a
            ``nodata`` mapping, or ``out_nodata`` does not fit ``out_dtype``.
    """
    return _evaluate_counted(compiled, bands, nodata, out_dtype, out_nodata)[0]


def _used_bands(
    compiled: CompiledExpression, bands: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """The arrays of the bands ``compiled`` uses, and their common shape."""
    arrays: dict[str, np.ndarray] = {}
    shape: tuple[int, ...] = ()
    for name in compiled.band_names:
        if name not in bands:
            raise InvalidRaster(f"index {_quote(compiled.expression)}: band {name!r} is missing")
        array = np.asarray(bands[name])
        if not arrays:
            shape = array.shape
        elif array.shape != shape:
            raise InvalidRaster(
                f"index {_quote(compiled.expression)}: band {name!r} has shape {array.shape}, expected {shape}"
            )
        arrays[name] = array
    return arrays, shape


def _valid_inputs(
    compiled: CompiledExpression,
    arrays: Mapping[str, np.ndarray],
    shape: tuple[int, ...],
    nodata: Mapping[str, float | None] | float | None,
) -> np.ndarray:
    """Where no used band holds its nodata value."""
    valid = np.ones(shape, dtype=bool)
    for name, array in arrays.items():
        if isinstance(nodata, Mapping):
            if name not in nodata:
                raise InvalidRaster(f"index {_quote(compiled.expression)}: no nodata entry for band {name!r}")
            band_nodata = nodata[name]
        else:
            band_nodata = nodata
        if band_nodata is None:
            continue
        if np.isnan(band_nodata):
            valid &= ~np.isnan(array)
        else:
            valid &= array != band_nodata
    return valid


def _lost_pixels(values: np.ndarray, valid: np.ndarray, dtype: DTypeLike) -> IndexPixelCounts:
    """Count the valid pixels whose result is not finite, and those outside ``dtype``'s range."""
    dtype = np.dtype(dtype)
    finite = np.isfinite(values)
    limits = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    with np.errstate(invalid="ignore"):
        rounded = np.rint(values) if dtype.kind in "iu" else values
        outside = finite & ((rounded < limits.min) | (rounded > limits.max))
    return IndexPixelCounts(
        nodata_pixels=int(np.count_nonzero(valid & ~finite)),
        clipped_pixels=int(np.count_nonzero(valid & outside)),
    )


def _evaluate_counted(
    compiled: CompiledExpression,
    bands: Mapping[str, np.ndarray],
    nodata: Mapping[str, float | None] | float | None,
    out_dtype: DTypeLike,
    out_nodata: float,
) -> tuple[np.ndarray, IndexPixelCounts]:
    """:func:`evaluate_index`, with the count of the pixels the result lost."""
    arrays, shape = _used_bands(compiled, bands)
    valid = _valid_inputs(compiled, arrays, shape, nodata)
    as_float = {name: array.astype(np.float64, copy=False) for name, array in arrays.items()}
    result = np.broadcast_to(compiled.evaluate_float(as_float), shape)
    out = round_into_dtype(result, valid, out_dtype, out_nodata, name=f"index {_quote(compiled.expression)}")
    return out, _lost_pixels(result, valid, out_dtype)


def write_index(
    compiled: CompiledExpression,
    band_paths: Mapping[str, str | os.PathLike[str]],
    destination: str | os.PathLike[str],
    *,
    nodata: float | None,
    out_dtype: DTypeLike = np.int16,
    out_nodata: float = -9999,
    block_size: int = 512,
) -> IndexWrite:
    """Evaluate ``compiled`` window by window over single-band rasters of one grid; write a tiled ZSTD GeoTIFF.

    ``band_paths`` maps every name the expression uses to a file (extra names are ignored);
    ``nodata`` is the input bands' nodata. Memory stays at a few windows whatever the raster size.
    Every file must have a CRS and share the first one's grid (CRS, shape and transform).

    Returns:
        The destination path (written under a temporary name, then moved into place) and how
        many pixels with valid inputs became nodata (result not finite, e.g. ``exp`` of a large
        reflectance) or were clipped into ``out_dtype``.

    Raises:
        InvalidRaster: naming the file, if a used band has no file, a file cannot be opened or
            read to its end (truncated or corrupt), has no CRS, or is not on the first file's
            grid; ``destination`` is then left untouched.
    """
    missing = [name for name in compiled.band_names if name not in band_paths]
    if missing:
        raise InvalidRaster(f"index {_quote(compiled.expression)}: no file for bands {missing}")
    with contextlib.ExitStack() as stack:
        sources = {name: stack.enter_context(open_input(band_paths[name], limits=None)) for name in compiled.band_names}
        first = next(iter(sources.values()))
        for name, src in sources.items():
            if (src.crs, src.width, src.height, src.transform) != (
                first.crs,
                first.width,
                first.height,
                first.transform,
            ):
                raise InvalidRaster(
                    f"index {_quote(compiled.expression)}: band {name} ({src.name}) is not on the grid of {first.name}"
                )
        profile = {
            "driver": "GTiff",
            "width": first.width,
            "height": first.height,
            "count": 1,
            "dtype": np.dtype(out_dtype).name,
            "nodata": out_nodata,
            "crs": first.crs,
            "transform": first.transform,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            # A working file, made into a COG next: the cheapest codec, on every CPU.
            **working_file_options(out_dtype),
            "num_threads": "all_cpus",
        }
        counts = IndexPixelCounts()
        with atomic_path(destination) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            for row in range(0, first.height, block_size):
                for col in range(0, first.width, block_size):
                    window = Window(col, row, min(block_size, first.width - col), min(block_size, first.height - row))
                    arrays = {name: _read_window(band_paths[name], src, window) for name, src in sources.items()}
                    out, lost = _evaluate_counted(compiled, arrays, nodata, out_dtype, out_nodata)
                    dst.write(out, 1, window=window)
                    counts = counts + lost
    return IndexWrite(Path(destination), counts.nodata_pixels, counts.clipped_pixels)


def _read_window(path: str | os.PathLike[str], src: DatasetReader, window: Window) -> np.ndarray:
    """Band 1 of ``src`` in ``window``; a failed read names ``path``."""
    with reading_from(path, 1):
        band: np.ndarray = src.read(1, window=window)
        return band


__all__ = [
    "FUNCTIONS",
    "MAX_EXPONENT",
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_EXPRESSION_NODES",
    "CompiledExpression",
    "IndexPixelCounts",
    "IndexWrite",
    "compile_expression",
    "evaluate_index",
    "round_into_dtype",
    "write_index",
]
