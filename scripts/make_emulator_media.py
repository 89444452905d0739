"""Write the emulator's packaged clips (``gateway/emulator/media/``) and their manifest.

    .venv/bin/pip install -e '.[media]' && .venv/bin/python scripts/make_emulator_media.py

Every clip comes from ``gateway.emulator.render.encode_clip`` (PyAV's bundled libx264/aac, libvpx-vp9/
libopus): a test card, 121 frames at 24 fps with a tone, in MP4, MOV and WEBM, plus the defective
``noaudio`` and ``short`` variants. ``MANIFEST.json`` records the PyAV version, sizes and sha256, so a
test can tell whether regenerating with the same PyAV gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.emulator.clips import asset_name  # noqa: E402
from gateway.emulator.render import CONTAINERS, VARIANTS, ClipSpec, encode_clip  # noqa: E402


def build(folder: Path) -> dict[str, object]:
    """Encode every asset into ``folder``; return the manifest."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for fmt in CONTAINERS:
        for variant in VARIANTS:
            data = encode_clip(ClipSpec(fmt, variant))
            name = asset_name(fmt, variant)
            (folder / name).write_bytes(data)
            files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {"generator": "scripts/make_emulator_media.py", "av": av.__version__, "files": files}


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "gateway" / "emulator" / "media"
    manifest = build(folder)
    (folder / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for name, facts in manifest["files"].items():  # type: ignore[union-attr]
        print(f"{name:34} {facts['bytes']:7} bytes  sha256 {facts['sha256'][:16]}…")


if __name__ == "__main__":
    main()
