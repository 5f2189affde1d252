"""Band scaling and output data types for loaded pixels, after the Descartes Labs client.

:func:`scaling_parameters` turns a user's ``scaling`` and ``data_type`` into one scale per band
and the output data type; :func:`apply_scaling` applies them to an array. The semantics follow
``descarteslabs.common.scaling`` (``scaling_parameters``), as read from its code and docstrings:

**A scale** is ``None`` (no scaling), ``()`` (auto: the band's own minimum and maximum over the
valid pixels of the array being scaled, to 0..255), or ``(in_min, in_max, out_min, out_max)``: a
linear map (a multiply and an add, not clipped to the output range; only to the output type's
limits). ``(in_min, in_max)`` given by the user gets the mode's default output range.

**Modes**, for all bands (``scaling="display"``) or per band:

========== ====================================================== =====================
mode       a band of type spectral/generic becomes                default ``data_type``
========== ====================================================== =====================
raw        ``None``: values as stored                             the promoted common type
auto       ``()``: own min..max to 0..255                         Byte
display    ``display_range`` to 0..255                            Byte
physical   ``data_range`` to ``physical_range``                   Float64
========== ====================================================== =====================

``mask`` and ``class`` bands are never scaled by a mode (``None``); their mode never conflicts
with another band's. Two bands may not ask for different explicit modes, except auto with
display. Output ``0..255`` is ``0..255.99`` for a float ``data_type`` (as in the client).

**Tuples** hold numbers or percentage strings (``"25%"``). Percentages are of the *mode's* range:
the input values of ``display_range`` (falling back to ``data_range``) in display/auto mode, of
``data_range`` in physical mode and of the band data type's full range in raw mode; output values
of 0..255, ``physical_range`` or the output type's range respectively. So ``("25%", "75%")`` on a
band with ``display_range`` (0, 4000) is ``(1000, 3000, 0, 255)``. As in the client, values for an
integer band (input side) or integer ``data_type`` (output side) are truncated to integers. With no
explicit mode, a tuple implies one: ``()`` auto, a 2-tuple display, a 4-tuple with a float output
value physical, with an output below 0 or above 255 raw; if nothing implies a mode, the output
type is the smallest that holds every band's output range.

**scaling forms**: ``None``; a mode string; a sequence with one entry (None, mode or tuple) per
band; or a mapping from band name to entry, where bands not listed get the ``"default_"`` entry
unless they are mask/class bands (which get ``None``).

**data_type** names are GDAL's (``Byte``, ``UInt16``, ... ``Float64``; ``UInt8`` and numpy names are
accepted). When given it wins: ``Byte`` implies display mode, a float type physical, any other raw.
Without scaling, mixed band types promote as GDAL's ``GDALDataTypeUnion`` does (the smallest
type that holds both exactly; :data:`SAFE_CASTS`), e.g. Byte + Int16 → Int16, UInt16 + Int16 →
Int32, Int32 + Float32 → Float64. (The client's own table sends Int32 + Float32 to Float32, which
cannot hold every Int32, and has no 64-bit integers; this module follows GDAL there.)

**Casting** to an integer type rounds to the nearest integer and saturates at the type's limits,
as GDAL's ``GDALCopyWords`` does; masked pixels are 0 in the output data and stay masked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

import numpy as np

Scale = tuple[()] | tuple[float, float, float, float] | None
"""One band's resolved scale: None, () for auto, or (in_min, in_max, out_min, out_max)."""

MODES: tuple[str, ...] = ("raw", "auto", "display", "physical")

#: GDAL data type names, smallest first (unsigned before signed, integers before floats).
DATA_TYPES: tuple[str, ...] = (
    "Byte",
    "Int8",
    "UInt16",
    "Int16",
    "UInt32",
    "Int32",
    "UInt64",
    "Int64",
    "Float32",
    "Float64",
)

