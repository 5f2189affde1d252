"""Quality masks: turn a collection's quality band into clear / not-clear / saturated / nodata classes.

Two kinds of rules, chosen per collection:

* ``ValueMaskRules``: the quality band holds class codes (Sentinel-2 SCL, Fmask 4, CBERS CMASK).
* ``LandsatQAPixelRules``: the quality band is Landsat Collection 2 ``QA_PIXEL`` bit flags, with
  optional confidence rules such as ``"cloud >= MEDIUM"`` that are parsed, never evaluated.

Also here: QA_RADSAT saturation bits, Landsat C2 surface-reflectance rescaling, propagation of
spectral nodata into the quality band, and the efficacy / cloud-ratio statistics of a scene.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from cube_assets.errors import InvalidQualityRule, InvalidRaster
from cube_assets.raster.indexes import round_into_dtype


class QualityClass(enum.IntEnum):
    """Per-pixel quality class, stored as ``uint8`` codes."""

    NODATA = 0
    CLEAR = 1
    NOT_CLEAR = 2
    SATURATED = 3


QUALITY_CLASS_DTYPE = np.dtype(np.uint8)


# --------------------------------------------------------------------------- value rules


def _int_codes(values: Any, what: str) -> tuple[int, ...]:
    """Normalise one code or a list of codes to a tuple of ``int``; reject anything else."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = [values]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidQualityRule(f"{what}: expected an integer or a list of integers, got {values!r}")
    codes = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidQualityRule(f"{what}: {value!r} is not an integer quality code")
        codes.append(int(value))
    return tuple(codes)


@dataclass(frozen=True)
class ValueMaskRules:
    """Quality codes of each class for a quality band that stores class codes.

    A code may appear in at most one list. Codes listed nowhere classify as NOT_CLEAR.
    ``nodata`` must hold at least one code; its first code is the value written where a
    composited quality band has no observation (``quality_nodata``).
    """

    clear: tuple[int, ...]
    not_clear: tuple[int, ...]
    nodata: tuple[int, ...]
    saturated: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        lists = {}
        for name in ("clear", "not_clear", "saturated", "nodata"):
            codes = _int_codes(getattr(self, name), f"quality rule '{name}'")
            object.__setattr__(self, name, codes)
            lists[name] = codes
        if not self.nodata:
            raise InvalidQualityRule("quality rule 'nodata': at least one nodata code is required")
        seen: dict[int, str] = {}
        for name, codes in lists.items():
            for code in codes:
                if code in seen and seen[code] != name:
                    raise InvalidQualityRule(f"quality code {code} is listed both as '{seen[code]}' and as '{name}'")
                seen[code] = name

    @property
    def quality_nodata(self) -> int:
        """The quality code written where a composite has no observation (first nodata code)."""
        return self.nodata[0]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ValueMaskRules:
        """Build rules from ``{"clear": [...], "not_clear": [...], "saturated": [...], "nodata": 0}``.

        ``"kind": "values"`` may be present; ``saturated`` is optional; ``nodata`` is one code or
        a list.

        Returns:
            The rules.

        Raises:
            InvalidQualityRule: on a missing or unknown key, a non-integer code, a code in two
                lists, or an empty nodata list.
        """
        allowed = {"kind", "clear", "not_clear", "saturated", "nodata"}
        _check_keys(config, allowed, required={"clear", "not_clear", "nodata"}, what="value quality rules")
        if config.get("kind", "values") != "values":
            raise InvalidQualityRule(f"value quality rules: kind {config['kind']!r} is not 'values'")
        return cls(
            clear=config["clear"],
            not_clear=config["not_clear"],
            saturated=config.get("saturated", ()),
            nodata=config["nodata"],
        )


SCL_RULES = ValueMaskRules(clear=(4, 5, 6), not_clear=(2, 3, 7, 8, 9, 10, 11), saturated=(1,), nodata=(0,))
"""Sentinel-2 L2A scene classification (SCL)."""

FMASK4_RULES = ValueMaskRules(clear=(0, 1), not_clear=(2, 3, 4), nodata=(255,))
"""Fmask 4: 0 land, 1 water, 2 shadow, 3 snow, 4 cloud, 255 fill."""

