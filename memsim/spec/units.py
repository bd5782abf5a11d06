"""Physical quantities that closed-form curves read from knobs, and unit conversions to SI."""

from __future__ import annotations

from enum import StrEnum


class Quantity(StrEnum):
    TIME = "time"
    TEMPERATURE = "temperature"
    VOLTAGE = "voltage"
    CURRENT = "current"
    RATIO = "ratio"


# unit -> (scale, offset): si = value * scale + offset
UNITS: dict[Quantity, dict[str, tuple[float, float]]] = {
    Quantity.TIME: {
        "s": (1.0, 0.0), "ms": (1e-3, 0.0), "us": (1e-6, 0.0), "µs": (1e-6, 0.0),
        "ns": (1e-9, 0.0), "min": (60.0, 0.0), "h": (3600.0, 0.0), "day": (86400.0, 0.0),
        "year": (365.25 * 86400.0, 0.0),
    },
    Quantity.TEMPERATURE: {"K": (1.0, 0.0), "degC": (1.0, 273.15), "°C": (1.0, 273.15)},
    Quantity.VOLTAGE: {"V": (1.0, 0.0), "mV": (1e-3, 0.0)},
    Quantity.CURRENT: {"A": (1.0, 0.0), "mA": (1e-3, 0.0), "uA": (1e-6, 0.0), "µA": (1e-6, 0.0)},
    Quantity.RATIO: {"1": (1.0, 0.0), "ratio": (1.0, 0.0), "%": (0.01, 0.0)},
}

SI_UNIT = {
    Quantity.TIME: "s",
    Quantity.TEMPERATURE: "K",
    Quantity.VOLTAGE: "V",
    Quantity.CURRENT: "A",
    Quantity.RATIO: "1",
}


def conversion(unit: str, quantity: Quantity) -> tuple[float, float] | None:
    """(scale, offset) taking a value in `unit` to the SI unit of `quantity`, or None."""
    return UNITS[quantity].get(unit)