#: The types each type converts to without loss (GDAL's ``GDALDataTypeUnion``).
SAFE_CASTS: dict[str, tuple[str, ...]] = {
    "Byte": ("UInt16", "Int16", "UInt32", "Int32", "UInt64", "Int64", "Float32", "Float64"),
    "Int8": ("Int16", "Int32", "Int64", "Float32", "Float64"),
    "UInt16": ("UInt32", "Int32", "UInt64", "Int64", "Float32", "Float64"),
    "Int16": ("Int32", "Int64", "Float32", "Float64"),
    "UInt32": ("UInt64", "Int64", "Float64"),
    "Int32": ("Int64", "Float64"),
    "UInt64": ("Float64",),
    "Int64": ("Float64",),
    "Float32": ("Float64",),
    "Float64": (),
}

_NUMPY_TYPES: dict[str, np.dtype] = {
    "Byte": np.dtype("uint8"),
    "Int8": np.dtype("int8"),
    "UInt16": np.dtype("uint16"),
    "Int16": np.dtype("int16"),
    "UInt32": np.dtype("uint32"),
    "Int32": np.dtype("int32"),
    "UInt64": np.dtype("uint64"),
    "Int64": np.dtype("int64"),
    "Float32": np.dtype("float32"),
    "Float64": np.dtype("float64"),
}
_ALIASES: dict[str, str] = {
    **{name.lower(): name for name in DATA_TYPES},
    "uint8": "Byte",
    **{dtype.name: name for name, dtype in _NUMPY_TYPES.items()},
}
#: Output types the client infers from output ranges, in order of preference.
_RANGE_TYPES: tuple[str, ...] = ("Byte", "UInt16", "Int16", "UInt32", "Int32")
_DISPLAY_RANGE = (0, 255)
_UNSCALED_BAND_TYPES = ("mask", "class")


def normalize_data_type(data_type: str | np.dtype | type) -> str:
    """The GDAL name of ``data_type`` (``"Byte"``, ``"UInt8"``, ``"uint8"``, ``np.uint8`` all give ``"Byte"``).

    Returns:
        One of :data:`DATA_TYPES`.

    Raises:
        ValueError: if ``data_type`` is not one of them (complex types included).
    """
    if isinstance(data_type, str):
        name = _ALIASES.get(data_type.lower())
    else:
        try:
            name = _ALIASES.get(np.dtype(data_type).name)
        except TypeError:
            name = None
    if name is None:
        raise ValueError(f"data_type {data_type!r} is not one of {DATA_TYPES}")
    return name


def numpy_dtype(data_type: str | np.dtype | type) -> np.dtype:
    """The numpy dtype of a GDAL data type name.

    Returns:
        The ``np.dtype``.

    Raises:
        ValueError: if ``data_type`` is unknown.
    """
    return _NUMPY_TYPES[normalize_data_type(data_type)]


def common_data_type(data_types: Iterable[str | np.dtype | type]) -> str:
    """The smallest data type that holds every value of each of ``data_types`` (see :data:`SAFE_CASTS`).

    Returns:
        A GDAL data type name.

    Raises:
        ValueError: if ``data_types`` is empty or holds an unknown type.
    """
    names = [normalize_data_type(data_type) for data_type in data_types]
    if not names:
        raise ValueError("common_data_type: no data types given")
    common = names[0]
    for name in names[1:]:
        reachable = {common, *SAFE_CASTS[common]} & {name, *SAFE_CASTS[name]}
        common = next(candidate for candidate in DATA_TYPES if candidate in reachable)
    return common


def data_type_range(data_type: str) -> tuple[float, float]:
    """A data type's value range; for float types the client's default output range (0.0, 1.0).

    Returns:
        ``(min, max)``: ints for integer types, floats for float types.

    Raises:
        ValueError: if ``data_type`` is unknown.
    """
    dtype = numpy_dtype(data_type)
    if dtype.kind == "f":
        return (0.0, 1.0)
    info = np.iinfo(dtype)
    return (int(info.min), int(info.max))


@dataclass(frozen=True)
class BandInfo:
    """What loading and scaling need to know about one band, normalized.

    ``data_type`` is a GDAL name; ``type`` the band type (``spectral``, ``mask``, ``class``,
    ``generic``...); ranges are ``(min, max)`` pairs, ints for an integer band's integral
    ``data_range``/``display_range`` values.
    """

    name: str
    data_type: str
    type: str = "spectral"
    nodata: float | None = None
    data_range: tuple[float, float] | None = None
    display_range: tuple[float, float] | None = None
    physical_range: tuple[float, float] | None = None

    @property
    def is_float(self) -> bool:
        """Whether the band's data type is a float type."""
        return self.data_type.startswith("Float")


