"""What WaveSpeed's Ovi models honor: the adapter's name and capabilities, as plain data.

Apart from ``translate`` (which re-exports them) so that the registry, which reads every adapter class's
capabilities whenever a gateway starts or a quote runs, loads no wire schema and no translation code
(start-up, issue 14). Source: seeds/wavespeed-ovi-image-to-video.md.
"""

from __future__ import annotations

from gateway.contract import Capabilities, Limit, ModeCapabilities
from gateway.request import Mode

__all__ = ["CAPABILITIES", "I2V_MODEL", "NAME", "SEED_MAX", "T2V_MODEL", "WIRE_SIZES"]

NAME = "wavespeed"
I2V_MODEL = "character-ai/ovi/image-to-video"
T2V_MODEL = "character-ai/ovi/text-to-video"
SEED_MAX = 2_147_483_647

WIRE_SIZES = {"960x540": "960*540", "540x960": "540*960"}
"""Canonical ``size`` -> WaveSpeed's ``size`` (W*H), text-to-video only."""
_COMMON = {
    "seed": Limit(0, SEED_MAX),
    "fps": Limit(fixed=24),             # "5-second clips at 24 FPS"; not a parameter
    "output_format": Limit(fixed="MP4"),
}
CAPABILITIES = Capabilities(modes={
    Mode.IMAGE_TO_VIDEO: ModeCapabilities(I2V_MODEL, dict(_COMMON)),
    Mode.TEXT_TO_VIDEO: ModeCapabilities(T2V_MODEL, {**_COMMON, "size": Limit(choices=tuple(WIRE_SIZES))}),
})
