"""Length units found in volume metadata, converted to nanometres."""

from __future__ import annotations

# Spellings seen in OME-NGFF, OME-TIFF, ImageJ and N5 metadata. ImageJ writes
# the micro sign escaped ("\\u00B5m"); "μ" (Greek mu) and "µ" (micro sign) differ.
_NM_PER_UNIT = {
    "pm": 1e-3,
    "picometer": 1e-3,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "nm": 1.0,
    "nanometer": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "\\u00b5m": 1e3,
    "micron": 1e3,
    "micrometer": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "m": 1e9,
    "meter": 1e9,
}


def nm_per_unit(unit: object) -> float | None:
    """Nanometres in one ``unit`` (e.g. "micrometer" → 1000), or None if unknown."""
    if not isinstance(unit, str):
        return None
    key = unit.strip().lower().replace("metre", "meter")
    key = key.removesuffix("s") if key.endswith(("ers", "ons")) else key
    return _NM_PER_UNIT.get(key)