def band_info(name: str, meta: Any) -> BandInfo:
    """Normalize one band's metadata into a :class:`BandInfo`.

    ``meta`` is a :class:`BandInfo`, a ``BandRecord`` or catalog ``Band`` row (read by
    attribute), or a mapping with ``data_type`` (or the client's ``dtype``) and optionally
    ``type``, ``nodata``, ``data_range``, ``display_range`` (or the client's ``default_range``)
    and ``physical_range``.

    Returns:
        The BandInfo, named ``name``.

    Raises:
        ValueError: naming the band, if the data type is missing or unknown, nodata is not a
            number, or a range is not two finite numbers with min <= max.
    """
    if isinstance(meta, BandInfo):
        return meta if meta.name == name else dataclasses.replace(meta, name=name)

    def get(*keys: str) -> Any:
        for key in keys:
            value = meta.get(key) if isinstance(meta, Mapping) else getattr(meta, key, None)
            if value is not None:
                return value
        return None

    raw_type = get("data_type", "dtype")
    if raw_type is None:
        raise ValueError(f"band {name!r}: metadata has no data_type")
    try:
        data_type = normalize_data_type(raw_type)
    except ValueError as error:
        raise ValueError(f"band {name!r}: {error}") from None
    nodata = get("nodata")
    if nodata is not None and (isinstance(nodata, bool) or not isinstance(nodata, Real)):
        raise ValueError(f"band {name!r}: nodata must be a number, got {nodata!r}")
    integer = not data_type.startswith("Float")
    return BandInfo(
        name=name,
        data_type=data_type,
        type=str(get("type") or "spectral"),
        nodata=None if nodata is None else float(nodata),
        data_range=_check_range(name, "data_range", get("data_range"), integer),
        display_range=_check_range(name, "display_range", get("display_range", "default_range"), integer),
        physical_range=_check_range(name, "physical_range", get("physical_range"), False),
    )


def band_infos(bands: Mapping[str, Any]) -> dict[str, BandInfo]:
    """:func:`band_info` of every ``{name: meta}`` entry, in order.

    Returns:
        ``{name: BandInfo}``.

    Raises:
        ValueError: as :func:`band_info`.
    """
    return {name: band_info(name, meta) for name, meta in bands.items()}


def _check_range(name: str, field: str, value: Any, integer: bool) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"band {name!r}: {field} must be [min, max], got {value!r}")
    low, high = value
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, Real) or not math.isfinite(bound):
            raise ValueError(f"band {name!r}: {field} must be two finite numbers, got {value!r}")
    if low > high:
        raise ValueError(f"band {name!r}: {field} minimum {low} is above maximum {high}")
    if integer:
        low, high = (int(v) if float(v).is_integer() else v for v in (low, high))
    return (low, high)


