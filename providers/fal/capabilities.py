"""What fal.ai's Ovi endpoints honor: the adapter's name and capabilities, as plain data.

Apart from ``translate`` (which re-exports them) so that the registry, which reads every adapter class's
capabilities whenever a gateway starts or a quote runs, loads no wire schema and no translation code
(start-up, issue 14). Sources as in ``translate`` (seeds/fal-ovi-*.md).
"""

from __future__ import annotations

from gateway.contract import Capabilities, Limit, ModeCapabilities
from gateway.request import Mode

__all__ = ["CAPABILITIES", "I2V_ENDPOINT", "PROVIDER", "RESOLUTIONS", "T2V_ENDPOINT"]

PROVIDER = "fal"
I2V_ENDPOINT = "fal-ai/ovi/image-to-video"
T2V_ENDPOINT = "fal-ai/ovi"
RESOLUTIONS = ("512x992", "992x512", "960x512", "512x960", "720x720", "448x1120", "1120x448")
"""The ``resolution`` enum of ``fal-ai/ovi`` (W x H); canonical ``size`` maps to it 1:1."""

# fal documents no seed range ("If None, a random seed is chosen"). Refusing anything beyond
# uint32 is our conservative choice: it is what the Ovi pipeline draws, and a larger value could
# be refused by the runner after the job was paid for.
_SEED = Limit(minimum=0, maximum=2**32 - 1)
_COMMON = {
    "seed": _SEED,
    "steps": Limit(minimum=1, maximum=50),
    "negative_prompt": Limit(),
    "audio_negative_prompt": Limit(),
    "fps": Limit(fixed=24),
    "output_format": Limit(fixed="MP4"),
}

CAPABILITIES = Capabilities(modes={
    Mode.IMAGE_TO_VIDEO: ModeCapabilities(endpoint=I2V_ENDPOINT, fields=dict(_COMMON)),
    Mode.TEXT_TO_VIDEO: ModeCapabilities(endpoint=T2V_ENDPOINT,
                                         fields={**_COMMON, "size": Limit(choices=RESOLUTIONS)}),
})