CMASK_RULES = ValueMaskRules(clear=(127,), not_clear=(255,), nodata=(0,))
"""CBERS-4 CMASK as INPE's collections store it: 127 clear, 255 cloud, 0 fill (preset
``cbers4_cmask_127clear_255cloud_0fill``, also known by its former name ``cmask``)."""

CBERS4_CLOUD_MASK_0_4_255_RULES = ValueMaskRules(clear=(0,), not_clear=(4,), nodata=(255,))
"""The other common CBERS-4 cloud-mask convention: 0 clear, 4 cloud, 255 nodata (preset
``cbers4_mask_0clear_4cloud_255nodata``); its quality nodata is 255, so the cube's
``quality.nodata`` must be 255 as well."""


# --------------------------------------------------------------------------- Landsat QA_PIXEL rules

CONFIDENCE_LEVELS = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}
"""Landsat C2 two-bit confidence levels."""

CONFIDENCE_FIELDS = {"cloud": 8, "shadow": 10, "snow": 12, "cirrus": 14}
"""First bit of each two-bit confidence field of QA_PIXEL (cirrus is meaningful for OLI only)."""

_COMPARISONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_RULE_TOKEN = re.compile(r"\s*(==|!=|<=|>=|<|>|[A-Za-z_][A-Za-z_0-9]*|\d+|\S)")


@dataclass(frozen=True)
class ConfidenceRule:
    """One parsed confidence rule, e.g. ``cloud >= MEDIUM``: pixels matching it are NOT_CLEAR."""

    field: str
    comparison: str
    level: int

    def __str__(self) -> str:
        names = {v: k for k, v in CONFIDENCE_LEVELS.items()}
        return f"{self.field} {self.comparison} {names[self.level]}"

    def matches(self, quality: np.ndarray) -> np.ndarray:
        """Return a boolean array: where the rule's confidence field satisfies the comparison."""
        first = CONFIDENCE_FIELDS[self.field]
        return _COMPARISONS[self.comparison](extract_bits(quality, first, first + 1), self.level)


def parse_confidence_rule(text: str) -> ConfidenceRule:
    """Parse ``"<field> <op> <level>"`` with a tokenizer (never ``eval``).

    Fields: cloud, shadow, snow, cirrus. Operators: == != < <= > >=. Levels: NONE, LOW,
    MEDIUM, HIGH (or 0..3). Field and level names are case-insensitive.

    Returns:
        The parsed rule.

    Raises:
        InvalidQualityRule: naming the rule and its bad part (unknown field, operator or level,
            missing or extra tokens).
    """
    if not isinstance(text, str):
        raise InvalidQualityRule(f"confidence rule {text!r}: expected a string like 'cloud >= MEDIUM'")
    tokens = _RULE_TOKEN.findall(text)
    if not tokens:
        raise InvalidQualityRule(f"confidence rule {text!r}: empty; expected '<field> <operator> <level>'")
    field_token = tokens[0]
    field_name = field_token.lower()
    if field_name not in CONFIDENCE_FIELDS:
        raise InvalidQualityRule(
            f"confidence rule {text!r}: unknown field {field_token!r} (expected one of {', '.join(CONFIDENCE_FIELDS)})"
        )
    op_token = tokens[1] if len(tokens) > 1 else ""
    if op_token not in _COMPARISONS:
        raise InvalidQualityRule(
            f"confidence rule {text!r}: {'unknown operator ' + repr(op_token) if op_token else 'missing operator'} "
            f"(expected one of {' '.join(_COMPARISONS)})"
        )
    level_token = tokens[2] if len(tokens) > 2 else ""
    if level_token.upper() in CONFIDENCE_LEVELS:
        level = CONFIDENCE_LEVELS[level_token.upper()]
    elif level_token.isdigit() and int(level_token) in CONFIDENCE_LEVELS.values():
        level = int(level_token)
    else:
        raise InvalidQualityRule(
            f"confidence rule {text!r}: {'unknown level ' + repr(level_token) if level_token else 'missing level'} "
            f"(expected one of {', '.join(CONFIDENCE_LEVELS)} or 0..3)"
        )
    if len(tokens) > 3:
        raise InvalidQualityRule(f"confidence rule {text!r}: unexpected trailing part {' '.join(tokens[3:])!r}")
    return ConfidenceRule(field=field_name, comparison=op_token, level=level)