# ------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class _BandScale:
    """One band's parsed scaling entry (before the output data type is known)."""

    info: BandInfo
    kind: Literal["none", "mode", "tuple"]
    mode: str | None
    implied: bool
    values: tuple[Any, ...] = ()
    percent: tuple[bool, ...] = ()

    def output_range(self) -> tuple[float | None, float | None]:
        """The range this band's output will span, for inferring an output type."""
        if self.kind == "none":
            return _optional_range(_data_range(self.info))
        if self.kind == "mode":
            if self.mode == "raw":
                return _optional_range(_data_range(self.info))
            if self.mode == "physical":
                return _optional_range(_physical_range(self.info))
            return _DISPLAY_RANGE
        if len(self.values) == 4:
            return (
                None if self.percent[2] else self.values[2],
                None if self.percent[3] else self.values[3],
            )
        return _DISPLAY_RANGE

    def resolve(self, mode: str, data_type: str) -> Scale:
        """The final scale of this band, given the collection's mode and output type."""
        out_float = data_type.startswith("Float")
        if self.kind == "none":
            return None
        if self.kind == "mode":
            if self.mode == "raw":
                return None
            if self.mode == "auto":
                return ()
            if self.mode == "display":
                low, high = _required(self.info, "display_range", _display_range(self.info))
                return _checked_scale(self.info, (low, high, 0, 255.99 if out_float else 255))
            low, high = _required(self.info, "data_range", _data_range(self.info))
            out_low, out_high = _required(self.info, "physical_range", _physical_range(self.info))
            return _checked_scale(self.info, (low, high, out_low, out_high))
        if not self.values:
            return ()
        if mode == "raw":
            in_range = data_type_range(self.info.data_type)
            out_range = data_type_range(data_type)
        elif mode == "physical":
            in_range = _data_range(self.info)
            out_range = _physical_range(self.info)
        else:
            in_range = _display_range(self.info)
            out_range = (0.0, 255.99)
        full = self.values if len(self.values) == 4 else (*self.values, *_optional_range(out_range))
        percent = self.percent if len(self.values) == 4 else (*self.percent, False, False)
        ranges = (in_range, in_range, out_range, out_range)
        names = ("input", "input", "output", "output")
        floats = (self.info.is_float, self.info.is_float, out_float, out_float)
        resolved = tuple(
            _resolve_value(self.info, value, is_percent, bounds, name, is_float)
            for value, is_percent, bounds, name, is_float in zip(full, percent, ranges, names, floats, strict=True)
        )
        return _checked_scale(self.info, resolved)  # type: ignore[arg-type]  # _checked_scale checks the resolved scale itself


def _optional_range(value: tuple[float, float] | None) -> tuple[float | None, float | None]:
    return (None, None) if value is None else value


def _data_range(info: BandInfo) -> tuple[float, float] | None:
    if info.data_range is not None:
        return info.data_range
    return None if info.is_float else data_type_range(info.data_type)


def _display_range(info: BandInfo) -> tuple[float, float] | None:
    return info.display_range if info.display_range is not None else _data_range(info)


def _physical_range(info: BandInfo) -> tuple[float, float] | None:
    return info.physical_range if info.physical_range is not None else _data_range(info)


def _required(info: BandInfo, field: str, value: tuple[float, float] | None) -> tuple[float, float]:
    if value is None:
        raise ValueError(
            f"band {info.name!r} ({info.data_type}) has no {field} (nor a data_range to fall back on);"
            " give an explicit scaling tuple for it"
        )
    return value


def _resolve_value(
    info: BandInfo,
    value: Any,
    is_percent: bool,
    bounds: tuple[float, float] | None,
    name: str,
    is_float: bool,
) -> float:
    if is_percent:
        if bounds is None:
            raise ValueError(
                f"band {info.name!r}: percentage {value!r} needs the band's {name} range, which is unknown"
                " (no data_range); give a number instead"
            )
        value = float(value[:-1]) * (bounds[1] - bounds[0]) / 100.0 + bounds[0]
    if value is None:
        raise ValueError(f"band {info.name!r}: the default {name} range is unknown (no data_range); give a 4-tuple")
    return value if is_float else int(value)


def _checked_scale(info: BandInfo, scale: tuple[float, float, float, float]) -> Scale:
    if scale[0] == scale[1]:
        raise ValueError(f"band {info.name!r}: scaling input range {scale[:2]} is empty (min == max)")
    return tuple(scale)  # type: ignore[return-value]  # the scale has the length checked just above


