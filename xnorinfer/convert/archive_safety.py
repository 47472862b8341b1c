"""Refuse a torch.export archive that would make torch unpickle anything.

`torch.export.load` unpickles some archive members with `weights_only=False`: weights and
constants whose config entry says `use_pickle`, custom and opaque objects among the constants,
and the sample inputs when a weights-only load of them fails (it then falls back). Unpickling runs
whatever code the file names, so an untrusted `.pt2` is checked member by member first: every
config is read as JSON, and every pickled member must load with `torch.load(weights_only=True)`,
the restricted unpickler that builds tensors and plain containers only. A file that passes makes
torch's loader take its weights-only path everywhere.
"""

from __future__ import annotations

import io
import json
import zipfile

import torch

from xnorinfer.convert.graph import ConversionError

_PICKLED_CONSTANT_PREFIXES = ("custom_obj_", "opaque_obj_")  # loaded with pickle, never weights-only


def _refuse(path: str, member: str, why: str) -> ConversionError:
    return ConversionError(
        f"{path}: archive member {member} {why}; loading it would unpickle, which can run arbitrary code. "
        "Re-export the model with torch.export.save from code you trust, or pass --trust-pickle "
        "(trust_pickle=True) for a file you trust"
    )


def _is_pickle(data: bytes) -> bool:
    """A torch.save zip (holds data.pkl) or a raw pickle (protocol 2+ opcode)."""
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                return any(n.endswith("data.pkl") for n in inner.namelist())
        except zipfile.BadZipFile:
            return False
    return data[:1] == b"\x80"


def check_weights_only(path: str, archive: zipfile.ZipFile) -> None:
    """Raise ConversionError naming the first member that needs a full unpickle."""
    raw: set[str] = set()  # members a config declares as raw tensor bytes: torch reads them unpickled
    for info in archive.infolist():
        name = info.filename
        if name.endswith("_config.json") and ("/weights/" in name or "/constants/" in name):
            try:
                config = json.loads(archive.read(info)).get("config", {})
                entries = list(config.items())
            except (ValueError, AttributeError) as err:
                raise ConversionError(f"{path}: archive member {name} is not a valid config ({err})") from None
            folder = name.rsplit("/", 1)[0]
            for key, entry in entries:
                if not isinstance(entry, dict):
                    raise ConversionError(f"{path}: archive member {name}: entry {key!r} is not an object")
                if entry.get("use_pickle"):
                    raise _refuse(path, name, f"marks {key!r} as pickled (use_pickle)")
                if str(entry.get("path_name", "")).startswith(_PICKLED_CONSTANT_PREFIXES):
                    raise _refuse(path, name, f"holds {key!r} as a pickled object")
                raw.add(f"{folder}/{entry.get('path_name', '')}")
    for info in archive.infolist():
        name = info.filename
        # Raw float32 data starts with byte 0x80 (a pickle's first opcode) for 1 tensor in 256: only a
        # member torch would unpickle is sniffed.
        if name.endswith((".json", "/")) or name in raw:
            continue
        data = archive.read(info)
        if _is_pickle(data):
            try:
                torch.load(io.BytesIO(data), weights_only=True)
            except Exception as err:  # noqa: BLE001 - any refusal of the restricted unpickler
                raise _refuse(
                    path, name, f"is a pickle that a weights-only load refuses ({type(err).__name__})"
                ) from None
