"""The PlayAI models the server offers: name, websocket app path and text limit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    """One model: its public name, the app segment of its websocket path, its text limit."""

    name: str
    app: str
    text_limit: int


MODELS: tuple[Model, ...] = (
    Model("Play3.0-mini", "play3-mini", 20_000),
    Model("PlayDialog", "playdialog", 50_000),
    Model("PlayDialogMultilingual", "playdialog-multilingual", 50_000),
    Model("PlayDialogArabic", "playdialog-arabic", 50_000),
)
MODELS_BY_APP: dict[str, Model] = {m.app: m for m in MODELS}


def model_for_path(path: str) -> Model | None:
    """The model served at a websocket path (``/<app>/ws`` or ``/<app>``), None if unknown."""
    parts = path.strip("/").split("/")
    if (len(parts) == 2 and parts[1] == "ws") or len(parts) == 1:
        return MODELS_BY_APP.get(parts[0])
    return None