def _parse_entry(info: BandInfo, value: Any) -> _BandScale:
    """Parse one band's entry: None, a mode string, or a 0/2/4-tuple."""
    if value is None:
        return _BandScale(info, "none", None, True)
    if isinstance(value, str):
        if value not in MODES:
            raise ValueError(f"band {info.name!r}: scaling mode {value!r} is not one of {MODES}")
        if info.type in _UNSCALED_BAND_TYPES:
            # Mask and class bands are never scaled by a mode; their mode is only a weak hint.
            return _BandScale(info, "none", value, True)
        return _BandScale(info, "mode", value, False)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        values = tuple(value)
        if len(values) not in (0, 2, 4):
            raise ValueError(f"band {info.name!r}: scaling tuple {value!r} must have 0, 2 or 4 values")
        percent = []
        for item in values:
            if isinstance(item, str):
                if not item.endswith("%") or not _is_number(item[:-1]):
                    raise ValueError(
                        f"band {info.name!r}: scaling value {item!r} is not a number or a percentage like '25%'"
                    )
                percent.append(True)
            elif isinstance(item, bool) or not isinstance(item, Real) or not math.isfinite(item):
                raise ValueError(f"band {info.name!r}: scaling value {item!r} is not a finite number")
            else:
                percent.append(False)
        mode: str | None
        if not values:
            mode = "auto"
        elif len(values) == 2:
            mode = "display"
        elif _is_float_value(values[2], percent[2]) or _is_float_value(values[3], percent[3]):
            mode = "physical"
        elif (not percent[2] and values[2] < 0) or (not percent[3] and values[3] > 255):
            mode = "raw"
        else:
            mode = None
        return _BandScale(info, "tuple", mode, True, values, tuple(percent))
    raise ValueError(f"band {info.name!r}: scaling entry {value!r} must be None, a mode or a tuple")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_float_value(value: Any, is_percent: bool) -> bool:
    return not is_percent and isinstance(value, float)


def _parse_scaling(infos: Sequence[BandInfo], scaling: Any) -> list[_BandScale]:
    """One :class:`_BandScale` per band from the four accepted forms of ``scaling``."""
    if isinstance(scaling, str):
        return [_parse_entry(info, scaling) for info in infos]
    if isinstance(scaling, Mapping):
        unknown = sorted(str(key) for key in scaling if key != "default_" and key not in {i.name for i in infos})
        if unknown:
            raise ValueError(f"scaling names bands {unknown} that are not loaded ({[i.name for i in infos]})")
        entries = []
        for info in infos:
            if info.name in scaling:
                entry = scaling[info.name]
            elif info.type in _UNSCALED_BAND_TYPES:
                entry = None
            else:
                entry = scaling.get("default_")
            entries.append(_parse_entry(info, entry))
        return entries
    if isinstance(scaling, Iterable) and not isinstance(scaling, bytes):
        entries_list = list(scaling)
        if len(entries_list) != len(infos):
            raise ValueError(f"scaling has {len(entries_list)} entries for {len(infos)} bands; give one per band")
        return [_parse_entry(info, entry) for info, entry in zip(infos, entries_list, strict=True)]
    raise ValueError(f"scaling {scaling!r} must be None, a mode, a sequence or a mapping")


def _combined_mode(scales: Sequence[_BandScale], implied: bool) -> str | None:
    """The one mode the explicit (or implied) modes agree on; auto and display combine to display."""
    mode: str | None = None
    for scale in scales:
        if scale.mode is None or scale.implied != implied:
            continue
        if mode is None or mode == scale.mode:
            mode = scale.mode
        elif {mode, scale.mode} <= {"auto", "display"}:
            mode = "display"
        elif implied:
            return None
        else:
            raise ValueError(f"scaling mixes the modes {mode!r} and {scale.mode!r}; use one mode for every band")
    return mode


def _implied_data_type(scales: Sequence[_BandScale]) -> str | None:
    """The smallest type holding every band's output range, or None if no range is known."""
    lows, highs = [], []
    for scale in scales:
        low, high = scale.output_range()
        if low is not None:
            lows.append(low)
        if high is not None:
            highs.append(high)
    if not lows and not highs:
        return None
    is_float = any(isinstance(value, float) for value in lows + highs)
    low = min(lows) if lows else None
    high = max(highs) if highs else None
    int32 = data_type_range("Int32")
    if is_float or (low is not None and low < int32[0]) or (high is not None and high > int32[1]):
        return "Float64"
    for name in _RANGE_TYPES:
        type_low, type_high = data_type_range(name)
        if (low is None or low >= type_low) and (high is not None and high <= type_high):
            return name
    return "Float64"


# ------------------------------------------------------------------------------------ public


