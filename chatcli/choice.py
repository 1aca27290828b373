"""What a turn uses in a session: its model and temperature, from the flags, the session's metadata and the
settings. No LangChain here: `chat` shows a resumed session's recap before the chain has loaded."""

from __future__ import annotations

import contextlib

DEFAULT_SYSTEM = "You are a helpful assistant."


def choose(
    meta: dict[str, str], model_flag: str | None, temperature_flag: float | None, default_model: str
) -> tuple[str, float | None]:
    """(model, temperature) of a turn in a session with this metadata: a flag wins for this run, then what the
    session keeps, then the default for new sessions."""
    model = model_flag or meta.get("model") or default_model
    temperature = temperature_flag
    if temperature is None and meta.get("temperature"):
        with contextlib.suppress(ValueError):
            temperature = float(meta["temperature"])
    return model, temperature