@dataclass(frozen=True)
class LandsatQAPixelRules:
    """Landsat Collection 2 ``QA_PIXEL`` bit rules.

    Precedence, first match wins:

    1. value exactly ``nodata_value`` (1: only the fill bit set) -> NODATA;
    2. any of ``not_clear_bits`` (1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow) -> NOT_CLEAR;
    3. any ``confidence`` rule matches -> NOT_CLEAR;
    4. any of ``clear_bits`` (6 clear, 7 water) -> CLEAR;
    5. otherwise (e.g. snow only, or no flag) -> NOT_CLEAR.

    ``confidence`` accepts parsed ``ConfidenceRule`` objects or strings such as ``"cloud >= MEDIUM"``.
    This rule set never yields SATURATED; saturation comes from QA_RADSAT (``radsat_saturated``).
    """

    confidence: tuple[ConfidenceRule, ...] = ()
    nodata_value: int = 1
    not_clear_bits: tuple[int, ...] = (1, 2, 3, 4)
    clear_bits: tuple[int, ...] = (6, 7)

    def __post_init__(self) -> None:
        rules = self.confidence
        if isinstance(rules, (str, ConfidenceRule)):
            rules = (rules,)
        parsed = tuple(r if isinstance(r, ConfidenceRule) else parse_confidence_rule(r) for r in rules)
        object.__setattr__(self, "confidence", parsed)
        for name in ("not_clear_bits", "clear_bits"):
            bits = _int_codes(getattr(self, name), f"QA_PIXEL rule '{name}'")
            if any(not 0 <= bit <= 15 for bit in bits):
                raise InvalidQualityRule(f"QA_PIXEL rule '{name}': bits {bits} must lie in 0..15")
            object.__setattr__(self, name, bits)

    @property
    def quality_nodata(self) -> int:
        """The QA_PIXEL value written where a composite has no observation (the fill value, 1)."""
        return self.nodata_value

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LandsatQAPixelRules:
        """Build rules from ``{"kind": "landsat_qa_pixel", "confidence": ["cloud >= MEDIUM", ...]}``.

        Returns:
            The rules.

        Raises:
            InvalidQualityRule: on an unknown key or a confidence rule that does not parse.
        """
        _check_keys(config, {"kind", "confidence"}, required=set(), what="QA_PIXEL quality rules")
        if config.get("kind", "landsat_qa_pixel") != "landsat_qa_pixel":
            raise InvalidQualityRule(f"QA_PIXEL quality rules: kind {config['kind']!r} is not 'landsat_qa_pixel'")
        confidence = config.get("confidence", ())
        if isinstance(confidence, str):
            confidence = (confidence,)
        return cls(confidence=tuple(confidence))


LANDSAT_C2_QA_PIXEL_RULES = LandsatQAPixelRules()
"""Landsat Collection 2 QA_PIXEL without confidence rules."""

QualityRules = ValueMaskRules | LandsatQAPixelRules

QUALITY_CLASS_RULES = ValueMaskRules(
    clear=(int(QualityClass.CLEAR),),
    not_clear=(int(QualityClass.NOT_CLEAR),),
    saturated=(int(QualityClass.SATURATED),),
    nodata=(int(QualityClass.NODATA),),
)
"""A quality band that already holds ``QualityClass`` codes (what a cube with several sources stores)."""

PRESETS: dict[str, QualityRules] = {
    "scl": SCL_RULES,
    "fmask4": FMASK4_RULES,
    "cbers4_cmask_127clear_255cloud_0fill": CMASK_RULES,
    "cbers4_mask_0clear_4cloud_255nodata": CBERS4_CLOUD_MASK_0_4_255_RULES,
    "cmask": CMASK_RULES,
    "landsat_c2_qa_pixel": LANDSAT_C2_QA_PIXEL_RULES,
    "quality_class": QUALITY_CLASS_RULES,
}