def scaling_parameters(
    bands: Mapping[str, Any], scaling: Any = None, data_type: str | None = None
) -> tuple[list[Scale] | None, str]:
    """Resolve ``scaling`` and ``data_type`` for ``bands`` (``{name: metadata}``, in load order).

    See the module docstring for the accepted forms and their meaning. Metadata is anything
    :func:`band_info` accepts.

    Returns:
        ``(scales, data_type)``: ``scales`` is None when ``scaling`` is None (nothing is scaled),
        else a list with one :data:`Scale` per band; ``data_type`` is a GDAL type name.

    Raises:
        ValueError: if no band is given, band metadata is invalid, ``data_type`` is unknown,
            ``scaling`` is malformed (wrong number of entries, unknown mode or band, a tuple
            that is not 0, 2 or 4 numbers or percentages), two bands ask for conflicting modes,
            neither a mode nor an output type can be inferred, or a range a scale needs is unknown.
    """
    return multiproduct_scaling_parameters({"": bands}, list(bands), scaling, data_type)


def multiproduct_scaling_parameters(
    products: Mapping[str, Mapping[str, Any]],
    bands: Sequence[str],
    scaling: Any = None,
    data_type: str | None = None,
) -> tuple[list[Scale] | None, str]:
    """:func:`scaling_parameters` for images of several products that share band names.

    ``products`` maps product id to ``{band name: metadata}``; each must describe every band of
    ``bands``. The result must be the same for every product (e.g. display ranges agree).

    Returns:
        ``(scales, data_type)`` as :func:`scaling_parameters`.

    Raises:
        ValueError: as :func:`scaling_parameters`; also if a product lacks a band, or two products
            resolve a band to different scales.
    """
    if not bands:
        raise ValueError("scaling_parameters: no bands given")
    if not products:
        raise ValueError("scaling_parameters: no product band metadata given")
    band_sets: dict[str, list[BandInfo]] = {}
    for product, metadata in products.items():
        missing = [band for band in bands if band not in metadata]
        if missing:
            where = f" of product {product!r}" if product else ""
            raise ValueError(f"bands {missing} are not among the bands{where}: {list(metadata)}")
        band_sets[product] = [band_info(band, metadata[band]) for band in bands]
    if data_type is not None:
        data_type = normalize_data_type(data_type)
    all_infos = [info for infos in band_sets.values() for info in infos]

    if scaling is None:
        return None, data_type or common_data_type(info.data_type for info in all_infos)

    parsed = {product: _parse_scaling(infos, scaling) for product, infos in band_sets.items()}
    all_scales = [scale for scales in parsed.values() for scale in scales]
    mode = _combined_mode(all_scales, implied=False)
    if mode is None and data_type is None:
        mode = _combined_mode(all_scales, implied=True)
        if mode is None:
            data_type = _implied_data_type(all_scales)
            if data_type is None:
                raise ValueError(
                    f"scaling {scaling!r}: cannot infer the output data type or mode; give data_type or a mode"
                )
    if mode is None:
        assert data_type is not None
        mode = "display" if data_type == "Byte" else "physical" if data_type.startswith("Float") else "raw"
    elif data_type is None:
        if mode == "raw":
            data_type = common_data_type(info.data_type for info in all_infos)
        elif mode == "physical":
            data_type = "Float64"
        else:
            data_type = "Byte"

    resolved = {product: [scale.resolve(mode, data_type) for scale in scales] for product, scales in parsed.items()}
    first_product, first = next(iter(resolved.items()))
    for product, scales in resolved.items():
        for band, mine, theirs in zip(bands, scales, first, strict=True):
            if mine != theirs:
                raise ValueError(
                    f"band {band!r} scales differently in products {first_product!r} ({theirs}) "
                    f"and {product!r} ({mine})"
                )
    return first, data_type


def apply_scaling(
    array: np.ndarray | np.ma.MaskedArray | Sequence[np.ndarray | np.ma.MaskedArray],
    scales: Sequence[Scale] | None,
    data_type: str,
    *,
    out: np.ndarray | None = None,
) -> np.ma.MaskedArray:
    """Scale each band of ``array`` and cast it to ``data_type``.

    ``array`` has its bands on axis 0, or is a sequence of same-shaped bands (masked or not).
    ``scales`` comes from :func:`scaling_parameters` (None: cast only). Auto scales (``()``)
    use the band's minimum and maximum over its unmasked, non-NaN pixels; a band with no such
    pixel stays fully masked, one with a single value maps it to 0. Linear scales are computed in
    float64 and not clipped to the output range; integer outputs are rounded to the nearest
    integer and saturate at the type's limits (NaN becomes masked). Masked and NaN pixels are
    masked in the output, with data 0. ``out``, when given, receives the data (it must have the
    bands' shape and ``data_type``'s type), so a caller can scale straight into a larger array.

    Returns:
        A masked array of shape ``(bands, ...)`` and ``data_type``'s numpy type (over ``out``
        when given).

    Raises:
        ValueError: if ``data_type`` is unknown, there is no band, bands differ in shape,
            ``scales`` does not have one entry per band, or ``out`` does not fit.
    """
    out_dtype = numpy_dtype(data_type)
    if isinstance(array, np.ndarray):
        bands = [array[index] for index in range(array.shape[0])] if array.ndim else []
    else:
        bands = list(array)
    if not bands:
        raise ValueError("apply_scaling: no bands (axis 0 is empty)")
    shape = np.shape(bands[0])
    if any(np.shape(band) != shape for band in bands):
        raise ValueError(f"apply_scaling: bands differ in shape: {[np.shape(band) for band in bands]}")
    if scales is not None and len(scales) != len(bands):
        raise ValueError(f"apply_scaling: {len(scales)} scales for {len(bands)} bands")
    full_shape = (len(bands), *shape)
    if out is None:
        out = np.empty(full_shape, dtype=out_dtype)
    elif out.shape != full_shape or out.dtype != out_dtype:
        raise ValueError(f"apply_scaling: out is {out.shape} {out.dtype}, expected {full_shape} {out_dtype}")
    mask = np.empty(full_shape, dtype=bool)
    for index, band in enumerate(bands):
        values = np.ma.getdata(band)
        band_mask = mask[index]
        band_mask[...] = np.ma.getmaskarray(band)
        if values.dtype.kind == "f":
            band_mask |= np.isnan(values)
        scale = None if scales is None else scales[index]
        if scale is not None:
            values = _linear(values, band_mask, scale)
        _convert_into(values, out[index], band_mask)
        out[index][band_mask] = 0
    return np.ma.MaskedArray(out, mask=mask, copy=False)


def _linear(band: np.ndarray, mask: np.ndarray, scale: tuple[float, ...]) -> np.ndarray:
    if scale == ():
        valid = band[~mask]
        if valid.size == 0:
            return band
        low, high = float(valid.min()), float(valid.max())
        if low == high:
            return np.zeros(band.shape, dtype=np.float64)
        scale = (low, high, 0.0, 255.0)
    in_min, in_max, out_min, out_max = (float(value) for value in scale)
    result = band.astype(np.float64)
    result -= in_min
    result *= out_max - out_min  # multiply before dividing: exact halves stay exact (127.5, not 127.4999)
    result /= in_max - in_min
    result += out_min
    return result


def _convert_into(band: np.ndarray, out: np.ndarray, mask: np.ndarray) -> None:
    """Write ``band`` into ``out``: rounded and saturated for integers; NaN pixels join ``mask``."""
    dtype = out.dtype
    if band.dtype.kind == "f" and dtype.kind != "f":
        nan = np.isnan(band)
        mask |= nan
        info = np.iinfo(dtype)
        rounded = np.rint(band)
        rounded[nan] = 0
        np.clip(rounded, info.min, info.max, out=rounded)
        np.copyto(out, rounded, casting="unsafe")
    elif dtype.kind == "f" or np.can_cast(band.dtype, dtype):
        np.copyto(out, band, casting="unsafe")
    else:
        info, source = np.iinfo(dtype), np.iinfo(band.dtype)
        clipped = np.clip(band, max(info.min, source.min), min(info.max, source.max))
        np.copyto(out, clipped, casting="unsafe")