def _check_keys(config: Mapping[str, Any], allowed: set[str], required: set[str], what: str) -> None:
    if not isinstance(config, Mapping):
        raise InvalidQualityRule(f"{what}: expected a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise InvalidQualityRule(f"{what}: unknown key(s) {unknown} (allowed: {sorted(allowed)})")
    missing = sorted(required - set(config))
    if missing:
        raise InvalidQualityRule(f"{what}: missing key(s) {missing}")


def rules_from_config(config: Mapping[str, Any]) -> QualityRules:
    """Build quality rules from a collection's configuration.

    Accepted forms: ``{"preset": name}`` with a name of ``PRESETS`` (``scl``, ``fmask4``,
    ``cbers4_cmask_127clear_255cloud_0fill`` (alias ``cmask``), ``cbers4_mask_0clear_4cloud_255nodata``,
    ``landsat_c2_qa_pixel``; nothing else beside it), ``{"kind": "values", "clear": [...],
    "not_clear": [...], "saturated": [...], "nodata": 0}``, or
    ``{"kind": "landsat_qa_pixel", "confidence": ["cloud >= MEDIUM"]}``.

    Returns:
        A ``ValueMaskRules`` or ``LandsatQAPixelRules``.

    Raises:
        InvalidQualityRule: on an unknown preset or kind, extra keys, or invalid rules.
    """
    if not isinstance(config, Mapping):
        raise InvalidQualityRule(f"quality rules: expected a mapping, got {type(config).__name__}")
    if "preset" in config:
        if set(config) != {"preset"}:
            extra = sorted(set(config) - {"preset"})
            raise InvalidQualityRule(f"quality rules: 'preset' cannot be combined with {extra}")
        name = config["preset"]
        if name not in PRESETS:
            raise InvalidQualityRule(f"quality rules: unknown preset {name!r} (expected one of {sorted(PRESETS)})")
        return PRESETS[name]
    kind = config.get("kind")
    if kind == "values":
        return ValueMaskRules.from_config(config)
    if kind == "landsat_qa_pixel":
        return LandsatQAPixelRules.from_config(config)
    raise InvalidQualityRule(
        f"quality rules: unknown kind {kind!r} (expected 'values' or 'landsat_qa_pixel', or give a 'preset')"
    )


# --------------------------------------------------------------------------- classification


def extract_bits(values: np.ndarray, first: int, last: int) -> np.ndarray:
    """Return the unsigned integer held in bits ``first..last`` (inclusive, bit 0 = least significant).

    Signed inputs are read by their two's-complement bit pattern. Example: bits 1..7 of 1026
    extract to 1.

    Raises:
        InvalidRaster: if ``values`` is not an integer array.
        InvalidQualityRule: if the bit range is empty or exceeds the dtype's width.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise InvalidRaster(f"extract_bits: quality values must be integers, got dtype {values.dtype}")
    width = values.dtype.itemsize * 8
    if not 0 <= first <= last < width:
        raise InvalidQualityRule(f"extract_bits: bit range {first}..{last} is not within 0..{width - 1}")
    unsigned = values.astype(np.dtype(f"u{values.dtype.itemsize}"), copy=False)
    mask = (1 << (last - first + 1)) - 1
    return (unsigned >> first) & mask


def _any_bit_set(values: np.ndarray, bits: Sequence[int]) -> np.ndarray:
    mask = sum(1 << bit for bit in set(bits))
    is_set: np.ndarray = (values & mask) != 0
    return is_set


def classify_quality(quality: np.ndarray, rules: QualityRules) -> np.ndarray:
    """Classify each quality pixel as a ``QualityClass`` code.

    For ``ValueMaskRules`` a pixel takes the class of the list that names its value; values not
    mentioned in any list count as NOT_CLEAR. For ``LandsatQAPixelRules`` the precedence is
    documented on that class (nodata, then bits 1-4, then confidence rules, then bits 6/7, else
    NOT_CLEAR).

    Returns:
        A ``uint8`` array of ``QualityClass`` codes with the shape of ``quality``.

    Raises:
        InvalidRaster: if QA_PIXEL values are not integers.
        TypeError: if ``rules`` is not a rules object.
    """
    quality = np.asarray(quality)
    classes = np.full(quality.shape, QualityClass.NOT_CLEAR, dtype=QUALITY_CLASS_DTYPE)
    if isinstance(rules, ValueMaskRules):
        for codes, klass in (
            (rules.clear, QualityClass.CLEAR),
            (rules.saturated, QualityClass.SATURATED),
            (rules.nodata, QualityClass.NODATA),
        ):
            if codes:
                classes[np.isin(quality, codes)] = klass
        return classes
    if isinstance(rules, LandsatQAPixelRules):
        if quality.dtype.kind not in "iu":
            raise InvalidRaster(f"QA_PIXEL quality must be integers, got dtype {quality.dtype}")
        unsigned = quality.astype(np.dtype(f"u{quality.dtype.itemsize}"), copy=False)
        masked = _any_bit_set(unsigned, rules.not_clear_bits)
        for rule in rules.confidence:
            masked |= rule.matches(unsigned)
        classes[~masked & _any_bit_set(unsigned, rules.clear_bits)] = QualityClass.CLEAR
        classes[unsigned == rules.nodata_value] = QualityClass.NODATA
        return classes
    raise TypeError(
        f"classify_quality: rules must be ValueMaskRules or LandsatQAPixelRules, got {type(rules).__name__}"
    )


def radsat_saturated(qa_radsat: np.ndarray) -> np.ndarray:
    """Return a boolean array: True where any of bits 1-7 of the Landsat QA_RADSAT value is set.

    Raises:
        InvalidRaster: if ``qa_radsat`` is not an integer array.
    """
    saturated: np.ndarray = extract_bits(qa_radsat, 1, 7) != 0
    return saturated


# --------------------------------------------------------------------------- reflectance and nodata


LANDSAT_C2_REFLECTANCE_RANGE = (0.0, 10000.0)
"""Valid range of Landsat C2 surface reflectance x 10000 after rescaling; values outside it are clipped to it."""


def rescale_landsat_c2(
    dn: np.ndarray,
    scale: float = 2.75e-5,
    offset: float = -0.2,
    dtype: DTypeLike = np.int16,
    nodata_in: float | None = 0,
    nodata_out: float = -9999,
    valid_range: tuple[float, float] | None = LANDSAT_C2_REFLECTANCE_RANGE,
) -> np.ndarray:
    """Convert Landsat C2 L2 surface-reflectance DNs to reflectance x 10000, clipped to 0..10000.

    Rule (the Collection 2 Level-2 scale 2.75e-5 and offset -0.2, then clipped to 0-10000):
    ``round((dn * scale + offset) * 10000)`` (``np.rint``, ties to even), clipped to
    ``valid_range`` (default 0..10000; ``None``: no range, only the dtype's) and then to the
    output dtype's range instead of wrapping. Input ``nodata_in`` pixels (and non-finite ones)
    become ``nodata_out``. A valid pixel never yields ``nodata_out``: when it is the dtype's
    minimum (or maximum) valid values are clipped to ``[min + 1, max]`` (``[min, max - 1]``); when
    it lies inside the range, a valid result equal to it is moved one step toward zero (up
    when ``nodata_out`` is 0), so with ``nodata_out=0`` a clipped 0 is stored as 1.

    Returns:
        An array of ``dtype`` with the shape of ``dn``.

    Raises:
        InvalidRaster: if ``nodata_out`` cannot be stored in ``dtype``, or ``valid_range`` is not
            a ``(low, high)`` pair with ``low <= high``.
    """
    dn = np.asarray(dn)
    reflectance = (dn.astype(np.float64) * scale + offset) * 10000.0
    if valid_range is not None:
        try:
            low, high = (float(v) for v in valid_range)
        except (TypeError, ValueError):
            raise InvalidRaster(f"rescale_landsat_c2: valid_range {valid_range!r} is not a (low, high) pair") from None
        if not low <= high:
            raise InvalidRaster(f"rescale_landsat_c2: valid_range {valid_range!r} has low above high")
        reflectance = np.clip(reflectance, low, high)
    valid = _valid_mask(dn, nodata_in)
    return round_into_dtype(reflectance, valid, dtype, nodata_out, name="rescale_landsat_c2")


def _valid_mask(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where ``values`` is not ``nodata`` (NaN nodata matches NaN)."""
    if nodata is None:
        return np.ones(values.shape, dtype=bool)
    if isinstance(nodata, float) and np.isnan(nodata):
        not_nan: np.ndarray = ~np.isnan(values)
        return not_nan
    valid: np.ndarray = values != nodata
    return valid


def propagate_spectral_nodata(
    quality: np.ndarray,
    spectral: Sequence[np.ndarray],
    spectral_nodata: float | Sequence[float | None] | None,
    quality_nodata: float,
) -> np.ndarray:
    """Make a pixel nodata in the quality band where it is nodata in any spectral band.

    Applied before blending so a pixel missing in a band is never chosen. ``spectral_nodata``
    is one value for every band or one per band (``None``: the band has no nodata).

    Returns:
        A copy of ``quality`` with ``quality_nodata`` where any spectral band is nodata.

    Raises:
        InvalidRaster: if a spectral band's shape differs from the quality band's, or the number
            of nodata values differs from the number of bands.
    """
    quality = np.asarray(quality)
    if isinstance(spectral_nodata, Sequence) and not isinstance(spectral_nodata, str):
        nodatas = list(spectral_nodata)
        if len(nodatas) != len(spectral):
            raise InvalidRaster(
                f"propagate_spectral_nodata: {len(nodatas)} nodata values for {len(spectral)} spectral bands"
            )
    else:
        nodatas = [spectral_nodata] * len(spectral)
    missing = np.zeros(quality.shape, dtype=bool)
    for position, (band, nodata) in enumerate(zip(spectral, nodatas, strict=True)):
        band = np.asarray(band)
        if band.shape != quality.shape:
            raise InvalidRaster(
                f"propagate_spectral_nodata: spectral band {position} has shape {band.shape}, "
                f"quality has {quality.shape}"
            )
        missing |= ~_valid_mask(band, nodata)
    result = quality.copy()
    result[missing] = quality_nodata
    return result


# --------------------------------------------------------------------------- statistics


def efficacy(classes: np.ndarray) -> float:
    """Return 100 x clear pixels / all pixels of a ``QualityClass`` array (0.0 when empty)."""
    classes = np.asarray(classes)
    if classes.size == 0:
        return 0.0
    return 100.0 * float(np.count_nonzero(classes == QualityClass.CLEAR)) / classes.size


def cloud_ratio(classes: np.ndarray) -> float:
    """Return 100 x not-clear / (clear + not-clear) pixels; 0.0 when there are neither.

    Nodata and saturated pixels count in neither term.
    """
    classes = np.asarray(classes)
    clear = np.count_nonzero(classes == QualityClass.CLEAR)
    not_clear = np.count_nonzero(classes == QualityClass.NOT_CLEAR)
    if clear + not_clear == 0:
        return 0.0
    return 100.0 * float(not_clear) / float(clear + not_clear)


__all__ = [
    "CBERS4_CLOUD_MASK_0_4_255_RULES",
    "CMASK_RULES",
    "CONFIDENCE_FIELDS",
    "CONFIDENCE_LEVELS",
    "FMASK4_RULES",
    "LANDSAT_C2_QA_PIXEL_RULES",
    "LANDSAT_C2_REFLECTANCE_RANGE",
    "PRESETS",
    "QUALITY_CLASS_DTYPE",
    "QUALITY_CLASS_RULES",
    "SCL_RULES",
    "ConfidenceRule",
    "LandsatQAPixelRules",
    "QualityClass",
    "QualityRules",
    "ValueMaskRules",
    "classify_quality",
    "cloud_ratio",
    "efficacy",
    "extract_bits",
    "parse_confidence_rule",
    "propagate_spectral_nodata",
    "radsat_saturated",
    "rescale_landsat_c2",
    "rules_from_config",
]
